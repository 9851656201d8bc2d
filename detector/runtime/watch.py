"""Watches Prometheus: polls every query and scores the new points; the runtime that runs it folds
the anomalies into a `Pipeline`'s incidents (`vigil metrics`: its own; `vigil consume`: the
partitions' pipelines, through `metric_feed`).

A poll never raises for Prometheus's sake: a failing query is retried (bounded, jittered), then
reported by `ready()` and picked up where it stopped on the next poll, which backfills the gap.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from detector.config import VigilConfig
from detector.events import Anomaly
from detector.runtime.telemetry import SourceCollector
from detector.scoring.series import MetricScorer
from detector.sources.prometheus import PrometheusSource, SeriesIndex

log = logging.getLogger("vigil.metrics")


@dataclass
class PollResult:
    points: int = 0
    series: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0


class MetricWatcher:
    def __init__(self, cfg: VigilConfig, source: PrometheusSource | None = None) -> None:
        self.cfg = cfg
        self.source = source or PrometheusSource(cfg.prometheus)
        self.alive = True
        self.scorers = {q.name: MetricScorer(q, cfg.prometheus.threshold, cfg.prometheus.url)
                        for q in cfg.prometheus.queries}
        self.registry = CollectorRegistry()  # /metrics: vigil_prometheus_*
        self.registry.register(SourceCollector(self.source, self.ready))

    def ready(self) -> tuple[bool, str]:
        return self.source.ready()

    def is_alive(self) -> bool:
        return self.alive

    def state_dict(self) -> dict[str, Any]:
        """Each query's progress (the first timestamp not read yet), series index, detector and
        episode rule as strict JSON data: what the incidents role snapshots, so a new owner of
        the poller goes on from there, warm, instead of re-reading the lookback."""
        out: dict[str, Any] = {}
        for q in self.cfg.prometheus.queries:
            st, sc = self.source.state[q.name], self.scorers[q.name]
            if st.next_start is None:
                continue  # not warmed up: nothing worth keeping
            out[q.name] = {"query": q.query, "step": q.step_seconds, "next_start": st.next_start,
                           "index": st.index.state_dict(), "judge": sc.judge.state_dict(),
                           "episodes": sc.episodes.state_dict()}
        return {"queries": out}

    def load_state(self, state: dict[str, Any]) -> list[str]:
        """Load `state_dict` output, query by query: a query whose PromQL, step or detector
        settings changed, or whose state does not load, starts cold (its warm-up read of the
        lookback), the others go on from their progress. Returns the queries restored.

        >>> from detector.config import PrometheusConfig, PromQuery, VigilConfig
        >>> cfg = VigilConfig(prometheus=PrometheusConfig(queries=[PromQuery(name="q", query="up")]))
        >>> MetricWatcher(cfg).load_state({"queries": {"q": {"query": "other"}}})
        []
        """
        restored = []
        saved = state.get("queries") if isinstance(state, dict) else None
        for q in self.cfg.prometheus.queries:
            part = saved.get(q.name) if isinstance(saved, dict) else None
            if not isinstance(part, dict):
                continue
            if part.get("query") != q.query or part.get("step") != q.step_seconds:
                log.info("metrics: %s changed since its snapshot; starting cold", q.name)
                continue
            index = SeriesIndex(q, self.cfg.prometheus.max_series)
            scorer = MetricScorer(q, self.cfg.prometheus.threshold, self.cfg.prometheus.url)
            try:
                start = float(part["next_start"])
                if not math.isfinite(start):
                    raise ValueError(f"next_start {start}")
                index.load_state(part["index"])
                scorer.judge.load_state(part["judge"])
                scorer.episodes.load_state(part["episodes"])
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("metrics: the snapshot of %s does not load (%s); starting cold",
                            q.name, exc)
                continue
            st = self.source.state[q.name]
            st.index, st.next_start = index, start
            self.scorers[q.name] = scorer
            restored.append(q.name)
        return restored

    def interval(self) -> float:
        """Seconds between polls: the shortest query step (60 with no query)."""
        return min((q.step_seconds for q in self.cfg.prometheus.queries), default=60.0)

    def poll_once(self) -> PollResult:
        """Poll every query and score its new points."""
        t0, c0 = time.perf_counter(), time.process_time()
        res = PollResult()
        for pts in self.source.poll():
            index = self.source.state[pts.query.name].index
            res.points += len(pts.ts)
            res.series += len(index)
            res.anomalies.extend(self.scorers[pts.query.name].score(pts, index))
        res.seconds = time.perf_counter() - t0
        res.cpu_seconds = time.process_time() - c0
        return res

    def run(self, stop: threading.Event, on_poll: Callable[[PollResult], None] | None = None,
            max_polls: int | None = None) -> int:
        """Poll at the shortest query step until `stop` is set; returns the polls made."""
        interval = self.interval()
        polls = 0
        try:
            while not stop.is_set() and (max_polls is None or polls < max_polls):
                res = self.poll_once()
                polls += 1
                if on_poll is not None:
                    on_poll(res)
                stop.wait(max(0.0, interval - res.seconds))
        finally:
            self.alive = False
        return polls
