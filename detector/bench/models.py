"""`vigil bench models`: points/s and state per series of each model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class ModelFigures:
    name: str
    points_per_s: float
    state_bytes_per_series: float


def bench_models(series: int = 10_000, steps: int = 100, batch: int = 1_000,
                 seed: int = 0, hst_points: int = 20_000) -> list[ModelFigures]:
    """Points/s of each model: `series` series x `steps` steps, `batch` series a call.

    "default" is the whole default metric detector (`models.default`: members, calibrators,
    judge and episode rule) on normal noise; "default on counts" the same on over-dispersed
    counts, where the count member takes part; "counts" is that member alone on counts. The
    default's first step (allocating every series' state, once per series' life) is not timed.
    State bytes are of the arrays as allocated (grown by doubling: up to twice what the series
    use).
    The vector detectors see 2-feature vectors. "iforest score" is the batch scoring alone (a
    fitted forest, `batch` rows a call, through `ForestScorer`); "iforest sklearn" is the same
    through scikit-learn's `score_samples`, for the ratio; "iforest" includes learning and refits
    every 64k rows.
    River's half-space trees learn row by row, so they run on `hst_points` points only.
    """
    import numpy as np

    from models import (
        AlarmDedup,
        AnomalyLikelihood,
        CountTail,
        EpisodeRule,
        EwmaZScore,
        HalfSpaceTreesDetector,
        IsolationForestDetector,
        PeriodicZScore,
        RobustZScore,
        SeasonalZScore,
        ShiftZScore,
        SubsequenceKnn,
        TailCalibrator,
        default_episodes,
        default_judge,
    )

    rng = np.random.default_rng(seed)
    values = rng.normal(100.0, 10.0, size=(steps, series))
    # event counts: negative binomial, mean 20, variance 100 (the count member's own case)
    counts = rng.negative_binomial(5.0, 0.2, size=(steps, series)).astype(np.float64)
    vectors = rng.normal(0.0, 1.0, size=(steps, series, 2))
    ids = np.arange(series, dtype=np.int64)
    out = []
    for name in ("default", "default on counts", "ewma", "shift", "subsequence", "counts",
                 "robust", "seasonal", "periodic", "likelihood", "calibrator", "dedup", "episode",
                 "iforest score", "iforest sklearn", "iforest", "hstrees"):
        t0 = time.perf_counter()
        points = series * steps
        if name in ("default", "default on counts"):
            # the whole default detector (models.default): every member, its calibrator, the
            # judge, and the episode rule on its verdicts, on noise or on over-dispersed counts
            judge, episodes = default_judge(300.0), default_episodes()
            xs = values if name == "default" else counts
            # The first step, which allocates every series' state, is not timed: steady state.
            judge.score_learn(ids, xs[0], ts=np.full(series, 1795392000.0 - 300.0))
            t0 = time.perf_counter()
            for t in range(steps):
                when = np.full(batch, 1795392000.0 + 300.0 * t)
                for lo in range(0, series, batch):
                    sl = slice(lo, lo + batch)
                    v = judge.score_learn(ids[sl], xs[t, sl], ts=when[: len(ids[sl])])
                    episodes.fire(ids[sl], v.score, 0.9999)
            nbytes = judge.nbytes() + episodes.nbytes()
        elif name == "episode":
            rule = EpisodeRule()
            s = rng.uniform(0.0, 1.0, size=(steps, series))
            t0 = time.perf_counter()
            for t in range(steps):
                for lo in range(0, series, batch):
                    rule.fire(ids[lo:lo + batch], s[t, lo:lo + batch], 0.9999)
            nbytes = rule.nbytes()
        elif name == "likelihood":
            lik = AnomalyLikelihood()
            for t in range(steps):
                for lo in range(0, series, batch):
                    lik.score_learn(ids[lo:lo + batch], np.abs(values[t, lo:lo + batch]) / 200.0)
            nbytes = lik.nbytes()
        elif name in ("calibrator", "dedup"):
            post: Any = TailCalibrator() if name == "calibrator" else AlarmDedup()
            p = rng.uniform(0.0, 1.0, size=(steps, series))
            t0 = time.perf_counter()
            for t in range(steps):
                for lo in range(0, series, batch):
                    (post.calibrate if name == "calibrator" else post.filter)(ids[lo:lo + batch],
                                                                              p[t, lo:lo + batch])
            nbytes = post.nbytes()
        elif name in ("iforest score", "iforest sklearn"):
            # a forest fitted on warmed-up, standardised rows (a forest fitted on the first
            # steps' degenerate rows would be a stump and flatter this figure)
            det = IsolationForestDetector(n_features=2, lags=4, min_fit=4096, seed=seed)
            for t in range(24):
                det.score_learn(ids[:300], vectors[t, :300])
            assert det.forest is not None and det._scorer is not None
            rows = rng.normal(0.0, 1.0, size=(points, 8))
            score = det._scorer.score if name == "iforest score" else det.forest.score_samples
            t0 = time.perf_counter()
            for lo in range(0, len(rows), batch):
                score(rows[lo:lo + batch])
            nbytes = 0
        elif name == "iforest":
            det = IsolationForestDetector(n_features=2, lags=4, refit_every=65_536, seed=seed)
            for t in range(steps):
                for lo in range(0, series, batch):
                    det.score_learn(ids[lo:lo + batch], vectors[t, lo:lo + batch])
            nbytes = det.nbytes()
        elif name == "hstrees":
            hst = HalfSpaceTreesDetector(n_features=2, seed=seed)
            n_series = min(series, 100)
            hst_steps = max(1, hst_points // n_series)
            points = n_series * hst_steps
            for t in range(hst_steps):
                hst.score_learn(ids[:n_series], vectors[t % steps, :n_series])
            nbytes = hst.nbytes()
        else:
            model: Any = {"ewma": EwmaZScore, "robust": RobustZScore, "shift": ShiftZScore,
                          "subsequence": SubsequenceKnn, "counts": CountTail,
                          "seasonal": SeasonalZScore, "periodic": PeriodicZScore}[name]()
            xs = counts if name == "counts" else values
            for t in range(steps):
                when = np.full(batch, 1795392000.0 + 300.0 * t)
                for lo in range(0, series, batch):
                    sl = slice(lo, lo + batch)
                    kw = {"ts": when[: len(ids[sl])]} if name in ("seasonal", "periodic") else {}
                    model.score_learn(ids[sl], xs[t, sl], **kw)
            nbytes = model.nbytes()
        elapsed = time.perf_counter() - t0
        out.append(ModelFigures(name, points / elapsed, nbytes / series))
    return out
