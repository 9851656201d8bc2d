"""The audit: every remediation decision as a row in SQLite (WAL), and the claims that keep one
trigger episode from acting twice on one rung, across restarts.

A claim is written before its hook runs and stays `claimed` until a row that ends that step is
written (in the same transaction: the outcome, or what was decided instead). A claim still
`claimed` when an engine starts belongs to a step that was interrupted (the process died while
the hook ran): `interrupted_claims` lists them, and the engine resolves each one."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remediation.group_commit import GroupCommitter
from remediation.private import connect_private

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
    state TEXT NOT NULL DEFAULT 'done',
    trigger TEXT,
    dry_run INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (episode, rule, rung)
);
"""
# Databases from before claims had a state: their claims with no outcome row were interrupted.
_MIGRATE_CLAIMS = (
    "ALTER TABLE claims ADD COLUMN state TEXT NOT NULL DEFAULT 'done'",
    "ALTER TABLE claims ADD COLUMN trigger TEXT",
    "ALTER TABLE claims ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0",
    "UPDATE claims SET state = 'claimed' WHERE NOT EXISTS (SELECT 1 FROM audit a WHERE "
    "a.episode = claims.episode AND a.rule = claims.rule AND a.rung = claims.rung AND "
    "a.verdict IN ('acted', 'dry_run', 'failed', 'input_error'))",
)
_OPEN_CLAIMS = "CREATE INDEX IF NOT EXISTS claims_open ON claims (state) WHERE state = 'claimed'"
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
    trigger_json: str | None = None  # `trigger` already serialised (an engine reuses it)
    closes_claim: bool = False  # this row ends the claimed step (episode, rule, rung): not stored

    def __post_init__(self) -> None:
        if self.closes_claim and (self.rule is None or self.rung is None):
            raise ValueError("a row that closes a claim names its rule and rung")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in _COLUMNS}
        if out["trigger"] is None and self.trigger_json:
            out["trigger"] = json.loads(self.trigger_json)
        return out


@dataclass(slots=True)
class Claim:
    """A step that was claimed and never ended: the process died while its hook ran."""

    episode: str
    rule: str
    rung: int
    ts: float  # when it was claimed
    dry_run: bool  # claimed by a dry-run engine (the hook that ran was the `log` hook)
    trigger: dict[str, Any] | None  # the trigger it acted for (None: unknown, an old database)


