"""PeriodicZScore: contextual breaks of a daily shape, its gate, checkpoints, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models import Ensemble, EwmaZScore, PeriodicZScore

STEP = 300.0  # 5-minute samples
DAY = 288


def daily(days: int, seed: int) -> np.ndarray:
    """A sharp daily shape (busy 08:00-20:00) with small noise."""
    t = np.arange(days * DAY)
    busy = ((t % DAY) >= 96) & ((t % DAY) < 240)
    return np.where(busy, 100.0, 20.0) + np.random.default_rng(seed).normal(0.0, 2.0, len(t))


def run(ens: Ensemble, x: np.ndarray) -> np.ndarray:
    return np.array([float(ens.score_learn(np.array([0]), np.array([v]), ts=np.array([STEP * t]))[0])
                     for t, v in enumerate(x)])


def test_flags_a_missing_busy_period_that_a_level_model_cannot_see() -> None:
    x = daily(8, seed=1)
    day7 = 7 * DAY
    x[day7 + 96: day7 + 240] = 20.0 + np.random.default_rng(2).normal(0.0, 2.0, 144)  # quiet day
    level_only = run(Ensemble([EwmaZScore(alpha=0.001, clip_z=np.inf)]), x)
    both = run(Ensemble([EwmaZScore(alpha=0.001, clip_z=np.inf), PeriodicZScore()]), x)
    # The quiet values are ordinary for the level model (the series is at 20 every night)...
    assert level_only[day7 + 96: day7 + 240].min() > 1e-3
    # ...while "yesterday at this time" flags the first quiet step past the pipeline's threshold.
    assert both[day7 + 96] <= 1e-5
    # and nothing in the ordinary days before does.
    assert both[2 * DAY: day7 + 96].min() > 1e-5


def test_gate_opens_on_a_daily_shape_and_stays_shut_on_noise() -> None:
    m = PeriodicZScore()
    x = daily(4, seed=3)
    noise = np.random.default_rng(4).normal(50.0, 5.0, len(x))
    for t in range(len(x)):
        m.score_learn(np.array([0, 1]), np.array([x[t], noise[t]]), ts=np.full(2, STEP * t))
    assert m.explains(np.array([0, 1, 7])).tolist() == [True, False, False]


def test_no_prediction_in_the_first_period_or_after_a_gap() -> None:
    m = PeriodicZScore()
    s = m.score_learn(np.array([0]), np.array([1.0]), ts=np.array([0.0]))
    assert s.seen[0] == 0 and s.z[0] == 0.0
    # Two days later the slot holds a value from two periods back: not a valid lag.
    s = m.score_learn(np.array([0]), np.array([50.0]), ts=np.array([2 * 86_400.0]))
    assert s.seen[0] == 0 and s.z[0] == 0.0


def test_checkpoint_round_trip_gives_identical_scores() -> None:
    x = daily(3, seed=5)
    a = PeriodicZScore()
    for t in range(2 * DAY):
        a.score_learn(np.array([0]), np.array([x[t]]), ts=np.array([STEP * t]))
    b = PeriodicZScore()
    b.load_state(json.loads(json.dumps(a.state_dict())))
    for t in range(2 * DAY, 3 * DAY):
        sa = a.score_learn(np.array([0]), np.array([x[t]]), ts=np.array([STEP * t]))
        sb = b.score_learn(np.array([0]), np.array([x[t]]), ts=np.array([STEP * t]))
        assert sa.z.tolist() == sb.z.tolist()
    assert a.explains(np.array([0])).tolist() == b.explains(np.array([0])).tolist()
    with pytest.raises(ValueError, match="checkpoint is for"):
        b.load_state({"model": "ewma"})


def test_refuses_bad_input() -> None:
    m = PeriodicZScore()
    with pytest.raises(ValueError, match="needs the time"):
        m.score_learn(np.array([0]), np.array([1.0]))
    with pytest.raises(ValueError, match="finite epoch"):
        m.score_learn(np.array([0]), np.array([1.0]), ts=np.array([np.nan]))
    with pytest.raises(ValueError, match="one per value"):
        m.score_learn(np.array([0, 1]), np.array([1.0, 2.0]), ts=np.array([0.0]))
    with pytest.raises(ValueError):
        m.score_learn(np.array([0]), np.array([np.inf]), ts=np.array([0.0]))
    with pytest.raises(ValueError, match="need period"):
        PeriodicZScore(period=0)
