"""Ensemble: calibrated members combined into one p-value; it flags a spike and a level shift,
stays quiet on white noise at the pipeline's threshold, restores from a JSON checkpoint with
identical later scores, and refuses bad input; `combine_pvalues` counts only active members."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from models import Ensemble, EwmaZScore, PeriodicZScore, RobustZScore, combine_pvalues, surprise
from tests.models.streams import SURPRISE_THRESHOLD, noise, roundtrip, with_shift, with_spike


def run_ensemble(x: np.ndarray) -> np.ndarray:
    ens = Ensemble([EwmaZScore(alpha=0.01), RobustZScore(window=64)])
    return np.array([float(surprise(ens.score_learn(np.array([0]), np.array([v])))[0]) for v in x])


def run_ewma_periodic(x: np.ndarray) -> np.ndarray:
    """`vigil eval nab`'s default: level and one-day-ago judges, 5-minute steps."""
    ens = Ensemble([EwmaZScore(alpha=0.01, clip_z=np.inf), PeriodicZScore()])
    return np.array([float(surprise(ens.score_learn(np.array([0]), np.array([v]),
                                                    ts=np.array([300.0 * t])))[0])
                     for t, v in enumerate(x)])


RUNNERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ensemble": run_ensemble, "ewma+periodic": run_ewma_periodic}


@pytest.mark.parametrize("name", RUNNERS)
def test_flags_an_injected_spike(name: str) -> None:
    scores = RUNNERS[name](with_spike(1200, 1, at=1000))
    assert scores[1000:1002].max() == scores[900:1100].max() > 0


@pytest.mark.parametrize("name", RUNNERS)
def test_flags_a_spike_past_the_default_threshold(name: str) -> None:
    assert RUNNERS[name](with_spike(1200, 2, at=1000))[1000] >= SURPRISE_THRESHOLD


@pytest.mark.parametrize("name", RUNNERS)
def test_flags_a_level_shift_within_a_few_steps(name: str) -> None:
    scores = RUNNERS[name](with_shift(1200, 3, at=1000))
    assert scores[1000:1004].max() >= np.quantile(scores[400:1000], 0.999)


@pytest.mark.parametrize("name", RUNNERS)
def test_quiet_on_white_noise_at_the_default_threshold(name: str) -> None:
    scores = RUNNERS[name](noise(3000, 4))
    assert (scores[100:] >= SURPRISE_THRESHOLD).sum() == 0


def test_checkpoint_gives_identical_scores() -> None:
    roundtrip(lambda: Ensemble([EwmaZScore(), RobustZScore()]),
              lambda e, t: e.score_learn(np.arange(3), np.random.default_rng(t).normal(0, 1, 3)))


def test_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="finite"):
        Ensemble([EwmaZScore()]).score_learn(np.array([0]), np.array([np.inf]))
    with pytest.raises(ValueError, match="needs ts"):
        Ensemble([PeriodicZScore()]).score_learn(np.array([0]), np.array([1.0]))
    with pytest.raises(ValueError, match="unknown method"):
        combine_pvalues([np.ones(1)], "vote")  # type: ignore[arg-type]


def test_combine_pvalues_counts_only_active_members() -> None:
    ps = [np.array([0.01, 0.01, 0.5]), np.array([0.001, 0.5, 0.5])]
    active = [np.array([True, True, True]), np.array([True, False, False])]
    assert combine_pvalues(ps, active=active).tolist() == [0.002, 0.01, 0.5]
    none = [np.array([False]), np.array([False])]
    assert combine_pvalues([np.array([0.01]), np.array([0.01])], "fisher", active=none).tolist() == [1.0]
