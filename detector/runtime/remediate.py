"""`vigil remediate`: a consumer group over the triggers topic (`vigil consume --triggers-topic`)
that hands each trigger to the remediation engine (`EngineHost`) and commits a partition's
offset only once every decision of the records before it is durably audited.

Per partition, the records polled are kept in order with their `submit` futures; the offset
committed is that of the lowest record whose future is not done (a watermark), so a long ladder
holds back its own partition and no other. Triggers are keyed by target, so one target's
triggers stay in order on one partition, owned by one replica at a time; what a crash or a
rebalance redelivers is refused by the engine's claims per (episode, rule, rung) when the
replicas share the audit database (the same machine), so it is audited, not acted twice.

A record that is not a trigger goes to the dead-letter topic with the reason (`bad_trigger`),
as does one the engine raised on (`engine_error`); both are counted and their offsets move on.
On revocation, what has finished is committed and the partition is dropped: its unfinished
decisions go on in this engine, and the new owner gets their records again. A broker outage is
retried with backoff, as `vigil consume` does. A stop: no more polls, a bounded wait
(`kafka.drain_timeout_s`) for the decisions in flight, a commit of what finished, exit 0.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import TopicPartition
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from detector.config import VigilConfig
from detector.decode.deadletter import DeadLetter
from detector.events import EventBatch
from detector.pipeline import BatchOutcome
from detector.runtime.broker_trouble import BrokerTrouble, poll_until
from detector.runtime.consume import ConsumerState
from detector.runtime.engine_host import EngineHost
from detector.runtime.telemetry import RemediatorMetrics
from detector.sinks.kafka import KafkaOutputs
from detector.sources.kafka import KafkaLogSource
from remediation.trigger import Trigger, TriggerError

log = logging.getLogger("vigil.remediate")


@dataclass(slots=True)
class _Taken:
    """A polled record: its offset, and the engine's future (None: settled, dead-lettered)."""

    offset: int
    future: concurrent.futures.Future[None] | None
    key: bytes | None = None
    value: bytes = b""


