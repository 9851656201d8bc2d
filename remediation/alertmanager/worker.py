"""The engine process of `vigil serve`. It reads new alerts from the durable inbox, runs each
through the remediation engine (policy, guards, hooks, audit) and marks it processed once
everything it started has finished. Apart from the web process, the engine never delays a
webhook answer, and the two use both cores.

One pipe joins them (pickled tuples; both ends are Vigil):
  web -> engine: ("answer", request_id, audit_id, approve), ("stop",)
  engine -> web: ("ready", watermark, finished_above), ("progress", watermark, finished_above),
                 ("answered", request_id, ok), ("failed", reason)
Progress: every inbox id at or below the watermark is finished, plus `finished_above` ids past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
from multiprocessing.connection import Connection
from typing import Any

from remediation.alertmanager.inbox import Inbox
from remediation.alertmanager.progress import Progress, progress_path
from remediation.alertmanager.settings import ServeConfig
from remediation.audit_log import AuditUnavailable, open_audit
from remediation.engine import Engine
from remediation.policy import load_policy

log = logging.getLogger("vigil.serve")

_READ_BATCH = 1000
_POLL_S = 0.01  # idle: look for new alerts this often
_FLUSH_S = 0.05  # mark finished alerts processed this often
_GRACE_S = 5.0  # on stop, how long ladders in flight may finish before they are cancelled


def run(settings_json: str, conn: Connection) -> None:
    """The engine process's entry point."""
    settings = ServeConfig.model_validate_json(settings_json)
    # Under a storm the engine has a backlog and the webhook has callers waiting on it: the
    # scheduler should favour the callers. (Work, not correctness, is what waits.)
    with contextlib.suppress(OSError):
        os.nice(settings.engine_nice)
    try:
        asyncio.run(_Worker(settings, conn).main())
    except Exception as exc:  # tell the web process why, then die (it restarts us)
        with contextlib.suppress(OSError):
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise


