"""Judges the points of one Prometheus query: a baseline per series from `models/`, calibrated
tails, and anomalies that carry the series' labels and a link back to Prometheus.

Judges by `baseline`: `default` (the default metric detector, `models.default`: the one
`vigil eval nab` scores), `level` (EWMA z-score), `periodic` (the EWMA plus `PeriodicZScore`, the
value a day earlier, taking part only where it explains the series better than a flat level;
Bonferroni over the judges taking part), `seasonal` (`SeasonalZScore`, an hour-of-week profile).
Every judge's tail is calibrated against the series' own history; all of it is one
`models.Judge`. An alarm silences its series for `quiet_steps` points (`models.EpisodeRule`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.config import PromQuery
from detector.events import Anomaly
from detector.scoring.windows import format_value
from detector.sources.prometheus import FloatArray, IntArray, Points, SeriesIndex, graph_link
from models import (
    EpisodeRule,
    EwmaZScore,
    Judge,
    PeriodicZScore,
    SeasonalZScore,
    SeriesDetector,
    Verdict,
    default_judge,
)

_DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class ScoredStep:
    """One timestamp as `MetricScorer` judged it, for its `on_step` hook: the series and values
    of the step, the judge's verdict on them (score, readiness, the member that spoke and its
    baseline), which points fired (after the episode rule) and whether the step was reported (a
    warm-up read is learned only)."""

    ts: float
    series: IntArray
    values: FloatArray
    verdict: Verdict
    fired: npt.NDArray[np.bool_]
    reported: bool


class MetricScorer:
    """Scores the points of one query with its judge (`make_judge`) and episode rule.

    `on_step`, when given, is called once per timestamp with what was judged (`ScoredStep`):
    how a notebook keeps every point's baseline and score (`detector.series_analysis`); without
    it the scorer does nothing more than before.
    """

    def __init__(self, query: PromQuery, threshold: float, prometheus_url: str,
                 on_step: Callable[[ScoredStep], None] | None = None) -> None:
        self.q = query
        self.threshold = threshold
        self.url = prometheus_url
        self.judge = make_judge(query)
        self.episodes = EpisodeRule(quiet=query.quiet_steps)
        self.on_step = on_step

    def forget(self, series: IntArray) -> None:
        """Series that expired: their ids start afresh when reused."""
        if len(series):
            self.judge.forget(series)
            self.episodes.forget(series)

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
            found = self._step(pts.series[lo:hi], pts.values[lo:hi], float(pts.ts[lo]), index,
                               report=not pts.warmup)
            out.extend(found)
        return out

    def _step(self, ids: IntArray, x: np.ndarray, ts: float, index: SeriesIndex,
              report: bool = True) -> list[Anomaly]:
        q = self.q
        verdict = self.judge.score_learn(ids, x, np.full(len(x), q.abs_floor), np.full(len(x), q.rel_floor),
                                   ts=np.full(len(x), ts))
        names = [m.name for m in self.judge.members]
        # Every point goes through the episode rule (a not-ready one, or one of the warm-up read,
        # scores 0 and never fires: an alarm nobody saw silences nothing), so the quiet period
        # counts the series' own points.
        fire = self.episodes.fire(ids, np.where(verdict.ready & report, verdict.score, 0.0),
                                  self.threshold)
        if self.on_step is not None:
            self.on_step(ScoredStep(ts, ids, x, verdict, fire, report))
        hits = np.flatnonzero(fire)
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
                explanation=f"{q.name}{{{shown}}} {format_value(float(x[k]))} "
                            f"{saw(names[verdict.speaker[k]], mean, std)}",
                events=0, labels=dict(labels), link=graph_link(self.url, q.query, ts)))
        return out


_SAW = {  # what each member of the default compares a point with, in an explanation
    "periodic": "vs a day earlier",
    "weekly": "vs a week earlier",
    "shift": "moved the recent mean away from baseline",
    "subsequence": "ends a recent shape unlike any seen; level",
    "counts": "vs the count baseline",
}


def saw(member: str, mean: float, std: float) -> str:
    """What the member that spoke saw, for the explanation.

    >>> saw("weekly", 120.0, 4.0), saw("ewma", 5.0, 0.5)
    ('vs a week earlier 120 ± 4.0', 'vs baseline 5.0 ± 0.50')
    """
    return f"{_SAW.get(member, 'vs baseline')} {format_value(mean)} ± {format_value(std)}"


def make_judge(q: PromQuery) -> Judge:
    """The default metric detector for `default`; otherwise the query's level model (EWMA, or
    the hour-of-week profile) and, for `periodic`, the value a day earlier; p-value arithmetic,
    unready members abstaining (see `Judge`)."""
    if q.baseline == "default":
        return default_judge(q.step_seconds, direction=q.direction, warmup=q.warmup)
    level: SeriesDetector = (SeasonalZScore(alpha=q.alpha, warmup=q.warmup) if q.baseline == "seasonal"
                             else EwmaZScore(alpha=q.alpha, clip_z=3.0, warmup=q.warmup))
    members = [level]
    if q.baseline == "periodic":
        members.append(PeriodicZScore(period=_DAY, buckets=max(1, min(288, int(_DAY // q.step_seconds))),
                                      alpha=min(q.alpha, 0.01), warmup=q.warmup))
    return Judge(members, direction=q.direction, warmup=q.warmup, calibration_history=100,
                 calibration_k=25)
