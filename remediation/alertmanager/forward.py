"""`vigil serve --triggers-topic`: the receiver runs no engine; it hands each accepted alert's
trigger to a `Forwarder` (the detector's Kafka producer, wired in by the command line, so this
package imports no Kafka client) and marks it finished in the inbox's `Progress` only once the
forwarder returned, i.e. once the broker acknowledged every record of the batch.

At least once: alerts are read from the durable inbox in id order; a batch that fails (the broker
down, a timeout) is retried with backoff, whole, until it is acknowledged, and a crash before
that re-sends it from the inbox on restart. A record may thus reach the topic more than once;
`vigil remediate`'s claims per (episode, rule, rung) make that one action.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from remediation.alertmanager.inbox import Inbox
from remediation.alertmanager.progress import Progress, progress_path
from remediation.alertmanager.settings import ServeConfig
from remediation.trigger import Trigger

log = logging.getLogger("vigil.serve")

_READ_BATCH = 500
_POLL_S = 0.02  # idle: look for new alerts this often
_PROBE_S = 1.0  # idle: ask the forwarder about its health this often
_RETRY_MIN_S, _RETRY_MAX_S = 0.2, 5.0
_STOP_WAIT_S = 5.0  # on stop, how long a send in flight may finish (unfinished: redone)


class Forwarder(Protocol):
    """Where triggers go instead of an engine. Called from a worker thread, one call at a time."""

    def send(self, triggers: list[Trigger]) -> None:
        """Deliver every trigger, returning only once all are acknowledged; raise otherwise."""

    def probe(self) -> None:
        """Refresh the health `ready` reports (may block briefly); never raises."""

    def ready(self) -> tuple[bool, str]:
        """(healthy, detail), cheap: what the last send or probe found."""

    def close(self) -> None: ...


class ForwardWorker:
    """The receiver's worker in forwarding mode: the `EngineProcess` interface (start, stop,
    alive, watermark, finished_above) over a task in the web process's event loop."""

    process = None  # no engine process for the supervisor to restart

    def __init__(self, settings: ServeConfig, forwarder: Forwarder) -> None:
        self.settings = settings
        self.forwarder = forwarder
        self.progress: Progress | None = None
        self.inbox: Inbox | None = None
        self.watermark = 0  # every inbox id at or below it is on the topic
        self.finished_above = 0  # always 0: batches finish in order
        self.forwarded = 0  # triggers acknowledged since start (counting re-sends)
        self.failures = 0  # failed attempts since start
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self.inbox = Inbox(self.settings.inbox_db)
        self.progress = Progress(progress_path(self.settings.inbox_db))
        self.watermark = self.progress.watermark
        self._stopping.clear()
        self._task = asyncio.create_task(self._run())

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done() and self.forwarder.ready()[0]

    def health(self) -> str:
        return self.forwarder.ready()[1]

    async def answer(self, audit_id: int, approve: bool, timeout_s: float = 10.0) -> bool:
        raise RuntimeError("this receiver runs no engine (it forwards alerts to the triggers "
                           "topic): approvals belong to the engines of `vigil remediate`")

    async def stop(self, timeout_s: float = _STOP_WAIT_S) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout_s)
            except TimeoutError:  # a send still waiting on the broker: its batch is redone
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        await asyncio.to_thread(self.forwarder.close)
        if self.inbox is not None:
            self.inbox.close()
        if self.progress is not None:
            self.progress.close()

    async def _run(self) -> None:
        assert self.inbox is not None and self.progress is not None
        inbox, progress = self.inbox, self.progress
        delay = _RETRY_MIN_S
        idle = _PROBE_S  # the first idle turn probes: /readyz knows at once
        while not self._stopping.is_set():
            rows = await asyncio.to_thread(inbox.after, progress.watermark, _READ_BATCH)
            if not rows:
                idle += _POLL_S
                if idle >= _PROBE_S:
                    idle = 0.0
                    await asyncio.to_thread(self.forwarder.probe)
                await self._sleep(_POLL_S)
                continue
            idle = 0.0
            triggers: list[Trigger] = []
            for i, trigger in rows:
                if isinstance(trigger, str):  # never retried forever: logged and skipped
                    log.error("inbox row %d is unreadable (%s); skipped", i, trigger)
                else:
                    triggers.append(trigger)
            try:
                if triggers:
                    await asyncio.to_thread(self.forwarder.send, triggers)
            except Exception as exc:  # the broker down or slow: the batch stays, retried whole
                self.failures += 1
                log.warning("forwarding %d alert(s) failed (%s: %s); retrying in %.1fs",
                            len(triggers), type(exc).__name__, exc, delay)
                await self._sleep(delay)
                delay = min(_RETRY_MAX_S, delay * 2)
                continue
            delay = _RETRY_MIN_S
            self.forwarded += len(triggers)
            await asyncio.to_thread(progress.save, [], rows[-1][0])
            self.watermark = progress.watermark

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
