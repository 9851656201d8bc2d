"""IsolationForestDetector: flags a spike and (at the 99th percentile: it saturates beyond its
training range) a level shift; raw scores stay calibrated on noise; checkpoints; seeds."""

from __future__ import annotations

import numpy as np

from models import IsolationForestDetector
from tests.models.streams import noise, roundtrip, vector_runner, vectors, with_shift, with_spike

run = vector_runner(lambda: IsolationForestDetector(n_features=2, lags=2, refit_every=256,
                                                    min_fit=256, seed=0), 300)


def test_flags_an_injected_spike() -> None:
    scores = run(with_spike(1200, 1, at=1000))
    # Flagged at once or, over a window of steps, the step after.
    assert scores[1000:1002].max() == scores[900:1100].max() > 0


def test_flags_a_level_shift_within_a_few_steps() -> None:
    scores = run(with_shift(1200, 3, at=1000))
    # The forest saturates beyond its training range: a shift ties with the largest normal rows
    # (hence the ensemble with a z-score).
    assert scores[1000:1004].max() >= np.quantile(scores[400:1000], 0.99)


def test_raw_vector_scores_stay_calibrated_on_white_noise() -> None:
    """Rank-calibrated scores cannot go below 1/(n+1): on noise, p-values stay uniform-ish."""
    p = np.power(10.0, -10.0 * run(noise(1500, 5))[400:])
    assert (p < 0.01).mean() < 0.03


def test_checkpoint_gives_identical_scores() -> None:
    roundtrip(lambda: IsolationForestDetector(n_features=2, lags=3, refit_every=250, min_fit=200, seed=3),
              lambda d, t: d.score_learn(np.arange(3), vectors(t)))


def test_is_deterministic_with_a_seed() -> None:
    def once() -> np.ndarray:
        d = IsolationForestDetector(n_features=2, lags=2, min_fit=100, refit_every=100, seed=7)
        return np.concatenate([d.score_learn(np.arange(3), vectors(t)) for t in range(200)])
    np.testing.assert_array_equal(once(), once())
