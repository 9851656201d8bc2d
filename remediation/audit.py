"""The audit: every remediation decision as a row in SQLite (WAL), and the claims that keep one
trigger episode from acting twice on one rung, across restarts."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    episode TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    source TEXT NOT NULL,
    rule TEXT,
    rung INTEGER,
    rung_name TEXT,
    hook TEXT,
    target TEXT,
    params TEXT,
    verdict TEXT NOT NULL,
    guard TEXT,
    detail TEXT,
    output TEXT,
    duration_s REAL,
    trigger TEXT
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts);
CREATE INDEX IF NOT EXISTS audit_target ON audit (target, ts);
CREATE INDEX IF NOT EXISTS audit_episode ON audit (episode);
CREATE TABLE IF NOT EXISTS claims (
    episode TEXT NOT NULL,
    rule TEXT NOT NULL,
    rung INTEGER NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (episode, rule, rung)
);
"""
_COLUMNS = ("id", "ts", "episode", "fingerprint", "source", "rule", "rung", "rung_name", "hook",
            "target", "params", "verdict", "guard", "detail", "output", "duration_s", "trigger")


@dataclass(slots=True)
class AuditRecord:
    episode: str
    fingerprint: str
    source: str
    verdict: str
    rule: str | None = None
    rung: int | None = None
    rung_name: str | None = None
    hook: str | None = None
    target: str | None = None
    params: dict[str, Any] | None = None  # already redacted
    guard: str | None = None  # the guard that suppressed it
    detail: str = ""
    output: str = ""
    duration_s: float | None = None
    trigger: dict[str, Any] | None = None
    ts: float = 0.0
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _COLUMNS}


class AuditStore:
    """SQLite in WAL mode; `synchronous=FULL` by default, so a record is on disk when `add`
    returns. Safe to share between threads (one connection, one lock).

    >>> store = AuditStore(":memory:")
    >>> store.add(AuditRecord("e1", "f", "manual", "dry_run", rule="r", rung=0, target="cart"))
    1
    >>> store.claim("e1", "r", 0), store.claim("e1", "r", 0)
    (True, False)
    >>> [r.verdict for r in store.query(target="cart")]
    ['dry_run']
    """

    def __init__(self, path: Path | str, synchronous: str = "FULL") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, EXTRA or NORMAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, rec: AuditRecord) -> int:
        rec.ts = rec.ts or time.time()
        row = (rec.ts, rec.episode, rec.fingerprint, rec.source, rec.rule, rec.rung, rec.rung_name,
               rec.hook, rec.target, _dump(rec.params), rec.verdict, rec.guard, rec.detail,
               rec.output, rec.duration_s, _dump(rec.trigger))
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO audit (ts, episode, fingerprint, source, rule, rung, rung_name, hook, "
                "target, params, verdict, guard, detail, output, duration_s, trigger) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        rec.id = int(cur.lastrowid or 0)
        return rec.id

    def add_many(self, recs: list[AuditRecord]) -> None:
        """Several records in one transaction (one fsync)."""
        now = time.time()
        rows = [(r.ts or now, r.episode, r.fingerprint, r.source, r.rule, r.rung, r.rung_name,
                 r.hook, r.target, _dump(r.params), r.verdict, r.guard, r.detail, r.output,
                 r.duration_s, _dump(r.trigger)) for r in recs]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO audit (ts, episode, fingerprint, source, rule, rung, rung_name, hook, "
                "target, params, verdict, guard, detail, output, duration_s, trigger) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def claim(self, episode: str, rule: str, rung: int) -> bool:
        """True the first time (episode, rule, rung) is claimed, ever; False after, even after a
        restart: the same alert episode acts at most once per rung."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO claims (episode, rule, rung, ts) VALUES (?, ?, ?, ?)",
                (episode, rule, rung, time.time()))
        return cur.rowcount == 1

    def claimed(self, episode: str, rule: str) -> list[int]:
        with self._lock:
            rows = self._db.execute("SELECT rung FROM claims WHERE episode = ? AND rule = ? "
                                    "ORDER BY rung", (episode, rule)).fetchall()
        return [int(r[0]) for r in rows]

    def query(self, since: float | None = None, target: str | None = None,
              episode: str | None = None, verdict: str | None = None, limit: int = 1000,
              ) -> list[AuditRecord]:
        where, args = [], []
        for col, val in (("ts >= ?", since), ("target = ?", target), ("episode = ?", episode),
                         ("verdict = ?", verdict)):
            if val is not None:
                where.append(col)
                args.append(val)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        out = []
        for row in rows:
            d = dict(zip(_COLUMNS, row, strict=True))
            d["params"] = json.loads(d["params"]) if d["params"] else None
            d["trigger"] = json.loads(d["trigger"]) if d["trigger"] else None
            out.append(AuditRecord(**d))
        return out

    def acted_since(self, since: float) -> list[AuditRecord]:
        """Actions that ran (or would have, in dry-run) since `since`: the guard's memory on
        start-up, so cooldowns and budgets survive a restart."""
        return [r for r in self.query(since=since, limit=1_000_000)
                if r.verdict in ("acted", "failed", "dry_run")]


def _dump(v: Any) -> str | None:
    return None if v is None else json.dumps(v, default=str)
