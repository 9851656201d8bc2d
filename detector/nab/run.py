"""Runs a detector over a NAB corpus (all files in lockstep, one model call per time step) and
scores the results for every profile."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detector.nab.corpus import Series
from detector.nab.scoring import PROFILES, normalise, sweep, sweep_rows, total_at
from models import EwmaZScore, RobustZScore, SeriesDetector, tail_score
from models.likelihood import AnomalyLikelihood

DETECTORS: dict[str, Callable[[], SeriesDetector]] = {
    "ewma-likelihood": lambda: EwmaZScore(alpha=0.01, clip_z=3.0, warmup=12),
    "ewma": lambda: EwmaZScore(alpha=0.05, clip_z=3.0, warmup=12),
    "robust": lambda: RobustZScore(window=64, warmup=12),
}
DEFAULT_DETECTOR = "ewma-likelihood"
_RANGE_FLOOR = 0.01  # spread below 1% of the range seen so far is not signal


def detect(series: list[Series], name: str = DEFAULT_DETECTOR) -> list[npt.NDArray[np.float64]]:
    """Anomaly scores in [0, 1] for every row of every series, online: row t sees rows <= t.

    All files advance together, one model call per time step. "*-likelihood" detectors pass the
    z-score's upper tail through `AnomalyLikelihood`; the others report the two-sided tail.
    """
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)}")
    model = DETECTORS[name]()
    likelihood = (AnomalyLikelihood(repeat_red=0.99999, repeat_yellow=0.999)
                  if name.endswith("-likelihood") else None)
    lengths = np.array([len(s.values) for s in series])
    lo = np.full(len(series), np.inf)
    hi = np.full(len(series), -np.inf)
    out = [np.zeros(n, dtype=np.float64) for n in lengths]
    for t in range(int(lengths.max())):
        ids = np.flatnonzero(lengths > t)
        x = np.array([series[i].values[t] for i in ids])
        lo[ids] = np.minimum(lo[ids], x)
        hi[ids] = np.maximum(hi[ids], x)
        scored = model.score_learn(ids, x, floor=_RANGE_FLOOR * (hi[ids] - lo[ids]))
        z = np.where(scored.seen >= 2, scored.z, 0.0)
        if likelihood is not None:
            ready = likelihood.score_learn(ids, tail_score(np.abs(z), "up"))
        else:
            ready = tail_score(z, "both")
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
