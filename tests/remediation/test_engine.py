"""The remediation engine against real targets: an HTTP service whose admin API really changes its
rate limit, restarts and rolls back, and real child processes; every guardrail, the audit, and
idempotency across a restart of Vigil."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from detector.bench.servers import free_port
from remediation.audit import AuditStore
from remediation.engine import Engine
from remediation.engine_settings import EngineSettings
from remediation.policy import parse_policy
from remediation.trigger import Trigger
from tests.support import SERVICES

SERVICE = SERVICES / "admin_service.py"


class Admin:
    """The admin service in a child process."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = tmp / "admin-state.json"
        self.proc = subprocess.Popen([sys.executable, str(SERVICE), str(self.port), str(self.state)])
        self.wait_up()

    def wait_up(self, old_boot: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                s = httpx.get(self.url, timeout=0.5).json()
                if old_boot is None or s["boot"] != old_boot:
                    return dict(s)
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("admin service did not come up")

    def status(self) -> dict[str, Any]:
        return dict(httpx.get(self.url, timeout=2).json())

    def setup(self, **state: Any) -> None:
        httpx.post(self.url + "/admin/test-setup", json=state, timeout=2).raise_for_status()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[Admin]:
    a = Admin(tmp_path)
    yield a
    a.stop()


def trig(fp: str = "fp1", status: str = "firing", starts: float = 1000.0, **labels: str) -> Trigger:
    return Trigger("alertmanager", fp, status, starts,  # type: ignore[arg-type]
                   labels={"service": "cart", "severity": "page", **labels})


def policy(body: str) -> Any:
    return parse_policy(textwrap.dedent(body))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def settle(engine: Engine) -> None:
    await engine.drain()


NO_GUARDS = """
    guards:
      cooldown_s: 0
      retries: {attempts: 0}
      budget: {max_actions: 1000, max_per_target: 1000}
"""


def throttle_rule(url: str, wait: float = 0.0, extra: str = "") -> str:
    return f"""
    rules:
      - name: throttle-cart
        match: {{labels: {{service: cart}}}}
        ladder:
          - name: throttle
            hook: http
            params:
              url: {url}/admin/rate-limit/${{labels.service}}
              json: {{limit: 5}}
            wait_s: {wait}
    {textwrap.indent(textwrap.dedent(extra), '    ')}
    """


# ---- dry-run, acting, verification --------------------------------------------------------------
def test_dry_run_is_the_default_and_touches_nothing(admin: Admin, tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.db")

    async def go() -> None:
        e = Engine(policy(throttle_rule(admin.url) + NO_GUARDS), store)
        assert e.submit(trig()) == ["throttle-cart"]
        await settle(e)
    run(go())
    assert admin.status()["rate_limit"] is None
    assert [r.verdict for r in store.query()][:1] == ["dry_run"]
    assert store.query()[0].hook == "http" and store.query()[0].target == "cart"


def test_acting_throttles_the_service_and_verifies_by_its_metric(admin: Admin, tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.db")
    body = throttle_rule(admin.url, wait=5).replace(
        "wait_s: 5", f"wait_s: 5\n            success: {{resolved: false, http: {{url: '{admin.url}/', "
                     "field: error_rate, below: 0.05, interval_s: 0.1}}")

    async def go() -> None:
        e = Engine(policy(body + NO_GUARDS), store, settings=EngineSettings(dry_run=False))
        e.submit(trig())
        await settle(e)
    run(go())
    st = admin.status()
    assert st["rate_limit"] == 5 and st["error_rate"] == 0.01
    assert st["calls"][0]["path"] == "/admin/rate-limit/cart"
    assert [r.verdict for r in store.query()] == ["acted", "verified"]


def test_resolution_verifies_and_an_unresolved_ladder_climbs_then_pages(admin: Admin, tmp_path: Path
                                                                        ) -> None:
    pages: list[dict[str, Any]] = []
    page_port = free_port()

    class Pager(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_POST(self) -> None:
            pages.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
    server = ThreadingHTTPServer(("127.0.0.1", page_port), Pager)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body = f"""
    rules:
      - name: cart
        match: {{labels: {{service: cart}}}}
        ladder:
          - {{name: throttle, hook: http, wait_s: 0.3,
              params: {{url: "{admin.url}/admin/rate-limit", json: {{limit: 50}}}}}}
          - {{name: rollback, hook: http, wait_s: 0.3,
              params: {{url: "{admin.url}/admin/rollback"}}}}
    page: {{url: "http://127.0.0.1:{page_port}/page"}}
    """ + NO_GUARDS
    admin.setup(version="v2", history=["v1"])
    store = AuditStore(tmp_path / "audit.db")

    async def go() -> None:
        e = Engine(policy(body), store, settings=EngineSettings(dry_run=False))
        e.submit(trig("unresolved"))
        await settle(e)
        # A second episode that resolves while the first rung waits: verified, no climb.
        e.submit(trig("resolves", starts=2000.0))
        await asyncio.sleep(0.1)
        e.submit(trig("resolves", status="resolved", starts=2000.0))
        await settle(e)
    try:
        run(go())
    finally:
        server.shutdown()
    first = [r.verdict for r in store.query(episode="unresolved@1000.000")]
    assert first == ["acted", "not_better", "acted", "not_better", "escalated"]
    assert admin.status()["version"] == "v1"  # the rollback really happened
    assert len(pages) == 1 and pages[0]["rule"] == "cart" and "exhausted" in pages[0]["text"]
    second = [r.verdict for r in store.query(episode="resolves@2000.000")]
    assert second == ["acted", "resolved", "verified"]


# ---- guards -------------------------------------------------------------------------------------
COOLDOWN = """
rules:
  - {name: r, match: {}, ladder: [{name: note, hook: log, wait_s: 0}]}
guards: {cooldown_s: 600, retries: {attempts: 0}}
"""


def test_cooldown_per_hook_and_target(tmp_path: Path) -> None:
    body = COOLDOWN
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy(body), store)
        e.submit(trig("a"))
        await settle(e)
        e.submit(trig("b", starts=2000.0))  # another episode, same target
        e.submit(trig("c", starts=2000.0, service="db"))  # another target
        await settle(e)
    run(go())
    by = {r.episode: r for r in store.query() if r.verdict in ("dry_run", "suppressed")}
    assert by["b@2000.000"].verdict == "suppressed" and by["b@2000.000"].guard == "cooldown"
    assert by["c@2000.000"].verdict == "dry_run"


def test_cooldown_holds_a_second_episode_submitted_at_the_same_moment(tmp_path: Path) -> None:
    """Two incidents on one target at once: the second's guard is asked again once it holds the
    target's lock, so it does not act on the strength of a check made before the first acted."""
    body = COOLDOWN
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy(body), store)
        e.submit(trig("a"))
        e.submit(trig("b", starts=2000.0))  # same target, same loop iteration
        await settle(e)
    run(go())
    verdicts = sorted((r.episode, r.verdict, r.guard) for r in store.query()
                      if r.verdict in ("dry_run", "suppressed"))
    assert [(v, g) for _, v, g in verdicts] == [("dry_run", None), ("suppressed", "cooldown")]


# Budgets, global and per target: tests/remediation/test_audit_pg.py runs that case on both stores.


def test_max_concurrency_and_one_ladder_per_target_at_a_time(tmp_path: Path) -> None:
    log = tmp_path / "spans.txt"
    script = tmp_path / "slow.sh"
    script.write_text(f'#!/bin/sh\necho "start $VIGIL_EPISODE $(date +%s.%N)" >> {log}\n'
                      f'sleep 0.4\necho "end $VIGIL_EPISODE $(date +%s.%N)" >> {log}\n')
    script.chmod(0o755)
    body = f"""
    rules:
      - {{name: r, match: {{}}, ladder: [{{name: run, hook: command, wait_s: 0.2,
          params: {{argv: ["{script}"]}}}}]}}
    guards: {{cooldown_s: 0, max_concurrent: 2, retries: {{attempts: 0}}}}
    """
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy(body), store, settings=EngineSettings(dry_run=False))
        e.submit(trig("a1"))  # cart
        e.submit(trig("a2"))  # cart again: waits for a1's ladder, never overlaps
        e.submit(trig("b", service="db"))
        await asyncio.sleep(0.05)
        e.submit(trig("c", service="api"))  # two running already
        await settle(e)
    run(go())
    rows = [line.split() for line in log.read_text().splitlines()]
    spans = {ep: [float(t) for k, e, t in rows if e == ep] for ep in {r[1] for r in rows}}
    a1, a2 = spans["a1@1000.000"], spans["a2@1000.000"]
    assert a1[1] <= a2[0] or a2[1] <= a1[0]  # the two cart runs did not overlap
    sup = [r for r in store.query() if r.verdict == "suppressed"]
    assert [(r.episode, r.guard) for r in sup] == [("c@1000.000", "concurrency")]


def test_circuit_breaker_opens_and_half_opens_after_the_delay(admin: Admin, tmp_path: Path) -> None:
    now = [1000.0]
    body = f"""
    rules:
      - {{name: r, match: {{}}, ladder: [{{name: t, hook: http, wait_s: 0,
          params: {{url: "{admin.url}/admin/rate-limit", json: {{limit: 50}}}}}}]}}
    guards: {{cooldown_s: 0, retries: {{attempts: 0}}, breaker: {{failures: 2, reset_s: 60}},
             budget: {{max_per_target: 100}}}}
    """
    admin.setup(fail_next=3)
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy(body), store, settings=EngineSettings(dry_run=False), clock=lambda: now[0])
        for i in range(3):
            e.submit(trig(f"f{i}", starts=float(i)))
            await settle(e)
        now[0] += 61  # half-open: one probe goes through (and fails: fail_next was 3)
        e.submit(trig("probe", starts=10.0))
        await settle(e)
        e.submit(trig("after-probe", starts=11.0))
        await settle(e)
        now[0] += 61
        e.submit(trig("healthy", starts=12.0))  # the service works again: breaker closes
        await settle(e)
    run(go())
    v = [(r.episode.split("@")[0], r.verdict, r.guard) for r in store.query()
         if r.verdict in ("acted", "failed", "suppressed")]
    assert v == [("f0", "failed", None), ("f1", "failed", None),
                 ("f2", "suppressed", "circuit_breaker"), ("probe", "failed", None),
                 ("after-probe", "suppressed", "circuit_breaker"), ("healthy", "acted", None)]


