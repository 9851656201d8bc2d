"""Metric anomalies for the Kafka consumer: a `MetricWatcher` polls Prometheus on its own thread
(a slow or absent Prometheus never stalls the log consumption) and queues what it finds; the
consumer's thread takes the queue at each poll and folds it into its pipelines' incidents."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from detector.config import VigilConfig
from detector.events import Anomaly
from detector.pipeline import Pipeline
from detector.runtime.watch import MetricWatcher, PollResult

log = logging.getLogger("vigil.metrics")


class MetricFeed:
    """The watcher on a thread of its own and a queue of what it finds. With `keep_state`, the
    watcher's state is also taken after every poll (on the feed's thread), so `checkpoint` never
    waits for a poll, however slow Prometheus is."""

    def __init__(self, cfg: VigilConfig, watcher: MetricWatcher | None = None,
                 max_queued: int = 100_000, on_drop: Callable[[int], None] | None = None,
                 keep_state: bool = False) -> None:
        self.watcher = watcher or MetricWatcher(cfg)
        self.queue: queue.Queue[Anomaly] = queue.Queue(maxsize=max_queued)
        self.dropped = 0  # anomalies lost to a full queue (the consumer stopped taking them)
        self.on_drop = on_drop  # told how many, as they are lost (the consumer counts them)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # a poll's finds and the state after it, as one
        self._state = self.watcher.state_dict() if keep_state else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vigil-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def ready(self) -> tuple[bool, str]:
        t = self._thread
        if t is not None and not t.is_alive() and not self._stop.is_set():
            return False, "the metric feed stopped (see the log)"
        return self.watcher.ready()

    def take(self) -> list[Anomaly]:
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out

    def abandon(self) -> None:
        """Stop without waiting (from a rebalance callback, where nothing may block): the poll
        in progress, if any, finishes on its own thread and what it finds is dropped with the
        feed; the next owner goes on from the last checkpoint."""
        self._stop.set()

    def checkpoint(self) -> tuple[list[Anomaly], dict[str, Any]]:
        """What was found and not yet taken, and the watcher's state just after the poll that
        found the last of it (`keep_state`): once the caller has folded these anomalies in and
        written what they produced, the state is a consistent snapshot (nothing found is left
        out of it, nothing in it is still to be found). Never waits for a poll."""
        if self._state is None:
            raise RuntimeError("checkpoint needs MetricFeed(keep_state=True)")
        with self._lock:
            return self.take(), self._state

    def _queued(self, res: PollResult) -> None:
        for a in res.anomalies:
            try:
                self.queue.put_nowait(a)
            except queue.Full:
                self.dropped += 1
                if self.on_drop is not None:
                    self.on_drop(1)

    def _run(self) -> None:
        w = self.watcher
        interval = w.interval()
        try:
            while not self._stop.is_set():
                res = w.poll_once()
                state = w.state_dict() if self._state is not None else None
                with self._lock:
                    self._queued(res)
                    if state is not None:
                        self._state = state
                self._stop.wait(max(0.0, interval - res.seconds))
        except Exception:  # never silently: the readiness shows the feed is gone
            log.exception("metric feed stopped")
            raise
        finally:
            w.alive = False


def route(anomalies: list[Anomaly], pipelines: list[Pipeline]) -> dict[int, list[Anomaly]]:
    """Which pipeline (index) takes each metric anomaly: one that has seen the service in its
    logs (so the anomaly can join that service's incident), else the first."""
    out: dict[int, list[Anomaly]] = {}
    for a in anomalies:
        k = next((i for i, p in enumerate(pipelines) if p.services.get(a.service) is not None), 0)
        out.setdefault(k, []).append(a)
    return out
