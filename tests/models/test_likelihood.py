"""Anomaly likelihood: calibrates raw scores against each series' own history."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.likelihood import AnomalyLikelihood


def feed(lik: AnomalyLikelihood, raw: np.ndarray, series: int = 0) -> np.ndarray:
    return np.array([lik.score_learn(np.array([series]), np.array([r]))[0] for r in raw])


def test_silent_while_learning_then_flags_a_burst_of_high_raw_scores() -> None:
    lik = AnomalyLikelihood(short=5, history=300, learning=100)
    rng = np.random.default_rng(0)
    calm = feed(lik, rng.uniform(0.0, 0.3, 400))
    assert (calm[:100] == 0).all()
    burst = feed(lik, np.full(10, 0.95))
    assert burst.max() > 0.9
    assert np.quantile(calm[100:], 0.99) < burst.max()


def test_a_series_that_is_always_noisy_is_judged_by_its_own_noise() -> None:
    lik = AnomalyLikelihood(short=5, history=300, learning=100)
    rng = np.random.default_rng(1)
    noisy = feed(lik, rng.uniform(0.5, 1.0, 500), series=0)
    calm = feed(lik, rng.uniform(0.0, 0.1, 500), series=1)
    # A 0.9 is routine for the noisy series and news for the calm one.
    assert noisy[-1] < 0.9
    assert feed(lik, np.full(5, 0.9), series=1)[-1] > 0.9
    assert calm[100:].mean() < 0.5


def test_checkpoint_round_trip_gives_identical_scores() -> None:
    lik = AnomalyLikelihood(short=4, history=50, learning=10)
    feed(lik, np.random.default_rng(2).uniform(0, 1, 120), series=2)
    clone = AnomalyLikelihood(short=4, history=50, learning=10)
    clone.load_state(json.loads(json.dumps(lik.state_dict())))
    nxt = np.random.default_rng(3).uniform(0, 1, 30)
    assert np.array_equal(feed(lik, nxt, 2), feed(clone, nxt, 2))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_raw_scores_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        AnomalyLikelihood().score_learn(np.array([0]), np.array([bad]))


def test_repeated_reds_are_reported_as_yellow() -> None:
    lik = AnomalyLikelihood(short=1, history=200, learning=50, log_scale=False,
                            repeat_red=0.99999, repeat_yellow=0.999)
    feed(lik, np.random.default_rng(4).uniform(0.0, 0.1, 200))
    out = feed(lik, np.ones(3))
    assert out[0] >= 0.99999 and out[1] == pytest.approx(0.999) and out[2] == pytest.approx(0.999)


def test_the_repeat_filter_remembers_a_red_across_a_checkpoint() -> None:
    def make() -> AnomalyLikelihood:
        return AnomalyLikelihood(short=1, history=200, learning=50, log_scale=False,
                                 repeat_red=0.99999, repeat_yellow=0.999)
    lik = make()
    feed(lik, np.random.default_rng(4).uniform(0.0, 0.1, 200))
    assert feed(lik, np.ones(1))[0] >= 0.99999  # red
    clone = make()
    clone.load_state(json.loads(json.dumps(lik.state_dict())))
    assert feed(clone, np.ones(1))[0] == pytest.approx(0.999) == feed(lik, np.ones(1))[0]


def test_an_older_checkpoint_without_the_filter_state_or_its_parameters_loads() -> None:
    lik = AnomalyLikelihood(short=4, history=50, learning=10)
    feed(lik, np.random.default_rng(2).uniform(0, 1, 120))
    old = lik.state_dict()
    del old["red"]
    for key in ("repeat_red", "repeat_yellow"):
        del old["params"][key]
    clone = AnomalyLikelihood(short=4, history=50, learning=10)
    clone.load_state(old)
    nxt = np.random.default_rng(3).uniform(0, 1, 30)
    assert np.array_equal(feed(lik, nxt), feed(clone, nxt))
    with pytest.raises(ValueError, match="another configuration"):
        AnomalyLikelihood(short=4, history=50, learning=10, repeat_red=0.9).load_state(lik.state_dict())