def test_retries_back_off_with_jitter_and_stay_bounded(admin: Admin, tmp_path: Path) -> None:
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)
    body = f"""
    rules:
      - {{name: r, match: {{}}, ladder: [{{name: t, hook: http, wait_s: 0,
          params: {{url: "{admin.url}/admin/rate-limit", json: {{limit: 50}}}}}}]}}
    guards: {{cooldown_s: 0, retries: {{attempts: 3, base_s: 1, max_s: 3}}}}
    """
    admin.setup(fail_next=2)
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy(body), store, settings=EngineSettings(dry_run=False, seed=1),
                   sleep=fake_sleep)
        e.submit(trig())
        await settle(e)
    run(go())
    assert store.query()[0].verdict == "acted"
    assert len(admin.status()["calls"]) == 3
    assert len(slept) == 2 and 0 <= slept[0] <= 1 and 0 <= slept[1] <= 2


def test_restart_loop_escalates_to_the_next_rung(admin: Admin, tmp_path: Path) -> None:
    body = f"""
    rules:
      - name: r
        match: {{}}
        ladder:
          - {{name: restart, hook: http, restart: true, wait_s: 0, success: {{resolved: false}},
              params: {{url: "{admin.url}/admin/restart"}}}}
          - {{name: rollback, hook: http, wait_s: 0, success: {{resolved: false}},
              params: {{url: "{admin.url}/admin/rollback"}}}}
    guards: {{cooldown_s: 0, retries: {{attempts: 0}}, restart_loop: {{max_restarts: 2, window_s: 600}},
             budget: {{max_per_target: 100}}}}
    """
    admin.setup(version="v2", history=["v1"])
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy(body), store, settings=EngineSettings(dry_run=False))
        for i in range(3):
            boot = admin.status()["boot"]
            e.submit(trig(f"crash{i}", starts=float(i)))
            await settle(e)
            if i < 2:
                admin.wait_up(old_boot=boot)  # it really restarted
    run(go())
    third = [(r.rung_name, r.verdict, r.guard) for r in store.query(episode="crash2@2.000")]
    assert third[0] == ("restart", "suppressed", "restart_loop")
    assert ("rollback", "acted", None) in third
    st = admin.status()
    assert st["restarts"] == 2 and st["version"] == "v1"


