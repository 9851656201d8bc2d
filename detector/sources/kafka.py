"""Log records from a Kafka consumer group: connect, poll, commit, lag. Reading only: what is
done with the records, and when offsets may be committed, is the runtime's
(`runtime/consume.py`). Rebalances are handed to the runtime's callbacks.

`LogSource` is the small interface the runtime uses; `KafkaLogSource` is its kafka-python
implementation, `sources/kafka_confluent.py` its confluent-kafka one (`kafka.client`), and
`log_source` picks one. A polled batch maps each partition (a `(topic, partition)` tuple:
kafka-python's `TopicPartition` and `Partition` are equal and hash alike) to its records, each
with `offset`, `key`, `value`, `timestamp` (ms) and `headers`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from detector.config import KafkaConfig

log = logging.getLogger("vigil.consume")



class Partition(NamedTuple):
    """A topic partition, equal to (and hashing like) kafka-python's `TopicPartition`."""

    topic: str
    partition: int


Records = dict[Partition, list[Any]]  # records (offset, key, value, timestamp, headers) by partition
Rebalance = Callable[[set[Partition]], None]


class LogSource(Protocol):
    """What the runtime needs of a consumer group client. `connect` raises `KafkaError` (from
    kafka-python's errors, whichever the client) when a topic is missing or the broker is out of
    reach; `poll` returns records by partition and runs the rebalance callbacks given to the
    constructor; `commit` takes the next offset to read per partition, synchronously; `close`
    leaves the group without committing anything new and without calling the callbacks."""

    @property
    def connected(self) -> bool: ...

    def connect(self) -> None: ...

    def poll(self) -> Records: ...

    def commit(self, offsets: dict[Partition, int]) -> None: ...

    def coordinator_unknown(self) -> bool: ...

    def lag(self, partitions: set[Partition]) -> dict[Partition, int]: ...

    def close(self) -> None: ...

    def partitions_of(self, topic: str) -> int:
        """How many partitions `topic` has (0: it does not exist)."""


def log_source(k: KafkaConfig, on_assigned: Rebalance, on_revoked: Rebalance) -> LogSource:
    """The consumer of `k.client`: kafka-python or confluent-kafka (`vigil[confluent]`)."""
    if k.client == "confluent":
        from detector.sources.kafka_confluent import ConfluentLogSource
        return ConfluentLogSource(k, on_assigned, on_revoked)
    return KafkaLogSource(k, on_assigned, on_revoked)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, assigned: Rebalance, revoked: Rebalance) -> None:
        self.assigned, self.revoked = assigned, revoked

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned(set(assigned))

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.revoked(set(revoked))


class KafkaLogSource:
    """The consumer group over `kafka.topics` with kafka-python, auto-commit off.

    `connect` raises `KafkaError` when a topic is missing; `poll` returns records by partition;
    `commit` takes the next offset to read per partition.
    """

    def __init__(self, k: KafkaConfig, on_assigned: Rebalance, on_revoked: Rebalance) -> None:
        self.k = k
        self._listener = _Listener(on_assigned, on_revoked)
        self._consumer: KafkaConsumer | None = None

    @property
    def connected(self) -> bool:
        return self._consumer is not None

    def connect(self) -> None:
        k = self.k
        consumer = KafkaConsumer(
            **k.client_options(), group_id=k.group_id, enable_auto_commit=False,
            auto_offset_reset=k.auto_offset_reset, session_timeout_ms=k.session_timeout_ms,
            heartbeat_interval_ms=k.heartbeat_interval_ms,
            max_poll_interval_ms=k.max_poll_interval_ms, fetch_max_wait_ms=100)
        missing = [t for t in k.topics if t not in (consumer.topics() or set())]
        if missing:
            consumer.close()
            raise KafkaError(f"topic(s) {', '.join(missing)} not found")
        consumer.subscribe(k.topics, listener=self._listener)
        self._consumer = consumer
        log.info("connected to %s, subscribed to %s", k.bootstrap_servers, k.topics)

    def poll(self) -> Records:
        assert self._consumer is not None
        batch: Records = self._consumer.poll(timeout_ms=self.k.poll_timeout_ms,
                                             max_records=self.k.poll_max_records)
        return batch

    def commit(self, offsets: dict[Partition, int]) -> None:
        assert self._consumer is not None
        self._consumer.commit({TopicPartition(*tp): OffsetAndMetadata(o, "", -1)
                               for tp, o in offsets.items()})

    def coordinator_unknown(self) -> bool:
        """kafka-python keeps retrying a lost group coordinator inside `poll`; this tells."""
        assert self._consumer is not None
        return bool(self._consumer._coordinator.coordinator_unknown())

    def lag(self, partitions: set[Partition]) -> dict[Partition, int]:
        """High watermark minus position, for the partitions that know both."""
        out: dict[Partition, int] = {}
        if self._consumer is None:
            return out
        for p in partitions:
            tp = TopicPartition(*p)
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            try:
                pos = self._consumer.position(tp, timeout_ms=100)
            except (KafkaError, AssertionError):
                continue
            if pos is not None:
                out[p] = high - pos
        return out

    def partitions_of(self, topic: str) -> int:
        assert self._consumer is not None
        return len(self._consumer.partitions_for_topic(topic) or ())

    def close(self) -> None:
        """Leave the group without committing anything new."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close(autocommit=False)
