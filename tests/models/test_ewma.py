"""EwmaZScore: clipping keeps an incident out of the baseline, a lasting shift is absorbed, and a
checkpoint of another model is refused."""

from __future__ import annotations

import numpy as np
import pytest

from models import EwmaZScore, RobustZScore


def feed(m: EwmaZScore, values: np.ndarray, series: int = 0) -> list[float]:
    return [float(m.score_learn(np.array([series]), np.array([v])).z[0]) for v in values]


def test_checkpoint_of_another_model_is_refused() -> None:
    with pytest.raises(ValueError, match="checkpoint is for model 'robust'"):
        EwmaZScore().load_state(RobustZScore().state_dict())


def test_ewma_clipping_keeps_an_incident_from_becoming_the_baseline_at_once() -> None:
    m = EwmaZScore(alpha=0.2, clip_z=3.0, warmup=5)
    feed(m, np.random.default_rng(4).normal(100, 5, 100))
    zs = feed(m, np.full(5, 300.0))
    assert min(zs) > 8  # still alarming after five windows of the new level


def test_ewma_eventually_absorbs_a_lasting_level_shift() -> None:
    m = EwmaZScore(alpha=0.1, clip_z=3.0, warmup=5)
    feed(m, np.random.default_rng(5).normal(100, 5, 100))
    zs = feed(m, np.full(300, 130.0))
    assert zs[-1] < 1