def test_approval_waits_until_approved_rejected_or_expired(admin: Admin, tmp_path: Path) -> None:
    body = f"""
    rules:
      - name: r
        match: {{}}
        approval: {{required: true, expires_s: 0.5}}
        ladder: [{{name: t, hook: http, wait_s: 0,
                   params: {{url: "{admin.url}/admin/rate-limit", json: {{limit: 7}}}}}}]
    """ + NO_GUARDS
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy(body), store, settings=EngineSettings(dry_run=False))
        e.submit(trig("yes"))
        e.submit(trig("no", service="db"))
        e.submit(trig("late", service="api"))
        await asyncio.sleep(0.1)
        pending = e.pending_approvals()
        assert len(pending) == 3
        recs = {r.id: r.episode for r in store.query(verdict="pending_approval")}
        by_ep = {recs[i]: i for i in pending}
        assert e.approve(by_ep["yes@1000.000"]) and e.reject(by_ep["no@1000.000"])
        await settle(e)
    run(go())
    final = {r.episode.split("@")[0]: (r.verdict, r.detail) for r in store.query()
             if r.verdict in ("acted", "rejected")}
    assert final["yes"][0] == "acted" and admin.status()["rate_limit"] == 7
    assert final["no"] == ("rejected", "rejected")
    assert final["late"][0] == "rejected" and "expired" in final["late"][1]


