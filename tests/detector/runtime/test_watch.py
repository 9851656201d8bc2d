"""Prometheus as a source, against the real Debian `prometheus` on a free loopback port: a NAB
series backfilled with promtool (its labeled anomaly found in its window), a live exporter whose
change Vigil sees, Prometheus stopped mid-run (readiness, bounded retries, backfill on recovery);
and, without Prometheus, dedupe / NaN / gaps / pod churn and metric + log anomalies joining one
incident."""

from __future__ import annotations

import csv
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from detector.bench.servers import LocalPrometheus, openmetrics, prometheus_available
from detector.config import PrometheusConfig, PromQuery, VigilConfig
from detector.events import Anomaly
from detector.pipeline import Pipeline
from detector.runtime.probes import serve
from detector.runtime.watch import MetricWatcher
from detector.sources.prometheus import PrometheusSource
from remediation.retry import Retry
from tests.support import SHARED
from tests.support.services.exporter import Exporter

NAB = SHARED / "nab"
NAB_FILE = "artificialWithAnomaly/art_daily_jumpsup.csv"
needs_prometheus = pytest.mark.skipif(
    not prometheus_available(), reason="needs the Debian package prometheus (make test installs it)")


def epoch(s: str) -> float:
    return datetime.strptime(s[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def watcher(cfg: VigilConfig, clock: Any = time.time
            ) -> MetricWatcher:
    src = PrometheusSource(cfg.prometheus, clock=clock, sleep=lambda s: time.sleep(min(s, 0.05)))
    return MetricWatcher(cfg, source=src)


# ---- a backfilled NAB series ----------------------------------------------------------------
@needs_prometheus
@pytest.mark.skipif(not (NAB / "data" / NAB_FILE).exists(),
                    reason="needs ../shared/datasets/nab (not part of a clone)")
def test_a_backfilled_nab_anomaly_is_found_in_its_labeled_window(tmp_path: Path) -> None:
    rows = list(csv.DictReader((NAB / "data" / NAB_FILE).open()))
    ts = [epoch(r["timestamp"]) for r in rows]
    labels = {"service": "billing", "series": "art_daily_jumpsup"}
    openmetrics(tmp_path / "nab.om", "nab_value",
                ((labels, t, float(r["value"])) for t, r in zip(ts, rows, strict=True)))
    windows = [(epoch(a), epoch(b)) for a, b in
               json.loads((NAB / "labels" / "combined_windows.json").read_text())[NAB_FILE]]
    prom = LocalPrometheus(tmp_path)
    prom.backfill(tmp_path / "nab.om")
    with prom:
        cfg = VigilConfig(prometheus=PrometheusConfig(url=prom.url, queries=[PromQuery(
            name="nab", query="nab_value", step_seconds=300, lookback_seconds=2 * 86400)]))
        # Two days of history, then "live" an hour a poll, until the series' last point (Prometheus
        # would answer for five minutes past it: its lookback delta).
        w = watcher(cfg, clock := Clock(ts[0] + 2 * 86400))
        pipe = Pipeline(cfg)  # what `vigil metrics` folds the anomalies into
        found: list[Anomaly] = []
        incidents = []
        while True:
            res = w.poll_once()
            found += res.anomalies
            incidents += pipe.add_anomalies(res.anomalies).incidents
            if clock.t >= ts[-1]:
                break
            clock.t = min(clock.t + 3600, ts[-1])
    st = w.source.stats
    assert st.failed_polls == 0 and st.points == len(rows)  # every point read once
    inside = [a for a in found if any(lo <= a.window_end <= hi for lo, hi in windows)]
    assert inside, "the labeled anomaly was not found"
    assert len(found) - len(inside) <= 1  # false alarms outside the window
    a = inside[0]
    assert a.service == "billing" and a.feature == "metric:nab"
    assert a.labels is not None and a.labels["series"] == "art_daily_jumpsup"
    assert a.link is not None and a.link.startswith(prom.url + "/graph?g0.expr=nab_value")
    assert any(i.service == "billing" and i.features.get("metric:nab") for i in incidents)


# ---- a live exporter -------------------------------------------------------------------------
def checkout_exporter() -> Exporter:
    """`checkout_latency_ms{service="checkout"}`: noise around `value` (set by the test)."""
    return Exporter("checkout_latency_ms", {"service": "checkout"}, value=100.0, noise=2.0)


def scraped(url: str, timeout: float = 30.0) -> None:
    """Wait for Prometheus's first scrape of the exporter."""
    deadline = time.monotonic() + timeout
    while not httpx.get(url + "/api/v1/query", params={"query": "checkout_latency_ms"}
                        ).json()["data"]["result"]:
        assert time.monotonic() < deadline, "Prometheus did not scrape the exporter"
        time.sleep(0.3)


def live_cfg(url: str, **prom: Any) -> VigilConfig:
    return VigilConfig(prometheus=PrometheusConfig(url=url, queries=[PromQuery(
        name="latency", query="checkout_latency_ms", step_seconds=1, lookback_seconds=60,
        warmup=10, baseline="level")], **prom))


@needs_prometheus
def test_vigil_sees_a_live_exporters_metric_change(tmp_path: Path) -> None:
    exp = checkout_exporter()
    with LocalPrometheus(tmp_path, scrape_targets=[exp.target]) as prom:
        w = watcher(live_cfg(prom.url))
        scraped(prom.url)
        w.poll_once()  # warm-up read
        deadline = time.monotonic() + 40
        while w.source.stats.points < 12:  # a baseline of normal points (warm-up 10)
            assert time.monotonic() < deadline, "no points from the live exporter"
            time.sleep(1)
            assert not w.poll_once().anomalies
        exp.value = 400.0  # the checkout service slows down
        changed = time.monotonic()
        found: list[Anomaly] = []
        while not found:
            assert time.monotonic() - changed < 20, "the change was not seen"
            time.sleep(1)
            found = w.poll_once().anomalies
    exp.close()
    a = found[0]
    assert a.service == "checkout" and a.value > 300 and a.baseline_mean < 150
    assert a.labels is not None and a.labels["job"] == "test"
    assert w.ready() == (True, "ok")


@needs_prometheus
def test_prometheus_stopped_mid_run_is_reported_and_the_gap_backfilled(tmp_path: Path) -> None:
    exp = checkout_exporter()
    prom = LocalPrometheus(tmp_path, scrape_targets=[exp.target])
    prom.start()
    try:
        w = watcher(live_cfg(prom.url, retry=Retry(attempts=2, base_s=0.05), timeout_s=1.0))
        side = serve(w, "127.0.0.1", 0)  # what `vigil metrics --http-port` serves
        readyz = f"http://127.0.0.1:{side.server_address[1]}/readyz"
        scraped(prom.url)
        seen: list[float] = []

        def poll() -> None:
            for pts in w.source.poll():
                seen.extend(pts.ts.tolist())
        poll()
        for _ in range(3):
            time.sleep(1)
            poll()
        assert w.ready()[0] and httpx.get(readyz).status_code == 200
        prom.stop()
        t0 = time.monotonic()
        time.sleep(1)
        poll()  # fails after its bounded retries; the rest of Vigil goes on
        assert time.monotonic() - t0 < 10
        ok, why = w.ready()
        assert not ok and "latency" in why and "ConnectionError" in why
        assert w.source.stats.failed_polls == 1 and w.source.stats.requests >= 3
        r = httpx.get(readyz)
        assert r.status_code == 503 and "ConnectionError" in r.json()["detail"]
        assert "vigil_prometheus_failed_polls_total 1.0" in httpx.get(readyz[:-7] + "/metrics").text
        time.sleep(3)  # the outage
        prom.start()
        poll()
        assert w.ready() == (True, "ok") and httpx.get(readyz).status_code == 200
    finally:
        prom.stop()
        exp.close()
        side.shutdown()
    steps = np.diff(np.unique(seen))
    assert len(seen) == len(set(seen))  # nothing read twice
    assert (steps == 1.0).all(), "the outage left a hole: the recovery did not backfill it"


# ---- without Prometheus ----------------------------------------------------------------------
class FakeClient:
    """Stands in for PrometheusConnect in the unit tests below (the tests above use the real
    server); returns scripted query_range results."""

    def __init__(self, results: list[list[dict[str, Any]]]) -> None:
        self.results = results

    def custom_query_range(self, query: str, start_time: datetime, end_time: datetime,
                           step: str) -> list[dict[str, Any]]:
        return self.results.pop(0)


def test_dedupe_nan_gaps_and_pod_churn_without_unbounded_growth() -> None:
    q = PromQuery(name="q", query="x", step_seconds=10, lookback_seconds=30)
    clock = Clock(1030.0)
    src = PrometheusSource(PrometheusConfig(queries=[q], idle_series_seconds=60, max_series=3),
                           clock=clock)

    def series(pod: str, *points: tuple[float, str]) -> dict[str, Any]:
        return {"metric": {"pod": pod, "service": "api"}, "values": [list(p) for p in points]}
    src.client = FakeClient([  # type: ignore[assignment]
        [series("a", (1000, "1"), (1010, "NaN"), (1030, "2"))],  # warm-up; a gap at 1020
        [series("a", (1030, "2"), (1040, "3")), series("b", (1040, "5"))],  # 1030 again
        [series("b", (1100, "+Inf")), series("c", (1100, "1")), series("d", (1100, "1")),
         series("e", (1100, "1"))],
    ])
    first = src.poll()[0]
    assert first.warmup and first.values.tolist() == [1.0, 2.0]
    clock.t = 1040.0
    second = src.poll()[0]
    assert second.ts.tolist() == [1040.0, 1040.0] and not second.warmup
    clock.t = 1110.0
    third = src.poll()[0]  # a is idle since 1040 (> 60 s before 1110): expired, its id reused
    st = src.stats
    assert (st.duplicates, st.non_finite, st.gaps) == (1, 2, 2)
    assert st.expired_series == 1 and st.dropped_series == 1  # at most 3 series held
    assert len(src.state["q"].index) == 3 and int(third.expired[0]) == 0
    assert sorted(third.series.tolist()) == [0, 2]  # c took a's id; b's point was +Inf


def test_metric_and_log_anomalies_of_one_service_join_one_incident() -> None:
    from detector.simulate.runs import simulated_lines

    lines, truth = simulated_lines(40_000, seed=3, scenario="error_burst")
    fault = truth.faults[0]  # payments fails; checkout and gateway show it
    pipe = Pipeline(VigilConfig())
    incidents = []
    for i in range(0, len(lines), 8192):
        incidents += pipe.process(lines[i:i + 8192]).incidents
        if any(x.service == "payments" for x in incidents):
            break
    log_inc = next(x for x in incidents if x.service == "payments")
    at = log_inc.detected_at
    metric = Anomaly("payments", "metric:db_pool_wait", at - 15, at, 900.0, 5.0, 2.0, 0.99999,
                     "ewma", "db_pool_wait 900 vs baseline 5 ± 2", 0, labels={"service": "payments"})
    lone = Anomaly("search", "metric:cpu", at - 15, at, 0.99, 0.2, 0.05, 0.99999, "ewma", "cpu", 0)
    pipe.add_anomalies([metric, lone])
    now = {i.id: i for i in pipe.tracker.snapshot_open()}
    joined = now[log_inc.id]
    assert joined.features.get("metric:db_pool_wait") == 1 and fault.service == "payments"
    top = joined.root_cause[0]
    assert top["service"] == "payments" and "metric:db_pool_wait" in top["evidence"]["features"]
    assert any(i.service == "search" for i in now.values() if i.id != log_inc.id)


@needs_prometheus
def test_vigil_metrics_writes_anomalies_and_reports_each_poll(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from detector.cli import app

    exp = checkout_exporter()
    with LocalPrometheus(tmp_path, scrape_targets=[exp.target]) as prom:
        (tmp_path / "vigil.yaml").write_text(
            f"prometheus:\n  url: {prom.url}\n  queries:\n"
            "    - {name: latency, query: checkout_latency_ms, step_seconds: 1, "
            "lookback_seconds: 20, warmup: 5, baseline: level}\n")
        scraped(prom.url)
        r = CliRunner().invoke(app, ["metrics", "--config", str(tmp_path / "vigil.yaml"),
                                     "--out", str(tmp_path / "out"), "--polls", "3",
                                     "--http-host", "127.0.0.1", "--http-port", "0"])
    exp.close()
    assert r.exit_code == 0, r.output
    assert "/healthz /readyz /metrics on http://127.0.0.1:" in r.output  # --http-host, bound
    assert r.output.count(" series, ") == 3 and '"polls":3' in r.output  # a line a poll
    assert "1 series" in r.output and '"failed_polls":0' in r.output
    assert (tmp_path / "out" / "anomalies.jsonl").exists()


@pytest.mark.parametrize("mode", ["slow", "error", "garbage"])
def test_a_slow_or_failing_prometheus_costs_bounded_retries_and_is_reported(mode: str) -> None:
    """A loopback server standing in for a sick Prometheus: answers late, answers 503, or
    answers something that is not the API's JSON."""
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            calls.append(self.path)
            if mode == "slow":
                time.sleep(1.0)
            code, body = (503, b"overloaded") if mode == "error" else (200, b"<html>proxy</html>")
            try:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (timeout)
                pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = live_cfg(f"http://127.0.0.1:{server.server_address[1]}", retry=Retry(attempts=2, base_s=0.01),
                   timeout_s=0.2)
    w = watcher(cfg)
    t0 = time.monotonic()
    res = w.poll_once()
    server.shutdown()
    assert res.anomalies == [] and len(calls) == 3  # one try and two retries, no more
    assert time.monotonic() - t0 < 5
    ok, why = w.ready()
    assert not ok and "latency" in why
    assert {"slow": "Timeout", "error": "503", "garbage": "JSONDecodeError"}[mode] in why
    assert w.source.stats.failed_polls == 1 and w.source.stats.errors == 3


def test_metric_anomalies_find_the_partition_of_their_service_without_correlation() -> None:
    """One service registry: with correlation.enabled false, every metric anomaly went to the
    first partition whatever its service (only correlation filled the registry it read)."""
    from detector.config import CorrelationConfig
    from detector.runtime.metric_feed import route

    cfg = VigilConfig(correlation=CorrelationConfig(enabled=False))
    pipes = [Pipeline(cfg), Pipeline(cfg)]
    pipes[0].process([orjson.dumps({"ts": 1795435200, "service": "cart", "msg": "x"})])
    pipes[1].process([orjson.dumps({"ts": 1795435200, "service": "billing", "msg": "x"})])
    a = Anomaly("billing", "metric:latency", 0.0, 60.0, 9.0, 1.0, 0.1, 0.9999, "ewma", "x", 0)
    assert route([a], pipes) == {1: [a]}


# ---- the poller's state, as the incidents role snapshots it -----------------------------------
@needs_prometheus
def test_a_watcher_restored_from_its_state_goes_on_warm_exactly_where_it_stopped(
        tmp_path: Path) -> None:
    step, hour = 60.0, 3600.0
    t0 = (time.time() // 86400 - 3) * 86400  # three days ago, at midnight
    rng = np.random.default_rng(7)
    rows = []
    for k in range(int(36 * hour / step)):
        t = t0 + k * step
        for svc, base in (("cart", 100.0), ("db", 20.0)):
            v = base + rng.normal(0, base * 0.02)
            if svc == "cart" and 30 * hour <= t - t0 < 30 * hour + 10 * step:
                v = base * 4  # a fault after the hand-over
            rows.append(({"service": svc}, t, v))
    openmetrics(tmp_path / "s.om", "lat_ms", rows)
    prom = LocalPrometheus(tmp_path)
    prom.backfill(tmp_path / "s.om")
    with prom:
        cfg = VigilConfig(prometheus=PrometheusConfig(url=prom.url, queries=[PromQuery(
            name="lat", query="lat_ms", step_seconds=step, lookback_seconds=12 * hour)]))
        first = watcher(cfg, clock_a := Clock(t0 + 12 * hour))
        while clock_a.t < t0 + 24 * hour:
            first.poll_once()  # the warm-up read, then an hour a poll
            clock_a.t += hour
        state = json.loads(json.dumps(first.state_dict(), allow_nan=False))  # strict JSON
        assert state["queries"]["lat"]["next_start"] == t0 + 23 * hour + step

        second = watcher(cfg, clock_b := Clock(clock_a.t))
        assert second.load_state(state) == ["lat"]
        assert second.ready() == (True, "ok")  # no warm-up pending
        before = first.source.stats.points
        found_a: list[Anomaly] = []
        found_b: list[Anomaly] = []
        while clock_a.t <= t0 + 35 * hour:
            found_a += first.poll_once().anomalies
            found_b += second.poll_once().anomalies
            clock_a.t += hour
            clock_b.t = clock_a.t
    # The same anomalies, scores and explanations as the watcher that never stopped, from
    # the same points: the lookback was not read again.
    def seen(found: list[Anomaly]) -> list[tuple[object, ...]]:
        return [(a.service, a.window_end, a.score, a.baseline_mean, a.baseline_std, a.model,
                 a.explanation) for a in found]
    assert seen(found_b) == seen(found_a)
    assert any(a.service == "cart" and t0 + 30 * hour <= a.window_end <= t0 + 31 * hour
               for a in found_b), "the fault after the hand-over was not found"
    assert second.source.stats.points == first.source.stats.points - before


def test_a_state_that_does_not_fit_starts_that_query_cold_not_the_process() -> None:
    cfg = VigilConfig(prometheus=PrometheusConfig(queries=[
        PromQuery(name="a", query="up", step_seconds=15), PromQuery(name="b", query="rate(x[1m])")]))
    w = MetricWatcher(cfg)
    w.source.state["a"].next_start = 1_700_000_000.0
    w.source.state["b"].next_start = 1_700_000_000.0
    w.source.state["a"].index.lookup({"service": "cart"}, w.source.stats)
    good = w.state_dict()
    assert set(good["queries"]) == {"a", "b"}
    for broken in ({"queries": {"a": {**good["queries"]["a"], "judge": {"model": "ewma"}}}},
                   {"queries": {"a": {**good["queries"]["a"], "next_start": None}}},
                   {"queries": {"a": {**good["queries"]["a"], "index": {"ids": [[["x"], 9]]}}}},
                   {"queries": {"a": {**good["queries"]["a"], "step": 30.0}}},
                   {"queries": {"a": "nonsense"}}, {"queries": []}, {}):
        fresh = MetricWatcher(cfg)
        assert fresh.load_state(broken) == []
        assert fresh.source.state["a"].next_start is None  # its warm-up read, as at a first start
        assert len(fresh.source.state["a"].index) == 0
    fresh = MetricWatcher(cfg)
    assert fresh.load_state(good) == ["a", "b"]
    assert fresh.source.state["a"].index.service == ["cart"]
