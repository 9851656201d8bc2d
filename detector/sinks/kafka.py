"""Outcomes to Kafka topics: anomalies keyed by service, incident changes keyed by their
root-cause target, dead letters with their original bytes as the value and the reason, detail
and source in headers (`vigil.reason`, `vigil.detail`, `vigil.source.topic|partition|offset`),
and, with a triggers topic, each incident change's remediation trigger keyed by its target
(`incidents/triggers.py` `trigger_message`). Nothing is sure to be on the broker until `flush`
returns.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import orjson
from kafka import KafkaProducer

from detector.config import KafkaConfig
from detector.incidents.triggers import trigger_message

if TYPE_CHECKING:
    from detector.pipeline import BatchOutcome

log = logging.getLogger("vigil.consume")


class KafkaOutputs:
    """One producer for every output topic; `triggers_topic` (None: none) also gets each
    incident change as a remediation trigger, for `vigil remediate`."""

    def __init__(self, k: KafkaConfig, triggers_topic: str | None = None) -> None:
        self.k = k
        self.triggers_topic = triggers_topic
        self._producer = KafkaProducer(**k.client_options(), acks="all", linger_ms=5, retries=5)

    def write(self, topic: str, partition: int, out: BatchOutcome,
              keys: dict[int, bytes | None] | None = None) -> None:
        """Send what one partition's batch produced; `keys`: the source records' keys by offset
        (a dead letter keeps its record's key)."""
        k, send = self.k, self._producer.send
        for a in out.anomalies:
            send(k.anomalies_topic, key=a.service.encode(), value=orjson.dumps(a.to_dict()))
        for inc in out.incidents:
            record = inc.to_dict()
            send(k.incidents_topic, key=inc.service.encode(), value=orjson.dumps(record))
            if self.triggers_topic is not None:
                try:
                    target, trigger = trigger_message(record)
                except (KeyError, TypeError, ValueError):  # a bug, not a reason to stop
                    log.exception("incident %s has no trigger", record.get("id"))
                    continue
                send(self.triggers_topic, key=target, value=orjson.dumps(trigger))
        for d in out.dead:
            offset = "" if d.position is None else str(d.position)
            headers = [("vigil.reason", d.reason.encode()),
                       ("vigil.detail", d.detail[:1000].encode()),
                       ("vigil.source.topic", topic.encode()),
                       ("vigil.source.partition", str(partition).encode()),
                       ("vigil.source.offset", offset.encode())]
            key = (keys or {}).get(d.position) if d.position is not None else None
            send(k.dead_letter_topic, key=key, value=d.raw, headers=headers)

    def flush(self, timeout: float = 30.0) -> None:
        self._producer.flush(timeout=timeout)

    def close(self, timeout: float = 1.0) -> None:
        self._producer.close(timeout=timeout)
