"""Schemathesis over the receiver's OpenAPI schema, through real HTTP on loopback: generated and
malformed requests never get a 5xx, and a rejected request records nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings

from detector.bench.servers import free_port
from remediation.alertmanager.app import create_app
from remediation.alertmanager.inbox import Inbox
from remediation.alertmanager.settings import ServeConfig

TOKEN = "fuzz-token-16-bytes-or-more"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    (tmp / "policy.yaml").write_text("rules: [{name: all, ladder: [{name: n, hook: log}]}]\n")
    (tmp / "token").write_text(TOKEN)
    cfg = ServeConfig(policy=tmp / "policy.yaml", audit_db=tmp / "audit.db",
                        inbox_db=tmp / "inbox.db", bearer_token_file=tmp / "token")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port,
                                          log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url, cfg.inbox_db
    server.should_exit = True
    thread.join(timeout=60)  # the app shuts down now, not while the interpreter exits


def test_no_5xx_and_nothing_recorded_from_a_rejected_request(served: tuple[str, Path]) -> None:
    """Every operation of the schema, with schemathesis' generated cases (valid and not)."""
    from hypothesis import given

    url, inbox = served
    calls: list[int] = []
    schema = schemathesis.openapi.from_url(url + "/openapi.json", headers=AUTH)  # behind auth
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            before = Inbox(inbox).count()
            response = case.call(base_url=url, headers=AUTH)
            calls.append(response.status_code)
            assert response.status_code < 500, (case.method, case.path, response.text)
            if response.status_code >= 400 and case.method.upper() == "POST":
                assert Inbox(inbox).count() == before
        check()
    assert len(calls) >= 50 and any(c == 200 for c in calls) and any(c >= 400 for c in calls)


def test_garbage_bodies_are_4xx(served: tuple[str, Path]) -> None:
    url, inbox = served
    before = Inbox(inbox).count()
    for body in (b"", b"null", b"[]", b'{"version": 4}', b"\xff\xfe", b'{"alerts": "x"}' * 100,
                 b'{"version": "4", "groupKey": 1, "status": "x", "receiver": [], "alerts": {}}'):
        r = httpx.post(url + "/alertmanager", content=body,
                       headers={**AUTH, "Content-Type": "application/json"})
        assert 400 <= r.status_code < 500, (body, r.status_code)
    assert Inbox(inbox).count() == before
