"""The PostgreSQL audit against a real server the tests start: the SQLite store's behaviour holds
on it (the same tests on both), engines in separate processes sharing it act once per (episode,
rule, rung) and never spend more than the budget between them, an interrupted claim left by a
killed engine is resolved by the next one, a lost connection is reconnected, and the DSN's
password is never shown."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from detector.bench.servers import free_port
from remediation.alertmanager.settings import AuthError, ServeConfig
from remediation.audit import AuditRecord
from remediation.audit_log import AuditLog, open_audit
from remediation.engine import Engine
from remediation.policy import parse_policy
from remediation.trigger import Trigger
from tests.support import ROOT, SERVICES
from tests.support.postgres import PostgresServer

REPLICA = SERVICES / "engine_replica.py"


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty audit of each kind: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "audit.db")
    return str(request.getfixturevalue("pg_dsn"))


def trig(fp: str, starts: float = 1000.0, **labels: str) -> Trigger:
    return Trigger("alertmanager", fp, "firing", starts,
                   labels={"service": "cart", "severity": "page", **labels})


def rec(episode: str, verdict: str, **kw: Any) -> AuditRecord:
    return AuditRecord(episode, "f", "manual", verdict, **kw)


# ---- the store's contract, on both ----------------------------------------------------------
def test_rows_claims_and_interruptions_behave_the_same_on_both(where: str) -> None:
    store = open_audit(where)
    try:
        assert store.add(rec("e1", "dry_run", rule="r", rung=0, target="cart", hook="log",
                             params={"a": 1}, trigger={"x": "y"})) == 1
        assert (store.claim("e1", "r", 0, '{"source": "manual"}'), store.claim("e1", "r", 0)) \
            == (True, False)
        assert store.claim("e1", "r", 1, dry_run=True)
        [r] = store.query(target="cart")
        assert (r.verdict, r.params, r.trigger, r.hook, r.id) == ("dry_run", {"a": 1}, {"x": "y"},
                                                                 "log", 1)
        open_ = store.interrupted_claims()
        assert [(c.episode, c.rung, c.dry_run, c.trigger) for c in open_] == [
            ("e1", 0, False, {"source": "manual"}), ("e1", 1, True, {"x": "y"})]
        store.add(rec("e1", "acted", rule="r", rung=0, hook="log", target="cart",
                      closes_claim=True, ts=5.0))
        assert [c.rung for c in store.interrupted_claims()] == [1]
        assert store.claims_since(0) == {("e1", "r"): [0, 1]}
        assert store.claims_since(time.time() + 60) == {}
        assert [r.verdict for r in store.query(verdict="acted")] == ["acted"]
        assert [r.verdict for r in store.query(since=10.0)] == ["dry_run"]
        assert [r.verdict for r in store.acted_since(0)] == ["dry_run", "acted"]
        assert len(store.query(limit=1)) == 1 and store.query(episode="nope") == []
    finally:
        store.close()
    again = open_audit(where)  # reopened: the schema is there, the rows and claims too
    try:
        assert len(again.query()) == 2 and [c.rung for c in again.interrupted_claims()] == [1]
        assert not again.claim("e1", "r", 0)
    finally:
        again.close()


def test_async_writes_commit_together_and_racing_claims_have_one_winner(where: str) -> None:
    """Two stores (two connections, as two replicas have) claim the same 20 steps at once, each
    five times over: exactly one claim of each step succeeds."""
    a, b = open_audit(where), open_audit(where)

    async def go() -> list[bool]:
        ids = await a.aadd_many([rec("x", "acted"), rec("x", "verified")])
        assert ids == sorted(ids) and len(set(ids)) == 2
        assert await b.aadd(rec("x", "escalated")) > max(ids)
        return list(await asyncio.gather(*(s.aclaim(f"e{i % 20}", "r", 0)
                                           for i in range(100) for s in (a, b))))
    try:
        won = asyncio.run(go())
        assert sum(won) == 20
        assert len(a.claims_since(0)) == 20
        assert [r.verdict for r in b.query(episode="x")] == ["acted", "verified", "escalated"]
    finally:
        a.close()
        b.close()


# ---- the engine's guards, on both (as tests/remediation/test_engine.py has them) -----------------
COOLDOWN = """
rules:
  - {name: r, match: {}, ladder: [{name: note, hook: log, wait_s: 0}]}
