"""The audit in PostgreSQL, shared by remediation engines on several hosts: the same rows and
claims as the SQLite `AuditStore` (same tables and columns; claims also keep the step's hook,
target, restart flag and an owner token), and the counting guards checked across engines.

Claims are `INSERT ... ON CONFLICT DO NOTHING` on (episode, rule, rung): of two replicas given
the same alert (Alertmanager's HA pairs deliver it twice) exactly one wins; the other is told
and audits why it did not act. A row that ends a claimed step closes the claim in its own
transaction, as with SQLite, so `interrupted_claims` on any host lists the steps an engine died
in. `aclaim_guarded` counts the shared claims under one transaction-scoped advisory lock
(cooldown, restart loop, budget, target budget), then claims or writes the refusal: N engines
never spend more than the budget between them.

Async writes go through a writer thread with group commit (`GroupCommitter`, as SQLite's): the
engine's event loop never waits on the network, a wave of rows costs one commit, and the sync
methods (`query`, ...) use a second connection, so a read never queues behind a claim waiting
for the guards' lock. (psycopg's async connection would need the same batching written again,
and a second, sync, connection for the sync methods anyway.)

Connection loss: the transaction is retried on a new connection, `retries` times with backoff,
then `AuditUnavailable` is raised to every waiter (the engine's step fails loudly; nothing is
dropped). Meanwhile the writes wait, and so does a sync read the engine makes on its loop. A
commit whose answer was lost is retried too: a claim recognises its own owner token, so it is not
refused by itself; an audit row may then be stored twice, never lost.

The DSN is a `postgresql://` URI (from the configuration, the environment or a file, never from
alert data); the password may stay out of it (`PGPASSWORD`, `PGPASSFILE`/`~/.pgpass`, as libpq
reads them). `redacted` is what is ever shown.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from remediation.actions import Action
from remediation.audit import _COLUMNS, AuditRecord, Claim
from remediation.audit_log import AuditUnavailable
from remediation.group_commit import GroupCommitter
from remediation.guard import GuardDecision, counted_decision
from remediation.policy import Guards

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("vigil.audit")
T = TypeVar("T")
__all__ = ["AuditUnavailable", "PgAuditStore", "is_dsn", "redacted"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit (
    id BIGSERIAL PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
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
    duration_s DOUBLE PRECISION,
    trigger TEXT)""",
    "CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts)",
    "CREATE INDEX IF NOT EXISTS audit_target ON audit (target, ts)",
    "CREATE INDEX IF NOT EXISTS audit_episode ON audit (episode)",
    """CREATE TABLE IF NOT EXISTS claims (
    episode TEXT NOT NULL,
    rule TEXT NOT NULL,
    rung INTEGER NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL DEFAULT 'done',
    trigger TEXT,
    dry_run INTEGER NOT NULL DEFAULT 0,
    hook TEXT,
    target TEXT,
    restart BOOLEAN NOT NULL DEFAULT false,
    owner TEXT,
    PRIMARY KEY (episode, rule, rung))""",
    "CREATE INDEX IF NOT EXISTS claims_open ON claims (state) WHERE state = 'claimed'",
    "CREATE INDEX IF NOT EXISTS claims_ts ON claims (ts)",
    "CREATE INDEX IF NOT EXISTS claims_target ON claims (target, ts)",
)
# Advisory lock keys (bigint): creating the schema, and the counting guards of every engine.
_SCHEMA_KEY = 0x76696769_6C000001
_GUARDS_KEY = 0x76696769_6C000002


