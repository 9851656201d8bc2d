"""Judges the points of one Prometheus query: a baseline per series from `models/`, calibrated
tails, and anomalies that carry the series' labels and a link back to Prometheus.

Judges by `baseline`: `level` (EWMA z-score), `periodic` (the EWMA plus `PeriodicZScore`, the
value a day earlier, taking part only where it explains the series better than a flat level;
Bonferroni over the judges taking part), `seasonal` (`SeasonalZScore`, an hour-of-week profile).
Every judge's tail is calibrated against the series' own history; all of it is one
`models.Judge`.
"""

from __future__ import annotations

import numpy as np

from detector.config import PromQuery
from detector.events import Anomaly
from detector.scoring.windows import format_value
from detector.sources.prometheus import IntArray, Points, SeriesIndex, graph_link
from models import EwmaZScore, Judge, PeriodicZScore, SeasonalZScore, SeriesDetector

_DAY = 86_400.0


class MetricScorer:
    def __init__(self, query: PromQuery, threshold: float, prometheus_url: str) -> None:
        self.q = query
        self.threshold = threshold
        self.url = prometheus_url
        self.judge = make_judge(query)

    def forget(self, series: IntArray) -> None:
        """Series that expired: their ids start afresh when reused."""
        if len(series):
            self.judge.forget(series)

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
        verdict = self.judge.score_learn(ids, x, np.full(len(x), q.abs_floor), np.full(len(x), q.rel_floor),
                                   ts=np.full(len(x), ts))
        names = [m.name for m in self.judge.members]
        hits = np.flatnonzero(verdict.ready & (verdict.score >= self.threshold))
        out = []
        for k in hits.tolist():
            sid = int(ids[k])
            labels = index.labels[sid]
            shown = ",".join(f'{n}="{v}"' for n, v in sorted(labels.items()) if n != "__name__")
            mean, std = float(verdict.mean[k]), float(verdict.std[k])
            out.append(Anomaly(
                service=index.service[sid], feature=f"metric:{q.name}",
                window_start=ts - q.step_seconds, window_end=ts, value=float(x[k]),
                baseline_mean=mean, baseline_std=std, score=float(verdict.score[k]),
                model=names[verdict.speaker[k]],
                explanation=f"{q.name}{{{shown}}} {format_value(float(x[k]))} vs baseline "
                            f"{format_value(mean)} ± {format_value(std)}",
                events=0, labels=dict(labels), link=graph_link(self.url, q.query, ts)))
        return out


def make_judge(q: PromQuery) -> Judge:
    """The query's level model (EWMA, or the hour-of-week profile) and, for `periodic`, the
    value a day earlier; p-value arithmetic, unready members abstaining (see `Judge`)."""
    level: SeriesDetector = (SeasonalZScore(alpha=q.alpha, warmup=q.warmup) if q.baseline == "seasonal"
                             else EwmaZScore(alpha=q.alpha, clip_z=3.0, warmup=q.warmup))
    members = [level]
    if q.baseline == "periodic":
        members.append(PeriodicZScore(period=_DAY, buckets=max(1, min(288, int(_DAY // q.step_seconds))),
                                      alpha=min(q.alpha, 0.01), warmup=q.warmup))
    return Judge(members, direction=q.direction, warmup=q.warmup, calibration_history=100,
                 calibration_k=25)
