"""Metric anomalies for the Kafka consumer: a `MetricWatcher` polls Prometheus on its own thread
(a slow or absent Prometheus never stalls the log consumption) and queues what it finds; the
consumer's thread takes the queue at each poll and folds it into its pipelines' incidents."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from detector.config import VigilConfig
from detector.events import Anomaly
from detector.pipeline import Pipeline
from detector.runtime.watch import MetricWatcher, PollResult

log = logging.getLogger("vigil.metrics")


class MetricFeed:
    def __init__(self, cfg: VigilConfig, watcher: MetricWatcher | None = None,
                 max_queued: int = 100_000, on_drop: Callable[[int], None] | None = None) -> None:
        self.watcher = watcher or MetricWatcher(cfg)
        self.queue: queue.Queue[Anomaly] = queue.Queue(maxsize=max_queued)
        self.dropped = 0  # anomalies lost to a full queue (the consumer stopped taking them)
        self.on_drop = on_drop  # told how many, as they are lost (the consumer counts them)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vigil-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def ready(self) -> tuple[bool, str]:
        return self.watcher.ready()

    def take(self) -> list[Anomaly]:
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out

    def _run(self) -> None:
        def queued(res: PollResult) -> None:
            for a in res.anomalies:
                try:
                    self.queue.put_nowait(a)
                except queue.Full:
                    self.dropped += 1
                    if self.on_drop is not None:
                        self.on_drop(1)
        try:
            self.watcher.run(self._stop, on_poll=queued)
        except Exception:  # never silently: the readiness shows the feed is gone
            log.exception("metric feed stopped")
            raise


def route(anomalies: list[Anomaly], pipelines: list[Pipeline]) -> dict[int, list[Anomaly]]:
    """Which pipeline (index) takes each metric anomaly: one that has seen the service in its
    logs (so the anomaly can join that service's incident), else the first."""
    out: dict[int, list[Anomaly]] = {}
    for a in anomalies:
        k = next((i for i, p in enumerate(pipelines) if p.services.get(a.service) is not None), 0)
        out.setdefault(k, []).append(a)
    return out
