"""`vigil consume`: a consumer group over log topics, at least once.

One pipeline per assigned partition (logs are keyed by request id, so a partition holds whole
requests and a sample of every service). For each polled batch: decode and detect, produce
anomalies (keyed by service), incidents (keyed by root-cause target) and dead letters (original
bytes, reason and source in headers), flush the producer, and only then commit the offsets.
On revocation a partition's state is checkpointed and its offsets committed; on assignment it is
restored. A broker outage or a missing topic is retried with backoff; the process stays up and
reports not ready. SIGTERM/SIGINT drain: finish the batch, flush, commit, checkpoint, exit 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client import generate_latest

from detector.config import VigilConfig
from detector.decode.deadletter import DeadLetter
from detector.events import EventBatch
from detector.pipeline import BatchOutcome, Pipeline
from detector.runtime import checkpoint
from detector.runtime.metric_feed import MetricFeed, route
from detector.runtime.telemetry import ConsumerMetrics
from detector.sinks.base import NullSink

log = logging.getLogger("vigil.consume")


@dataclass
class ConsumerState:
    """What /readyz and /healthz read."""

    connected: bool = False
    assigned: set[TopicPartition] = field(default_factory=set)
    last_poll: float = 0.0
    last_error: str = ""
    alive: bool = True


class LogConsumer(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, cfg: VigilConfig, metrics: ConsumerMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.k = cfg.kafka
        self.metrics = metrics or ConsumerMetrics()
        self.clock = clock
        self.state = ConsumerState()
        self.pipelines: dict[TopicPartition, Pipeline] = {}
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self._last_checkpoint = clock()
        self.restored: dict[TopicPartition, int] = {}  # partition -> events in its checkpoint
        self._lost_since: float | None = None
        # Prometheus queries configured: their anomalies join these partitions' incidents.
        self.metric_feed = MetricFeed(cfg) if cfg.prometheus.queries else None

    # ---- readiness ----------------------------------------------------------------------
    def is_alive(self) -> bool:
        return self.state.alive

    def metrics_text(self) -> bytes:
        return bytes(generate_latest(self.metrics.registry))

    def ready(self) -> tuple[bool, str]:
        s = self.state
        if not s.connected:
            return False, f"not connected to the broker: {s.last_error or 'connecting'}"
        if not s.assigned:
            return False, "no partitions assigned (yet)"
        if self.clock() - s.last_poll > self.k.stall_after_s:
            return False, f"no poll for {self.clock() - s.last_poll:.0f}s (stalled)"
        if self.metric_feed is not None:  # logs go on being consumed meanwhile
            ok, why = self.metric_feed.ready()
            if not ok:
                return False, f"{len(s.assigned)} partitions; metrics: {why}"
        return True, f"{len(s.assigned)} partitions"

    # ---- main loop ----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> int:
        backoff = self.k.retry_backoff_s
        if self.metric_feed is not None:
            self.metric_feed.start()
        try:
            while not stop.is_set():
                try:
                    if self.consumer is None:
                        self._connect()
                        backoff = self.k.retry_backoff_s
                    self.poll_once()
                except (KafkaError, OSError) as exc:
                    self._broken(exc)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.k.retry_backoff_max_s)
            self.drain()
            return 0
        finally:
            if self.metric_feed is not None:
                self.metric_feed.stop()
            self.state.alive = False

    def _connect(self) -> None:
        opts = self.k.client_options()
        self.producer = KafkaProducer(**opts, acks="all", linger_ms=5, retries=5)
        consumer = KafkaConsumer(
            **opts, group_id=self.k.group_id, enable_auto_commit=False,
            auto_offset_reset=self.k.auto_offset_reset,
            session_timeout_ms=self.k.session_timeout_ms,
            heartbeat_interval_ms=self.k.heartbeat_interval_ms,
            max_poll_interval_ms=self.k.max_poll_interval_ms, fetch_max_wait_ms=100)
        missing = [t for t in self.k.topics if t not in (consumer.topics() or set())]
        if missing:
            consumer.close()
            raise KafkaError(f"topic(s) {', '.join(missing)} not found")
        consumer.subscribe(self.k.topics, listener=self)
        self.consumer = consumer
        self.state.connected = True
        self.state.last_error = ""
        log.info("connected to %s, subscribed to %s", self.k.bootstrap_servers, self.k.topics)

    def _broken(self, exc: BaseException) -> None:
        kind = type(exc).__name__
        self.metrics.broker_errors.labels(kind=kind).inc()
        self.state.connected = False
        self.state.last_error = f"{kind}: {exc}"
        self.metrics.ready.set(0)
        log.warning("broker trouble (%s); retrying", self.state.last_error)
        # Uncommitted work is redelivered after reconnecting (at least once): drop the clients
        # and the partitions' pipelines, keeping their last checkpoints.
        try:
            if self.consumer is not None:
                self.consumer.close(autocommit=False)
            if self.producer is not None:
                self.producer.close(timeout=1)
        except Exception:  # closing a broken client must not stop the retry loop
            log.debug("close failed", exc_info=True)
        self.consumer = self.producer = None
        self.pipelines.clear()
        self.state.assigned = set()

    def poll_once(self) -> int:
        assert self.consumer is not None
        batch = self.consumer.poll(timeout_ms=self.k.poll_timeout_ms,
                                   max_records=self.k.poll_max_records)
        self.state.last_poll = self.clock()
        self._watch_coordinator()
        n = sum(len(v) for v in batch.values())
        if n:
            with self.metrics.batch_seconds.time():
                self.handle(batch)
        self._fold_metrics()
        ok, _ = self.ready()
        self.metrics.ready.set(1 if ok else 0)
        if self.clock() - self._last_checkpoint >= self.k.checkpoint_every_s:
            self.checkpoint_all()
        self._update_lag()
        return n

    def _watch_coordinator(self) -> None:
        """kafka-python keeps retrying a lost broker inside `poll`; notice it, report not ready,
        and after a while start over (new clients, topics checked again: a broker that lost its
        state comes back without them)."""
        assert self.consumer is not None
        lost = self.consumer._coordinator.coordinator_unknown()
        if not lost:
            self._lost_since = None
            self.state.connected = True
            return
        now = self.clock()
        if self._lost_since is None:
            self._lost_since = now
            self.metrics.broker_errors.labels(kind="coordinator_lost").inc()
        self.state.connected = False
        self.state.last_error = f"group coordinator unreachable for {now - self._lost_since:.0f}s"
        if now - self._lost_since > 2 * self.k.session_timeout_ms / 1000:
            self._lost_since = None
            raise KafkaError(self.state.last_error)

    def handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Process, produce, flush, then commit: offsets never run ahead of their effects."""
        assert self.consumer is not None and self.producer is not None
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for tp, records in batch.items():
            pipe = self.pipelines.get(tp) or self._pipeline(tp)
            lines = [r.value if r.value is not None else b"" for r in records]
            source = f"{tp.topic}/{tp.partition}"
            try:
                out = pipe.process(lines, source=source, positions=[r.offset for r in records])
            except Exception as exc:
                out = self._pipeline_failed(tp, lines, records, exc)
            self._produce(tp, out, {r.offset: r for r in records})
            self.metrics.events.labels(topic=tp.topic).inc(len(records))
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        self.producer.flush(timeout=30)
        self.consumer.commit(offsets)
        self.metrics.batches.inc()

    def _pipeline_failed(self, tp: TopicPartition, lines: list[bytes], records: list[Any],
                         exc: Exception) -> BatchOutcome:
        """Last resort: the batch's records go to the dead-letter topic (replayable), the
        partition starts cold, and the offsets move on, so a bug is a counted, logged loss of
        state rather than a consumer that dies on the same batch after every restart."""
        log.exception("pipeline of %s/%s failed on a batch of %d records; they are dead-lettered "
                      "and the partition restarts cold", tp.topic, tp.partition, len(records))
        self.metrics.pipeline_errors.inc()
        self.pipelines.pop(tp, None)
        self._pipeline(tp, cold=True)
        detail = f"Vigil's pipeline failed on this batch: {type(exc).__name__}: {str(exc)[:300]}"
        dead = [DeadLetter("pipeline_error", detail, f"{tp.topic}/{tp.partition}:{r.offset}", line)
                for r, line in zip(records, lines, strict=True)]
        return BatchOutcome(events=EventBatch.empty(), dead=dead)

    def _fold_metrics(self) -> None:
        """Metric anomalies queued by the feed join the incidents of the partition whose logs
        have seen their service (their incidents are produced like the logs' own)."""
        if self.metric_feed is None or not self.pipelines or self.producer is None:
            return
        found = self.metric_feed.take()
        if not found:
            return
        tps = sorted(self.pipelines, key=lambda t: (t.topic, t.partition))
        pipes = [self.pipelines[t] for t in tps]
        for k, anomalies in route(found, pipes).items():
            self._produce(tps[k], pipes[k].add_anomalies(anomalies), {})
        self.producer.flush(timeout=30)

    def _produce(self, tp: TopicPartition, out: BatchOutcome, by_offset: dict[int, Any]) -> None:
        assert self.producer is not None
        for a in out.anomalies:
            self.producer.send(self.k.anomalies_topic, key=a.service.encode(),
                               value=orjson.dumps(a.to_dict()))
        self.metrics.anomalies.inc(len(out.anomalies))
        for inc in out.incidents:
            self.producer.send(self.k.incidents_topic, key=inc.service.encode(),
                               value=orjson.dumps(inc.to_dict()))
            self.metrics.incidents.labels(status=inc.status).inc()
        for d in out.dead:
            offset = int(d.source.rsplit(":", 1)[1])
            rec = by_offset.get(offset)
            headers = [("vigil.reason", d.reason.encode()), ("vigil.detail", d.detail[:1000].encode()),
                       ("vigil.source.topic", tp.topic.encode()),
                       ("vigil.source.partition", str(tp.partition).encode()),
                       ("vigil.source.offset", str(offset).encode())]
            key = rec.key if rec is not None else None
            self.producer.send(self.k.dead_letter_topic, key=key, value=d.raw, headers=headers)
            self.metrics.dead.labels(reason=d.reason).inc()

    def _pipeline(self, tp: TopicPartition, cold: bool = False) -> Pipeline:
        """The partition's pipeline, restored from its checkpoint unless `cold`; a checkpoint
        that cannot be trusted is logged and counted, and the partition starts cold."""
        pipe = self._new_pipeline()
        key = f"{tp.topic}/{tp.partition}"
        try:
            state = None if cold else checkpoint.load(self.k.checkpoint_dir, key,
                                                      self.k.checkpoint_max_bytes)
            if state is not None:
                checkpoint.restore_pipeline(pipe, state)
                self.restored[tp] = int(state.get("events", 0))  # checked by the restore
                log.info("restored %s from its checkpoint (%s events learned)", key,
                         state.get("events"))
        except checkpoint.CheckpointError as exc:
            log.error("checkpoint of %s unusable (%s: %s); starting cold", key, exc.kind, exc)
            self.metrics.checkpoints_refused.labels(kind=exc.kind).inc()
            pipe = self._new_pipeline()
        self.pipelines[tp] = pipe
        return pipe

    def _new_pipeline(self) -> Pipeline:
        return Pipeline(self.cfg, anomalies=NullSink(), incidents=NullSink(),
                        dead_letters=NullSink())

    # ---- rebalance listener -------------------------------------------------------------
    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        mine = [tp for tp in revoked if tp in self.pipelines]
        if self.producer is not None:
            self.producer.flush(timeout=30)
        for tp in mine:
            self._checkpoint(tp)
            self.pipelines.pop(tp, None)
        self.state.assigned -= set(revoked)
        self.metrics.assigned.set(len(self.state.assigned))
        log.info("revoked %s", sorted(f"{t.topic}/{t.partition}" for t in revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            if tp not in self.pipelines:
                self._pipeline(tp)
        self.state.assigned |= set(assigned)
        self.metrics.assigned.set(len(self.state.assigned))
        log.info("assigned %s", sorted(f"{t.topic}/{t.partition}" for t in assigned))

    # ---- checkpoints and shutdown -------------------------------------------------------
    def _checkpoint(self, tp: TopicPartition) -> None:
        pipe = self.pipelines.get(tp)
        if pipe is None:
            return
        checkpoint.save(self.k.checkpoint_dir, f"{tp.topic}/{tp.partition}",
                        checkpoint.pipeline_state(pipe))
        self._last_checkpoint = self.clock()
        self.metrics.checkpoint_age.set(0)

    def checkpoint_all(self) -> None:
        for tp in list(self.pipelines):
            self._checkpoint(tp)
        self._last_checkpoint = self.clock()

    def drain(self) -> None:
        """Flush, checkpoint and leave the group (its revocation commits nothing new: every
        processed batch was committed after its flush)."""
        try:
            if self.producer is not None:
                self.producer.flush(timeout=self.k.drain_timeout_s)
            self.checkpoint_all()
            if self.consumer is not None:
                self.consumer.close(autocommit=False)
            if self.producer is not None:
                self.producer.close(timeout=self.k.drain_timeout_s)
        except KafkaError as exc:
            log.warning("drain: %s", exc)
        self.consumer = self.producer = None

    def _update_lag(self) -> None:
        if self.consumer is None:
            return
        for tp in self.state.assigned:
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            try:
                pos = self.consumer.position(tp, timeout_ms=100)
            except (KafkaError, AssertionError):
                continue
            if pos is not None:
                self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(high - pos)
        self.metrics.checkpoint_age.set(self.clock() - self._last_checkpoint)
