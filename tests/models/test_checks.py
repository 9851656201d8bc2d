"""Every detector of `models/` passes the common check suite (`models.checks`): strict-JSON state
round trips, states of other configurations refused, seeded determinism, bad input refused,
batch shapes, `forget`, and a docstring that says what it is good and bad at, with a doctest."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from models import (
    AlarmDedup,
    AnomalyLikelihood,
    Ensemble,
    EwmaZScore,
    HalfSpaceTreesDetector,
    IsolationForestDetector,
    Judge,
    PeriodicZScore,
    RobustZScore,
    SeasonalZScore,
    TailCalibrator,
)
from models.checks import CHECKS, Subject, series, transform, vectors

SUBJECTS = [
    series(lambda: EwmaZScore(alpha=0.1)),
    series(lambda: EwmaZScore(alpha=0.2, clip_z=np.inf, warmup=3), name="EwmaZScore-unclipped"),
    series(lambda: RobustZScore(window=16)),
    series(SeasonalZScore, dt=3600.0),
    # a "day" of 24 one-minute slots, so the lag and the gate come into play within the checks
    series(lambda: PeriodicZScore(period=1440.0, buckets=24, alpha=0.05, warmup=3)),
    series(lambda: Ensemble([EwmaZScore(alpha=0.1), RobustZScore(window=16)])),
    series(lambda: Ensemble([EwmaZScore(), PeriodicZScore(period=1440.0, buckets=24, warmup=3)],
                            method="fisher", warmup=5), name="Ensemble-periodic-fisher"),
    series(lambda: Judge([EwmaZScore(alpha=0.1), PeriodicZScore(period=1440.0, buckets=24, warmup=3)],
                         warmup=5, calibration_history=20, calibration_k=3)),
    series(lambda: Judge([RobustZScore(window=16), SeasonalZScore()], direction="up",
                         combine_in="score", calibrate=False), dt=3600.0, name="Judge-score-up"),
    transform(lambda: TailCalibrator(min_history=20, k=3), "calibrate", low=1e-6),
    transform(lambda: AlarmDedup(rest=5), "filter"),
    transform(lambda: AnomalyLikelihood(short=3, history=40, learning=20), "score_learn"),
    transform(lambda: AnomalyLikelihood(short=2, history=30, learning=10, log_scale=False,
                                        repeat_red=0.9, repeat_yellow=0.5), "score_learn",
              name="AnomalyLikelihood-repeat-filter"),
    vectors(lambda: IsolationForestDetector(n_features=2, lags=2, buffer=128, refit_every=50,
                                            min_fit=64, n_estimators=10, max_samples=32, seed=1), 2),
    vectors(lambda: HalfSpaceTreesDetector(n_features=2, n_trees=3, height=3, window_size=16,
                                           seed=1), 2),
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("subject", SUBJECTS, ids=lambda s: s.name)
def test_every_detector_passes_every_check(subject: Subject, check: Callable[[Subject], None]) -> None:
    check(subject)
