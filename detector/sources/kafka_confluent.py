"""Log records from a Kafka consumer group with confluent-kafka (librdkafka): the `LogSource` of
`sources/kafka.py` for `kafka.client: confluent`.

Auto-commit and offset auto-store off; `commit` is synchronous and takes the next offset to read.
`consume(poll_max_records, poll_timeout_ms)` gives a batch; the rebalance callbacks run inside it
(`on_assign`/`on_revoke`, lost partitions as revoked). Errors are raised as kafka-python's
`KafkaError`, which the runtime's retry loop knows. librdkafka retries a lost broker on its own:
`coordinator_unknown` reports one from the moment librdkafka says every broker is down until the
cluster answers again, so the runtime reports not ready and, after two session timeouts, starts
over as it does with kafka-python.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as ConfluentError
from kafka.errors import KafkaError

from detector.config import KafkaConfig
from detector.sources.kafka import Partition, Rebalance, Records

log = logging.getLogger("vigil.consume")

_DOWN = {ConfluentError._ALL_BROKERS_DOWN, ConfluentError._TRANSPORT}


class Record(NamedTuple):
    """One consumed record, with the attributes kafka-python's records have."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int  # ms (-1: none)
    headers: list[tuple[str, bytes]]


class ConfluentLogSource:
    """The consumer group over `kafka.topics` with confluent-kafka, auto-commit off."""

    def __init__(self, k: KafkaConfig, on_assigned: Rebalance, on_revoked: Rebalance) -> None:
        self.k = k
        self.on_assigned, self.on_revoked = on_assigned, on_revoked
        self._consumer: Any = None
        self._closing = False
        self._down = False  # librdkafka said every broker is down; cleared once one answers

    @property
    def connected(self) -> bool:
        return self._consumer is not None

    def _error(self, err: ConfluentError) -> None:  # error_cb, called from poll/consume
        if err.code() in _DOWN:
            self._down = True
        log.debug("librdkafka: %s", err)

    def connect(self) -> None:
        k = self.k
        conf: dict[str, Any] = {
            **k.confluent_options(), "group.id": k.group_id, "enable.auto.commit": False,
            "enable.auto.offset.store": False, "auto.offset.reset": k.auto_offset_reset,
            "session.timeout.ms": k.session_timeout_ms,
            "heartbeat.interval.ms": k.heartbeat_interval_ms,
            "max.poll.interval.ms": k.max_poll_interval_ms, "fetch.wait.max.ms": 100,
            "error_cb": self._error, "logger": log,
        }
        self._down = False
        try:
            consumer = Consumer(conf)
        except KafkaException as exc:
            raise KafkaError(f"confluent-kafka: {exc}") from exc
        try:
            known = consumer.list_topics(timeout=10).topics
            missing = [t for t in k.topics
                       if t not in known or known[t].error is not None]
            if missing:
                raise KafkaError(f"topic(s) {', '.join(missing)} not found")
            consumer.subscribe(k.topics, on_assign=self._assigned, on_revoke=self._revoked,
                               on_lost=self._revoked)
        except BaseException as exc:
            consumer.close()
            if isinstance(exc, KafkaException):
                raise KafkaError(f"confluent-kafka: {exc}") from exc
            raise
        self._consumer = consumer
        log.info("connected to %s (confluent-kafka), subscribed to %s", k.bootstrap_servers,
                 k.topics)

    def _assigned(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        if not self._closing:
            self.on_assigned({Partition(p.topic, p.partition) for p in partitions})

    def _revoked(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        if not self._closing:
            self.on_revoked({Partition(p.topic, p.partition) for p in partitions})

    def poll(self) -> Records:
        assert self._consumer is not None
        try:
            msgs = self._consumer.consume(self.k.poll_max_records, self.k.poll_timeout_ms / 1000)
        except KafkaException as exc:
            raise KafkaError(f"confluent-kafka: {exc}") from exc
        batch: Records = {}
        last: Partition | None = None
        records: list[Any] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise KafkaError(f"confluent-kafka: {err}")
                self._error(err)
                continue
            tp = Partition(m.topic(), m.partition())
            if tp != last:
                records = batch.setdefault(tp, [])
                last = tp
            records.append(Record(m.offset(), m.key(), m.value(), m.timestamp()[1],
                                  m.headers() or []))
        if batch:
            self._down = False
        return batch

    def commit(self, offsets: dict[Partition, int]) -> None:
        assert self._consumer is not None
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=[TopicPartition(tp.topic, tp.partition, o)
                                           for tp, o in offsets.items()], asynchronous=False)
        except KafkaException as exc:
            raise KafkaError(f"commit failed: {exc}") from exc

    def coordinator_unknown(self) -> bool:
        """Every broker down (librdkafka's own report), until the cluster answers again."""
        if not self._down or self._consumer is None:
            return False
        try:
            self._consumer.list_topics(self.k.topics[0], timeout=0.5)
        except KafkaException:
            return True
        self._down = False
        return False

    def lag(self, partitions: set[Partition]) -> dict[Partition, int]:
        """High watermark (as last fetched, no request) minus position."""
        out: dict[Partition, int] = {}
        if self._consumer is None or not partitions:
            return out
        try:
            tps = [TopicPartition(p.topic, p.partition) for p in partitions]
            positions = self._consumer.position(tps)
            for tp in positions:
                if tp.offset < 0:
                    continue
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0:
                    out[Partition(tp.topic, tp.partition)] = high - tp.offset
        except (KafkaException, RuntimeError):
            return out
        return out

    def partitions_of(self, topic: str) -> int:
        assert self._consumer is not None
        try:
            meta = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        except KafkaException as exc:
            raise KafkaError(f"confluent-kafka: {exc}") from exc
        return 0 if meta is None or meta.error is not None else len(meta.partitions)

    def close(self) -> None:
        """Leave the group without committing anything new (the callbacks are not called)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            self._closing = True
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.debug("close: %s", exc)
            finally:
                self._closing = False
