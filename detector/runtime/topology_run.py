"""The process `vigil consume --role ...` runs: the roles it was given, one consumer group
each, on a thread of its own, with /healthz, /readyz and /metrics on the side server.
SIGTERM or SIGINT drains: every task snapshots and commits, then the process leaves its groups.

The `remediate` role is `vigil remediate`'s loop (`TriggerConsumer`) over the triggers topic
the incidents role produces to, as group `<kafka.group_id>-remediate` (`vigil-remediate` with
the default group id, `vigil remediate`'s own default), acting through the `EngineHost` it is
given: at least once, acted at most once per (episode, rung) by the engine's claims.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Gauge

from detector.config import VigilConfig
from detector.runtime.broker_trouble import poll_until
from detector.runtime.remediate import TriggerConsumer
from detector.runtime.stage_tasks import IncidentsRole, IngestRole, MergeRole, StageTask
from detector.runtime.state_topic import StateTopic
from detector.runtime.telemetry import RemediatorMetrics
from detector.sinks.kafka import KafkaOutputs

if TYPE_CHECKING:
    from detector.runtime.engine_host import EngineHost

log = logging.getLogger("vigil.topology")

ROLES = ("ingest", "merge", "incidents")
REMEDIATE = "remediate"


def remediate_group(cfg: VigilConfig) -> str:
    """The consumer group of the `remediate` role: `<kafka.group_id>-remediate`, as the stages'
    groups are named (with the default group id: `vigil-remediate`, `vigil remediate`'s)."""
    return f"{cfg.kafka.group_id}-{REMEDIATE}"


class TopologyRunner:
    """The roles of one process (`all`: the three stages, and `remediate` when an `engine` is
    given). `remediate` needs `engine` and `triggers_topic`; the runner stops the engine when
    it drains."""

    def __init__(self, cfg: VigilConfig, roles: list[str], triggers_topic: str | None = None,
                 on_incidents: Callable[[list[dict[str, Any]]], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 engine: EngineHost | None = None) -> None:
        self.cfg = cfg
        self.roles = list(ROLES) if "all" in roles else [r for r in ROLES if r in roles]
        if REMEDIATE in roles or ("all" in roles and engine is not None):
            if engine is None or triggers_topic is None:
                raise ValueError("the remediate role needs an engine and a triggers topic")
            self.roles.append(REMEDIATE)
        self.triggers_topic = triggers_topic
        self.on_incidents = on_incidents
        self.clock = clock
        self.engine = engine
        self.tasks: list[StageTask] = []
        self.remediator: TriggerConsumer | None = None
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
        if REMEDIATE in self.roles:  # its metrics beside the stages' (vigil remediate's names)
            assert engine is not None and triggers_topic is not None
            self.remediator = TriggerConsumer(cfg, triggers_topic, remediate_group(cfg), engine,
                                              RemediatorMetrics(self.registry), clock)

    def connect(self) -> None:
        if not any(r in ROLES for r in self.roles):  # remediate alone: its loop connects itself
            self.connected = True
            return
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
        if self.remediator is not None:
            ok, why = self.remediator.ready()
            if not ok:
                return False, f"{REMEDIATE}: {why}"
            said = f"{said}, {REMEDIATE}: {why}" if said else f"{REMEDIATE}: {why}"
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
            if self.remediator is not None:
                threads.append(threading.Thread(target=self._remediate, args=(stop,),
                                                name=f"vigil-{REMEDIATE}", daemon=True))
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

    def _remediate(self, stop: threading.Event) -> None:
        """The remediate role's loop: `vigil remediate`'s, whose broker errors are retried with
        backoff; anything else stops the process, as a stage's failure does."""
        assert self.remediator is not None
        try:
            poll_until(stop, self.remediator, self.cfg.kafka.reconnect)
        except Exception:
            log.exception("%s: the loop failed; the process stops (its partitions go to the "
                          "others)", REMEDIATE)
            self.failed = True
            stop.set()

    def drain(self) -> None:
        """Every stage snapshots and commits and leaves its group, the outputs (triggers too)
        are flushed; then the remediate role waits (up to `kafka.drain_timeout_s`) for its
        decisions in flight, commits what finished, and the engine stops (bounded alike)."""
        for t in self.tasks:
            try:
                t.close(snapshot=True)
            except KafkaError as exc:
                log.warning("drain %s: %s", t.role, exc)
        if self.connected and self.tasks:
            self._outputs.flush(timeout=self.cfg.kafka.drain_timeout_s)
            self._outputs.close(timeout=self.cfg.kafka.drain_timeout_s)
            self._producer.close(timeout=self.cfg.kafka.drain_timeout_s)
        if self.remediator is not None:
            try:
                self.remediator.drain()
            finally:
                self.remediator.state.alive = False
                if self.engine is not None:
                    self.engine.stop(self.cfg.kafka.drain_timeout_s)