def test_one_episode_acts_once_per_rung_even_across_a_restart_of_vigil(admin: Admin,
                                                                      tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    body = throttle_rule(admin.url, wait=0) + NO_GUARDS

    async def deliver() -> None:
        e = Engine(policy(body), AuditStore(db), settings=EngineSettings(dry_run=False))
        for _ in range(3):  # Alertmanager resends
            e.submit(trig("same"))
        await settle(e)
    run(deliver())
    run(deliver())  # a new Vigil process over the same audit database
    assert len(admin.status()["calls"]) == 1
    verdicts = [(r.verdict, r.guard) for r in AuditStore(db).query()]
    assert verdicts.count(("acted", None)) == 1 and ("suppressed", "idempotency") in verdicts


def test_a_hung_hook_times_out_kills_its_process_and_never_blocks_intake(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = tmp_path / "hang.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nsleep 30\n")
    script.chmod(0o755)
    body = f"""
    rules:
      - {{name: r, match: {{}}, ladder: [{{name: hang, hook: command, timeout_s: 0.5, wait_s: 0,
          params: {{argv: ["{script}"]}}}}]}}
    """ + NO_GUARDS
    store = AuditStore(tmp_path / "a.db")

    async def go() -> float:
        e = Engine(policy(body), store, settings=EngineSettings(dry_run=False))
        t0 = time.monotonic()
        e.submit(trig("h1"))
        for i in range(50):  # intake stays instant while the hook hangs
            e.submit(trig(f"other{i}", service=f"s{i}"))
        intake = time.monotonic() - t0
        await settle(e)
        return intake
    assert run(go()) < 0.5
    rec = next(r for r in store.query(episode="h1@1000.000") if r.verdict == "failed")
    assert "timed out" in rec.detail
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_command_hook_restarts_a_real_process_and_gets_labels_only_as_data(tmp_path: Path) -> None:
    pidfile, seen = tmp_path / "worker.pid", tmp_path / "seen.json"
    worker = subprocess.Popen(["sleep", "60"], start_new_session=True)
    pidfile.write_text(str(worker.pid))
    restart = tmp_path / "restart.py"
    restart.write_text(textwrap.dedent(f"""
        import json, os, signal, subprocess, sys
        data = json.load(sys.stdin)
        env = {{k: v for k, v in os.environ.items() if k.startswith("VIGIL_")}}
        json.dump({{"stdin": data, "env": env}}, open({str(seen)!r}, "w"))
        old = int(open({str(pidfile)!r}).read())
        os.kill(old, signal.SIGTERM)
        new = subprocess.Popen(["sleep", "60"], start_new_session=True)
        open({str(pidfile)!r}, "w").write(str(new.pid))
        print("restarted", old, "->", new.pid)
    """))
    body = f"""
    rules:
      - {{name: r, match: {{}}, ladder: [{{name: restart, hook: command, restart: true, wait_s: 0,
          params: {{argv: ["{sys.executable}", "{restart}"]}}}}]}}
    """ + NO_GUARDS
    evil = "cart; touch PWNED $(touch PWNED2)\n../../etc"
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy(body), store, settings=EngineSettings(dry_run=False))
        e.submit(trig("x", evil=evil))
        await settle(e)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        run(go())
    finally:
        os.chdir(cwd)
    worker.wait(timeout=5)  # the old worker really died
    new_pid = int(pidfile.read_text())
    try:
        assert new_pid != worker.pid
        os.kill(new_pid, 0)  # and a new one runs
        got = json.loads(seen.read_text())
        assert got["env"]["VIGIL_LABEL_EVIL"] == evil and got["stdin"]["trigger"]["labels"]["evil"] == evil
        assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()
        rec = next(r for r in store.query() if r.verdict == "acted")
        assert "restarted" in rec.output
    finally:
        os.kill(new_pid, signal.SIGTERM)


def test_http_templating_encodes_hostile_labels_into_the_path(admin: Admin, tmp_path: Path) -> None:
    body = throttle_rule(admin.url, wait=0) + NO_GUARDS
    store = AuditStore(tmp_path / "a.db")
    hostile = "../admin/restart;$(id)\nx"

    async def go() -> None:
        e = Engine(policy(body.replace("service: cart", "service: {regex: '(?s).*'}", 1)), store,
                   settings=EngineSettings(dry_run=False))
        e.submit(trig(service=hostile))
        await settle(e)
    run(go())
    st = admin.status()
    assert st["restarts"] == 0
    assert st["calls"][0]["path"] == "/admin/rate-limit/..%2Fadmin%2Frestart%3B%24%28id%29%0Ax"


def test_secrets_are_redacted_in_the_audit(admin: Admin, tmp_path: Path) -> None:
    body = f"""
    rules:
      - {{name: r, match: {{}}, ladder: [{{name: t, hook: http, wait_s: 0, secrets: [api_key],
          params: {{url: "{admin.url}/admin/rate-limit", json: {{limit: 50, api_key: k-123}},
                    headers: {{Authorization: "Bearer s3cret"}}}}}}]}}
    """ + NO_GUARDS
    db = tmp_path / "a.db"

    async def go() -> None:
        e = Engine(policy(body), AuditStore(db), settings=EngineSettings(dry_run=False))
        e.submit(trig())
        await settle(e)
    run(go())
    assert admin.status()["calls"][0]["auth"] == "Bearer s3cret"  # the hook sent it
    raw = db.read_bytes() + (db.with_name(db.name + "-wal").read_bytes()
                             if db.with_name(db.name + "-wal").exists() else b"")
    assert b"s3cret" not in raw and b"k-123" not in raw
    params = AuditStore(db).query()[0].params
    assert params is not None and params["headers"]["Authorization"] == "***"
    assert params["json"]["api_key"] == "***"


