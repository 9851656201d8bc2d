"""Every detector of `models/` passes the common check suite (`models.checks`): strict-JSON state
round trips, states of other configurations refused, seeded determinism, bad input refused,
batch shapes, `forget`, and a docstring that says what it is good and bad at, with a doctest."""

from __future__ import annotations

import dataclasses
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
from models.counts import CountTail
from models.default import default_judge
from models.episode import EpisodeRule
from models.shift import ShiftZScore
from models.subsequence import SubsequenceKnn


def _counts(rng: np.random.Generator, ids: np.ndarray) -> np.ndarray:
    """Over-dispersed counts around a level of each series, one series of zeros, with an
    occasional burst (to exercise clipping): the values `CountTail` explains."""
    x = rng.negative_binomial(2.0, 2.0 / (2.0 + 1.0 + ids % 7)) * (ids != 3)
    return np.asarray(x + 20 * (rng.random(len(ids)) < 0.03), dtype=np.float64)


SUBJECTS = [
    series(lambda: EwmaZScore(alpha=0.1)),
    series(lambda: EwmaZScore(alpha=0.2, clip_z=np.inf, warmup=3), name="EwmaZScore-unclipped"),
    series(lambda: RobustZScore(window=16)),
    series(SeasonalZScore, dt=3600.0),
    # a "day" of 24 one-minute slots, so the lag and the gate come into play within the checks
    series(lambda: PeriodicZScore(period=1440.0, buckets=24, alpha=0.05, warmup=3)),
    # on the suite's noise (not counts: it abstains) and on counts
    series(lambda: CountTail(alpha=0.1, warmup=5, clip=np.inf)),
    dataclasses.replace(series(lambda: CountTail(alpha=0.05, warmup=5, clip=3.0)), values=_counts,
                        name="CountTail-counts"),
    series(lambda: Ensemble([EwmaZScore(alpha=0.1), RobustZScore(window=16)])),
    series(lambda: Ensemble([EwmaZScore(), PeriodicZScore(period=1440.0, buckets=24, warmup=3)],
                            method="fisher", warmup=5), name="Ensemble-periodic-fisher"),
    series(lambda: Judge([EwmaZScore(alpha=0.1), PeriodicZScore(period=1440.0, buckets=24, warmup=3)],
                         warmup=5, calibration_history=20, calibration_k=3)),
    series(lambda: Judge([RobustZScore(window=16), SeasonalZScore()], direction="up",
                         combine_in="score", calibrate=False), dt=3600.0, name="Judge-score-up"),
    # blocks of 2 and a ring of 8, so shapes are stored, compared and calibrated within the checks
    series(lambda: SubsequenceKnn(block=2, blocks=3, scales=(1, 2), store=8, k=2, min_store=4,
                                  warmup=3)),
    series(lambda: SubsequenceKnn(block=2, blocks=3, scales=(1, 3), store=8, min_store=4,
                                  features="means", norm="level", calibration="conformal",
                                  gate=0.9, warmup=3), name="SubsequenceKnn-conformal-gated"),
    transform(lambda: TailCalibrator(min_history=20, k=3), "calibrate", low=1e-6),
    transform(lambda: AlarmDedup(rest=5), "filter"),
    dataclasses.replace(transform(lambda: EpisodeRule(quiet=4), "fire", low=0.0, high=1.0),
                        step=lambda det, ids, x, ts: det.fire(ids, x, 0.8)),
    series(lambda: ShiftZScore(alpha=0.05, short=0.2, warmup=3)),
    series(lambda: ShiftZScore(alpha=0.05, clip_z=np.inf, warmup=3), name="ShiftZScore-unclipped"),
    series(lambda: default_judge(60.0, warmup=3), name="default_judge"),
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
