"""Durable intake: every accepted alert is on disk (SQLite WAL, synchronous=FULL) before the
webhook answers 200, and stays marked unprocessed until the engine has finished with it, so a
crash after the answer loses nothing. The web process adds; the engine process reads what is new
and marks it processed (SQLite serialises the two writers; each waits up to `busy_timeout`)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import orjson

from remediation.group_commit import GroupCommitter
from remediation.trigger import Trigger

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received REAL NOT NULL,
    episode TEXT NOT NULL,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL,
    processed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS inbox_todo ON inbox (processed, id);
"""


class Inbox:
    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=30000")  # the other process may hold the write lock
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._writer = GroupCommitter(self._db, self._lock, "vigil-inbox")

    async def aadd(self, triggers: list[Trigger]) -> list[int]:
        """`add` through group commit: concurrent requests share one fsync."""
        rows: list[tuple[str, str, str]] = [
            (t.episode, str(t.status), orjson.dumps(t.to_dict()).decode()) for t in triggers]
        ids: list[int] = await self._writer.submit(lambda: self._insert(rows))
        return ids

    def _insert(self, rows: list[tuple[str, str, str]]) -> list[int]:
        now = time.time()
        ids = []
        for episode, status, trig in rows:
            cur = self._db.execute(
                "INSERT INTO inbox (received, episode, status, trigger) VALUES (?, ?, ?, ?)",
                (now, episode, status, trig))
            ids.append(int(cur.lastrowid or 0))
        return ids

    def add(self, triggers: list[Trigger]) -> list[int]:
        """Store triggers in one transaction; their ids, in order."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            ids = []
            for t in triggers:
                cur = self._db.execute(
                    "INSERT INTO inbox (received, episode, status, trigger) VALUES (?, ?, ?, ?)",
                    (now, t.episode, t.status, orjson.dumps(t.to_dict()).decode()))
                ids.append(int(cur.lastrowid or 0))
            self._db.execute("COMMIT")
        return ids

    def done(self, ids: list[int]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("UPDATE inbox SET processed = 1 WHERE id = ?", [(i,) for i in ids])
            self._db.execute("COMMIT")

    def pending(self) -> list[tuple[int, Trigger]]:
        return self.unprocessed(0, 1 << 62)

    def unprocessed(self, after: int, limit: int) -> list[tuple[int, Trigger]]:
        """Unprocessed alerts with ids above `after`, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, trigger FROM inbox WHERE processed = 0 AND id > ? "
                                    "ORDER BY id LIMIT ?", (after, limit)).fetchall()
        return [(int(i), Trigger.from_dict(orjson.loads(t))) for i, t in rows]

    def pending_count(self) -> int:
        with self._lock:
            return int(self._db.execute(
                "SELECT COUNT(*) FROM inbox WHERE processed = 0").fetchone()[0])

    def episodes(self, limit: int = 500) -> list[dict[str, object]]:
        """The latest state of each alert episode seen (for GET /incidents)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT episode, status, trigger, MAX(received), COUNT(*) FROM inbox "
                "GROUP BY episode ORDER BY MAX(id) DESC LIMIT ?", (limit,)).fetchall()
        out = []
        for episode, _status, trig, received, deliveries in rows:
            t = orjson.loads(trig)
            out.append({"episode": episode, "status": t["status"], "fingerprint": t["fingerprint"],
                        "labels": t["labels"], "last_received": received,
                        "deliveries": deliveries})
        return out

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0])

    def close(self) -> None:
        self._writer.close()
        with self._lock:
            self._db.close()