class TriggerConsumer:
    """The loop of `vigil remediate` over `topic` as consumer group `group`; the Kafka
    settings (bootstrap, security, session timeouts, dead-letter topic) are `cfg.kafka`'s."""

    def __init__(self, cfg: VigilConfig, topic: str, group: str, engine: EngineHost,
                 metrics: RemediatorMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.k = cfg.kafka.model_copy(update={"topics": [topic], "group_id": group})
        self.engine = engine
        self.metrics = metrics or RemediatorMetrics()
        self.clock = clock
        self.state = ConsumerState()
        self.source = KafkaLogSource(self.k, self.on_partitions_assigned,
                                     self.on_partitions_revoked)
        self.outputs: KafkaOutputs | None = None
        self.pending: dict[TopicPartition, deque[_Taken]] = {}
        self.committed: dict[TopicPartition, int] = {}  # the last offset this replica committed
        self._unflushed = False  # dead letters sent since the last flush
        self.trouble = BrokerTrouble(self.state, self.metrics, self.k.session_timeout_ms,
                                     clock, log)

    # ---- probes -------------------------------------------------------------------------
    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def is_alive(self) -> bool:
        return self.state.alive

    def ready(self) -> tuple[bool, str]:
        """Connected and polling; a replica with no partition (more replicas than partitions)
        is ready: it is a standby."""
        s = self.state
        if not s.connected:
            return False, f"not connected to the broker: {s.last_error or 'connecting'}"
        if self.clock() - s.last_poll > self.k.stall_after_s:
            return False, f"no poll for {self.clock() - s.last_poll:.0f}s (stalled)"
        return True, f"{len(s.assigned)} partitions, {self.in_flight()} decisions in flight"

    def in_flight(self) -> int:
        return sum(1 for q in self.pending.values() for t in q
                   if t.future is not None and not t.future.done())

    # ---- main loop ----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> int:
        """Poll until `stop`, then drain; 0 (a broker outage is retried, never fatal)."""
        try:
            poll_until(stop, self, self.k.reconnect)
            self.drain()
            return 0
        finally:
            self.state.alive = False

    def connect(self) -> None:
        self.outputs = KafkaOutputs(self.k)
        self.source.connect()
        self.state.connected = True
        self.state.last_error = ""

    def poll_once(self) -> int:
        """One poll: submit its triggers, then commit each partition's finished prefix."""
        batch = self.source.poll()
        self.state.last_poll = self.clock()
        self.trouble.watch(self.source)  # a lost coordinator: not ready, then start over
        n = 0
        for tp, records in batch.items():
            if tp not in self.state.assigned:  # revoked inside this poll
                continue
            q = self.pending.setdefault(tp, deque())
            for r in records:
                q.append(self._take(tp, r))
                n += 1
        self.commit_finished()
        self.metrics.in_flight.set(self.in_flight())
        self.metrics.ready.set(1 if self.ready()[0] else 0)
        for tp, lag in self.source.lag(self.state.assigned).items():
            self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
        return n

    def _take(self, tp: TopicPartition, r: Any) -> _Taken:
        value = r.value if r.value is not None else b""
        try:
            trigger = Trigger.from_dict(orjson.loads(value))
        except (ValueError, TypeError) as exc:  # TriggerError and orjson's errors are ValueErrors
            why = str(exc) if isinstance(exc, TriggerError) else f"not JSON: {exc}"
            self._dead(tp, r.offset, r.key, value, "bad_trigger", why)
            self.metrics.triggers.labels(outcome="dead_lettered").inc()
            return _Taken(r.offset, None)
        log.info("trigger %s (%s, %s) from %s/%d@%d", trigger.episode, trigger.status,
                 trigger.service or "-", tp.topic, tp.partition, r.offset)
        self.metrics.triggers.labels(outcome="submitted").inc()
        return _Taken(r.offset, self.engine.submit(trigger), r.key, value)

    def _dead(self, tp: TopicPartition, offset: int, key: bytes | None, value: bytes,
              reason: str, detail: str) -> None:
        assert self.outputs is not None
        letter = DeadLetter(reason, detail, f"{tp.topic}/{tp.partition}:{offset}", value,
                            position=offset)
        self.outputs.write(tp.topic, tp.partition,
                           BatchOutcome(events=EventBatch.empty(), dead=[letter]), {offset: key})
        self.metrics.dead.labels(reason=reason).inc()
        self._unflushed = True
        log.warning("%s/%d@%d dead-lettered (%s): %s", tp.topic, tp.partition, offset, reason,
                    detail[:200])

    def _settle(self, tp: TopicPartition, t: _Taken) -> None:
        """A finished future: a raise is a bug; its record is dead-lettered, not retried forever."""
        assert t.future is not None
        exc = None if t.future.cancelled() else t.future.exception()
        if t.future.cancelled() or exc is not None:
            why = "cancelled" if exc is None else f"{type(exc).__name__}: {str(exc)[:300]}"
            self._dead(tp, t.offset, t.key, t.value, "engine_error", f"the engine failed on "
                       f"this trigger: {why}")

    def commit_finished(self, only: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Commit, per partition (of `only`, or all), up to the first record still deciding;
        dead letters are flushed first. Returns what was committed."""
        offsets: dict[TopicPartition, int] = {}
        for tp, q in self.pending.items():
            if only is not None and tp not in only:
                continue
            while q and (q[0].future is None or q[0].future.done()):
                t = q.popleft()
                if t.future is not None:
                    self._settle(tp, t)
                offsets[tp] = t.offset + 1
        if not offsets:
            return offsets
        if self._unflushed and self.outputs is not None:
            self.outputs.flush(timeout=30)
            self._unflushed = False
        self.source.commit(offsets)
        self.committed.update(offsets)
        self.metrics.commits.inc()
        return offsets

    def _broken(self, exc: BaseException) -> None:
        # What was not committed comes again after reconnecting; the decisions in flight go on
        # in the engine, and its claims make the redelivered triggers' steps not run twice.
        self.trouble.broken(exc, self.source, self.outputs)
        self.outputs = None
        self.pending.clear()
        self._unflushed = False
        self.state.assigned = set()

    # ---- rebalances (called by the source from inside poll) ------------------------------
    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit what finished on the revoked partitions, then stop committing for them."""
        try:
            self.commit_finished(only=revoked)
        except KafkaError as exc:  # the new owner redoes it; the claims make that idempotent
            log.warning("commit on revocation failed: %s", exc)
        for tp in revoked:
            left = self.pending.pop(tp, None)
            if left:
                log.info("%s/%d revoked with %d record(s) still deciding; the new owner gets "
                         "them again", tp.topic, tp.partition, len(left))
        self.state.assigned -= revoked
        self.metrics.assigned.set(len(self.state.assigned))
        log.info("revoked %s", sorted(f"{t.topic}/{t.partition}" for t in revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self.pending.setdefault(tp, deque())
        self.state.assigned |= assigned
        self.metrics.assigned.set(len(self.state.assigned))
        log.info("assigned %s", sorted(f"{t.topic}/{t.partition}" for t in assigned))

    # ---- shutdown -----------------------------------------------------------------------
    def drain(self) -> None:
        """No more polls: wait up to `kafka.drain_timeout_s` for the decisions in flight, commit
        what finished, leave the group. (The engine is its owner's to stop.)"""
        deadline = self.clock() + self.k.drain_timeout_s
        while self.in_flight() and self.clock() < deadline:
            time.sleep(0.05)
        try:
            if self.source.connected:
                self.commit_finished()
            if self.in_flight():
                log.warning("stopping with %d decision(s) in flight: their records are not "
                            "committed and come again", self.in_flight())
            self.source.close()
            if self.outputs is not None:
                self.outputs.close(timeout=self.k.drain_timeout_s)
        except KafkaError as exc:
            log.warning("drain: %s", exc)
        self.outputs = None
