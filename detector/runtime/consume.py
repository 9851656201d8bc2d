"""`vigil consume --role partitions`: the run loop of the Kafka consumer group, at least once.

One pipeline per assigned partition (logs are keyed by request id, so a partition holds whole
requests and a sample of every service). For each polled batch: each partition's pipeline
decodes and detects, its outcome goes to the output topics (`sinks/kafka.py`), the producer is
flushed, and only then are the offsets committed (`sources/kafka.py`: kafka-python or
confluent-kafka, `kafka.client`). On revocation a
partition's state is checkpointed; on assignment it is restored. A broker outage or a missing
topic is retried with backoff; the process stays up and reports not ready. SIGTERM/SIGINT
drain: finish the batch, flush, commit, checkpoint, exit 0.

Remediation, either way after the flush: `on_incidents` (`vigil consume --role partitions
--policy`: an in-process engine, `runtime/engine_feed.py`) is handed the batch's incident
records before the commit, or `triggers_topic` (`--triggers-topic`) gets each one's trigger through the same
producer, flushed with the other outputs before the commit (for `vigil remediate`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from detector.config import VigilConfig
from detector.decode.batch import DecodeResult
from detector.decode.deadletter import DeadLetter
from detector.events import EventBatch
from detector.pipeline import BatchOutcome, Pipeline
from detector.runtime import checkpoint
from detector.runtime.broker_trouble import BrokerTrouble, poll_until
from detector.runtime.metric_feed import MetricFeed, route
from detector.runtime.telemetry import ConsumerMetrics, SourceCollector
from detector.sinks.kafka import KafkaOutputs
from detector.sources.kafka import LogSource, Partition, Records, log_source

log = logging.getLogger("vigil.consume")


@dataclass
class ConsumerState:
    """What /readyz and /healthz read."""

    connected: bool = False
    assigned: set[Partition] = field(default_factory=set)
    last_poll: float = 0.0
    last_error: str = ""
    alive: bool = True


class LogConsumer:
    """The loop of `vigil consume`. `on_batch(records)`, when given, is called after each batch
    is committed (the benchmark times batches with it); `on_incidents(records)` with the incident
    records of a batch once its outputs are flushed; `triggers_topic` also gets their triggers."""

    def __init__(self, cfg: VigilConfig, metrics: ConsumerMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_batch: Callable[[Records], None] | None = None,
                 on_incidents: Callable[[list[dict[str, Any]]], None] | None = None,
                 triggers_topic: str | None = None) -> None:
        self.cfg = cfg
        self.on_incidents = on_incidents
        self.triggers_topic = triggers_topic
        self._incidents: list[dict[str, Any]] = []  # of the batch, for on_incidents
        self.k = cfg.kafka
        self.metrics = metrics or ConsumerMetrics()
        self.clock = clock
        self.on_batch = on_batch
        self.state = ConsumerState()
        self.pipelines: dict[Partition, Pipeline] = {}
        self.source: LogSource = log_source(self.k, self.on_partitions_assigned,
                                            self.on_partitions_revoked)
        self.outputs: KafkaOutputs | None = None
        self._last_checkpoint = clock()
        self._pool: ThreadPoolExecutor | None = None  # decodes ahead (`handle`), made on demand
        self.restored: dict[Partition, int] = {}  # partition -> events in its checkpoint
        self.trouble = BrokerTrouble(self.state, self.metrics, self.k.session_timeout_ms,
                                     clock, log)
        # Prometheus queries configured: their anomalies join these partitions' incidents.
        self.metric_feed = (MetricFeed(cfg, on_drop=self.metrics.metric_anomalies_dropped.inc)
                            if cfg.prometheus.queries else None)
        if self.metric_feed is not None:
            w = self.metric_feed.watcher
            self.metrics.registry.register(SourceCollector(w.source, w.ready))

    # ---- probes -------------------------------------------------------------------------
    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def is_alive(self) -> bool:
        return self.state.alive

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
        if self.metric_feed is not None:
            self.metric_feed.start()
        try:
            poll_until(stop, self, self.k.reconnect)
            self.drain()
            return 0
        finally:
            if self.metric_feed is not None:
                self.metric_feed.stop()
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            self.state.alive = False

    def connect(self) -> None:
        """The producer, then the consumer group (a missing topic raises `KafkaError`)."""
        self.outputs = KafkaOutputs(self.k, self.triggers_topic)
        self.source.connect()
        self.state.connected = True
        self.state.last_error = ""

    def _broken(self, exc: BaseException) -> None:
        # Uncommitted work is redelivered after reconnecting (at least once): drop the clients
        # and the partitions' pipelines, keeping their last checkpoints.
        self.trouble.broken(exc, self.source, self.outputs)
        self.outputs = None
        self.pipelines.clear()
        self._incidents = []  # not flushed: their batch is processed again after reconnecting
        self.state.assigned = set()

    def poll_once(self) -> int:
        batch = self.source.poll()
        self.state.last_poll = self.clock()
        self.trouble.watch(self.source)  # a lost coordinator: not ready, then start over
        n = sum(len(v) for v in batch.values())
        if n:
            with self.metrics.batch_seconds.time():
                self.handle(batch)
            if self.on_batch is not None:
                self.on_batch(batch)
        self._fold_metrics()
        ok, _ = self.ready()
        self.metrics.ready.set(1 if ok else 0)
        if self.clock() - self._last_checkpoint >= self.k.checkpoint_every_s:
            self.checkpoint_all()
        self._update_lag()
        return n

    def handle(self, batch: Records) -> None:
        """Process, produce, flush, then commit: offsets never run ahead of their effects.

        With records of several partitions, the next partition's lines are decoded on a worker
        thread while this one's go through the rest of its pipeline (each pipeline decodes its
        own batches, in order)."""
        assert self.outputs is not None
        offsets: dict[Partition, int] = {}
        jobs = []
        for tp, records in batch.items():
            pipe = self.pipelines.get(tp) or self._pipeline(tp)
            lines = [r.value if r.value is not None else b"" for r in records]
            jobs.append((tp, records, pipe, lines, f"{tp.topic}/{tp.partition}",
                         [r.offset for r in records]))
        ahead = self._decoder_pool() if len(jobs) > 1 else None  # one partition: inline

        def submit(i: int) -> Future[DecodeResult] | None:
            if ahead is None or i >= len(jobs):
                return None
            return ahead.submit(jobs[i][2].decode, *jobs[i][3:])

        pending = submit(0)
        for i, (tp, records, pipe, lines, source, positions) in enumerate(jobs):
            decoded: DecodeResult | Exception | None
            try:
                decoded = pending.result() if pending is not None else None
            except Exception as exc:  # the decode's own failure, handled as process's below
                decoded = exc
            pending = submit(i + 1)
            try:
                if isinstance(decoded, Exception):
                    raise decoded
                out = pipe.process(lines, source=source, positions=positions, decoded=decoded)
            except Exception as exc:  # a bug must not stall the partition
                out = self._pipeline_failed(tp, lines, records, exc)
            self._send(tp, out, {r.offset: r.key for r in records})
            self.metrics.events.labels(topic=tp.topic).inc(len(records))
            offsets[tp] = records[-1].offset + 1
        self.outputs.flush(timeout=30)
        self._hand_incidents()
        self.source.commit(offsets)
        self.metrics.batches.inc()

    def _decoder_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="vigil-decode")
        return self._pool

    def _hand_incidents(self) -> None:
        """The flushed batch's incident records to `on_incidents` (it must not block)."""
        found, self._incidents = self._incidents, []
        if found and self.on_incidents is not None:
            self.on_incidents(found)

    def _pipeline_failed(self, tp: Partition, lines: list[bytes], records: list[Any],
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
        dead = [DeadLetter("pipeline_error", detail, f"{tp.topic}/{tp.partition}:{r.offset}", line,
                           position=r.offset) for r, line in zip(records, lines, strict=True)]
        return BatchOutcome(events=EventBatch.empty(), dead=dead)

    def _fold_metrics(self) -> None:
        """Metric anomalies queued by the feed join the incidents of the partition whose logs
        have seen their service (their incidents are produced like the logs' own)."""
        if self.metric_feed is None or not self.pipelines or self.outputs is None:
            return
        found = self.metric_feed.take()
        if not found:
            return
        tps = sorted(self.pipelines, key=lambda t: (t.topic, t.partition))
        pipes = [self.pipelines[t] for t in tps]
        for k, anomalies in route(found, pipes).items():
            self._send(tps[k], pipes[k].add_anomalies(anomalies), {})
        self.outputs.flush(timeout=30)
        self._hand_incidents()

    def _send(self, tp: Partition, out: BatchOutcome, keys: dict[int, bytes | None]) -> None:
        assert self.outputs is not None
        self.outputs.write(tp.topic, tp.partition, out, keys)
        self.metrics.anomalies.inc(len(out.anomalies))
        for inc in out.incidents:
            self.metrics.incidents.labels(status=inc.status).inc()
            if self.on_incidents is not None:
                self._incidents.append(inc.to_dict())
        for d in out.dead:
            self.metrics.dead.labels(reason=d.reason).inc()

    def _pipeline(self, tp: Partition, cold: bool = False) -> Pipeline:
        """The partition's pipeline, restored from its checkpoint unless `cold`; a checkpoint
        that cannot be trusted is logged and counted, and the partition starts cold."""
        pipe = Pipeline(self.cfg)
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
            pipe = Pipeline(self.cfg)
        self.pipelines[tp] = pipe
        return pipe

    # ---- rebalances (called by the source from inside poll) ------------------------------
    def on_partitions_revoked(self, revoked: set[Partition]) -> None:
        mine = [tp for tp in revoked if tp in self.pipelines]
        if self.outputs is not None:
            self.outputs.flush(timeout=30)
        for tp in mine:
            self._checkpoint(tp)
            self.pipelines.pop(tp, None)
        self.state.assigned -= revoked
        self.metrics.assigned.set(len(self.state.assigned))
        log.info("revoked %s", sorted(f"{t.topic}/{t.partition}" for t in revoked))

    def on_partitions_assigned(self, assigned: set[Partition]) -> None:
        for tp in assigned:
            if tp not in self.pipelines:
                self._pipeline(tp)
        self.state.assigned |= assigned
        self.metrics.assigned.set(len(self.state.assigned))
        log.info("assigned %s", sorted(f"{t.topic}/{t.partition}" for t in assigned))

    # ---- checkpoints and shutdown -------------------------------------------------------
    def _checkpoint(self, tp: Partition) -> None:
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
            if self.outputs is not None:
                self.outputs.flush(timeout=self.k.drain_timeout_s)
            self.checkpoint_all()
            self.source.close()
            if self.outputs is not None:
                self.outputs.close(timeout=self.k.drain_timeout_s)
        except KafkaError as exc:
            log.warning("drain: %s", exc)
        self.outputs = None

    def _update_lag(self) -> None:
        for tp, lag in self.source.lag(self.state.assigned).items():
            self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
        self.metrics.checkpoint_age.set(self.clock() - self._last_checkpoint)
