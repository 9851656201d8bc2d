"""End to end with the real Debian `prometheus` and `prometheus-alertmanager` and `vigil serve` as
a child process: Prometheus evaluates a rule over a test exporter, Alertmanager routes the alert to
Vigil with bearer credentials, Vigil records a dry-run action; the alert resolves and Vigil records
it. Wrong or missing credentials record nothing; resends and a restart of Vigil act once."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from detector.bench.servers import free_port
from remediation.alertmanager.inbox import Inbox
from tests.support.services.exporter import Exporter

pytestmark = pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")),
    reason="needs the Debian packages prometheus and prometheus-alertmanager (make test installs them)")

TOKEN = "e2e-token-16-bytes-or-more"


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


class Stack:
    """Prometheus (rule over the exporter) -> Alertmanager -> `vigil serve` (a real child process,
    restartable on the same databases)."""

    def __init__(self, tmp: Path, receivers: str, repeat_interval: str = "1h") -> None:
        self.tmp = tmp
        self.exporter = Exporter("test_errors")  # the rule fires while it is above 0
        self.vigil_port, self.am_port, self.prom_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.vigil_port}"
        self.auth = {"Authorization": f"Bearer {TOKEN}"}
        (tmp / "policy.yaml").write_text(
            "rules:\n  - name: cart\n    match: {labels: {service: cart}}\n"
            "    ladder: [{name: note, hook: log, wait_s: 0, success: {resolved: false}}]\n")
        (tmp / "token").write_text(TOKEN)
        self.vigil: subprocess.Popen[bytes] | None = None
        self.start_vigil()
        (tmp / "am.yml").write_text(textwrap.dedent(f"""
            route:
              receiver: vigil
              group_by: [alertname]
              group_wait: 1s
              group_interval: 1s
              repeat_interval: {repeat_interval}
        """) + receivers.replace("VIGIL", f"{self.url}/alertmanager"))
        (tmp / "rules.yml").write_text(textwrap.dedent("""
            groups:
              - name: test
                interval: 1s
                rules:
                  - alert: HighErrors
                    expr: test_errors > 0
                    labels: {service: cart, severity: page}
                    annotations: {summary: "cart is failing"}
        """))
        (tmp / "prom.yml").write_text(textwrap.dedent(f"""
            global: {{scrape_interval: 1s, evaluation_interval: 1s}}
            rule_files: [{tmp / "rules.yml"}]
            scrape_configs:
              - job_name: test
                static_configs: [{{targets: ["127.0.0.1:{self.exporter.port}"]}}]
            alerting:
              alertmanagers:
                - static_configs: [{{targets: ["127.0.0.1:{self.am_port}"]}}]
        """))
        self.am = subprocess.Popen(
            ["prometheus-alertmanager", f"--config.file={tmp / 'am.yml'}",
             f"--storage.path={tmp / 'am-data'}", f"--web.listen-address=127.0.0.1:{self.am_port}",
             "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.prom = subprocess.Popen(
            ["prometheus", f"--config.file={tmp / 'prom.yml'}",
             f"--storage.tsdb.path={tmp / 'prom-data'}",
             f"--web.listen-address=127.0.0.1:{self.prom_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start_vigil(self) -> None:
        t = self.tmp
        self.vigil = subprocess.Popen(
            [sys.executable, "-m", "detector", "serve", "--policy", str(t / "policy.yaml"),
             "--token-file", str(t / "token"), "--port", str(self.vigil_port),
             "--audit-db", str(t / "audit.db"), "--inbox-db", str(t / "inbox.db")])
        until(lambda: httpx.get(self.url + "/readyz").status_code == 200, 30, "vigil serve")

    def stop_vigil(self) -> None:
        if self.vigil is not None:
            self.vigil.terminate()
            self.vigil.wait(timeout=30)
            self.vigil = None

    def actions(self) -> list[dict[str, Any]]:
        return list(httpx.get(self.url + "/actions", headers=self.auth).json())

    def verdicts(self) -> list[str]:
        return [a["verdict"] for a in self.actions()]

    def deliveries(self) -> int:
        incidents = httpx.get(self.url + "/episodes", headers=self.auth).json()
        return int(incidents[0]["deliveries"]) if incidents else 0

    def am_failures(self) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.am_port}/metrics").text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("alertmanager_notifications_failed_total{")
                   and 'integration="webhook"' in line)

    def close(self) -> None:
        for p in (self.prom, self.am):
            p.terminate()
            p.wait(timeout=10)
        self.stop_vigil()
        self.exporter.close()


WITH_TOKEN = f"""
receivers:
  - name: vigil
    webhook_configs:
      - url: VIGIL
        send_resolved: true
        http_config:
          authorization: {{credentials: {TOKEN}}}
"""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path, WITH_TOKEN)
    try:
        yield s
    finally:
        s.close()


def test_prometheus_alert_reaches_vigil_through_alertmanager_and_resolves(stack: Stack) -> None:
    stack.exporter.value = 3
    until(lambda: "dry_run" in stack.verdicts(), 60, "a dry-run action for the firing alert")
    rec = next(a for a in stack.actions() if a["verdict"] == "dry_run")
    assert rec["source"] == "alertmanager" and rec["target"] == "cart" and rec["hook"] == "log"
    stack.exporter.value = 0
    until(lambda: "resolved" in stack.verdicts(), 60, "the resolution")
    assert stack.verdicts().count("dry_run") == 1
    incidents = httpx.get(stack.url + "/episodes", headers=stack.auth).json()
    assert incidents[0]["status"] == "resolved" and incidents[0]["labels"]["alertname"] == "HighErrors"


def test_wrong_or_missing_credentials_are_refused_and_nothing_is_recorded(tmp_path: Path) -> None:
    receivers = """
receivers:
  - name: vigil
    webhook_configs:
      - url: VIGIL
        http_config:
          authorization: {credentials: not-the-token}
      - url: VIGIL
        http_config:
          basic_auth: {username: am, password: guess}
      - url: VIGIL
"""
    s = Stack(tmp_path, receivers)
    try:
        s.exporter.value = 3
        until(lambda: s.am_failures() >= 3, 60, "Alertmanager's three failed deliveries")
        assert s.actions() == [] and s.deliveries() == 0
        assert Inbox(tmp_path / "inbox.db").count() == 0
        metrics = httpx.get(s.url + "/metrics").text.splitlines()
        refused = next(m for m in metrics if m.startswith("vigil_webhook_unauthorized_total "))
        assert float(refused.split()[1]) >= 3
    finally:
        s.close()


def test_repeated_deliveries_and_a_restart_of_vigil_still_act_once(tmp_path: Path) -> None:
    s = Stack(tmp_path, WITH_TOKEN, repeat_interval="1s")  # Alertmanager resends every second
    try:
        s.exporter.value = 3
        until(lambda: s.deliveries() >= 5, 60, "five deliveries of the firing alert")
        assert s.verdicts().count("dry_run") == 1
        seen = s.deliveries()
        s.stop_vigil()  # Alertmanager's resends fail meanwhile; it retries
        s.start_vigil()
        until(lambda: s.deliveries() >= seen + 2, 60, "deliveries after the restart")
        until(lambda: any(a["guard"] == "idempotency" for a in s.actions()), 30,
              "the restarted engine to refuse the resent episode")
        assert s.verdicts().count("dry_run") == 1
    finally:
        s.close()