def redacted(dsn: str) -> str:
    """The DSN as it may be shown: any password replaced by `***`.

    >>> redacted("postgresql://vigil:s3cret@db:5432/vigil")
    'postgresql://vigil:***@db:5432/vigil'
    >>> redacted("host=db user=vigil password=s3cret dbname=vigil")
    'host=db user=vigil password=*** dbname=vigil'
    >>> redacted("postgresql://db/vigil?password=s3cret&sslmode=require")
    'postgresql://db/vigil?password=***&sslmode=require'
    """
    if "://" in dsn:
        out = re.sub(r"(://[^:/@?]*:)[^@/?]*@", r"\1***@", dsn)
        return re.sub(r"([?&]password=)[^&]*", r"\1***", out)
    return re.sub(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", dsn)


def is_dsn(value: object) -> bool:
    """A PostgreSQL URI (rather than a path to a SQLite file).

    >>> is_dsn("postgresql://db/vigil"), is_dsn("postgres://db/vigil"), is_dsn("audit.db")
    (True, True, False)
    """
    return isinstance(value, str) and value.startswith(("postgresql://", "postgres://"))


class PgAuditStore:
    """The `AuditLog` and `GuardedClaims` of the engine, in PostgreSQL (psycopg 3). The schema is
    created if missing. Safe to share between threads. `clock` stamps rows and claims, and is the
    guards' "now": keep the hosts' clocks in step (NTP), as their windows compare them."""

    shared_guards = True

    def __init__(self, dsn: str, clock: Callable[[], float] = time.time, retries: int = 6,
                 retry_s: float = 0.25, connect_timeout_s: float = 5.0) -> None:
        """`retries` reconnections per transaction, `retry_s` apart and doubling up to 5 s
        (about 13 s in all by default: a restart or a fail-over of the server)."""
        try:
            import psycopg  # noqa: F401  (the optional extra `vigil[postgres]`)
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise AuditUnavailable("a PostgreSQL audit needs psycopg: pip install "
                                   "'vigil[postgres]'") from exc
        self.dsn = dsn
        self.path = redacted(dsn)  # what logs and `/readyz` may show
        self.clock = clock
        self.retries = retries
        self.retry_s = retry_s
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()  # the sync connection
        self._wlock = threading.Lock()  # the writer's connection
        self._conn: psycopg.Connection[Any] | None = None
        self._wconn: psycopg.Connection[Any] | None = None
        self._run(self._create_schema)
        self._writer = GroupCommitter(None, self._wlock, "vigil-audit-pg", transact=self._transact)

    def __repr__(self) -> str:
        return f"PgAuditStore({self.path!r})"

    def close(self) -> None:
        self._writer.close()
        for lock, attr in ((self._lock, "_conn"), (self._wlock, "_wconn")):
            with lock:
                conn = getattr(self, attr)
                if conn is not None:
                    conn.close()
                setattr(self, attr, None)

    # ---- connections, transactions and retries ----------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        try:
            return psycopg.connect(self.dsn, autocommit=True,
                                   connect_timeout=max(1, round(self.connect_timeout_s)),
                                   application_name="vigil-audit")
        except psycopg.OperationalError as exc:
            raise _Lost(exc) from exc

    def _with_retries(self, attr: str, lock: threading.Lock,
                      body: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run `body(conn)` in one transaction on the connection `attr`, reconnecting on a lost
        connection (or a deadlock, a serialization failure: rolled back, safe to redo)."""
        import psycopg

        delay = self.retry_s
        for attempt in range(self.retries + 1):
            with lock:
                try:
                    conn = getattr(self, attr)
                    if conn is None or conn.closed:
                        conn = self._connect()
                        setattr(self, attr, conn)
                    with conn.transaction():
                        return body(conn)
                except (_Lost, psycopg.OperationalError) as exc:
                    cause = exc.__cause__ if isinstance(exc, _Lost) else exc
                    bad = getattr(self, attr)
                    if bad is not None and (bad.closed or bad.broken):
                        setattr(self, attr, None)
                    if attempt == self.retries:
                        raise AuditUnavailable(
                            f"the audit at {self.path} is unavailable after {attempt + 1} "
                            f"attempts: {cause}") from cause
                    log.warning("audit at %s: %s; retrying in %.1fs (%d/%d)", self.path,
                                str(cause).strip(), delay, attempt + 1, self.retries)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, body: Callable[[psycopg.Connection[Any]], T]) -> T:
        return self._with_retries("_conn", self._lock, body)

    def _transact(self, ops: list[Callable[[], Any]]) -> list[Any]:
        """The writer thread's batch: every op in one transaction (all redone on a new
        connection if it is lost). Each op is `op()` returning a callable of the connection."""
        def body(conn: psycopg.Connection[Any]) -> list[Any]:
            runs = [op() for op in ops]
            if any(isinstance(r, _LocksGuards) for r in runs):
                # The guards' lock before any row lock of this transaction (a claim closed
                # earlier in the batch): every engine takes them in that order, no deadlock.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_GUARDS_KEY,))
            return [r(conn) for r in runs]
        return self._with_retries("_wconn", self._wlock, body)

    def _create_schema(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_KEY,))  # replicas starting
        for sql in _SCHEMA:
            conn.execute(sql)

    # ---- writes ------------------------------------------------------------------------
    @staticmethod
    def _insert(rec: AuditRecord) -> Callable[[psycopg.Connection[Any]], int]:
        def run(conn: psycopg.Connection[Any]) -> int:
            row = (rec.ts, _text(rec.episode), _text(rec.fingerprint), _text(rec.source),
                   _text(rec.rule), rec.rung, _text(rec.rung_name), _text(rec.hook),
                   _text(rec.target), _dump(rec.params), rec.verdict, rec.guard,
                   _text(rec.detail), _text(rec.output), rec.duration_s,
                   rec.trigger_json or _dump(rec.trigger))
            cur = conn.execute(
                "INSERT INTO audit (ts, episode, fingerprint, source, rule, rung, rung_name, "
                "hook, target, params, verdict, guard, detail, output, duration_s, trigger) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "RETURNING id", row)
            got = cur.fetchone()
            if rec.closes_claim:  # in the same transaction: a step ends exactly with its row
                conn.execute("UPDATE claims SET state = 'done' WHERE episode = %s AND rule = %s "
                             "AND rung = %s AND state = 'claimed'",
                             (_text(rec.episode), _text(rec.rule), rec.rung))
            return int(got[0]) if got else 0
        return run

    def _claim_op(self, episode: str, rule: str, rung: int, trigger_json: str | None,
                  dry_run: bool, action: Action | None = None
                  ) -> Callable[[psycopg.Connection[Any]], bool]:
        owner = uuid.uuid4().hex  # a retried commit recognises its own claim

        def run(conn: psycopg.Connection[Any]) -> bool:
            ts = self.clock()  # when it runs: under the guards' lock for a guarded claim
            cur = conn.execute(
                "INSERT INTO claims (episode, rule, rung, ts, state, trigger, dry_run, hook, "
                "target, restart, owner) VALUES (%s, %s, %s, %s, 'claimed', %s, %s, %s, %s, %s, "
                "%s) ON CONFLICT (episode, rule, rung) DO NOTHING",
                (_text(episode), _text(rule), rung, ts, _text(trigger_json), int(dry_run),
                 _text(action.hook) if action else None, _text(action.target) if action else None,
                 bool(action and action.restart), owner))
            if cur.rowcount == 1:
                return True
            mine = conn.execute("SELECT owner FROM claims WHERE episode = %s AND rule = %s AND "
                                "rung = %s", (_text(episode), _text(rule), rung)).fetchone()
            return mine is not None and mine[0] == owner
        return run

    def _guarded_op(self, action: Action, trigger_json: str | None, dry_run: bool,
                    guards: Guards, refused: Callable[[GuardDecision], AuditRecord]
                    ) -> _LocksGuards:
        claim = self._claim_op(action.episode, action.rule, action.rung, trigger_json, dry_run,
                               action)

        def run(conn: psycopg.Connection[Any]) -> GuardDecision:
            # One key for every engine: max_actions counts all targets, so every guarded claim
            # is serialised with every other (a short transaction of indexed counts).
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_GUARDS_KEY,))
            now = self.clock()
            decision = self._counted(conn, action, now, dry_run, guards)
            if not decision:
                rec = refused(decision)
                rec.ts = rec.ts or now
                rec.id = self._insert(rec)(conn)
                return decision
            if not claim(conn):
                return GuardDecision(False, "idempotency", "this rung of this episode already ran")
            return decision
        return _LocksGuards(run)

    @staticmethod
    def _counted(conn: psycopg.Connection[Any], action: Action, now: float, dry_run: bool,
                 guards: Guards) -> GuardDecision:
        """The counting guards over every engine's claims. An acting engine counts only what
        really ran (claims of acting engines); a dry-run engine counts dry-run claims too."""
        kinds = "" if dry_run else " AND dry_run = 0"
        b, rl = guards.budget, guards.restart_loop
        target = _text(action.target)
        row = conn.execute(
            "SELECT"
            f" (SELECT max(ts) FROM claims WHERE hook = %s AND target = %s AND episode <> %s"
            f"  AND ts > %s{kinds}),"
            f" (SELECT count(*) FROM claims WHERE target = %s AND restart AND ts >= %s{kinds}),"
            f" (SELECT count(*) FROM claims WHERE hook IS NOT NULL AND ts >= %s{kinds}),"
            f" (SELECT count(*) FROM claims WHERE target = %s AND ts >= %s{kinds})",
            (_text(action.hook), target, _text(action.episode), now - guards.cooldown_s,
             target, now - rl.window_s, now - b.window_s, target, now - b.window_s)).fetchone()
        assert row is not None
        last, restarts, everything, on_target = row
        return counted_decision(guards, action, now, None if last is None else float(last),
                                int(restarts), int(everything), int(on_target))

    # ---- async forms (the engine) ------------------------------------------------------
    async def aadd(self, rec: AuditRecord) -> int:
        rec.ts = rec.ts or self.clock()
        rec.id = int(await self._writer.submit(lambda: self._insert(rec)))
        return rec.id

    async def aadd_many(self, recs: list[AuditRecord]) -> list[int]:
        """Several records in one queued write (they commit together)."""
        now = self.clock()
        for r in recs:
            r.ts = r.ts or now
        ops = [self._insert(r) for r in recs]
        ids: list[int] = await self._writer.submit(
            lambda: lambda conn: [op(conn) for op in ops])
        for r, i in zip(recs, ids, strict=True):
            r.id = i
        return ids

    async def aclaim(self, episode: str, rule: str, rung: int, trigger_json: str | None = None,
                     dry_run: bool = False) -> bool:
        op = self._claim_op(episode, rule, rung, trigger_json, dry_run)
        return bool(await self._writer.submit(lambda: op))

    async def aclaim_guarded(self, action: Action, trigger_json: str | None, dry_run: bool,
                             guards: Guards, refused: Callable[[GuardDecision], AuditRecord],
                             ) -> GuardDecision:
        """See `audit_log.GuardedClaims`."""
        op = self._guarded_op(action, trigger_json, dry_run, guards, refused)
        decision: GuardDecision = await self._writer.submit(lambda: op)
        return decision

    async def atake_over(self, claim: Claim) -> bool:
        """See `audit_log.GuardedClaims`: the claim's time is its version."""
        owner = uuid.uuid4().hex

        def run(conn: psycopg.Connection[Any]) -> bool:
            cur = conn.execute(
                "UPDATE claims SET ts = %s, owner = %s WHERE episode = %s AND rule = %s AND "
                "rung = %s AND state = 'claimed' AND ts = %s",
                (self.clock(), owner, _text(claim.episode), _text(claim.rule), claim.rung,
                 claim.ts))
            if cur.rowcount == 1:
                return True
            mine = conn.execute("SELECT owner FROM claims WHERE episode = %s AND rule = %s AND "
                                "rung = %s", (_text(claim.episode), _text(claim.rule),
                                              claim.rung)).fetchone()
            return mine is not None and mine[0] == owner  # a retried commit that had landed
        return bool(await self._writer.submit(lambda: run))

    # ---- sync forms --------------------------------------------------------------------
    def add(self, rec: AuditRecord) -> int:
        rec.ts = rec.ts or self.clock()
        rec.id = self._run(self._insert(rec))
        return rec.id

    def claim(self, episode: str, rule: str, rung: int, trigger_json: str | None = None,
              dry_run: bool = False) -> bool:
        """True the first time (episode, rule, rung) is claimed by any engine on the database;
        False after. The claim stays open until a record with `closes_claim` for it is added."""
        return self._run(self._claim_op(episode, rule, rung, trigger_json, dry_run))

    def interrupted_claims(self) -> list[Claim]:
        """Claims no record has closed, oldest first: steps whose engine died while they ran."""
        rows = self._run(lambda conn: conn.execute(
            "SELECT c.episode, c.rule, c.rung, c.ts, c.dry_run, COALESCE(c.trigger, (SELECT "
            "a.trigger FROM audit a WHERE a.episode = c.episode AND a.trigger IS NOT NULL "
            "ORDER BY a.id DESC LIMIT 1)) FROM claims c WHERE c.state = 'claimed' "
            "ORDER BY c.ts, c.rung").fetchall())
        return [Claim(e, r, int(n), float(ts), bool(d), json.loads(t) if t else None)
                for e, r, n, ts, d, t in rows]

    def claims_since(self, since: float) -> dict[tuple[str, str], list[int]]:
        """(episode, rule) -> rungs claimed since `since`: an engine's memory on start-up."""
        rows = self._run(lambda conn: conn.execute(
            "SELECT episode, rule, rung FROM claims WHERE ts >= %s ORDER BY rung",
            (since,)).fetchall())
        out: dict[tuple[str, str], list[int]] = {}
        for episode, rule, rung in rows:
            out.setdefault((episode, rule), []).append(int(rung))
        return out

    def query(self, since: float | None = None, target: str | None = None,
              episode: str | None = None, verdict: str | None = None, limit: int = 1000,
              ) -> list[AuditRecord]:
        where: list[str] = []
        args: list[Any] = []
        for col, val in (("ts >= %s", since), ("target = %s", target),
                         ("episode = %s", episode), ("verdict = %s", verdict)):
            if val is not None:
                where.append(col)
                args.append(val)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id LIMIT %s"
        rows = self._run(lambda conn: conn.execute(sql, (*args, limit)).fetchall())
        out = []
        for row in rows:
            d = dict(zip(_COLUMNS, row, strict=True))
            d["params"] = json.loads(d["params"]) if d["params"] else None
            d["trigger"] = json.loads(d["trigger"]) if d["trigger"] else None
            out.append(AuditRecord(**d))
        return out

    def acted_since(self, since: float) -> list[AuditRecord]:
        """Actions that ran (or would have, in dry-run) since `since`."""
        return [r for r in self.query(since=since, limit=1_000_000)
                if r.verdict in ("acted", "failed", "dry_run")]


class _LocksGuards:
    """A writer op that takes the guards' advisory lock (its batch takes it first)."""

    def __init__(self, run: Callable[[psycopg.Connection[Any]], GuardDecision]) -> None:
        self.run = run

    def __call__(self, conn: psycopg.Connection[Any]) -> GuardDecision:
        return self.run(conn)


class _Lost(Exception):
    """A connection attempt failed (its cause is psycopg's error)."""


def _text(v: str | None) -> str | None:
    """PostgreSQL's text holds no NUL character (SQLite's does): shown as U+FFFD instead of
    refusing the row."""
    return None if v is None else v.replace("\x00", "\ufffd")


def _dump(v: Any) -> str | None:
    return None if v is None else json.dumps(v, default=str)  # NUL comes out as \\u0000
