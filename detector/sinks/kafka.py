"""Outcomes to Kafka topics: anomalies keyed by service, incident changes keyed by their
root-cause target, dead letters with their original bytes as the value and the reason, detail
and source in headers (`vigil.reason`, `vigil.detail`, `vigil.source.topic|partition|offset`),
and, with a triggers topic, each incident change's remediation trigger keyed by its target
(`incidents/triggers.py` `trigger_message`); `KafkaTriggerForwarder` is `vigil serve
--triggers-topic`'s producer of alerts' triggers to that topic. Nothing is sure to be on the
broker until `flush` returns.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import orjson
from kafka import KafkaProducer

from detector.config import KafkaConfig
from detector.incidents.triggers import trigger_key, trigger_message
from remediation.trigger import Trigger

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


class KafkaTriggerForwarder:
    """The `Forwarder` of `vigil serve --triggers-topic`: each accepted alert's trigger to
    `topic` as `Trigger.to_dict()` JSON (what `vigil remediate` reads), keyed by its target
    (`trigger_key`, the detector's rule), through an idempotent producer (acks=all). `send`
    returns only once the broker acknowledged every record; on any failure the producer is
    dropped (a new one is made on the next call) and the error raised, so the receiver keeps
    the alerts and sends them again."""

    def __init__(self, k: KafkaConfig, topic: str, timeout_s: float = 10.0) -> None:
        self.k = k
        self.topic = topic
        self.timeout_s = timeout_s
        self._producer: KafkaProducer | None = None
        self._state: tuple[bool, str] = (False, "connecting")

    def _connect(self) -> KafkaProducer:
        if self._producer is None:
            ms = int(self.timeout_s * 1000)
            self._producer = KafkaProducer(
                **self.k.client_options(), acks="all", enable_idempotence=True, linger_ms=2,
                max_block_ms=ms, bootstrap_timeout_ms=ms, request_timeout_ms=ms,
                delivery_timeout_ms=ms + 2000,
                reconnect_backoff_max_ms=2000)
        return self._producer

    def send(self, triggers: list[Trigger]) -> None:
        try:
            producer = self._connect()
            futures = [producer.send(self.topic, key=trigger_key(t), value=orjson.dumps(t.to_dict()))
                       for t in triggers]
            producer.flush(timeout=self.timeout_s + 2)
            for f in futures:
                f.get(timeout=0.1)  # raises what the broker answered (or a timeout)
        except Exception as exc:
            self._fail(exc)
            raise
        self._state = (True, f"connected; last {len(triggers)} trigger(s) acknowledged")

    def probe(self) -> None:
        """Between sends: healthy when a producer was just made (it bootstrapped against the
        brokers) or holds a connection to a broker; one that holds none is dropped, so the next
        probe bootstraps again and finds out."""
        try:
            fresh = self._producer is None
            producer = self._connect()
            if fresh or _connected(producer):
                if not self._state[0]:
                    self._state = (True, "connected")
                return
            self._fail(ConnectionError("not connected to any broker"))
        except Exception as exc:
            self._fail(exc)

    def ready(self) -> tuple[bool, str]:
        return self._state

    def _fail(self, exc: BaseException) -> None:
        self._state = (False, f"{type(exc).__name__}: {exc}"[:300])
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:  # closing a broken producer: nothing more to do
                log.debug("closing the triggers producer", exc_info=True)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=2)
            self._producer = None


def _connected(producer: KafkaProducer) -> bool:
    """Whether the producer holds a live connection to a broker of its metadata (kafka-python
    has no public call for it: its client's, read defensively; unknown counts as connected)."""
    client = getattr(getattr(producer, "_sender", None), "_client", None)
    if client is None or not hasattr(client, "connected"):
        return True
    brokers = client.cluster.brokers()
    ids = [getattr(b, "node_id", getattr(b, "nodeId", None)) for b in brokers]
    return bool(producer.bootstrap_connected()) or any(client.connected(i) for i in ids)
