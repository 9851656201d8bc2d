"""Remediation across replicas, every part a real process: two `vigil serve --triggers-topic`
receivers (an Alertmanager HA pair's double delivery, and more), two `vigil remediate` engines
sharing a PostgreSQL audit, a real HTTP service they act on. The same notification five times
to each receiver; the engine that ran the first rung is killed with SIGKILL while it waits to
verify; the engine that takes the target over is frozen with SIGSTOP past its session and
thawed with SIGCONT, racing the third for the rest: exactly one action per (episode, rung)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from detector.bench.servers import Broker, free_port
from remediation.audit_log import open_audit
from tests.detector.runtime.test_consume import until
from tests.remediation.alertmanager.test_app import AUTH, TOKEN, notification
from tests.remediation.conftest import pg_dsn, postgres  # noqa: F401  (a real PostgreSQL)

TOPIC = "vigil.triggers"
EPISODE = "abc123@1795428000.000"


class Target:
    """A real HTTP service on loopback that counts the actions it receives."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        lock = threading.Lock()
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    hits[self.path] += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def policy(url: str) -> str:
    return f"""
rules:
  - name: cart
    match: {{labels: {{service: cart}}}}
    ladder:
      - name: restart
        hook: http
        params: {{url: "{url}/restart", method: POST, expect: [200], json: {{}}}}
        timeout_s: 5
        wait_s: 12
        verify: {{resolved: true}}
      - name: rollback
        hook: http
        params: {{url: "{url}/rollback", method: POST, expect: [200], json: {{}}}}
        timeout_s: 5
        wait_s: 0
        verify: {{resolved: false}}
guards: {{cooldown_s: 0, budget: {{window_s: 3600, max_actions: 2}}}}
"""


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker(partitions=2)
    b.topics(TOPIC, "vigil.dead-letters")
    yield b
    b.stop()


def test_two_receivers_and_two_engines_act_once_per_episode_and_rung(
        broker: Broker, pg_dsn: str, tmp_path: Path) -> None:  # noqa: F811
    target = Target()
    (tmp_path / "policy.yaml").write_text(policy(target.url))
    (tmp_path / "token").write_text(TOKEN + "\n")
    base = {**os.environ, "VIGIL_KAFKA__BOOTSTRAP_SERVERS": json.dumps([broker.addr]),
            "VIGIL_KAFKA__SESSION_TIMEOUT_MS": "4000", "VIGIL_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
            "VIGIL_KAFKA__POLL_TIMEOUT_MS": "200", "VIGIL_KAFKA__DRAIN_TIMEOUT_S": "5"}
    logs: dict[str, Path] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def run(name: str, args: list[str], env: dict[str, str]) -> None:
        logs[name] = tmp_path / f"{name}.log"
        fh = logs[name].open("ab")
        procs[name] = subprocess.Popen([sys.executable, "-m", "detector", *args], env=env,
                                       stdout=fh, stderr=fh, cwd=tmp_path)

    def engine(name: str) -> None:
        run(name, ["remediate", "--topic", TOPIC, "--policy", str(tmp_path / "policy.yaml"),
                   "--act", "--http-port", "0"], {**base, "VIGIL_SERVE__AUDIT_DSN": pg_dsn})

    ports = {}
    for name in ("web-a", "web-b"):
        (tmp_path / name).mkdir()
        ports[name] = free_port()
        run(name, ["serve", "--policy", str(tmp_path / "policy.yaml"), "--token-file",
                   str(tmp_path / "token"), "--port", str(ports[name]),
                   "--audit-db", str(tmp_path / name / "audit.db"),
                   "--inbox-db", str(tmp_path / name / "inbox.db"), "--triggers-topic", TOPIC],
            base)
    engine("engine-1")
    engine("engine-2")

    def owner() -> str | None:
        for name in ("engine-1", "engine-2", "engine-3"):
            if name in logs and f"trigger {EPISODE}" in logs[name].read_text():
                return name
        return None

    def taken_over(first: str) -> str | None:
        """The engine other than `first` that most recently got the trigger."""
        last: dict[str, str] = {}
        for name in ("engine-1", "engine-2", "engine-3"):
            if name != first and name in logs:
                seen = [x[:23] for x in logs[name].read_text().splitlines()
                        if f"trigger {EPISODE}" in x]
                if seen:
                    last[name] = seen[-1]
        return max(last, key=last.__getitem__) if last else None

    def actions() -> Counter[tuple[str | None, str]]:
        store = open_audit(pg_dsn)
        try:
            rows = store.query(episode=EPISODE)
        finally:
            store.close()
        return Counter((r.rung_name, r.verdict) for r in rows)

    try:
        for name, port in ports.items():
            url = f"http://127.0.0.1:{port}"

            def ready(url: str = url) -> bool:
                try:
                    return httpx.get(url + "/readyz").status_code == 200
                except httpx.TransportError:
                    return False
            until(ready, 30, f"{name} ready")
        for _ in range(5):  # the same notification, five times to each receiver
            for port in ports.values():
                r = httpx.post(f"http://127.0.0.1:{port}/alertmanager", json=notification(),
                               headers=AUTH)
                assert r.status_code == 200
        until(lambda: target.hits["/restart"] >= 1, 60, "the first rung acted")
        first = owner()
        assert first is not None
        procs[first].kill()  # between rungs: it waits to verify the restart
        procs[first].wait()
        engine("engine-3")  # a fresh replica joins
        until(lambda: taken_over(first) is not None, 60, "another engine took the target over")
        frozen = taken_over(first)
        assert frozen is not None
        procs[frozen].send_signal(signal.SIGSTOP)  # the new owner, frozen past its session
        time.sleep(8)
        procs[frozen].send_signal(signal.SIGCONT)
        until(lambda: target.hits["/rollback"] >= 1, 90, "the second rung acted")
        time.sleep(10)  # anything acting twice would have by now
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        target.server.shutdown()
    text = {n: p.read_text()[-3000:] for n, p in logs.items()}
    assert target.hits == {"/restart": 1, "/rollback": 1}, (target.hits, text)
    acted = actions()
    assert acted[("restart", "acted")] == 1 and acted[("rollback", "acted")] == 1, (acted, text)
