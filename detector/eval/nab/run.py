"""Runs a detector over a NAB corpus (all files in lockstep, one model call per time step) and
scores the results for every profile."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detector.eval.nab import DEFAULT_DETECTOR
from detector.eval.nab.corpus import Series
from detector.eval.nab.scoring import PROFILES, normalise, sweep, sweep_rows, total_at
from models import (
    AlarmDedup,
    Ensemble,
    EwmaZScore,
    HalfSpaceTreesDetector,
    IsolationForestDetector,
    PeriodicZScore,
    RobustZScore,
    SeasonalZScore,
    TailCalibrator,
    surprise,
    tail_score,
)
from models.base import SeriesDetector, grow
from models.likelihood import AnomalyLikelihood

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# One time step of every live file -> p-values (1 = nothing unusual).
StepScorer = Callable[[IntArray, FloatArray, FloatArray, FloatArray], FloatArray]

_RANGE_FLOOR = 0.01  # spread below 1% of the range seen so far is not signal
_WARMUP = 12
ALPHA = 0.001  # the baseline remembers about 1,000 steps: 3.5 days of 5-minute samples
REST = 50  # steps an alarm stays the episode's alarm unless the score beats it
CALIBRATION_K = 25  # extreme past values that measure a series' tail (+/- 20% counting error)


def _z_scorer(model: EwmaZScore | RobustZScore, calibrate: bool) -> StepScorer:
    """One model through the judge: its tail, calibrated (or not) against the series' history."""
    return _ensemble(model, calibrate=calibrate)


def _likelihood() -> StepScorer:
    model = EwmaZScore(alpha=0.01, clip_z=3.0, warmup=_WARMUP)
    lik = AnomalyLikelihood(repeat_red=0.99999, repeat_yellow=0.999)

    def step(ids: IntArray, x: FloatArray, floor: FloatArray, ts: FloatArray) -> FloatArray:
        s = model.score_learn(ids, x, floor=floor)
        z = np.where(s.seen >= 2, s.z, 0.0)
        # Its log-scale likelihood maps back to a p-value: 1 - log(1 - p) / log(1e-10).
        return np.power(10.0, -10.0 * lik.score_learn(ids, tail_score(np.abs(z), "up")))
    return step


def _ensemble(*members: SeriesDetector, calibrate: bool = True) -> StepScorer:
    ens = Ensemble(list(members), calibrate=calibrate, warmup=_WARMUP, calibration_k=CALIBRATION_K)

    def step(ids: IntArray, x: FloatArray, floor: FloatArray, ts: FloatArray) -> FloatArray:
        return ens.score_learn(ids, x, floor=floor, ts=ts)
    return step


def _vector(det: IsolationForestDetector | HalfSpaceTreesDetector) -> StepScorer:
    """Raw vector scores (last value and last change) through per-file rank calibration."""
    cal = TailCalibrator(k=CALIBRATION_K)
    last = np.zeros(0)
    seen = np.zeros(0, dtype=np.int64)

    def step(ids: IntArray, x: FloatArray, floor: FloatArray, ts: FloatArray) -> FloatArray:
        nonlocal last, seen
        last = grow(last, int(ids.max()) + 1, 0.0)
        seen = grow(seen, int(ids.max()) + 1, 0)
        diff = np.where(seen[ids] > 0, x - last[ids], 0.0)
        last[ids] = x
        seen[ids] += 1
        raw = det.score_learn(ids, np.column_stack([x, diff]))
        # Raw scores are not probabilities; the calibrator ranks them against the file's history.
        return cal.calibrate(ids, np.clip(1.0 - raw, 1e-300, 1.0))
    return step


DETECTORS: dict[str, Callable[[], StepScorer]] = {
    "ewma-periodic": lambda: _ensemble(EwmaZScore(alpha=ALPHA, clip_z=np.inf, warmup=_WARMUP),
                                       PeriodicZScore(alpha=ALPHA, warmup=_WARMUP)),
    "ewma-calibrated": lambda: _z_scorer(EwmaZScore(alpha=ALPHA, clip_z=np.inf, warmup=_WARMUP), True),
    "ewma": lambda: _z_scorer(EwmaZScore(alpha=ALPHA, clip_z=np.inf, warmup=_WARMUP), False),
    "robust-calibrated": lambda: _z_scorer(RobustZScore(window=64, warmup=_WARMUP), True),
    "ewma-likelihood": _likelihood,
    "ensemble": lambda: _ensemble(EwmaZScore(alpha=ALPHA, clip_z=np.inf, warmup=_WARMUP),
                                  RobustZScore(window=64, warmup=_WARMUP),
                                  SeasonalZScore(warmup=_WARMUP)),
    "iforest": lambda: _vector(IsolationForestDetector(n_features=2, lags=8, seed=0)),
    "hstrees": lambda: _vector(HalfSpaceTreesDetector(n_features=2, seed=0)),
}


