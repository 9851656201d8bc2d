"""Group commit (SQLite, or any database given a `transact`): callers on an event loop queue
small write operations; a writer thread runs whatever is queued in one transaction and wakes the
callers once it is on disk, so durability costs one fsync per wave of work instead of one per
record."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

_BATCH = 5000


class GroupCommitter:
    """`await submit(op)` runs `op()` (which uses `db`) inside a batched transaction and returns
    its result (or raises its error) after the commit.

    `transact(ops)`, if given, replaces SQLite's BEGIN IMMEDIATE ... COMMIT: it runs the ops in
    one transaction of its own database and returns their results (or raises for all of them)."""

    def __init__(self, db: sqlite3.Connection | None, lock: threading.Lock, name: str,
                 transact: Callable[[list[Callable[[], Any]]], list[Any]] | None = None) -> None:
        self._db = db
        self._lock = lock
        self._name = name
        self._transact = transact
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = \
            queue.SimpleQueue()
        self._writer: threading.Thread | None = None

    async def submit(self, op: Callable[[], Any]) -> Any:
        if self._writer is None:
            self._writer = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._writer.start()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put((op, fut))
        return await fut

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            batch = []
            stop = item is None
            # Gather what is queued, and what arrives within a millisecond of the queue running
            # dry: one fsync then covers a whole wave.
            while item is not None:
                batch.append(item)
                if len(batch) >= _BATCH:
                    break
                try:
                    item = self._queue.get(timeout=0.001)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
            if batch:
                self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[Callable[[], Any], asyncio.Future[Any]]]) -> None:
        results: list[Any] = []
        if self._transact is not None:
            try:
                results = self._transact([op for op, _ in batch])
            except Exception as exc:
                results = [exc] * len(batch)
        elif self._db is not None:
            with self._lock:
                try:
                    self._db.execute("BEGIN IMMEDIATE")  # the write lock now: others wait
                    for op, _ in batch:
                        results.append(op())
                    self._db.execute("COMMIT")
                except Exception as exc:  # report to every waiter, keep the writer alive
                    self._db.execute("ROLLBACK")
                    results = [exc] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for (_, fut), res in zip(batch, results, strict=True):
            by_loop.setdefault(fut.get_loop(), []).append((fut, res))
        for loop, pairs in by_loop.items():  # one wake-up per loop per batch
            loop.call_soon_threadsafe(_settle_all, pairs)


def _settle_all(pairs: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for fut, result in pairs:
        if fut.done():
            continue
        if isinstance(result, Exception):
            fut.set_exception(result)
        else:
            fut.set_result(result)
