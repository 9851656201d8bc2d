"""The Alertmanager webhook receiver through FastAPI's test client: auth, validation, durable
intake, one action per episode across resends and restarts, back-pressure, the audit API."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from remediation.alertmanager.app import create_app
from remediation.alertmanager.inbox import Inbox
from remediation.alertmanager.settings import AuthError, ServeConfig

TOKEN = "s3cret-token-for-tests"  # 23 bytes: shorter than 16 is refused
POLICY = """
rules:
  - name: page-cart
    match: {labels: {service: cart}}
    ladder:
      - {name: note, hook: log, wait_s: 0, success: {resolved: false}}
guards: {cooldown_s: 0}
"""


def notification(status: str = "firing", n: int = 1, fp: str = "abc123", **extra: Any) -> dict[str, Any]:
    alerts = [{"status": status, "labels": {"alertname": "HighErrors", "service": "cart",
                                            "severity": "page"},
               "annotations": {"summary": "errors"}, "startsAt": "2026-11-23T10:00:00Z",
               "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph",
               "fingerprint": f"{fp}{i}" if n > 1 else fp, "unknownKey": 1} for i in range(n)]
    return {"version": "4", "groupKey": "{}:{alertname=\"HighErrors\"}", "truncatedAlerts": 0,
            "status": status, "receiver": "vigil", "groupLabels": {"alertname": "HighErrors"},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "alerts": alerts, "somethingNew": True, **extra}


@pytest.fixture
def settings(tmp_path: Path) -> ServeConfig:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    return ServeConfig(policy=policy, audit_db=tmp_path / "audit.db",
                         inbox_db=tmp_path / "inbox.db", bearer_token_file=token,
                         basic_user="am", basic_password_file=token)


def client(settings: ServeConfig) -> TestClient:
    return TestClient(create_app(settings))


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def wait_for(c: TestClient, predicate: Any, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        actions = c.get("/actions", headers=AUTH).json()
        if predicate(actions) or time.monotonic() > deadline:
            return list(actions)
        time.sleep(0.05)


@pytest.fixture
def app(settings: ServeConfig) -> Iterator[TestClient]:
    with client(settings) as c:
        yield c


def test_an_alert_is_accepted_stored_and_acted_on_in_dry_run(app: TestClient) -> None:
    r = app.post("/alertmanager", json=notification(), headers=AUTH)
    assert r.status_code == 200 and r.json()["accepted"] == 1
    actions = wait_for(app, lambda a: any(x["verdict"] == "dry_run" for x in a))
    rec = next(x for x in actions if x["verdict"] == "dry_run")
    assert rec["hook"] == "log" and rec["target"] == "cart" and rec["source"] == "alertmanager"
    assert app.get("/episodes", headers=AUTH).json()[0]["status"] == "firing"
    alias = app.post("/api/v1/alerts/alertmanager", json=notification(fp="other"), headers=AUTH)
    assert alias.status_code == 200


def test_credentials_are_required_and_a_rejected_call_records_nothing(
        app: TestClient, settings: ServeConfig) -> None:
    assert app.post("/alertmanager", json=notification()).status_code == 401
    assert app.post("/alertmanager", json=notification(),
                    headers={"Authorization": "Bearer wrong"}).status_code == 401
    basic = base64.b64encode(f"am:{TOKEN}".encode()).decode()
    bad_basic = base64.b64encode(b"am:nope").decode()
    assert app.post("/alertmanager", json=notification(),
                    headers={"Authorization": f"Basic {bad_basic}"}).status_code == 401
    assert app.get("/actions").status_code == 401
    assert Inbox(settings.inbox_db).count() == 0
    ok = app.post("/alertmanager", json=notification(), headers={"Authorization": f"Basic {basic}"})
    assert ok.status_code == 200


def test_the_server_refuses_to_start_without_credentials(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_SERVE__BEARER_TOKEN", raising=False)
    monkeypatch.delenv("VIGIL_SERVE__BASIC_PASSWORD", raising=False)
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    with pytest.raises(AuthError, match="no credentials"):
        create_app(ServeConfig(policy=policy, audit_db=tmp_path / "a.db", inbox_db=tmp_path / "i.db"))


def test_docs_need_the_same_credentials_unless_public_docs(app: TestClient,
                                                          settings: ServeConfig) -> None:
    for path in ("/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"):
        assert app.get(path).status_code == 401, path
    assert app.get("/openapi.json", headers=AUTH).status_code == 200
    for path in ("/healthz", "/readyz", "/metrics"):  # probes and scrapers stay open
        assert app.get(path).status_code == 200, path
    # Credentials are checked before the body is read: a stranger's bad JSON is a 401, not a 422.
    assert app.post("/alertmanager", content=b"{NaN", headers={"Content-Type": "application/json"}
                    ).status_code == 401
    with client(settings.model_copy(update={"public_docs": True})) as public:
        assert public.get("/docs").status_code == 200
        assert "/alertmanager" in public.get("/openapi.json").text
        assert public.get("/actions").status_code == 401  # only the docs are public


@pytest.mark.parametrize("field", ["bearer_token_file", "basic_password_file"])
def test_credentials_shorter_than_16_bytes_are_refused(tmp_path: Path, settings: ServeConfig,
                                                       field: str) -> None:
    short = tmp_path / "short"
    short.write_text("fifteen-bytes!!\n")  # 15 bytes once the newline is stripped
    update: dict[str, Any] = {"bearer_token_file": None, "basic_user": "am", field: short}
    if field == "bearer_token_file":
        update["basic_user"] = None
    with pytest.raises(AuthError, match=r"15 bytes.*at least 16"):
        create_app(settings.model_copy(update=update))
    short.write_text("sixteen-bytes!!!")
    create_app(settings.model_copy(update=update))  # 16 is enough


@pytest.mark.parametrize(("body", "where"), [
    ({**notification(), "version": "3"}, "version"),
    ({**notification(), "alerts": [{"status": "firing"}]}, "fingerprint"),
    ({k: v for k, v in notification().items() if k != "groupKey"}, "groupKey"),
    ({**notification(), "alerts": [{**notification()["alerts"][0], "startsAt": "yesterday"}]},
     "startsAt"),
])
def test_malformed_notifications_get_a_4xx_naming_the_problem(
        app: TestClient, settings: ServeConfig, body: dict[str, Any], where: str) -> None:
    r = app.post("/alertmanager", json=body, headers=AUTH)
    assert r.status_code == 422 and where in r.text
    assert Inbox(settings.inbox_db).count() == 0


def test_not_json_and_oversize_bodies_are_refused(app: TestClient, settings: ServeConfig) -> None:
    r = app.post("/alertmanager", content=b"{nope", headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422
    big = b'{"x": "' + b"a" * (settings.max_body_bytes + 10) + b'"}'
    r = app.post("/alertmanager", content=big, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert Inbox(settings.inbox_db).count() == 0


def _raw(text: str, old: str, new: str) -> bytes:
    assert old in text
    return text.replace(old, new, 1).encode()


_BODY = json.dumps(notification())


@pytest.mark.parametrize(("body", "problem"), [
    (_raw(_BODY, '"truncatedAlerts": 0', '"truncatedAlerts": NaN'), "expected a JSON value"),
    (_raw(_BODY, '"version": "4"', '"version": -Infinity'), "no digit after sign"),
    (_raw(_BODY, '"cart"', "Infinity"), "expected a JSON value"),
    (_raw(_BODY, '"cart"', '"\\ud800"'), "surrogate"),  # a lone high surrogate, escaped
    (_raw(_BODY, '"service"', '"\\udfff"'), "surrogate"),  # a lone low surrogate, as a key
    (_BODY.encode().replace(b'"cart"', b'"\xed\xa0\x80"'), "UTF-8"),  # a surrogate, as raw bytes
])
def test_bodies_that_are_not_strict_json_get_a_4xx_naming_the_problem(
        app: TestClient, settings: ServeConfig, body: bytes, problem: str) -> None:
    """NaN, Infinity and lone surrogates are not JSON (RFC 8259); Python's json module takes them,
    and the answer was a 500, which Alertmanager retries until the alert expires."""
    r = app.post("/alertmanager", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422 and problem in r.text and "not JSON" in r.text, r.text
    assert Inbox(settings.inbox_db).count() == 0
    ok = _raw(_BODY, '"cart"', '"cart \\ud83d\\ude00"')  # a surrogate pair is fine
    assert app.post("/alertmanager", content=ok, headers={**AUTH, "Content-Type": "application/json"}
                    ).status_code == 200


def test_five_deliveries_and_a_restart_still_act_once(settings: ServeConfig) -> None:
    with client(settings) as c:
        for _ in range(5):
            assert c.post("/alertmanager", json=notification(), headers=AUTH).status_code == 200
        wait_for(c, lambda a: any(x["verdict"] == "dry_run" for x in a))
    with client(settings) as c:  # Vigil restarted between deliveries
        assert c.post("/alertmanager", json=notification(), headers=AUTH).status_code == 200
        actions = wait_for(c, lambda a: sum(x["guard"] == "idempotency" for x in a) >= 1)
    assert sum(x["verdict"] == "dry_run" for x in actions) == 1
    assert Inbox(settings.inbox_db).count() == 6  # every delivery was kept


def test_resolution_closes_the_episode(app: TestClient) -> None:
    app.post("/alertmanager", json=notification(), headers=AUTH)
    app.post("/alertmanager", json=notification("resolved"), headers=AUTH)
    actions = wait_for(app, lambda a: any(x["verdict"] == "resolved" for x in a))
    assert any(x["verdict"] == "resolved" for x in actions)
    assert app.get("/episodes", headers=AUTH).json()[0]["status"] == "resolved"


def test_a_full_queue_answers_503_with_retry_after_and_stores_nothing(tmp_path: Path,
                                                                     settings: ServeConfig) -> None:
    small = settings.model_copy(update={"queue_size": 2})
    with client(small) as c:
        r = c.post("/alertmanager", json=notification(n=3), headers=AUTH)
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert Inbox(small.inbox_db).count() == 0


def test_alerts_stored_before_a_crash_are_processed_on_start(settings: ServeConfig) -> None:
    from remediation.trigger import Trigger

    Inbox(settings.inbox_db).add([Trigger("alertmanager", "left", "firing", 1.0,
                                          labels={"service": "cart"})])
    with client(settings) as c:
        actions = wait_for(c, lambda a: any(x["episode"] == "left@1.000" for x in a))
    assert any(x["episode"] == "left@1.000" and x["verdict"] == "dry_run" for x in actions)


def test_health_metrics_and_approval_endpoints(app: TestClient) -> None:
    assert app.get("/healthz").json()["alive"] is True
    ready = app.get("/readyz")
    assert ready.status_code == 200 and ready.json()["mode"] == "dry-run"  # says it does not act
    assert ready.json()["policy"].endswith(".yaml")
    app.post("/alertmanager", json=notification(), headers=AUTH)
    assert "vigil_webhook_alerts_total" in app.get("/metrics").text
    assert app.post("/actions/999/approve", headers=AUTH).status_code == 404
    assert app.post("/actions/999/reject", headers=AUTH).status_code == 404
    assert app.get("/docs", headers=AUTH).status_code == 200
    assert "/alertmanager" in app.get("/openapi.json", headers=AUTH).text


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(app: TestClient,
                                                                settings: ServeConfig) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        yield b'{"version": "4", "x": "'
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"a" * 65536
        yield b'"}'
    r = app.post("/alertmanager", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert Inbox(settings.inbox_db).count() == 0


def test_approval_through_the_api_lets_the_action_run_or_refuses_it(tmp_path: Path,
                                                                      settings: ServeConfig) -> None:
    policy = tmp_path / "approve.yaml"
    policy.write_text(POLICY.replace("    ladder:", "    approval: {required: true, expires_s: 60}\n"
                                                  "    ladder:"))
    acting = settings.model_copy(update={"policy": policy, "engine": settings.engine.model_copy(
        update={"dry_run": False})})  # the log hook acts
    with client(acting) as c:
        c.post("/alertmanager", json=notification(fp="yes"), headers=AUTH)
        c.post("/alertmanager", json=notification(fp="no"), headers=AUTH)
        pending = wait_for(c, lambda a: sum(x["verdict"] == "pending_approval" for x in a) == 2)
        ids = {x["fingerprint"]: x["id"] for x in pending if x["verdict"] == "pending_approval"}
        assert not any(x["verdict"] == "acted" for x in pending)  # nothing ran without approval
        assert c.post(f"/actions/{ids['yes']}/approve", headers=AUTH).json() == {"approved": ids["yes"]}
        assert c.post(f"/actions/{ids['no']}/reject", headers=AUTH).status_code == 200
        assert c.post(f"/actions/{ids['no']}/approve", headers=AUTH).status_code == 404  # answered
        done = wait_for(c, lambda a: any(x["verdict"] == "rejected" for x in a)
                        and any(x["verdict"] == "acted" for x in a))
    by_fp = {(x["fingerprint"], x["verdict"]) for x in done}
    assert ("yes", "acted") in by_fp and ("no", "rejected") in by_fp and ("no", "acted") not in by_fp


def test_a_killed_engine_process_is_restarted_and_its_unfinished_alerts_redone(
        settings: ServeConfig) -> None:
    slow = settings.policy.parent / "slow.yaml"  # the ladder waits 30 s for a resolution
    slow.write_text(POLICY.replace("wait_s: 0, success: {resolved: false}",
                                   "wait_s: 30, success: {resolved: true}"))
    with client(settings.model_copy(update={"policy": slow})) as c:
        receiver = c.app.state.receiver  # type: ignore[attr-defined]
        c.post("/alertmanager", json=notification(), headers=AUTH)
        wait_for(c, lambda a: any(x["verdict"] == "dry_run" for x in a))
        first = receiver.engine.process
        first.kill()  # the episode is mid-ladder: not finished, so not marked processed
        deadline = time.monotonic() + 30
        while not (receiver.engine.alive and receiver.engine.process is not first):
            assert time.monotonic() < deadline, "the engine process was not restarted"
            time.sleep(0.1)
        actions = wait_for(c, lambda a: any(x["guard"] == "idempotency" for x in a))
        assert c.get("/readyz").status_code == 200
        assert "vigil_webhook_engine_restarts_total 1.0" in c.get("/metrics").text
    # Redone after the restart, and refused by the claim: still one action.
    assert sum(x["verdict"] == "dry_run" for x in actions) == 1


def test_progress_survives_out_of_order_finishes_and_old_finished_alerts_are_pruned(
        tmp_path: Path) -> None:
    from remediation.alertmanager.progress import Progress, read_progress
    from remediation.trigger import Trigger

    inbox = Inbox(tmp_path / "inbox.db")
    ids = inbox.add([Trigger("alertmanager", f"f{i}", "firing", 1.0) for i in range(5)])
    p = Progress(tmp_path / "p")
    p.save([ids[0], ids[2], ids[3]], watermark=ids[0])  # 2 still running; 3 and 4 finished
    p.close()
    again = Progress(tmp_path / "p")  # a restarted engine process
    rows = inbox.after(again.watermark, 100)
    assert [i for i, _ in again.pending(rows)] == [ids[1], ids[4]]
    assert read_progress(tmp_path / "p") == (ids[0], 2)
    assert inbox.prune(again.watermark, before=time.time() + 1) == 1  # only what is finished
    assert inbox.prune(ids[-1], before=0.0) == 0  # nothing older than the retention
    assert inbox.count() == 4


def test_an_unreadable_inbox_row_is_skipped_not_retried_forever(settings: ServeConfig) -> None:
    import sqlite3

    from remediation.trigger import Trigger

    inbox = Inbox(settings.inbox_db)
    inbox.add([Trigger("alertmanager", "before", "firing", 1.0, labels={"service": "cart"})])
    inbox.close()
    with sqlite3.connect(settings.inbox_db) as db:  # a damaged row, as a disk fault might leave
        db.execute("INSERT INTO inbox (received, episode, status, trigger) "
                   "VALUES (0, 'x', 'firing', '{not json')")
    inbox = Inbox(settings.inbox_db)
    inbox.add([Trigger("alertmanager", "after", "firing", 1.0, labels={"service": "cart"})])
    inbox.close()
    with client(settings) as c:
        actions = wait_for(c, lambda a: {x["fingerprint"] for x in a} >= {"before", "after"})
        assert c.get("/readyz").status_code == 200
    assert {x["fingerprint"] for x in actions if x["verdict"] == "dry_run"} == {"before", "after"}


def test_slow_header_clients_are_cut_off_while_others_are_served(tmp_path: Path) -> None:
    """Slowloris against `vigil serve` (a child process, uvicorn with httptools): clients that
    send their headers a byte at a time are answered 408 and closed once --header-timeout has
    passed, while a well-behaved client is served throughout, keep-alive included."""
    import socket
    import subprocess
    import sys

    import httpx

    from detector.bench.servers import free_port

    (tmp_path / "policy.yaml").write_text("rules: []\n")
    (tmp_path / "token").write_text(TOKEN)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "detector", "serve", "--policy", str(tmp_path / "policy.yaml"),
         "--token-file", str(tmp_path / "token"), "--port", str(port), "--header-timeout", "1",
         "--audit-db", str(tmp_path / "a.db"), "--inbox-db", str(tmp_path / "i.db")])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/healthz")
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "vigil serve did not come up"
                time.sleep(0.1)
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        idle = socket.create_connection(("127.0.0.1", port))  # connects and sends nothing
        for s in slow:
            s.sendall(b"POST /alertmanager HTTP/1.1\r\nHost: vigil\r\nX-Slow: ")
            s.setblocking(False)
        t0 = time.monotonic()
        closed: dict[int, float] = {}
        answers: dict[int, bytes] = {}
        worst = 0.0
        with httpx.Client(base_url=url) as good:  # one keep-alive connection, used throughout
            while len(closed) < len(slow) and time.monotonic() - t0 < 8:
                for i, s in enumerate(slow):
                    if i in closed:
                        continue
                    try:
                        s.sendall(b"a")  # one more byte of a header that never ends
                        data = s.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    answers[i] = answers.get(i, b"") + data
                    if not data or b"\r\n\r\n" in answers[i]:
                        closed[i] = time.monotonic() - t0
                t = time.monotonic()
                assert good.get("/healthz").status_code == 200
                worst = max(worst, time.monotonic() - t)
                time.sleep(0.2)
        assert len(closed) == len(slow), f"still open after 8 s: {len(slow) - len(closed)}"
        assert all(0.8 <= c <= 3.0 for c in closed.values()), closed
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers.values()), answers
        assert worst < 1.0  # the well-behaved client was never made to wait
        idle.settimeout(3)
        assert idle.recv(4096).startswith(b"HTTP/1.1 408")  # a silent connection too
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_every_database_is_created_private(settings: ServeConfig, tmp_path: Path) -> None:
    """Audit, inbox and progress files (with their -wal and -shm) are 0600 from creation, even
    under a umask that would allow more: they hold alerts, params and the engine's state."""
    import os
    import stat

    from remediation.alertmanager.progress import progress_path

    nested = settings.model_copy(update={"audit_db": tmp_path / "state" / "audit.db",
                                         "inbox_db": tmp_path / "state" / "inbox.db"})
    old = os.umask(0)
    try:
        with client(nested) as c:
            c.post("/alertmanager", json=notification(), headers=AUTH)
            wait_for(c, lambda a: any(x["verdict"] == "dry_run" for x in a))
            files = [p for db in (nested.audit_db, nested.inbox_db, progress_path(nested.inbox_db))
                     for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))]
            modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    finally:
        os.umask(old)
    assert modes == {name: "0o600" for name in modes}, modes
    assert len(modes) == 9
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


