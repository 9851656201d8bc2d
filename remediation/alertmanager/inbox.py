"""Durable intake: every accepted alert is on disk (SQLite WAL, synchronous=FULL) before the
webhook answers 200. Only the web process writes this database; the engine process reads it and
keeps what it has finished in its own `Progress` file, so the two never wait for each other's
write lock and a crash of either loses nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson

from remediation.group_commit import GroupCommitter
from remediation.private import connect_private
from remediation.trigger import Trigger

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received REAL NOT NULL,
    episode TEXT NOT NULL,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_received ON inbox (received);
"""


class Inbox:
    def __init__(self, path: Path | str) -> None:
        self._lock = threading.Lock()
        self._db = connect_private(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._writer = GroupCommitter(self._db, self._lock, "vigil-inbox")

    async def aadd(self, triggers: list[Trigger]) -> list[int]:
        """`add` through group commit: concurrent requests share one fsync."""
        rows = [(t.episode, str(t.status), orjson.dumps(t.to_dict()).decode()) for t in triggers]
        ids: list[int] = await self._writer.submit(lambda: self._insert(rows))
        return ids

    def add(self, triggers: list[Trigger]) -> list[int]:
        """Store triggers in one transaction; their ids, in order."""
        rows = [(t.episode, str(t.status), orjson.dumps(t.to_dict()).decode()) for t in triggers]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            ids = self._insert(rows)
            self._db.execute("COMMIT")
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

    def after(self, last: int, limit: int) -> list[tuple[int, Trigger | str]]:
        """Alerts with ids above `last`, oldest first (ids grow in commit order: one writer);
        a row that no longer reads as a trigger (a damaged file) comes back as the reason."""
        with self._lock:
            rows = self._db.execute("SELECT id, trigger FROM inbox WHERE id > ? ORDER BY id "
                                    "LIMIT ?", (last, limit)).fetchall()
        out: list[tuple[int, Trigger | str]] = []
        for i, t in rows:
            try:
                out.append((int(i), Trigger.from_dict(orjson.loads(t))))
            except (ValueError, TypeError, KeyError) as exc:
                out.append((int(i), f"{type(exc).__name__}: {exc}"))
        return out

    def last_id(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM inbox").fetchone()[0])

    def prune(self, upto_id: int, before: float) -> int:
        """Forget alerts the engine has finished (ids <= `upto_id`) received before `before`."""
        with self._lock:
            cur = self._db.execute("DELETE FROM inbox WHERE id <= ? AND received < ?",
                                   (upto_id, before))
            return int(cur.rowcount)

    def episodes(self, limit: int = 500) -> list[dict[str, object]]:
        """The latest state of each alert episode seen (for GET /incidents)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT episode, trigger, MAX(received), COUNT(*) FROM inbox "
                "GROUP BY episode ORDER BY MAX(id) DESC LIMIT ?", (limit,)).fetchall()
        out = []
        for episode, trig, received, deliveries in rows:
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
