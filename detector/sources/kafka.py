"""Log records from a Kafka consumer group (kafka-python): connect, poll, commit, lag. Reading
only: what is done with the records, and when offsets may be committed, is the runtime's
(`runtime/consume.py`). Rebalances are handed to the runtime's callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from detector.config import KafkaConfig

log = logging.getLogger("vigil.consume")

Records = dict[TopicPartition, list[Any]]  # kafka-python ConsumerRecords by partition


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, assigned: Callable[[set[TopicPartition]], None],
                 revoked: Callable[[set[TopicPartition]], None]) -> None:
        self.assigned, self.revoked = assigned, revoked

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned(set(assigned))

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.revoked(set(revoked))


class KafkaLogSource:
    """The consumer group over `kafka.topics`, auto-commit off.

    `connect` raises `KafkaError` when a topic is missing; `poll` returns records by partition;
    `commit` takes the next offset to read per partition.
    """

    def __init__(self, k: KafkaConfig, on_assigned: Callable[[set[TopicPartition]], None],
                 on_revoked: Callable[[set[TopicPartition]], None]) -> None:
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

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        self._consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})

    def coordinator_unknown(self) -> bool:
        """kafka-python keeps retrying a lost group coordinator inside `poll`; this tells."""
        assert self._consumer is not None
        return bool(self._consumer._coordinator.coordinator_unknown())

    def lag(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """High watermark minus position, for the partitions that know both."""
        out: dict[TopicPartition, int] = {}
        if self._consumer is None:
            return out
        for tp in partitions:
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            try:
                pos = self._consumer.position(tp, timeout_ms=100)
            except (KafkaError, AssertionError):
                continue
            if pos is not None:
                out[tp] = high - pos
        return out

    def close(self) -> None:
        """Leave the group without committing anything new."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close(autocommit=False)