def detect(series: list[Series], name: str = DEFAULT_DETECTOR) -> list[FloatArray]:
    """Anomaly scores in [0, 1] for every row of every series, online: row t sees rows <= t.

    All files advance together, one model call per time step (so the vector detectors' shared
    forest or trees learn from every file's past rows). Every detector yields p-values; they
    become scores with `surprise` (p = 1e-5 -> 0.5) and pass `AlarmDedup`: NAB counts every
    firing row outside a window as a false positive, so one episode should fire once.
    """
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    scorer = DETECTORS[name]()
    dedup = AlarmDedup(rest=REST)
    lengths = np.array([len(s.values) for s in series])
    epoch = [np.array([t.timestamp() for t in s.timestamps]) for s in series]
    lo = np.full(len(series), np.inf)
    hi = np.full(len(series), -np.inf)
    out = [np.zeros(n, dtype=np.float64) for n in lengths]
    for t in range(int(lengths.max())):
        ids = np.flatnonzero(lengths > t)
        x = np.array([series[i].values[t] for i in ids])
        ts = np.array([epoch[i][t] for i in ids])
        lo[ids] = np.minimum(lo[ids], x)
        hi[ids] = np.maximum(hi[ids], x)
        p = scorer(ids, x, _RANGE_FLOOR * (hi[ids] - lo[ids]), ts)
        ready = dedup.filter(ids, surprise(p))
        for i, v in zip(ids.tolist(), ready.tolist(), strict=True):
            out[i][t] = v
    return out


@dataclass(slots=True)
class ProfileResult:
    profile: str
    score: float  # normalised, 0 = never fires, 100 = perfect
    threshold: float
    raw: float
    null: float
    tp: int
    fp: int
    fn: int
    by_corpus: dict[str, float]


def evaluate(series: list[Series], scores: list[npt.NDArray[np.float64]]) -> list[ProfileResult]:
    """Each profile's optimised threshold, normalised score and per-corpus breakdown."""
    results = []
    for profile, (tp, fp, fn) in PROFILES.items():
        files = [sweep_rows(s.name, s.timestamps, s.windows, tp, fp) for s in series]
        null = sweep(files, [np.zeros(len(s.values)) for s in series], fn).best_total
        best = sweep(files, scores, fn)
        windows = sum(f.windows for f in files)
        by_corpus: dict[str, float] = {}
        for corpus in sorted({s.corpus for s in series}):
            idx = [i for i, s in enumerate(series) if s.corpus == corpus]
            part = [files[i] for i in idx]
            raw = total_at(part, [scores[i] for i in idx], fn, best.best_threshold)
            w = sum(f.windows for f in part)
            # A corpus without windows has no scale: report its raw false-positive cost.
            by_corpus[corpus] = normalise(raw, -fn * w, w, tp) if w else raw
        results.append(ProfileResult(
            profile=profile, score=normalise(best.best_total, null, windows, tp),
            threshold=best.best_threshold, raw=best.best_total, null=null,
            tp=best.counts["tp"], fp=best.counts["fp"], fn=best.counts["fn"], by_corpus=by_corpus,
        ))
    return results


def write_results(out_dir: Path, series: list[Series], scores: list[npt.NDArray[np.float64]],
                  ) -> None:
    """NAB-format results: `out_dir/<corpus>/<file>.csv` with timestamp,value,anomaly_score."""
    for s, sc in zip(series, scores, strict=True):
        path = out_dir / s.name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["timestamp", "value", "anomaly_score"])
            for ts, v, a in zip(s.raw_timestamps, s.values.tolist(), sc.tolist(), strict=True):
                w.writerow([ts, repr(v) if not v.is_integer() else int(v), f"{a:.6f}"])
