"""End to end with the real Debian `prometheus` and `prometheus-alertmanager`: Prometheus
evaluates a rule over a test exporter, Alertmanager routes the alert to `vigil serve` with bearer
credentials, Vigil records a dry-run action; the alert resolves and Vigil records it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from detector.webhook.app import create_app
from detector.webhook.settings import ServeSettings

pytestmark = pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")),
    reason="needs the Debian packages prometheus and prometheus-alertmanager (make test installs them)")

TOKEN = "e2e-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


class Exporter:
    """A test target whose `test_errors` gauge the test sets."""

    def __init__(self) -> None:
        self.value = 0
        me = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                body = f"# TYPE test_errors gauge\ntest_errors {me.value}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    exporter = Exporter()
    vigil_port, am_port, prom_port = free_port(), free_port(), free_port()
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - name: cart\n    match: {labels: {service: cart}}\n"
                      "    ladder: [{name: note, hook: log, wait_s: 0, success: {resolved: false}}]\n")
    token = tmp_path / "token"
    token.write_text(TOKEN)
    settings = ServeSettings(policy=policy, audit_db=tmp_path / "audit.db",
                             inbox_db=tmp_path / "inbox.db", bearer_token_file=token)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=vigil_port,
                                          log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    until(lambda: httpx.get(f"http://127.0.0.1:{vigil_port}/healthz").status_code == 200, 15,
          "vigil serve")
    (tmp_path / "am.yml").write_text(textwrap.dedent(f"""
        route:
          receiver: vigil
          group_by: [alertname]
          group_wait: 1s
          group_interval: 1s
          repeat_interval: 1h
        receivers:
          - name: vigil
            webhook_configs:
              - url: http://127.0.0.1:{vigil_port}/alertmanager
                send_resolved: true
                http_config:
                  authorization: {{credentials: {TOKEN}}}
    """))
    (tmp_path / "rules.yml").write_text(textwrap.dedent("""
        groups:
          - name: test
            interval: 1s
            rules:
              - alert: HighErrors
                expr: test_errors > 0
                labels: {service: cart, severity: page}
                annotations: {summary: "cart is failing"}
    """))
    (tmp_path / "prom.yml").write_text(textwrap.dedent(f"""
        global: {{scrape_interval: 1s, evaluation_interval: 1s}}
        rule_files: [{tmp_path / "rules.yml"}]
        scrape_configs:
          - job_name: test
            static_configs: [{{targets: ["127.0.0.1:{exporter.port}"]}}]
        alerting:
          alertmanagers:
            - static_configs: [{{targets: ["127.0.0.1:{am_port}"]}}]
    """))
    am = subprocess.Popen(
        ["prometheus-alertmanager", f"--config.file={tmp_path / 'am.yml'}",
         f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
         "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prom.yml'}",
         f"--storage.tsdb.path={tmp_path / 'prom-data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield {"exporter": exporter, "vigil": f"http://127.0.0.1:{vigil_port}"}
    finally:
        for p in (prom, am):
            p.terminate()
            p.wait(timeout=10)
        server.should_exit = True
        exporter.server.shutdown()


def test_prometheus_alert_reaches_vigil_through_alertmanager_and_resolves(stack: dict[str, Any]
                                                                         ) -> None:
    url, auth = stack["vigil"], {"Authorization": f"Bearer {TOKEN}"}

    def verdicts() -> list[str]:
        return [a["verdict"] for a in httpx.get(url + "/actions", headers=auth).json()]
    stack["exporter"].value = 3
    until(lambda: "dry_run" in verdicts(), 60, "a dry-run action for the firing alert")
    actions = httpx.get(url + "/actions", headers=auth).json()
    rec = next(a for a in actions if a["verdict"] == "dry_run")
    assert rec["source"] == "alertmanager" and rec["target"] == "cart" and rec["hook"] == "log"
    stack["exporter"].value = 0
    until(lambda: "resolved" in verdicts(), 60, "the resolution")
    assert verdicts().count("dry_run") == 1
    incidents = httpx.get(url + "/incidents", headers=auth).json()
    assert incidents[0]["status"] == "resolved" and incidents[0]["labels"]["alertname"] == "HighErrors"