def test_no_matching_rule_is_recorded_as_suppressed(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy("rules: []"), store)
        assert e.submit(trig()) == []
        await settle(e)
    run(go())
    (rec,) = store.query()
    assert (rec.verdict, rec.guard, rec.detail) == ("suppressed", "policy", "no rule matches")


# ---- the alert's own data -----------------------------------------------------------------------
def test_bad_alert_data_is_an_input_error_and_never_trips_the_targets_breaker(admin: Admin,
                                                                             tmp_path: Path) -> None:
    """Anyone holding the webhook token could send alerts whose labels no request can carry (a
    non-ASCII header value, a path too long for the server) and so open the breaker of a target
    that works: real remediation would then be suppressed. Those are input errors, audited as
    such, and the breaker counts only the target's own failures."""
    body = f"""
    rules:
      - name: r
        match: {{}}
        ladder:
          - name: t
            hook: http
            target: cart
            wait_s: 0
            params:
              url: "{admin.url}/admin/rate-limit/${{labels.pod}}"
              json: {{limit: 50}}
              headers: {{X-Instance: "${{labels.instance}}"}}
    guards: {{cooldown_s: 0, retries: {{attempts: 1, base_s: 0.01}}, breaker: {{failures: 2, reset_s: 600}},
             budget: {{max_actions: 1000, max_per_target: 1000}}}}
    """
    store = AuditStore(tmp_path / "a.db")
    bad = [{"pod": "p1", "instance": "nœud-1"}, {"pod": "p2", "instance": "ノード"},
           {"pod": "x" * 70_000, "instance": "i"}, {"pod": "y" * 70_000, "instance": "i"}]

    async def go() -> None:
        e = Engine(policy(body), store, settings=EngineSettings(dry_run=False))
        for i, labels in enumerate(bad):
            e.submit(trig(f"bad{i}", starts=float(i), **labels))
            await settle(e)
        e.submit(trig("good", starts=10.0, pod="p1", instance="node-1"))
        await settle(e)
    run(go())
    rows = [(r.episode.split("@")[0], r.verdict, r.guard) for r in store.query()
            if r.verdict in ("acted", "failed", "suppressed", "input_error")]
    assert rows == [("bad0", "input_error", None), ("bad1", "input_error", None),
                    ("bad2", "input_error", None), ("bad3", "input_error", None),
                    ("good", "acted", None)], rows
    details = [r.detail for r in store.query(verdict="input_error")]
    assert "not ASCII" in details[0] and "X-Instance" in details[0] and "characters" in details[2]
    assert [c["path"] for c in admin.status()["calls"]] == ["/admin/rate-limit/p1"]  # none sent


@pytest.mark.parametrize("value", ["..", ".", "%2e%2e"])
def test_a_label_that_is_a_dot_segment_cannot_climb_the_url_path(admin: Admin, tmp_path: Path,
                                                                  value: str) -> None:
    """`/admin/services/${labels.service}/restart` with service `..` is `/admin/restart` once the
    client (httpx) or the server removes dot segments: a templated value must not be one."""
    body = f"""
    rules:
      - name: r
        match: {{labels: {{service: {{regex: '.*'}}}}}}
        ladder:
          - {{name: t, hook: http, wait_s: 0,
              params: {{url: "{admin.url}/admin/services/${{labels.service}}/restart"}}}}
    """ + NO_GUARDS
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy(body), store, settings=EngineSettings(dry_run=False))
        e.submit(trig(service=value))
        await settle(e)
    run(go())
    st = admin.wait_up()  # (before the fix `..` reached /admin/restart: the service re-exec'd)
    assert st["restarts"] == 0
    if value == "%2e%2e":  # percent-encoded by the template: a harmless segment, sent as such
        assert [c["path"] for c in st["calls"]] == ["/admin/services/%252e%252e/restart"]
        return
    assert st["calls"] == []
    (rec,) = [r for r in store.query() if r.verdict in ("input_error", "acted", "failed")]
    assert rec.verdict == "input_error" and "dot segment" in rec.detail


# ---- guards between episodes, and dry-run -------------------------------------------------------
class Pager:
    """A real HTTP endpoint that records the pages it receives."""

    def __init__(self) -> None:
        pages = self.pages = []  # type: list[dict[str, Any]]

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_POST(self) -> None:
                pages.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/page"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.parametrize("guard", ["cooldown", "target_budget"])
