"""Seasonal z-score: daily and weekly shape learned online; surprises judged against it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models import EwmaZScore, SeasonalZScore, tail_score

THRESHOLD = 0.99999
STEP = 600.0  # ten-minute samples
WEEK = int(7 * 86400 / STEP)


def daily_shape(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n) * STEP
    hour = (t / 3600.0) % 24
    values = 100 + 60 * np.sin(2 * np.pi * hour / 24) + np.random.default_rng(seed).normal(0, 3, n)
    return t, values


def scores(model: SeasonalZScore | EwmaZScore, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = []
    for ti, xi in zip(t, x, strict=True):
        kw = {"ts": np.array([ti])} if isinstance(model, SeasonalZScore) else {}
        s = model.score_learn(np.array([0]), np.array([xi]), **kw)
        out.append(tail_score(s.z, "both", s.dof)[0] if s.seen[0] >= 12 else 0.0)
    return np.array(out)


def test_quiet_on_a_daily_cycle_and_sharper_than_a_plain_ewma_on_it() -> None:
    t, x = daily_shape(3 * WEEK, seed=1)
    assert (scores(SeasonalZScore(), t, x)[WEEK:] < THRESHOLD).all()  # after a week of learning
    surge = 2 * WEEK + 72  # on the falling slope of a day
    x[surge] += 25.0
    assert scores(SeasonalZScore(), t, x)[surge] >= THRESHOLD
    # A plain EWMA lags the cycle, so its spread is wide and the same surge goes unseen.
    assert scores(EwmaZScore(alpha=0.05), t, x)[surge] < THRESHOLD


def test_flags_a_spike_and_a_level_shift_against_the_season() -> None:
    t, x = daily_shape(3 * WEEK, seed=2)
    spike, shift = 2 * WEEK + 100, 2 * WEEK + 500
    x[spike] += 40.0
    x[shift:] += 40.0
    s = scores(SeasonalZScore(), t, x)
    assert s[spike] >= THRESHOLD and s[shift] >= THRESHOLD
    assert (s[WEEK:spike] < THRESHOLD).all()


def test_checkpoint_round_trip_gives_identical_scores() -> None:
    t, x = daily_shape(WEEK, seed=3)
    a = SeasonalZScore()
    scores(a, t, x)
    b = SeasonalZScore()
    b.load_state(json.loads(json.dumps(a.state_dict())))
    t2, x2 = daily_shape(200, seed=4)
    t2 += t[-1] + STEP
    assert np.array_equal(scores(a, t2, x2), scores(b, t2, x2))


def test_needs_timestamps_and_finite_values() -> None:
    m = SeasonalZScore()
    with pytest.raises(ValueError, match="ts="):
        m.score_learn(np.array([0]), np.array([1.0]))
    with pytest.raises(ValueError, match="finite"):
        m.score_learn(np.array([0]), np.array([np.nan]), ts=np.array([0.0]))
    with pytest.raises(ValueError, match="epoch seconds"):
        m.score_learn(np.array([0]), np.array([1.0]), ts=np.array([np.inf]))