guards: {cooldown_s: 300, retries: {attempts: 0}}
"""


def test_cooldown_per_hook_and_target_on_both(where: str) -> None:
    store = open_audit(where)

    async def go() -> None:
        e = Engine(parse_policy(COOLDOWN), store)
        e.submit(trig("a"))
        await e.drain()
        e.submit(trig("b", starts=2000.0))  # another episode, same target
        e.submit(trig("c", starts=2000.0, service="db"))  # another target
        await e.drain()
    try:
        asyncio.run(go())
        by = {r.episode: r for r in store.query() if r.verdict in ("dry_run", "suppressed")}
    finally:
        store.close()
    assert by["b@2000.000"].verdict == "suppressed" and by["b@2000.000"].guard == "cooldown"
    assert "for another episode (cooldown 300s)" in by["b@2000.000"].detail
    assert by["c@2000.000"].verdict == "dry_run"


def test_cooldown_holds_a_second_episode_submitted_at_the_same_moment_on_both(where: str) -> None:
    store = open_audit(where)

    async def go() -> None:
        e = Engine(parse_policy(COOLDOWN), store)
        e.submit(trig("a"))
        e.submit(trig("b", starts=2000.0))
        await e.drain()
    try:
        asyncio.run(go())
        got = sorted((r.verdict, r.guard) for r in store.query()
                     if r.verdict in ("dry_run", "suppressed"))
    finally:
        store.close()
    assert got == [("dry_run", None), ("suppressed", "cooldown")]


def test_budgets_global_and_per_target_on_both(where: str) -> None:
    body = """
    rules:
      - {name: r, match: {}, ladder: [{name: note, hook: log, wait_s: 0}]}
    guards: {cooldown_s: 0, retries: {attempts: 0},
             budget: {window_s: 3600, max_actions: 3, max_per_target: 2}}
    """
    store = open_audit(where)

    async def go() -> None:
        e = Engine(parse_policy(textwrap.dedent(body)), store)
        for i, svc in enumerate(["cart", "cart", "cart", "db", "api"]):
            e.submit(trig(f"e{i}", service=svc))
            await e.drain()
    try:
        asyncio.run(go())
        assert [r.guard for r in store.query() if r.verdict == "suppressed"] == \
            ["target_budget", "budget"]
    finally:
        store.close()


def test_a_restart_loop_escalates_to_the_next_rung_on_both(where: str) -> None:
    body = """
    rules:
      - name: r
        match: {}
        ladder:
          - {name: restart, hook: log, wait_s: 0, restart: true, verify: {resolved: true}}
          - {name: rollback, hook: log, wait_s: 0}
    guards: {cooldown_s: 0, retries: {attempts: 0},
             restart_loop: {max_restarts: 1, window_s: 600}}
    """
    store = open_audit(where)

    async def go() -> None:
        e = Engine(parse_policy(textwrap.dedent(body)), store)
        for fp in ("a", "b"):
            e.submit(trig(fp))
            await e.drain()
    try:
        asyncio.run(go())
        b = [(r.rung_name, r.verdict, r.guard) for r in store.query(episode="b@1000.000")]
    finally:
        store.close()
    assert b == [("restart", "suppressed", "restart_loop"), ("rollback", "dry_run", None),
                 ("rollback", "not_better", None), (None, "escalated", None)], b


# ---- replicas in separate processes ----------------------------------------------------------
def _replicas(where: str, policy: Path, triggers: list[list[Trigger]], act: bool = True,
              timeout_s: float = 60.0, sync: Path | None = None) -> None:
    """Run one engine process per list of triggers; once every one has built its engine (read
    the audit), all are told to go at the same moment (`sync/go` is created)."""
    sync = sync or Path(tempfile.mkdtemp(prefix="vigil-replicas-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, str(REPLICA), where, str(policy),
                               json.dumps([t.to_dict() for t in ts]), str(sync)]
                              + (["--act"] if act else []), env=env) for ts in triggers]
    try:
        deadline = time.monotonic() + timeout_s
        while len(list(sync.glob("ready.*"))) < len(procs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
                "a replica did not start"
            time.sleep(0.01)
        (sync / "go").touch()
        for p in procs:
            assert p.wait(timeout_s) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(sync, ignore_errors=True)


ONE_STEP = ("rules:\n  - {name: r, match: {}, ladder: [{name: note, hook: log, wait_s: 0, "
            "verify: {resolved: false}}]}\n")


def test_two_replicas_given_the_same_alerts_act_once_per_episode_and_rung(
        pg_dsn: str, tmp_path: Path) -> None:
    """Alertmanager's HA pair delivers each of 8 alerts to both replicas at once: each episode
    acts exactly once; the other replica audits that it did not, and why."""
    policy = tmp_path / "policy.yaml"
    # max_concurrent above the 8 at once: a step waiting for its claim holds a slot
    policy.write_text(ONE_STEP + "guards: {cooldown_s: 0, retries: {attempts: 0}, max_concurrent: 16}\n")
    alerts = [trig(f"fp{i}", service=f"svc{i}") for i in range(8)]
    t0 = time.monotonic()
    _replicas(pg_dsn, policy, [alerts, alerts[::-1]])
    took = time.monotonic() - t0
    store = open_audit(pg_dsn)
    try:
        rows = store.query()
        assert store.interrupted_claims() == []
    finally:
        store.close()
    for a in alerts:
        mine = [(r.verdict, r.guard) for r in rows if r.episode == a.episode]
        assert Counter(mine) == {("acted", None): 1, ("verified", None): 1,
                                 ("suppressed", "idempotency"): 1}, mine
    assert all("already ran" in r.detail for r in rows if r.guard == "idempotency")
    assert took < 30


@pytest.mark.parametrize(("budget", "targets", "allowed", "guard"), [
    ("{max_actions: 5, max_per_target: 100}", 24, 5, "budget"),
    ("{max_actions: 100, max_per_target: 3}", 1, 3, "target_budget"),
])
def test_a_budget_is_never_exceeded_by_replicas_racing(pg_dsn: str, tmp_path: Path, budget: str,
                                                       targets: int, allowed: int, guard: str
                                                       ) -> None:
    """Two acting replicas, 24 episodes each (over 24 targets, or all on one), all at once: the
    budget counts both replicas' actions, so exactly its limit act; every other step is audited
    `suppressed` by that budget."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(ONE_STEP + f"guards: {{cooldown_s: 0, retries: {{attempts: 0}}, max_concurrent: 64, "
                      f"budget: {budget}}}\n")
    sets = [[trig(f"{side}{i}", service=f"svc{i % targets}") for i in range(24)]
            for side in ("a", "b")]
    _replicas(pg_dsn, policy, sets)
    store = open_audit(pg_dsn)
    try:
        rows = store.query(limit=10_000)
    finally:
        store.close()
    verdicts = Counter((r.verdict, r.guard) for r in rows if r.verdict != "verified")
    assert verdicts == {("acted", None): allowed, ("suppressed", guard): 48 - allowed}, verdicts


def test_one_sqlite_engine_keeps_the_global_budget_when_many_targets_fire_at_once(
        tmp_path: Path) -> None:
    """24 episodes on 24 targets at once, a budget of 5: exactly 5 act. (All 24 did: the
    guard counted a step when its hook started, after the awaited claim, so every episode
    passed the budget's check first.)"""
    store = open_audit(tmp_path / "audit.db")
    body = ONE_STEP + "guards: {cooldown_s: 0, max_concurrent: 64, budget: {max_actions: 5}}\n"

    async def go() -> None:
        e = Engine(parse_policy(body), store)
        for i in range(24):
            e.submit(trig(f"e{i}", service=f"svc{i}"))
        await e.drain()
    try:
        asyncio.run(go())
        assert len(store.query(verdict="dry_run")) == 5
    finally:
        store.close()


HANGS_ONCE = "#!/bin/sh\necho $$ >> {started}\n[ -e {once} ] && exit 0\ntouch {once}\nsleep 30\n"


def test_a_claim_left_by_a_killed_replica_is_resolved_by_the_next_one(pg_dsn: str,
                                                                     tmp_path: Path) -> None:
    """A replica is killed while its hook runs: the claim is in PostgreSQL, no outcome row is.
    Two other replicas start at once (other processes, as on other hosts) and find it: exactly
    one takes it over, audits it `interrupted` and retries it (on_interrupt: retry); the other
    audits that it was taken over. A later one finds nothing left to resolve."""
    started, once = tmp_path / "started", tmp_path / "ran-once"
    hook = tmp_path / "restart.sh"
    hook.write_text(HANGS_ONCE.format(started=started, once=once))
    hook.chmod(0o755)
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent(f"""
        rules:
          - name: r
            match: {{labels: {{service: cart}}}}
            ladder:
              - name: restart
                hook: command
                timeout_s: 1
                on_interrupt: retry
                wait_s: 0
                verify: {{resolved: false}}
                params: {{argv: ["{hook}"]}}
        guards: {{cooldown_s: 0, retries: {{attempts: 0}}}}
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, str(REPLICA), pg_dsn, str(policy),
                              json.dumps([trig("crash").to_dict()]), "-", "--act"], env=env)
    try:
        deadline = time.monotonic() + 30
        while not (started.exists() and started.read_text().strip()):
            assert time.monotonic() < deadline and child.poll() is None, "the hook never started"
            time.sleep(0.05)
    finally:
        child.kill()  # the crash, mid-hook
        child.wait()
    os.killpg(int(started.read_text().split()[0]), signal.SIGKILL)  # its orphaned hook too
    store = open_audit(pg_dsn)
    try:
        assert store.query() == []
        [claim] = store.interrupted_claims()
        assert (claim.episode, claim.rule, claim.rung, claim.dry_run) == \
            ("crash@1000.000", "r", 0, False)
    finally:
        store.close()
    _replicas(pg_dsn, policy, [[], []])  # no alert comes: their start resolves it
    store = open_audit(pg_dsn)
    try:
        rows = [(r.rung_name, r.verdict, r.guard) for r in store.query()]
        assert [x for x in rows if x[1] != "suppressed"] == [
            ("restart", "interrupted", None), ("restart", "acted", None),
            ("restart", "verified", None)], rows
        [lost] = store.query(verdict="suppressed")
        assert lost.guard == "idempotency" and "taken over, by another engine" in lost.detail
        assert "outcome is unknown" in store.query(verdict="interrupted")[0].detail
        assert store.interrupted_claims() == []
        assert len(started.read_text().split()) == 2  # it really ran again, once
    finally:
        store.close()
    _replicas(pg_dsn, policy, [[]])
    store = open_audit(pg_dsn)
    try:
        assert len(store.query()) == len(rows)  # nothing left to resolve
    finally:
        store.close()


def test_a_replica_starting_while_another_runs_a_step_does_not_run_it_again(
        pg_dsn: str, tmp_path: Path) -> None:
    """Replica B starts while replica A's hook runs: B sees A's open claim as it would an
    interrupted one, waits until A's hook could no longer be running, finds the claim closed by
    A and leaves it (audited), instead of taking a live replica's step for an interrupted one.
    (A's hook runs until B has read the audit.)"""
    ran, started, sync = tmp_path / "ran", tmp_path / "started", tmp_path / "sync"
    sync.mkdir()
    hook = tmp_path / "slow.sh"
    hook.write_text(f"#!/bin/sh\necho $$ >> {started}\nwhile [ ! -e {sync}/go ]; do sleep 0.02; "
                    f"done\necho $$ >> {ran}\n")
    hook.chmod(0o755)
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent(f"""
        rules:
          - name: r
            match: {{}}
            ladder:
              - {{name: restart, hook: command, timeout_s: 5, on_interrupt: retry, wait_s: 0,
                  verify: {{resolved: false}}, params: {{argv: ["{hook}"]}}}}
        guards: {{cooldown_s: 0, retries: {{attempts: 0}}}}
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    a = subprocess.Popen([sys.executable, str(REPLICA), pg_dsn, str(policy),
                          json.dumps([trig("live").to_dict()]), "-", "--act"], env=env)
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline and a.poll() is None, "the hook never started"
            time.sleep(0.02)
        _replicas(pg_dsn, policy, [[]], sync=sync)  # B, while A's hook runs
        assert a.wait(30) == 0
    finally:
        a.kill()
    store = open_audit(pg_dsn)
    try:
        rows = Counter((r.verdict, r.guard) for r in store.query())
    finally:
        store.close()
    assert rows == {("acted", None): 1, ("verified", None): 1, ("suppressed", "idempotency"): 1}
    assert len(ran.read_text().split()) == 1


# ---- connections, credentials, selection ----------------------------------------------------
def test_a_lost_connection_is_reconnected_and_no_row_is_lost(postgres: PostgresServer) -> None:
    from remediation.audit_pg import PgAuditStore

    dsn = postgres.new_database()
    store = PgAuditStore(dsn, retries=8, retry_s=0.2)
    try:
        store.add(rec("before", "acted"))

        async def writes() -> list[int]:
            return [await store.aadd(rec("after", "acted")), *await store.aadd_many(
                [rec("after", "verified")])]
        asyncio.run(writes())  # the writer's connection exists now
        postgres.restart()  # every connection is cut
        store.add(rec("sync", "acted"))
        asyncio.run(writes())
        assert store.claim("c", "r", 0)
        assert [r.episode for r in store.query()] == ["before", "after", "after", "sync",
                                                      "after", "after"]
    finally:
        store.close()


def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    from remediation.audit_pg import AuditUnavailable, PgAuditStore

    dsn = f"postgresql://vigil:s3cret-pw@127.0.0.1:{free_port()}/vigil"
    t0 = time.monotonic()
    with pytest.raises(AuditUnavailable) as err:
        PgAuditStore(dsn, retries=2, retry_s=0.05)
    assert time.monotonic() - t0 < 10
    text = str(err.value)
    assert "unavailable after 3 attempts" in text and "vigil:***@127.0.0.1" in text
    assert "s3cret-pw" not in text


def test_text_postgresql_cannot_hold_is_kept_not_refused(pg_dsn: str) -> None:
    store = open_audit(pg_dsn)
    try:
        store.add(rec("e\x00", "failed", detail="out\x00put", params={"k": "v\x00"}))
        [r] = store.query()
        assert (r.episode, r.detail, r.params) == ("e\ufffd", "out\ufffdput", {"k": "v\x00"})
    finally:
        store.close()


def test_the_dsn_comes_from_the_configuration_or_a_file_and_is_never_shown(tmp_path: Path
                                                                          ) -> None:
    dsn = "postgresql://vigil:s3cret-pw@db:5432/vigil"
    cfg = ServeConfig(audit_dsn=dsn)
    assert cfg.audit() == dsn
    assert cfg.audit_shown() == "postgresql://vigil:***@db:5432/vigil"
    assert "s3cret" not in cfg.model_dump_json() and "s3cret" not in repr(cfg)
    assert json.loads(cfg.for_engine())["audit_dsn"] == dsn  # the engine process writes it
    assert ServeConfig.model_validate_json(cfg.for_engine()).audit() == dsn
    f = tmp_path / "dsn"
    f.write_text(dsn + "\n")
    assert ServeConfig(audit_dsn_file=f).audit() == dsn
    assert ServeConfig().audit() == Path("vigil-audit.db")
    with pytest.raises(AuthError, match="not a PostgreSQL URI"):
        ServeConfig(audit_dsn="host=db password=x").audit()


def test_open_audit_picks_the_store_by_what_it_is_given(pg_dsn: str, tmp_path: Path) -> None:
    from remediation.audit import AuditStore
    from remediation.audit_pg import PgAuditStore

    for where, kind in ((tmp_path / "a.db", AuditStore), (pg_dsn, PgAuditStore)):
        store: AuditLog = open_audit(where)
        try:
            assert isinstance(store, kind) and isinstance(store, AuditLog)
            assert store.shared_guards is (kind is PgAuditStore)
        finally:
            store.close()


def test_an_ha_pair_of_receivers_on_one_postgresql_audit_acts_once(pg_dsn: str,
                                                                    tmp_path: Path) -> None:
    """Two `vigil serve` receivers (their own inboxes, one PostgreSQL audit), as behind an
    Alertmanager HA pair, each get the same notification: one acts, the other's row says why
    not; /readyz names the audit without its password."""
    from fastapi.testclient import TestClient

    from remediation.alertmanager.app import create_app
    from tests.remediation.alertmanager.test_app import AUTH, TOKEN, notification

    policy, token = tmp_path / "policy.yaml", tmp_path / "token"
    policy.write_text(ONE_STEP + "guards: {cooldown_s: 0}\n")
    token.write_text(TOKEN)
    dsn = pg_dsn.replace("postgres@", "postgres:not-a-real-password@")  # trust auth ignores it
    apps = [TestClient(create_app(ServeConfig(
        policy=policy, audit_dsn=dsn, inbox_db=tmp_path / f"inbox{i}.db",
        bearer_token_file=token))) for i in range(2)]
    with apps[0] as a, apps[1] as b:
        for c in (a, b):
            assert c.post("/alertmanager", json=notification(), headers=AUTH).status_code == 200
        deadline = time.monotonic() + 20
        while True:
            rows = a.get("/actions", headers=AUTH).json()
            if len(rows) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        ready = b.get("/readyz").json()
    assert Counter((r["verdict"], r["guard"]) for r in rows) == {
        ("dry_run", None): 1, ("verified", None): 1, ("suppressed", "idempotency"): 1}, rows
    assert ready["audit_db"].startswith("postgresql://postgres:***@127.0.0.1")
    assert "not-a-real-password" not in json.dumps(ready)


def test_vigil_audit_reads_the_postgresql_audit_from_the_environment(pg_dsn: str) -> None:
    store = open_audit(pg_dsn)
    try:
        store.add(rec("e1", "acted", target="cart", hook="log"))
    finally:
        store.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIGIL_SERVE__AUDIT_DSN": pg_dsn}
    out = subprocess.run([sys.executable, "-m", "detector", "audit", "--json"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    [row] = [json.loads(line) for line in out.stdout.splitlines()]
    assert (row["episode"], row["verdict"], row["target"]) == ("e1", "acted", "cart")
    env["VIGIL_SERVE__AUDIT_DSN"] = f"postgresql://u:pw-123@127.0.0.1:{free_port()}/x"
    bad = subprocess.run([sys.executable, "-m", "detector", "audit"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unavailable" in bad.stderr and "pw-123" not in bad.stderr


def test_an_audit_lost_for_good_fails_the_trigger_loudly(postgres: PostgresServer) -> None:
    """The database goes away for good while the engine works: after its bounded retries the
    write fails and `process` raises, so the caller does not mark the trigger handled (the
    receiver's engine process stops and is restarted; `vigil remediate` dead-letters it)."""
    import psycopg

    from remediation.audit_pg import AuditUnavailable, PgAuditStore

    dsn = postgres.new_database()
    store = PgAuditStore(dsn, retries=2, retry_s=0.05)

    async def go() -> None:
        e = Engine(parse_policy(ONE_STEP), store)
        await e.process(trig("ok"))
        with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {dsn.rsplit('/', 1)[1]} WITH (FORCE)")
        with pytest.raises(AuditUnavailable, match="unavailable after 3 attempts"):
            await e.process(trig("lost", service="db"))
    try:
        asyncio.run(go())
    finally:
        store.close()
