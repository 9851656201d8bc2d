"""SubsequenceKnn: a changed shape that no single value shows is seen (a wave whose frequency
doubles, a square wave that becomes a ramp of the same level and spread); a repeated shape and a
slow drift under it are not; memory is bounded by the store, not the series' length; a
checkpoint resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.subsequence import SubsequenceKnn


def run(m: SubsequenceKnn, xs: np.ndarray, series: int = 0) -> np.ndarray:
    return np.array([m.score_learn(np.array([series]), np.array([x])).z[0] for x in xs])


def noisy(x: np.ndarray, seed: int = 0, sd: float = 0.05) -> np.ndarray:
    return x + np.random.default_rng(seed).normal(0.0, sd, len(x))


T = np.arange(4000)


def test_a_repeating_wave_scores_low() -> None:
    m = SubsequenceKnn()
    z = run(m, noisy(np.sin(2 * np.pi * T / 40.0)))
    assert z[2000:].max() < 4.0
    assert (z[2000:] > 0).mean() > 0.1  # it does speak (every block end), just not loudly


def test_a_doubled_frequency_at_the_same_level_and_spread_scores_high() -> None:
    m = SubsequenceKnn()
    run(m, noisy(np.sin(2 * np.pi * T / 64.0)))
    t = np.arange(4000, 4128)
    after = noisy(np.sin(2 * np.pi * t / 32.0), seed=1)  # same mean 0, same std 0.71
    z = run(m, after)
    assert z.max() > 6.0


def test_a_square_wave_that_becomes_a_ramp_scores_high() -> None:
    period = 48
    square = np.where(T % period < period // 2, 1.0, -1.0)
    ramp = np.sqrt(3.0) * (2.0 * (np.arange(192) % period) / (period - 1) - 1.0)  # mean 0, std 1
    m = SubsequenceKnn()
    before = run(m, noisy(square))
    z = run(m, noisy(ramp, seed=1))
    assert before[2000:].max() < 4.0
    assert z.max() > 6.0


def test_a_slow_drift_under_a_repeating_wave_is_not_a_new_shape() -> None:
    """The shape is taken about the window's own mean: the level (and its drift) is the level
    member's business, not this one's."""
    drift = 10.0 * T / len(T)  # ten amplitudes over the series
    m = SubsequenceKnn()
    z = run(m, noisy(np.sin(2 * np.pi * T / 40.0) + drift))
    assert z[2000:].max() < 4.0


def test_it_explains_only_block_ends_once_its_store_has_history() -> None:
    m = SubsequenceKnn(block=4, scales=(1, 4), min_store=16)
    ids = np.array([0])
    said = []
    for v in noisy(np.sin(2 * np.pi * T[:400] / 40.0)):
        said.append(bool(m.explains(ids)[0]))
        m.score_learn(ids, np.array([v]))
    said_at = np.flatnonzero(said)
    assert said_at.min() > 16 * 4  # not before the ring holds 16 shapes
    assert set((said_at + 1) % 4) == {0}  # the value it speaks of ends a block
    assert not m.explains(np.array([5]))[0]  # a series never seen


def test_memory_is_bounded_by_the_store_not_the_length() -> None:
    m = SubsequenceKnn()
    rng = np.random.default_rng(0)
    run(m, rng.normal(size=600))
    small = m.nbytes()
    run(m, rng.normal(size=6000))
    assert m.nbytes() == small
    per_series = small / len(m._n)  # rows are allocated 16 at a time
    assert per_series <= 32 * 1024


def test_a_json_checkpoint_resumes_exactly_and_other_settings_are_refused() -> None:
    a = SubsequenceKnn()
    ids = np.arange(3)
    rng = np.random.default_rng(2)
    for t in range(700):
        a.score_learn(ids, np.sin(t / 6.0 + ids) + rng.normal(0, 0.1, 3))
    state = json.loads(json.dumps(a.state_dict(), allow_nan=False))
    b = SubsequenceKnn()
    b.load_state(state)
    for t in range(700, 800):
        x = np.sin(t / 3.0 + ids)
        assert np.array_equal(a.score_learn(ids, x).z, b.score_learn(ids, x).z)
        assert np.array_equal(a.explains(ids), b.explains(ids))
    with pytest.raises(ValueError, match="another configuration"):
        SubsequenceKnn(k=3).load_state(state)


def test_series_in_one_batch_are_scored_independently() -> None:
    """One batch of many series scores each as it would alone (vectorised, not pooled)."""
    together, alone = SubsequenceKnn(), SubsequenceKnn()
    rng = np.random.default_rng(3)
    x = np.sin(np.arange(600)[:, None] / np.array([4.0, 7.0, 11.0])[None, :]) + rng.normal(0, 0.1, (600, 3))
    both = np.array([together.score_learn(np.arange(3), row).z for row in x])
    one = run(alone, x[:, 1], series=1)
    assert np.array_equal(both[:, 1], one)