def test_a_dry_run_period_never_blocks_the_first_real_action(admin: Admin, tmp_path: Path,
                                                             guard: str) -> None:
    """Dry-run rows are what would have happened: they must not hold a cooldown or spend a budget
    for the engine that acts (the dry-run engine still simulates its own guards)."""
    guards = ("{cooldown_s: 300, retries: {attempts: 0}}" if guard == "cooldown" else
              "{cooldown_s: 0, retries: {attempts: 0}, budget: {window_s: 3600, max_per_target: 1}}")
    body = throttle_rule(admin.url) + f"\n    guards: {guards}\n"
    db, now = tmp_path / "audit.db", [1000.0]

    async def deliver(dry_run: bool, *episodes: str) -> None:
        e = Engine(policy(body), AuditStore(db), settings=EngineSettings(dry_run=dry_run),
                   clock=lambda: now[0])
        for i, fp in enumerate(episodes):
            e.submit(trig(fp, starts=now[0] + i))
            await settle(e)
    run(deliver(True, "dry1", "dry2"))  # a dry-run period: the second one is simulated as held
    now[0] += 155
    run(deliver(False, "real"))  # then Vigil acts
    rows = {r.episode.split("@")[0]: (r.verdict, r.guard, r.detail) for r in AuditStore(db).query()
            if r.verdict in ("dry_run", "acted", "suppressed")}
    assert rows["dry1"][0] == "dry_run" and rows["dry2"][:2] == ("suppressed", guard)
    assert rows["real"][0] == "acted", rows["real"]
    assert admin.status()["rate_limit"] == 5  # it really acted


def test_the_readme_ladder_climbs_to_the_same_hook_on_the_same_target_and_pages(
        admin: Admin, tmp_path: Path) -> None:
    """The README's ladder: throttle (http), restart and rollback (kubernetes, the same target).
    The cooldown is between episodes: the rollback after a restart of the same deployment in the
    same episode runs, and the top of the ladder pages. A second episode within the cooldown is
    still held."""
    from tests.support.services.fake_kube import FakeKube, write_kubeconfig

    kube, pager = FakeKube(), Pager()
    cfg = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
    body = f"""
    rules:
      - name: checkout-errors
        match: {{labels: {{service: {{in: [cart, checkout]}}}}}}
        ladder:
          - name: throttle
            hook: http
            params: {{url: "{admin.url}/admin/rate-limit/${{labels.service}}", json: {{limit: 50}}}}
            wait_s: 0.2
          - name: restart
            hook: kubernetes
            restart: true
            wait_s: 0.2
            params: {{operation: restart, namespace: shop, deployment: "${{labels.service}}",
                      kubeconfig: "{cfg}"}}
          - name: rollback
            hook: kubernetes
            wait_s: 0.2
            params: {{operation: rollback, namespace: shop, deployment: "${{labels.service}}",
                      kubeconfig: "{cfg}"}}
    guards:
      cooldown_s: 300
      budget: {{window_s: 3600, max_actions: 20, max_per_target: 3}}
      retries: {{attempts: 0}}
      restart_loop: {{max_restarts: 3, window_s: 1800}}
    page: {{url: "{pager.url}"}}
    """
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy(body), store, settings=EngineSettings(dry_run=False))
        e.submit(trig("first"))
        await settle(e)
        e.submit(trig("second", starts=2000.0))  # another episode, same target, within 300 s
        await settle(e)
    try:
        run(go())
    finally:
        kube.server.shutdown()
        pager.close()
    first = [(r.rung_name, r.verdict, r.guard) for r in store.query(episode="first@1000.000")]
    assert first == [("throttle", "acted", None), ("throttle", "not_better", None),
                     ("restart", "acted", None), ("restart", "not_better", None),
                     ("rollback", "acted", None), ("rollback", "not_better", None),
                     (None, "escalated", None)], first
    assert kube.deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "cart:1.0"
    assert len(pager.pages) == 1 and "exhausted" in pager.pages[0]["text"]
    (second,) = [(r.rung_name, r.verdict, r.guard, r.detail)
                 for r in store.query(episode="second@2000.000")]
    assert second[:3] == ("throttle", "suppressed", "cooldown") and "another episode" in second[3]


def test_a_climb_stopped_by_a_guard_pages(tmp_path: Path) -> None:
    """Once a ladder has acted and it did not help, a guard that stops the next rung leaves the
    problem with nobody: the engine pages (escalated, saying which guard) instead of stopping
    quietly."""
    body = """
    rules:
      - name: r
        match: {}
        ladder:
          - {name: one, hook: log, wait_s: 0, success: {resolved: true}}
          - {name: two, hook: log, wait_s: 0, success: {resolved: true}}
    guards: {cooldown_s: 0, retries: {attempts: 0}, budget: {max_per_target: 1}}
    """
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy(body), store, settings=EngineSettings(dry_run=False))
        e.submit(trig())
        await settle(e)
    run(go())
    rows = [(r.rung_name, r.verdict, r.guard) for r in store.query()]
    assert rows == [("one", "acted", None), ("one", "not_better", None),
                    ("two", "suppressed", "target_budget"), (None, "escalated", None)], rows
    assert "target_budget" in store.query(verdict="escalated")[0].detail


