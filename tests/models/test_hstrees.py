"""HalfSpaceTreesDetector: flags a spike and a level shift; raw scores stay calibrated on noise;
checkpoints rebuild the same trees."""

from __future__ import annotations

import numpy as np

from models import HalfSpaceTreesDetector
from tests.models.streams import noise, roundtrip, vector_runner, vectors, with_shift, with_spike

run = vector_runner(lambda: HalfSpaceTreesDetector(n_features=2, window_size=100, seed=0), 300)


def test_flags_an_injected_spike() -> None:
    scores = run(with_spike(1200, 1, at=1000))
    assert scores[1000:1002].max() == scores[900:1100].max() > 0


def test_flags_a_level_shift_within_a_few_steps() -> None:
    scores = run(with_shift(1200, 3, at=1000))
    assert scores[1000:1004].max() >= np.quantile(scores[400:1000], 0.999)


def test_raw_vector_scores_stay_calibrated_on_white_noise() -> None:
    """Rank-calibrated scores cannot go below 1/(n+1): on noise, p-values stay uniform-ish."""
    p = np.power(10.0, -10.0 * run(noise(1500, 5))[400:])
    assert (p < 0.01).mean() < 0.03


def test_checkpoint_gives_identical_scores() -> None:
    roundtrip(lambda: HalfSpaceTreesDetector(n_features=2, window_size=64, n_trees=5, seed=3),
              lambda d, t: d.score_learn(np.arange(3), vectors(t)), n=333)
