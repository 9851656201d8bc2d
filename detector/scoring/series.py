"""Judges the points of one Prometheus query: a baseline per series from `models/`, calibrated
tails, and anomalies that carry the series' labels and a link back to Prometheus.

Judges by `baseline`: `level` (EWMA z-score), `periodic` (the EWMA plus `PeriodicZScore`, the
value a day earlier, taking part only where it explains the series better than a flat level;
Bonferroni over the judges taking part), `seasonal` (`SeasonalZScore`, an hour-of-week profile).
Every judge's tail is calibrated against the series' own history (`TailCalibrator`).
"""

from __future__ import annotations

import numpy as np

from detector.config import PromQuery
from detector.events import Anomaly
from detector.scoring.windows import format_value
from detector.sources.prometheus import IntArray, Points, SeriesIndex, graph_link
from models import (
    EwmaZScore,
    PeriodicZScore,
    SeasonalZScore,
    TailCalibrator,
    combine_pvalues,
    tail_score,
)

_DAY = 86_400.0


class MetricScorer:
    def __init__(self, query: PromQuery, threshold: float, prometheus_url: str) -> None:
        self.q = query
        self.threshold = threshold
        self.url = prometheus_url
        q = query
        self.level: EwmaZScore | SeasonalZScore = (
            SeasonalZScore(alpha=q.alpha, warmup=q.warmup) if q.baseline == "seasonal"
            else EwmaZScore(alpha=q.alpha, clip_z=3.0, warmup=q.warmup))
        self.periodic = (PeriodicZScore(period=_DAY, buckets=max(1, min(288, int(_DAY // q.step_seconds))),
                                        alpha=min(q.alpha, 0.01), warmup=q.warmup)
                         if q.baseline == "periodic" else None)
        self.cal = TailCalibrator(min_history=100, k=25)
        self.pcal = TailCalibrator(min_history=100, k=25) if self.periodic is not None else None

    def forget(self, series: IntArray) -> None:
        """Series that expired: their ids start afresh when reused."""
        if len(series):
            for m in (self.level, self.periodic, self.cal, self.pcal):
                if m is not None:
                    m.forget(series)

    def score(self, pts: Points, index: SeriesIndex) -> list[Anomaly]:
        """Score and learn the points, one timestamp at a time (each model call is a batch of
        every series at that time). The warm-up read is learned, not reported."""
        self.forget(pts.expired)
        if not len(pts.ts):
            return []
        out: list[Anomaly] = []
        cuts = np.flatnonzero(np.diff(pts.ts)) + 1
        for lo, hi in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(pts.ts)])),
                          strict=True):
            found = self._step(pts.series[lo:hi], pts.values[lo:hi], float(pts.ts[lo]), index)
            if not pts.warmup:
                out.extend(found)
        return out

    def _step(self, ids: IntArray, x: np.ndarray, ts: float, index: SeriesIndex) -> list[Anomaly]:
        q = self.q
        floor = np.full(len(x), q.abs_floor)
        rel = np.full(len(x), q.rel_floor)
        t = np.full(len(x), ts)
        if isinstance(self.level, SeasonalZScore):
            s = self.level.score_learn(ids, x, floor, rel, ts=t)
        else:
            s = self.level.score_learn(ids, x, floor, rel)
        ready = s.seen >= q.warmup
        p = self._p(s.z, s.dof, ids, ready, self.cal)
        model = np.full(len(x), self.level.name, dtype=object)
        mean, std = s.mean, s.std
        if self.periodic is not None and self.pcal is not None:
            active = self.periodic.explains(ids)
            sp = self.periodic.score_learn(ids, x, floor, rel, ts=t)
            pp = self._p(sp.z, sp.dof, ids, sp.seen >= q.warmup, self.pcal)
            active &= sp.seen >= q.warmup
            use = active & (pp < p)
            p = combine_pvalues([p, pp], active=[np.ones(len(p), dtype=bool), active])
            mean, std = np.where(use, sp.mean, mean), np.where(use, sp.std, std)
            model[use] = self.periodic.name
        hits = np.flatnonzero(ready & (1.0 - p >= self.threshold))
        out = []
        for k in hits.tolist():
            sid = int(ids[k])
            labels = index.labels[sid]
            shown = ",".join(f'{n}="{v}"' for n, v in sorted(labels.items()) if n != "__name__")
            out.append(Anomaly(
                service=index.service[sid], feature=f"metric:{q.name}",
                window_start=ts - q.step_seconds, window_end=ts, value=float(x[k]),
                baseline_mean=float(mean[k]), baseline_std=float(std[k]), score=float(1.0 - p[k]),
                model=str(model[k]),
                explanation=f"{q.name}{{{shown}}} {format_value(float(x[k]))} vs baseline "
                            f"{format_value(float(mean[k]))} ± {format_value(float(std[k]))}",
                events=0, labels=dict(labels), link=graph_link(self.url, q.query, ts)))
        return out

    def _p(self, z: np.ndarray, dof: np.ndarray, ids: IntArray, ready: np.ndarray,
           cal: TailCalibrator) -> np.ndarray:
        p = np.clip(1.0 - tail_score(z, self.q.direction, dof), 1e-300, 1.0)
        if ready.any():
            p[ready] = cal.calibrate(ids[ready], p[ready])
        return np.where(ready, p, 1.0)