def test_secret_alert_fields_are_never_stored_or_served(settings: ServeConfig, tmp_path: Path
                                                        ) -> None:
    """Annotations and labels that look secret (token, password, ...) or that the policy names
    in secret_fields are redacted before either database sees them: the inbox, the audit (its
    trigger column), GET /actions and GET /episodes hold '***'."""
    policy = tmp_path / "secret.yaml"
    policy.write_text(POLICY + "secret_fields: [annotations.session, labels.customer]\n")
    leaks = {"gateway_token": "tok-LEAK-0123456789", "session": "sess-LEAK-42"}
    body = notification()
    body["alerts"][0]["annotations"].update(leaks)
    body["alerts"][0]["labels"]["customer"] = "cust-LEAK-7"
    with client(settings.model_copy(update={"policy": policy})) as c:
        assert c.post("/alertmanager", json=body, headers=AUTH).status_code == 200
        actions = wait_for(c, lambda a: any(x["verdict"] == "dry_run" for x in a))
        served = c.get("/actions", headers=AUTH).text + c.get("/episodes", headers=AUTH).text
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir()
                      if p.name.startswith(("audit.db", "inbox.db")))
    for leak in (b"LEAK", "LEAK"):
        assert leak not in stored if isinstance(leak, bytes) else leak not in served
    rec = next(x for x in actions if x["verdict"] == "dry_run")
    assert rec["trigger"]["annotations"]["gateway_token"] == "***"
    assert rec["trigger"]["annotations"]["session"] == "***"
    assert rec["trigger"]["labels"]["customer"] == "***"
    assert rec["trigger"]["annotations"]["summary"] == "errors"  # the rest is kept


