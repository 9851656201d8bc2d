"""A rung verified by a PromQL condition, against the real Debian `prometheus` on a free loopback
port scraping a local exporter (every second) whose value the test changes: the condition becomes
true and holds for `for` (verified, saying so), never holds (not better: the ladder climbs, saying
what it last saw), alert data that tries to change the query's shape (it stays a label value),
Prometheus down, answering a bad query with 400, or never answering (not verified, with the
reason; the event loop keeps running), and a what-if engine that runs no live check."""

from __future__ import annotations

import asyncio
import socket
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from detector.bench.servers import LocalPrometheus, free_port, prometheus_available
from remediation.audit import AuditRecord, AuditStore
from remediation.engine import Engine
from remediation.engine_settings import EngineSettings
from remediation.policy import parse_policy
from remediation.trigger import Trigger
from tests.support.services.exporter import Exporter

needs_prometheus = pytest.mark.skipif(
    not prometheus_available(), reason="needs the Debian package prometheus (make test installs it)")

METRIC = "http_errors"
QUERY = METRIC + '{service="${trigger.service}"} < 0.5'  # holds once the error rate drops


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    e = Exporter(METRIC, labels={"service": "cart"}, value=1.0)
    yield e
    e.close()


@pytest.fixture(scope="module")
def prom(exporter: Exporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    if not prometheus_available():
        pytest.skip("needs the Debian package prometheus (make test installs it)")
    p = LocalPrometheus(tmp_path_factory.mktemp("prom"), scrape_targets=[exporter.target],
                        scrape_interval_s=1.0)
    p.start()
    deadline = time.monotonic() + 20
    while not series(p, METRIC):  # the first scrape has landed
        assert time.monotonic() < deadline, "prometheus never scraped the exporter"
        time.sleep(0.2)
    yield p
    p.stop()


def series(p: LocalPrometheus, query: str) -> list[Any]:
    body = httpx.get(p.url + "/api/v1/query", params={"query": query}, timeout=5).json()
    return list(body["data"]["result"])


def wait_seen(p: LocalPrometheus, value: float) -> None:
    """Until Prometheus has scraped the exporter's `value` (a test starts from a known state)."""
    deadline = time.monotonic() + 10
    while not series(p, f"{METRIC} == {value}"):
        assert time.monotonic() < deadline, f"prometheus never saw {METRIC} == {value}"
        time.sleep(0.1)


def trig(service: str = "cart", status: str = "firing") -> Trigger:
    return Trigger("alertmanager", "fp-" + service[:4], status, 1000.0,  # type: ignore[arg-type]
                   labels={"service": service, "severity": "page"})


def ladder_policy(url: str, verify: str, wait_s: float, timeout_s: float = 2) -> Any:
    """A first rung verified by `verify`, then a second rung that verifies at once, then a page."""
    return parse_policy(textwrap.dedent(f"""
        prometheus: {{url: "{url}", timeout_s: {timeout_s}}}
        rules:
          - name: cart-errors
            ladder:
              - {{name: throttle, hook: log, wait_s: {wait_s}, verify: {verify}}}
              - {{name: restart, hook: log, wait_s: 0, verify: {{resolved: false}}}}
        guards: {{cooldown_s: 0, retries: {{attempts: 0}}}}
    """))


def climb(policy: Any, tmp_path: Path, trigger: Trigger | None = None,
          settings: EngineSettings | None = None, during: Any = None) -> list[AuditRecord]:
    """Run the engine on one trigger until its ladder is done; `during(engine)`, a coroutine,
    runs beside it. The audit, oldest first."""
    store = AuditStore(tmp_path / "audit.db")

    async def go() -> None:
        e = Engine(policy, store, settings=settings or EngineSettings(dry_run=False))
        e.submit(trigger or trig())
        await asyncio.gather(e.drain(), during(e) if during else asyncio.sleep(0))
    asyncio.run(go())
    return sorted(store.query(), key=lambda r: r.id or 0)


def steps(recs: list[AuditRecord]) -> list[tuple[str | None, str]]:
    return [(r.rung_name, str(r.verdict)) for r in recs]


# ---- against a live Prometheus --------------------------------------------------------------
@needs_prometheus
def test_a_condition_that_becomes_true_and_holds_verifies_the_rung(
        prom: LocalPrometheus, exporter: Exporter, tmp_path: Path) -> None:
    exporter.value = 1.0
    wait_seen(prom, 1.0)

    async def recover(engine: Engine) -> None:  # the action helped: errors drop a moment later
        await asyncio.sleep(0.5)
        exporter.value = 0.0
    verify = f"{{resolved: false, promql: '{QUERY}', for: 1s, interval: 0.2s}}"
    t0 = time.monotonic()
    recs = climb(ladder_policy(prom.url, verify, wait_s=10), tmp_path, during=recover)
    took = time.monotonic() - t0
    assert steps(recs) == [("throttle", "acted"), ("throttle", "verified")]
    assert recs[-1].detail == 'promql held 1s: http_errors{service="cart"} < 0.5'
    # it held for a second after Prometheus saw the drop, not at once and not at the deadline
    assert 1.2 < took < 6, took


@needs_prometheus
def test_a_condition_that_never_holds_is_not_better_and_the_ladder_climbs(
        prom: LocalPrometheus, exporter: Exporter, tmp_path: Path) -> None:
    exporter.value = 1.0
    wait_seen(prom, 1.0)
    verify = f"{{resolved: false, promql: '{QUERY}', interval: 0.2s}}"
    recs = climb(ladder_policy(prom.url, verify, wait_s=1.2), tmp_path)
    assert steps(recs) == [("throttle", "acted"), ("throttle", "not_better"),
                           ("restart", "acted"), ("restart", "verified")]
    assert recs[1].detail == "no better after 1.2s; last seen: promql: empty result"


@needs_prometheus
def test_a_for_as_long_as_the_wait_is_judged_by_a_last_probe_at_the_deadline(
        prom: LocalPrometheus, exporter: Exporter, tmp_path: Path) -> None:
    exporter.value = 0.0
    wait_seen(prom, 0.0)  # true from the start
    verify = f"{{resolved: false, promql: '{QUERY}', for: 1s, interval: 0.3s}}"
    recs = climb(ladder_policy(prom.url, verify, wait_s=1.0), tmp_path)
    assert steps(recs) == [("throttle", "acted"), ("throttle", "verified")]


class ScriptedPrometheus:
    """/api/v1/query answering from a script of values (None: an empty vector), one per query,
    the last repeated: a condition that flaps exactly as a test needs. `kind` scalar answers
    scalars."""

    def __init__(self, script: list[float | None], kind: str = "vector") -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        me = self
        self.script, self.asked = script, 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                v = me.script[min(me.asked, len(me.script) - 1)]
                me.asked += 1
                result: Any = [] if v is None else [{"metric": {}, "value": [time.time(), str(v)]}]
                if kind == "scalar":
                    result = [time.time(), str(v)]
                body = json.dumps({"status": "success", "data": {
                    "resultType": kind, "result": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("script", "kind", "verdict", "seen"), [
    ([1, 1, 1, None] * 20, "vector", "not_better", "promql: empty result"),  # 3 true probes
    ([None, 0.0], "vector", "verified", ""),  # then true for good: a kept sample of 0 holds
    ([1, 1, 1, 0] * 20, "scalar", "not_better", "promql: scalar 0"),  # a scalar 0 does not
    ([0, 1], "scalar", "verified", ""),
])
def test_for_means_held_continuously(script: list[float | None], kind: str, verdict: str,
                                     seen: str, tmp_path: Path) -> None:
    """Probes 0.1s apart, `for: 0.5s`: three true probes in a row (0.2s) then a false one never
    add up; a condition that stays true verifies once it has held 0.5s. A vector holds when it
    is non-empty (its sample may be 0: a filter keeps the left side's value); a scalar when it
    is non-zero."""
    p = ScriptedPrometheus(script, kind)
    try:
        verify = "{resolved: false, promql: 'anything > 0', for: 0.5s, interval: 0.1s}"
        recs = climb(ladder_policy(p.url, verify, wait_s=1.5), tmp_path)
    finally:
        p.close()
    assert steps(recs)[1] == ("throttle", verdict)
    if verdict == "verified":
        assert recs[1].detail == "promql held 0.5s: anything > 0"
    else:
        assert recs[1].detail.endswith("last seen: " + seen) or \
            " (held " in recs[1].detail  # the wait ended on a true probe


@needs_prometheus
def test_alert_data_cannot_change_the_querys_shape(prom: LocalPrometheus, exporter: Exporter,
                                                  tmp_path: Path) -> None:
    """A service label that would close the matcher and add `or vector(1)` (true, unescaped)
    stays a label value: no such series, the condition does not hold."""
    hostile = 'cart"} or vector(1) #'
    exporter.value = 1.0
    wait_seen(prom, 1.0)
    assert series(prom, QUERY.replace("${trigger.service}", hostile))  # unescaped: it would hold
    verify = f"{{resolved: false, promql: '{QUERY}', interval: 0.2s}}"
    recs = climb(ladder_policy(prom.url, verify, wait_s=0.6), tmp_path, trigger=trig(hostile))
    assert steps(recs)[:2] == [("throttle", "acted"), ("throttle", "not_better")]
    assert recs[1].detail.endswith("last seen: promql: empty result")


@needs_prometheus
def test_a_bad_query_is_not_verified_and_says_what_prometheus_answered(
        prom: LocalPrometheus, tmp_path: Path) -> None:
    verify = "{resolved: false, promql: 'rate(http_errors[30s]', interval: 0.2s}"
    recs = climb(ladder_policy(prom.url, verify, wait_s=0.5), tmp_path)
    assert steps(recs)[:3] == [("throttle", "acted"), ("throttle", "not_better"),
                               ("restart", "acted")]
    assert "last seen: prometheus: HTTP 400: bad_data: " in recs[1].detail


def test_prometheus_down_is_not_verified_with_the_reason_and_never_raises(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    verify = f"{{resolved: false, promql: '{QUERY}', interval: 0.1s}}"
    recs = climb(ladder_policy(url, verify, wait_s=0.5), tmp_path)
    assert steps(recs) == [("throttle", "acted"), ("throttle", "not_better"),
                           ("restart", "acted"), ("restart", "verified")]
    assert recs[1].detail == "no better after 0.5s; last seen: prometheus: connection refused"


def test_a_prometheus_that_never_answers_times_out_without_blocking_the_loop(tmp_path: Path
                                                                            ) -> None:
    with socket.socket() as s:  # connections are accepted by the kernel, never answered
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        ticks = []

        async def tick(engine: Engine) -> None:  # 12 ticks in 0.6s unless the loop is blocked
            end = time.monotonic() + 0.6
            while time.monotonic() < end:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.05)
        verify = f"{{resolved: false, promql: '{QUERY}', interval: 0.1s}}"
        recs = climb(ladder_policy(url, verify, wait_s=0.5, timeout_s=0.3), tmp_path, during=tick)
    assert steps(recs)[1] == ("throttle", "not_better")
    assert recs[1].detail == "no better after 0.5s; last seen: prometheus: no answer within 0.3s"
    assert len(ticks) >= 9  # the loop ran on while the probes waited


@needs_prometheus
def test_a_what_if_engine_runs_no_live_check_and_only_resolution_counts(
        prom: LocalPrometheus, exporter: Exporter, tmp_path: Path) -> None:
    exporter.value = 0.0
    wait_seen(prom, 0.0)  # the condition holds now: a live engine would verify at once
    what_if = EngineSettings(dry_run=False, live_checks=False)
    verify = f"{{resolved: false, promql: '{QUERY}', interval: 0.1s}}"
    recs = climb(ladder_policy(prom.url, verify, wait_s=0.3), tmp_path, settings=what_if)
    assert steps(recs)[1] == ("throttle", "not_better")
    assert recs[1].detail == "no better after 0.3s (what-if: http/promql checks not run)"

    async def resolve(engine: Engine) -> None:
        await asyncio.sleep(0.3)
        engine.submit(trig(status="resolved"))
    verify = f"{{promql: '{QUERY}', interval: 0.1s}}"  # resolved: true, the default
    recs = climb(ladder_policy(prom.url, verify, wait_s=5), tmp_path / "b", settings=what_if,
                 during=resolve)
    verified = [r for r in recs if r.verdict == "verified"]
    assert [r.detail for r in verified] == [
        "the alert resolved (what-if: http/promql checks not run)"]
