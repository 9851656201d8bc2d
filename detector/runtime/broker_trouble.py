"""What a Kafka runtime (`vigil consume`, `vigil remediate`) does when the broker misbehaves:
notice a group coordinator that stays unreachable, and mark, count and drop broken clients.
The runtime then reconnects with its backoff; uncommitted records come again (at least once)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from kafka.errors import KafkaError


class _State(Protocol):
    connected: bool
    last_error: str


class BrokerTrouble:
    """`watch(source)` after every poll; `broken(exc, *clients)` when a call raised.

    kafka-python keeps retrying a lost broker inside `poll`: `watch` notices the unknown
    coordinator, reports not ready, and after two session timeouts raises `KafkaError`, so the
    runtime starts over (new clients, topics checked again: a broker that lost its state comes
    back without them)."""

    def __init__(self, state: _State, metrics: Any, session_timeout_ms: int,
                 clock: Callable[[], float], log: logging.Logger) -> None:
        self.state = state
        self.metrics = metrics  # .broker_errors (labelled by kind) and .ready
        self.session_timeout_ms = session_timeout_ms
        self.clock = clock
        self.log = log
        self._lost_since: float | None = None

    def watch(self, source: Any) -> None:
        if not source.coordinator_unknown():
            self._lost_since = None
            self.state.connected = True
            return
        now = self.clock()
        if self._lost_since is None:
            self._lost_since = now
            self.metrics.broker_errors.labels(kind="coordinator_lost").inc()
        self.state.connected = False
        self.state.last_error = f"group coordinator unreachable for {now - self._lost_since:.0f}s"
        if now - self._lost_since > 2 * self.session_timeout_ms / 1000:
            self._lost_since = None
            raise KafkaError(self.state.last_error)

    def broken(self, exc: BaseException, source: Any, outputs: Any) -> None:
        """Count and report `exc`, then close the clients (quietly: they are broken)."""
        kind = type(exc).__name__
        self.metrics.broker_errors.labels(kind=kind).inc()
        self.state.connected = False
        self.state.last_error = f"{kind}: {exc}"
        self.metrics.ready.set(0)
        self.log.warning("broker trouble (%s); retrying", self.state.last_error)
        try:
            source.close()
            if outputs is not None:
                outputs.close(timeout=1)
        except Exception:  # closing a broken client must not stop the retry loop
            self.log.debug("close failed", exc_info=True)


def poll_until(stop: threading.Event, runtime: Any, reconnect: Any) -> None:
    """The loop of a Kafka runtime: (re)connect when not connected, poll; a broker error is
    handed to `runtime._broken` and retried after `reconnect.delay(consecutive failures)`, never
    fatal. `runtime` has `source.connected`, `connect()`, `poll_once()` and `_broken(exc)`."""
    failures = 0  # consecutive: the reconnect delay grows with them
    while not stop.is_set():
        try:
            if not runtime.source.connected:
                runtime.connect()
                failures = 0
            runtime.poll_once()
        except (KafkaError, OSError) as exc:
            runtime._broken(exc)
            stop.wait(reconnect.delay(failures))
            failures += 1