class AuditStore:
    """SQLite in WAL mode; `synchronous=FULL` by default, so a record is on disk when `add`
    returns. Safe to share between threads (one connection, one lock).

    The engine uses the async forms (`aadd`, `aclaim`): a writer thread commits whatever is queued
    in one transaction (group commit), and each awaiting caller resumes once its write is on
    disk, so durability costs one fsync per batch instead of one per record.

    >>> store = AuditStore(":memory:")
    >>> store.add(AuditRecord("e1", "f", "manual", "dry_run", rule="r", rung=0, target="cart"))
    1
    >>> store.claim("e1", "r", 0), store.claim("e1", "r", 0)
    (True, False)
    >>> [r.verdict for r in store.query(target="cart")]
    ['dry_run']
    >>> [(c.episode, c.rung) for c in store.interrupted_claims()]  # claimed, never ended
    [('e1', 0)]
    >>> _ = store.add(AuditRecord("e1", "f", "manual", "acted", rule="r", rung=0, closes_claim=True))
    >>> store.interrupted_claims()
    []
    """

    shared_guards = False  # guards count in each engine's memory (one machine)

    def __init__(self, path: Path | str, synchronous: str = "FULL", inline: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        """`inline=True` commits each async write at once, in the caller's thread (a what-if
        in virtual time, which no writer thread may race); `clock` stamps rows and claims."""
        self.path = str(path)
        self.inline = inline
        self.clock = clock
        self._lock = threading.Lock()
        self._db = connect_private(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=30000")  # another process may hold the write lock
        self._db.execute("PRAGMA journal_mode=WAL")
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, EXTRA or NORMAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(claims)")}
        if "state" not in columns:  # a database from before claims had a state
            self._db.execute("BEGIN IMMEDIATE")
            for sql in _MIGRATE_CLAIMS:
                self._db.execute(sql)
            self._db.execute("COMMIT")
        self._db.execute(_OPEN_CLAIMS)
        self._writer = GroupCommitter(self._db, self._lock, "vigil-audit")

    def close(self) -> None:
        self._writer.close()
        with self._lock:
            self._db.close()

    # ---- group commit for the engine ----------------------------------------------------
    async def aadd(self, rec: AuditRecord) -> int:
        rec.ts = rec.ts or self.clock()
        rec.id = int(await self._submit(lambda: self._insert(rec)))
        return rec.id

    async def aadd_many(self, recs: list[AuditRecord]) -> list[int]:
        """Several records in one queued write (they commit together)."""
        now = self.clock()
        for r in recs:
            r.ts = r.ts or now
        ids: list[int] = await self._submit(lambda: [self._insert(r) for r in recs])
        for r, i in zip(recs, ids, strict=True):
            r.id = i
        return ids

    async def aclaim(self, episode: str, rule: str, rung: int, trigger_json: str | None = None,
                     dry_run: bool = False) -> bool:
        return bool(await self._submit(lambda: self._claim(episode, rule, rung, trigger_json,
                                                            dry_run)))

    async def _submit(self, op: Callable[[], Any]) -> Any:
        if not self.inline:
            return await self._writer.submit(op)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = op()
            except Exception:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return result

    def _insert(self, rec: AuditRecord) -> int:
        row = (rec.ts, rec.episode, rec.fingerprint, rec.source, rec.rule, rec.rung, rec.rung_name,
               rec.hook, rec.target, _dump(rec.params), rec.verdict, rec.guard, rec.detail,
               rec.output, rec.duration_s, rec.trigger_json or _dump(rec.trigger))
        cur = self._db.execute(
            "INSERT INTO audit (ts, episode, fingerprint, source, rule, rung, rung_name, hook, "
            "target, params, verdict, guard, detail, output, duration_s, trigger) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        if rec.closes_claim:  # in the same transaction: a step is ended exactly when its row is
            self._db.execute("UPDATE claims SET state = 'done' WHERE episode = ? AND rule = ? AND "
                             "rung = ? AND state = 'claimed'", (rec.episode, rec.rule, rec.rung))
        return int(cur.lastrowid or 0)

    def _claim(self, episode: str, rule: str, rung: int, trigger_json: str | None = None,
               dry_run: bool = False) -> bool:
        cur = self._db.execute(
            "INSERT OR IGNORE INTO claims (episode, rule, rung, ts, state, trigger, dry_run) "
            "VALUES (?, ?, ?, ?, 'claimed', ?, ?)",
            (episode, rule, rung, self.clock(), trigger_json, int(dry_run)))
        return cur.rowcount == 1

    def add(self, rec: AuditRecord) -> int:
        rec.ts = rec.ts or self.clock()
        with self._lock:
            rec.id = self._insert(rec)
        return rec.id

    def claim(self, episode: str, rule: str, rung: int, trigger_json: str | None = None,
              dry_run: bool = False) -> bool:
        """True the first time (episode, rule, rung) is claimed, ever; False after, even after a
        restart: the same alert episode acts at most once per rung. The claim stays open until a
        record with `closes_claim` for it is added."""
        with self._lock:
            return self._claim(episode, rule, rung, trigger_json, dry_run)

    def interrupted_claims(self) -> list[Claim]:
        """Claims no record has closed, oldest first: steps whose engine died while they ran.
        (A claim from an old database without its trigger takes the episode's latest audited
        trigger, if any.)"""
        with self._lock:
            rows = self._db.execute(
                "SELECT c.episode, c.rule, c.rung, c.ts, c.dry_run, COALESCE(c.trigger, (SELECT "
                "a.trigger FROM audit a WHERE a.episode = c.episode AND a.trigger IS NOT NULL "
                "ORDER BY a.id DESC LIMIT 1)) FROM claims c WHERE c.state = 'claimed' "
                "ORDER BY c.ts, c.rung").fetchall()
        return [Claim(e, r, int(n), float(ts), bool(d), json.loads(t) if t else None)
                for e, r, n, ts, d, t in rows]

    def claims_since(self, since: float) -> dict[tuple[str, str], list[int]]:
        """(episode, rule) -> rungs claimed since `since`: an engine's memory on start-up."""
        with self._lock:
            rows = self._db.execute("SELECT episode, rule, rung FROM claims WHERE ts >= ? "
                                    "ORDER BY rung", (since,)).fetchall()
        out: dict[tuple[str, str], list[int]] = {}
        for episode, rule, rung in rows:
            out.setdefault((episode, rule), []).append(int(rung))
        return out

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
