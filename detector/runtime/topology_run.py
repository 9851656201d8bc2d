"""The process `vigil consume --role ...` runs: the roles it was given, one consumer group
each, on a thread of its own, with /healthz, /readyz and /metrics on the side server.
SIGTERM or SIGINT drains: every task snapshots and commits, then the process leaves its groups.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Gauge

from detector.config import VigilConfig
from detector.runtime.stage_tasks import IncidentsRole, IngestRole, MergeRole, StageTask
from detector.runtime.state_topic import StateTopic
from detector.sinks.kafka import KafkaOutputs

log = logging.getLogger("vigil.topology")

ROLES = ("ingest", "merge", "incidents")


class TopologyRunner:
    """The roles of one process (`all`: every one)."""

    def __init__(self, cfg: VigilConfig, roles: list[str], triggers_topic: str | None = None,
                 on_incidents: Callable[[list[dict[str, Any]]], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.roles = list(ROLES) if "all" in roles else [r for r in ROLES if r in roles]
        self.triggers_topic = triggers_topic
        self.on_incidents = on_incidents
        self.clock = clock
        self.tasks: list[StageTask] = []
        self.alive = True
        self.failed = False
        self.connected = False
        self.last_error = ""
        self.registry = CollectorRegistry()
        self._records = Gauge("vigil_stage_records", "records read, by role", ["role"],
                              registry=self.registry)
        self._tasks = Gauge("vigil_stage_tasks", "partitions owned, by role", ["role"],
                            registry=self.registry)
        self._dups = Gauge("vigil_stage_duplicates", "copies dropped, by role", ["role"],
                           registry=self.registry)

    def connect(self) -> None:
        k = self.cfg.kafka
        producer = KafkaProducer(**k.client_options(), acks="all", enable_idempotence=True,
                                 linger_ms=5)
        store = StateTopic(k, self.cfg.topology.state_topic, producer)
        outputs = KafkaOutputs(k, self.triggers_topic)
        made: dict[str, StageTask] = {}
        if "ingest" in self.roles:
            made["ingest"] = IngestRole(self.cfg, producer, store, outputs, self.clock)
        if "merge" in self.roles:
            made["merge"] = MergeRole(self.cfg, producer, store, outputs, self.clock)
        if "incidents" in self.roles:
            made["incidents"] = IncidentsRole(self.cfg, producer, store, outputs, self.clock,
                                              self.on_incidents)
        self.tasks = [made[r] for r in ROLES if r in made]
        self._producer, self._outputs = producer, outputs
        self.connected = True

    def is_alive(self) -> bool:
        return self.alive

    def ready(self) -> tuple[bool, str]:
        if not self.connected:
            return False, f"not connected: {self.last_error or 'connecting'}"
        parts = {t.role: len(t.tasks) for t in self.tasks}
        for t in self.tasks:
            self._records.labels(role=t.role).set(t.counts.records)
            self._tasks.labels(role=t.role).set(len(t.tasks))
            self._dups.labels(role=t.role).set(t.counts.duplicates)
        said = ", ".join(f"{r}: {n} partitions" for r, n in parts.items())
        for t in self.tasks:  # the Prometheus poller, where this process is the one running it
            metrics = t.metrics_ready() if isinstance(t, IncidentsRole) else None
            if metrics is not None and not metrics[0]:
                return False, f"{said}; metrics: {metrics[1]}"
        return True, said

    def run(self, stop: threading.Event) -> int:
        delay = 0.5
        while not stop.is_set() and not self.connected:
            try:
                self.connect()
            except (KafkaError, RuntimeError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("connect: %s; retrying in %.1fs", self.last_error, delay)
                stop.wait(delay)
                delay = min(delay * 2, self.cfg.kafka.reconnect.max_s)
        try:
            threads = [threading.Thread(target=self._loop, args=(t, stop), name=f"vigil-{t.role}",
                                        daemon=True) for t in self.tasks]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            self.drain()
            return 1 if self.failed else 0
        finally:
            self.alive = False

    def _loop(self, task: StageTask, stop: threading.Event) -> None:
        """One role's consumer loop on a thread of its own, so a slow stage never keeps another
        group's members from their rebalances."""
        try:
            while not stop.is_set():
                task.poll_once()
        except Exception:
            log.exception("%s: the loop failed; the process stops (its tasks go to the others)",
                          task.role)
            self.failed = True
            stop.set()

    def drain(self) -> None:
        for t in self.tasks:
            try:
                t.close(snapshot=True)
            except KafkaError as exc:
                log.warning("drain %s: %s", t.role, exc)
        if self.connected:
            self._outputs.flush(timeout=self.cfg.kafka.drain_timeout_s)
            self._outputs.close(timeout=self.cfg.kafka.drain_timeout_s)
            self._producer.close(timeout=self.cfg.kafka.drain_timeout_s)