def test_a_step_interrupted_by_a_killed_engine_process_is_resolved_on_its_restart(
        settings: ServeConfig, tmp_path: Path) -> None:
    """vigil serve acting: the engine process is killed while a command runs. The restarted
    engine finds the claim without an outcome, audits it `interrupted` and (on_interrupt: retry)
    runs the step again: the alert is neither lost nor refused as already done."""
    import os
    import signal

    started, once = tmp_path / "started", tmp_path / "ran-once"
    hook = tmp_path / "restart.sh"
    hook.write_text(f"#!/bin/sh\necho $$ >> {started}\n[ -e {once} ] && exit 0\n"
                    f"touch {once}\nsleep 30\n")
    hook.chmod(0o755)
    policy = tmp_path / "crash.yaml"
    policy.write_text(POLICY.replace(
        "      - {name: note, hook: log, wait_s: 0, success: {resolved: false}}",
        f"      - {{name: restart, hook: command, timeout_s: 2, on_interrupt: retry, wait_s: 0,\n"
        f"         success: {{resolved: false}}, params: {{argv: [\"{hook}\"]}}}}").replace(
        "guards: {cooldown_s: 0}", "guards: {cooldown_s: 0, retries: {attempts: 0}}"))
    acting = settings.model_copy(update={"policy": policy, "engine": settings.engine.model_copy(
        update={"dry_run": False})})
    with client(acting) as c:
        receiver = c.app.state.receiver  # type: ignore[attr-defined]
        c.post("/alertmanager", json=notification(), headers=AUTH)
        deadline = time.monotonic() + 30
        while not (started.exists() and started.read_text().strip()):
            assert time.monotonic() < deadline, "the hook never started"
            time.sleep(0.05)
        first = receiver.engine.process
        first.kill()  # mid-hook
        os.killpg(int(started.read_text().split()[0]), signal.SIGKILL)
        actions = wait_for(c, lambda a: any(x["verdict"] == "verified" for x in a), timeout=30)
    assert [(x["rung_name"], x["verdict"]) for x in actions] == [
        ("restart", "interrupted"), ("restart", "acted"), ("restart", "verified")], actions
    assert receiver.engine.process is not first
