"""What every z-score baseline of the `SeriesDetector` protocol does (EWMA and median/MAD alike):
score before learning, independent series, floors, one call per time step, checkpoints, and
quiet-on-noise / spike / level-shift behaviour; and `tail_score`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models import EwmaZScore, RobustZScore, SeriesDetector, tail_score


@pytest.fixture(params=["ewma", "robust"])
def model(request: pytest.FixtureRequest) -> SeriesDetector:
    return EwmaZScore(alpha=0.1) if request.param == "ewma" else RobustZScore(window=32)


def feed(m: SeriesDetector, values: np.ndarray, series: int = 0) -> list[float]:
    return [float(m.score_learn(np.array([series]), np.array([v])).z[0]) for v in values]


def test_scores_a_value_before_learning_it(model: SeriesDetector) -> None:
    feed(model, np.random.default_rng(1).normal(10, 1, 100))
    s = model.score_learn(np.array([0]), np.array([30.0]))
    assert s.z[0] > 10 and s.seen[0] == 100


def test_series_are_independent_in_one_call(model: SeriesDetector) -> None:
    rng = np.random.default_rng(2)
    for _ in range(60):
        model.score_learn(np.array([0, 5]), np.array([rng.normal(10, 1), rng.normal(1000, 10)]))
    s = model.score_learn(np.array([0, 5]), np.array([10.0, 1000.0]))
    assert np.abs(s.z).max() < 3
    assert s.mean[0] == pytest.approx(10, abs=1) and s.mean[1] == pytest.approx(1000, abs=15)


def test_floor_keeps_a_flat_series_from_alarming_on_noise(model: SeriesDetector) -> None:
    feed(model, np.zeros(50))
    bare = model.score_learn(np.array([0]), np.array([0.01]))
    floored = model.score_learn(np.array([0]), np.array([0.01]), floor=np.array([0.05]))
    assert bare.z[0] == 0.0 or bare.z[0] > 5  # zero spread: no scale without a floor
    assert floored.z[0] == pytest.approx(0.2, abs=0.05)


def test_relative_floor_scales_with_the_baseline(model: SeriesDetector) -> None:
    feed(model, np.full(50, 200.0))
    s = model.score_learn(np.array([0]), np.array([240.0]), rel_floor=np.array([0.1]))
    assert s.z[0] == pytest.approx(2.0, abs=0.05)


def test_checkpoint_is_json_and_restores_the_same_scores(model: SeriesDetector) -> None:
    feed(model, np.random.default_rng(3).normal(5, 2, 80), series=3)
    state = json.loads(json.dumps(model.state_dict()))  # plain data, no pickle
    clone = EwmaZScore(alpha=0.1) if model.name == "ewma" else RobustZScore(window=32)
    clone.load_state(state)
    a = model.score_learn(np.array([3]), np.array([9.0]))
    b = clone.score_learn(np.array([3]), np.array([9.0]))
    assert a.z[0] == pytest.approx(b.z[0]) and a.mean[0] == pytest.approx(b.mean[0])


def test_tail_score_directions() -> None:
    z = np.array([-5.0, 0.0, 5.0])
    assert tail_score(z, "up").round(6).tolist() == [0.0, 0.5, 1.0]
    assert tail_score(z, "down").round(6).tolist() == [1.0, 0.5, 0.0]
    assert tail_score(z, "both").round(6).tolist() == [0.999999, 0.0, 0.999999]


def test_one_call_is_one_time_step(model: SeriesDetector) -> None:
    with pytest.raises(ValueError, match="repeat within one call"):
        model.score_learn(np.array([1, 1]), np.array([1.0, 2.0]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_before_they_poison_a_baseline(
    model: SeriesDetector, bad: float
) -> None:
    feed(model, np.ones(20))
    with pytest.raises(ValueError, match="finite"):
        model.score_learn(np.array([0, 1]), np.array([1.0, bad]))
    assert model.score_learn(np.array([0]), np.array([1.0])).seen[0] == 20  # state untouched


def test_wrong_shapes_are_refused(model: SeriesDetector) -> None:
    with pytest.raises(ValueError, match="one length"):
        model.score_learn(np.array([0, 1]), np.array([1.0]))


THRESHOLD = 0.99999  # scoring.threshold's default


def scores_of(model: SeriesDetector, values: np.ndarray) -> np.ndarray:
    out = []
    for v in values:
        s = model.score_learn(np.array([0]), np.array([v]))
        out.append(tail_score(s.z, "both", s.dof)[0] if s.seen[0] >= 12 else 0.0)
    return np.array(out)


def test_quiet_on_white_noise_at_the_default_threshold(model: SeriesDetector) -> None:
    noise = np.random.default_rng(7).normal(50.0, 2.0, 3000)
    assert (scores_of(model, noise) < THRESHOLD).all()


def test_flags_an_injected_spike(model: SeriesDetector) -> None:
    x = np.random.default_rng(8).normal(50.0, 2.0, 500)
    x[400] += 30.0
    s = scores_of(model, x)
    assert s[400] >= THRESHOLD and (s[:400] < THRESHOLD).all()


def test_flags_a_level_shift_when_it_starts(model: SeriesDetector) -> None:
    x = np.random.default_rng(9).normal(50.0, 2.0, 500)
    x[400:] += 15.0
    s = scores_of(model, x)
    assert s[400] >= THRESHOLD and (s[:400] < THRESHOLD).all()


@pytest.mark.parametrize("floors", [
    {"floor": np.array([-1.0])}, {"floor": np.array([np.nan])}, {"rel_floor": np.array([0.1, 0.1])}])
def test_floors_are_one_per_value_finite_and_non_negative(model: SeriesDetector,
                                                         floors: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="floor must be finite"):
        model.score_learn(np.array([0]), np.array([1.0]), **floors)


def test_every_detector_declares_its_protocol() -> None:
    from models import (
        AlarmDedup,
        AnomalyLikelihood,
        HalfSpaceTreesDetector,
        IsolationForestDetector,
        Judge,
        PeriodicZScore,
        SeasonalZScore,
        Stateful,
        TailCalibrator,
        VectorDetector,
    )

    for m in (EwmaZScore(), RobustZScore(), SeasonalZScore(), PeriodicZScore()):
        assert isinstance(m, SeriesDetector)
    assert [m.needs_ts for m in (EwmaZScore(), RobustZScore(), SeasonalZScore(), PeriodicZScore())] == [
        False, False, True, True]
    for v in (IsolationForestDetector(n_features=2), HalfSpaceTreesDetector(n_features=2)):
        assert isinstance(v, VectorDetector)
    for s in (TailCalibrator(), AlarmDedup(), AnomalyLikelihood(), Judge([EwmaZScore()])):
        assert isinstance(s, Stateful)


def test_a_checkpoint_of_another_configuration_is_refused(model: SeriesDetector) -> None:
    other = EwmaZScore(alpha=0.3) if model.name == "ewma" else RobustZScore(window=8)
    with pytest.raises(ValueError, match="checkpoint of another configuration"):
        model.load_state(other.state_dict())