class _Worker:
    def __init__(self, settings: ServeConfig, conn: Connection) -> None:
        self.settings = settings
        self.conn = conn
        self.stopping = asyncio.Event()
        self.inflight: dict[int, asyncio.Task[None]] = {}
        self.finished: list[int] = []

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        self.inbox = Inbox(s.inbox_db)
        self.progress = Progress(progress_path(s.inbox_db))
        self.read_upto = self.progress.watermark
        self.store = open_audit(s.audit())
        self.engine = Engine(load_policy(s.policy_path()), self.store,
                             settings=s.engine)
        # Steps a killed engine process left claimed and unfinished are resolved now, whether or
        # not their alerts come again (interrupted, then retried or escalated).
        resumed = self.engine.resume_interrupted()
        if resumed:
            log.warning("%d step(s) were interrupted by a stop of the engine; resolving them",
                        resumed)
        loop.add_reader(self.conn.fileno(), self._on_message)
        self.conn.send(("ready", self.progress.watermark, len(self.progress.finished)))
        flusher = asyncio.create_task(self._flush_loop())
        try:
            await self._read_loop()
        finally:
            loop.remove_reader(self.conn.fileno())
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            if self.inflight:  # a grace period for hooks in flight
                await asyncio.wait(list(self.inflight.values()), timeout=_GRACE_S)
            for task in self.inflight.values():  # unfinished: stays unprocessed, redone on start
                task.cancel()
            await asyncio.gather(*self.inflight.values(), return_exceptions=True)
            await self._flush()
            await self.engine.drain()
            self.inbox.close()
            self.progress.close()
            self.store.close()

    async def _read_loop(self) -> None:
        while not self.stopping.is_set():
            room = min(_READ_BATCH, self.settings.queue_size - len(self.inflight))
            rows = await asyncio.to_thread(self.inbox.after, self.read_upto, room) if room > 0 \
                else []
            if rows:
                self.read_upto = rows[-1][0]
            for i, trigger in self.progress.pending(rows):
                if isinstance(trigger, str):  # never retried forever: logged and skipped
                    log.error("inbox row %d is unreadable (%s); skipped", i, trigger)
                    self.finished.append(i)
                    continue
                task = asyncio.create_task(self.engine.process(trigger))
                self.inflight[i] = task
                task.add_done_callback(functools.partial(self._finished, i))
            if len(rows) < _READ_BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), _POLL_S)

    def _finished(self, inbox_id: int, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and isinstance(task.exception(), AuditUnavailable):
            # Its decisions are not all in the audit: it stays unfinished (in flight, so the
            # watermark stays below it) and the process stops; restarted, it redoes it.
            log.error("alert %d: %s; stopping the engine process", inbox_id, task.exception())
            self.stopping.set()
            return
        self.inflight.pop(inbox_id, None)
        if not task.cancelled():
            self.finished.append(inbox_id)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(_FLUSH_S)
            await self._flush()

    async def _flush(self) -> None:
        # Everything read and not in flight is finished: the watermark is just below the oldest
        # alert still in flight.
        mark = min(self.inflight) - 1 if self.inflight else self.read_upto
        if not self.finished and mark == self.progress.watermark:
            return
        ids, self.finished = self.finished, []
        await asyncio.to_thread(self.progress.save, ids, mark)
        self._send(("progress", self.progress.watermark, len(self.progress.finished)))

    def _send(self, msg: tuple[Any, ...]) -> None:
        try:
            self.conn.send(msg)
        except OSError:  # the web process is gone
            self.stopping.set()

    def _on_message(self) -> None:
        try:
            while self.conn.poll():
                msg = self.conn.recv()
                if msg[0] == "answer":
                    _, request_id, audit_id, yes = msg
                    ok = self.engine.approve(audit_id) if yes else self.engine.reject(audit_id)
                    self._send(("answered", request_id, ok))
                elif msg[0] == "stop":
                    self.stopping.set()
        except (EOFError, OSError):  # the web process is gone: finish up and exit
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.stopping.set()


class EngineProcess:
    """The web process's handle on the engine process: start, restart, stop, approvals, and the
    count of alerts it has finished."""

    def __init__(self, settings: ServeConfig) -> None:
        self.settings = settings
        self.process: multiprocessing.process.BaseProcess | None = None
        self.conn: Connection | None = None
        self.ready = False
        self.watermark = 0  # every inbox id at or below it is finished
        self.finished_above = 0  # and these many past it
        self.last_failure = ""
        self._answers: dict[int, asyncio.Future[bool]] = {}
        self._requests = 0
        self._ready: asyncio.Future[None] | None = None

    async def start(self, timeout_s: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        parent, child = ctx.Pipe()
        self.process = ctx.Process(target=run, args=(self.settings.for_engine(), child),
                                   name="vigil-engine", daemon=True)
        self.process.start()
        child.close()
        self.conn = parent
        self._ready = loop.create_future()
        loop.add_reader(parent.fileno(), self._on_message)
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout_s)
        except TimeoutError as exc:
            raise RuntimeError(f"the engine process did not start: {self.last_failure}") from exc

    @property
    def alive(self) -> bool:
        return self.ready and self.process is not None and self.process.is_alive()

    async def answer(self, audit_id: int, approve: bool, timeout_s: float = 10.0) -> bool:
        """Approve or reject a pending approval; False if there is none with that id."""
        if not self.alive or self.conn is None:
            raise RuntimeError("the engine process is not running")
        self._requests += 1
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._answers[self._requests] = fut
        try:
            self.conn.send(("answer", self._requests, audit_id, approve))
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._answers.pop(self._requests, None)

    async def stop(self, timeout_s: float = 30.0) -> None:
        if self.process is None or self.conn is None:
            return
        with contextlib.suppress(OSError):
            self.conn.send(("stop",))
        await asyncio.to_thread(self.process.join, timeout_s)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join, 5)
        self._close()

    def _close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.conn.close()
            self.conn = None
        self.ready = False

    def _on_message(self) -> None:
        assert self.conn is not None
        try:
            while self.conn.poll():
                msg = self.conn.recv()
                kind = msg[0]
                if kind in ("progress", "ready"):
                    self.watermark, self.finished_above = msg[1], msg[2]
                elif kind == "answered":
                    fut = self._answers.get(msg[1])
                    if fut is not None and not fut.done():
                        fut.set_result(bool(msg[2]))
                if kind == "ready":
                    self.ready = True
                    if self._ready is not None and not self._ready.done():
                        self._ready.set_result(None)
                elif kind == "failed":
                    self.last_failure = msg[1]
                    log.error("engine process failed: %s", msg[1])
        except (EOFError, OSError):  # the engine process exited; the supervisor restarts it
            self._close()
