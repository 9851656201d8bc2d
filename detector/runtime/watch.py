"""Watches Prometheus: polls every query, scores the new points, and folds the anomalies into a
`Pipeline`'s incidents (the same incidents as the log anomalies it processes).

A poll never raises for Prometheus's sake: a failing query is retried (bounded, jittered), then
reported by `ready()` and picked up where it stopped on the next poll, which backfills the gap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from detector.config import VigilConfig
from detector.events import Anomaly, Incident
from detector.pipeline import Pipeline
from detector.scoring.series import MetricScorer
from detector.sources.prometheus import PrometheusSource


@dataclass
class PollResult:
    points: int = 0
    series: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0


class MetricWatcher:
    def __init__(self, cfg: VigilConfig, pipeline: Pipeline | None = None,
                 source: PrometheusSource | None = None) -> None:
        self.cfg = cfg
        self.source = source or PrometheusSource(cfg.prometheus)
        self._pipeline = pipeline
        self.alive = True
        self.scorers = {q.name: MetricScorer(q, cfg.prometheus.threshold, cfg.prometheus.url)
                        for q in cfg.prometheus.queries}

    @property
    def pipeline(self) -> Pipeline:
        """Where the anomalies' incidents are kept (made on first use when none was given)."""
        if self._pipeline is None:
            self._pipeline = Pipeline(self.cfg)
        return self._pipeline

    def ready(self) -> tuple[bool, str]:
        return self.source.ready()

    def is_alive(self) -> bool:
        return self.alive

    def metrics_text(self) -> bytes:
        """The source's counters in Prometheus text format (`vigil_prometheus_*`)."""
        st = self.source.stats
        lines = []
        for name in ("polls", "requests", "errors", "failed_polls", "points", "duplicates",
                     "non_finite", "gaps", "new_series", "expired_series", "dropped_series"):
            lines += [f"# TYPE vigil_prometheus_{name}_total counter",
                      f"vigil_prometheus_{name}_total {getattr(st, name)}"]
        ok, _ = self.ready()
        lines += ["# TYPE vigil_prometheus_series gauge",
                  f"vigil_prometheus_series {self.source.series_count()}",
                  "# TYPE vigil_prometheus_ready gauge", f"vigil_prometheus_ready {int(ok)}"]
        return ("\n".join(lines) + "\n").encode()

    def poll_once(self, into_pipeline: bool = True) -> PollResult:
        """Poll, score, and (by default) fold the anomalies into the pipeline's incidents."""
        t0, c0 = time.perf_counter(), time.process_time()
        res = PollResult()
        for pts in self.source.poll():
            index = self.source.state[pts.query.name].index
            res.points += len(pts.ts)
            res.series += len(index)
            res.anomalies.extend(self.scorers[pts.query.name].score(pts, index))
        if into_pipeline and res.anomalies:
            res.incidents = self.pipeline.add_anomalies(res.anomalies).incidents
        res.seconds = time.perf_counter() - t0
        res.cpu_seconds = time.process_time() - c0
        return res

    def run(self, stop: threading.Event, on_poll: Callable[[PollResult], None] | None = None,
            max_polls: int | None = None, into_pipeline: bool = True) -> int:
        """Poll at the shortest query step until `stop` is set; returns the polls made."""
        interval = min((q.step_seconds for q in self.cfg.prometheus.queries), default=60.0)
        polls = 0
        try:
            while not stop.is_set() and (max_polls is None or polls < max_polls):
                res = self.poll_once(into_pipeline)
                polls += 1
                if on_poll is not None:
                    on_poll(res)
                stop.wait(max(0.0, interval - res.seconds))
        finally:
            self.alive = False
        return polls