# ---- credentials -------------------------------------------------------------------------------
def test_credentials_from_a_file_and_the_environment_reach_the_target_but_never_the_audit(
        admin: Admin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "gateway-token"
    token_file.write_text("gw-SECRET-file-123\n")
    monkeypatch.setenv("VIGIL_TEST_QUERY_KEY", "q-SECRET-env-456")
    pager = Pager()
    body = f"""
    credentials:
      gateway: {{file: "{token_file}"}}
      query: {{env: VIGIL_TEST_QUERY_KEY}}
      missing: {{file: "{tmp_path / 'nope'}"}}
    rules:
      - name: r
        match: {{labels: {{service: cart}}}}
        ladder:
          - name: t
            hook: http
            wait_s: 0
            success: {{resolved: false}}
            params:
              url: "{admin.url}/admin/rate-limit/${{labels.service}}?k=${{credentials.query}}"
              json: {{limit: 5}}
              headers: {{Authorization: "Bearer ${{credentials.gateway}}"}}
      - name: broken
        match: {{labels: {{service: db}}}}
        ladder:
          - {{name: t, hook: http, wait_s: 0, params: {{url: "{admin.url}/admin/rate-limit/x",
              headers: {{Authorization: "Bearer ${{credentials.missing}}"}}}}}}
    page: {{url: "{pager.url}", headers: {{Authorization: "Bearer ${{credentials.gateway}}"}}}}
    """ + NO_GUARDS
    db = tmp_path / "a.db"

    async def go() -> None:
        e = Engine(policy(body), AuditStore(db), settings=EngineSettings(dry_run=False))
        e.submit(trig())
        e.submit(trig("other", service="db"))
        await settle(e)
    try:
        run(go())
    finally:
        pager.close()
    (call,) = admin.status()["calls"]
    assert call["auth"] == "Bearer gw-SECRET-file-123"
    assert call["path"] == "/admin/rate-limit/cart?k=q-SECRET-env-456"  # both reached the target
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("a.db"))
    assert b"SECRET" not in raw  # not in params, not in the detail's URL, not anywhere
    recs = AuditStore(db).query()
    acted = next(r for r in recs if r.verdict == "acted")
    assert acted.params is not None and acted.params["headers"]["Authorization"] == "***"
    assert "k=***" in acted.params["url"] and "k=***" in acted.detail
    failed = next(r for r in recs if r.rule == "broken" and r.verdict == "failed")
    assert "credentials.missing" in failed.detail and "nope" in failed.detail
    assert len(pager.pages) == 1 and "SECRET" not in json.dumps(pager.pages)


# ---- a crash in the middle of an action ---------------------------------------------------------
ENGINE_CHILD = """
import asyncio, sys
from remediation.audit import AuditStore
from remediation.engine import Engine
from remediation.engine_settings import EngineSettings
from remediation.policy import parse_policy
from remediation.trigger import Trigger

async def main() -> None:
    engine = Engine(parse_policy(open(sys.argv[1]).read()), AuditStore(sys.argv[2]),
                    settings=EngineSettings(dry_run=False))
    await engine.process(Trigger("alertmanager", "crash", "firing", 1000.0,
                                 labels={"service": "cart", "severity": "page"}))

asyncio.run(main())
"""


@pytest.mark.parametrize("on_interrupt", ["retry", "escalate"])
def test_an_action_interrupted_by_a_crash_is_audited_then_retried_or_escalated(
        tmp_path: Path, on_interrupt: str) -> None:
    """The engine process is killed while its hook runs: the claim is on disk, no outcome row is.
    On the next start the claim is resolved: audited `interrupted`, then retried (the rung says
    on_interrupt: retry, or its hook is idempotent) or escalated to a person (the default for a
    command), whether or not Alertmanager resends the alert."""
    started, once = tmp_path / "started", tmp_path / "ran-once"
    hook = tmp_path / "restart.sh"  # the first run hangs (and is killed), a second one succeeds
    hook.write_text(f"#!/bin/sh\necho $$ >> {started}\n[ -e {once} ] && exit 0\n"
                    f"touch {once}\nsleep 30\n")
    hook.chmod(0o755)
    pager = Pager()
    extra = "\n                on_interrupt: retry" if on_interrupt == "retry" else ""
    (tmp_path / "policy.yaml").write_text(textwrap.dedent(f"""
        rules:
          - name: r
            match: {{labels: {{service: cart}}}}
            ladder:
              - name: restart
                hook: command
                timeout_s: 2{extra}
                wait_s: 0
                success: {{resolved: false}}
                params: {{argv: ["{hook}"]}}
        guards: {{cooldown_s: 0, retries: {{attempts: 0}}}}
        page: {{url: "{pager.url}"}}
    """))
    db = tmp_path / "audit.db"
    child = subprocess.Popen([sys.executable, "-c", ENGINE_CHILD, str(tmp_path / "policy.yaml"),
                              str(db)])
    try:
        deadline = time.monotonic() + 30
        while not (started.exists() and started.read_text().strip()):
            assert time.monotonic() < deadline and child.poll() is None, "the hook never started"
            time.sleep(0.05)
        child.kill()  # the crash: mid-hook
        child.wait()
        os.killpg(int(started.read_text().split()[0]), signal.SIGKILL)  # its orphaned hook too
        before = [(r.verdict, r.guard) for r in AuditStore(db).query()]
        assert before == []  # claimed, and then nothing

        async def restart() -> None:
            e = Engine(policy((tmp_path / "policy.yaml").read_text()), AuditStore(db),
                       settings=EngineSettings(dry_run=False))
            if on_interrupt == "retry":  # Alertmanager resends while it is being resolved
                await e.process(trig("crash"))
            else:  # nothing resends: the start alone resolves it
                assert e.resume_interrupted() == 1
            await settle(e)
        run(restart())
    finally:
        pager.close()
    rows = [(r.rung_name, r.verdict) for r in AuditStore(db).query()]
    interrupted = AuditStore(db).query(verdict="interrupted")
    assert len(interrupted) == 1 and "outcome is unknown" in interrupted[0].detail
    if on_interrupt == "retry":
        assert rows == [("restart", "interrupted"), ("restart", "acted"), ("restart", "verified")]
        assert len(started.read_text().split()) == 2  # it really ran again
        assert pager.pages == []
    else:
        assert rows == [("restart", "interrupted"), ("restart", "escalated")], rows
        assert len(started.read_text().split()) == 1  # not run twice
        assert len(pager.pages) == 1 and "interrupted" in pager.pages[0]["text"]

    async def again() -> int:  # resolved once: a second start finds nothing to resolve
        e = Engine(policy((tmp_path / "policy.yaml").read_text()), AuditStore(db),
                   settings=EngineSettings(dry_run=False))
        return e.resume_interrupted()
    assert run(again()) == 0


def test_finished_episodes_are_forgotten_and_a_late_resend_is_still_refused(tmp_path: Path) -> None:
    from remediation.audit import AuditStore
    from remediation.engine import Engine, EngineSettings

    policy = parse_policy("rules: [{name: r, ladder: [{name: n, hook: log, wait_s: 0, "
                          "success: {resolved: false}}]}]\nguards: {cooldown_s: 0, budget: "
                          "{max_actions: 100000, max_per_target: 100000}}\n", "p.yaml")
    now = [1000.0]
    store = AuditStore(tmp_path / "audit.db")

    async def run() -> Engine:
        e = Engine(policy, store, settings=EngineSettings(episode_memory_s=60),
                   clock=lambda: now[0])
        first = Trigger("alertmanager", "old", "firing", 1.0, labels={"service": "a"})
        await e.process(first)
        now[0] += 120  # the episode is finished and older than its memory
        await asyncio.gather(*(  # a sweep every 4,096 triggers
            e.process(Trigger("alertmanager", f"new{i}", "firing", 2.0, labels={"service": f"s{i}"}))
            for i in range(4095)))
        assert e.episodes_in_memory() == 4095  # "old" forgotten; the new ones are recent
        await e.process(first)  # a late resend of the forgotten episode
        return e
    asyncio.run(run())
    old = store.query(episode="old@1.000")
    assert [r.verdict for r in old].count("dry_run") == 1
    assert any(r.guard == "idempotency" for r in old)  # refused by its durable claim


@pytest.mark.parametrize("resolves", [True, False])
def test_a_verification_cut_short_by_a_stop_is_finished_by_the_next_engine(
        tmp_path: Path, resolves: bool) -> None:
    """The engine acted on rung 0 and stopped while waiting to see whether it helped. The next
    engine on the audit, given the episode again, finishes that wait (what is left of it): the
    step is verified if the alert resolves, and otherwise the ladder climbs. Never forgotten."""
    body = """
    rules:
      - name: r
        match: {}
        ladder:
          - {name: restart, hook: log, wait_s: 1.5}
          - {name: rollback, hook: log, wait_s: 0, success: {resolved: false}}
    """ + NO_GUARDS
    db = tmp_path / "audit.db"

    async def first() -> None:
        e = Engine(policy(body), AuditStore(db))
        e.submit(trig("ep"))
        for _ in range(100):  # until the step has run; then the process "dies" mid-wait
            await asyncio.sleep(0.01)
            if any(r.verdict == "dry_run" for r in e.store.query()):
                return
        raise AssertionError("rung 0 never ran")

    async def second() -> None:
        e = Engine(policy(body), AuditStore(db))
        e.submit(trig("ep"))  # redelivered after the restart
        if resolves:
            await asyncio.sleep(0.2)
            e.submit(trig("ep", status="resolved"))
        await settle(e)
    run(first())
    run(second())
    rows = sorted(AuditStore(db).query(), key=lambda r: r.id or 0)
    steps = [(r.rung_name, r.verdict) for r in rows if r.rung_name]
    if resolves:
        assert steps == [("restart", "dry_run"), ("restart", "verified")]
        assert any("the engine stopped while waiting" in r.detail for r in rows
                   if r.verdict == "verified")
    else:
        assert steps == [("restart", "dry_run"), ("restart", "not_better"),
                         ("rollback", "dry_run"), ("rollback", "verified")]
