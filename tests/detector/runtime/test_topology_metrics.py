"""The Prometheus poller of `vigil consume --role ...` against a real Tansu broker and a real
Prometheus scraping a real exporter: it runs once in the fleet, on the owner of the judge
partition; a kill -9 of that owner moves it to the standby, which goes on from the progress and
models in the state topic (warm, no warm-up read) and turns a metric change into an incident."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from detector.bench import servers as promlocal
from detector.bench.fleet import consumer_env, incidents
from detector.bench.servers import Broker
from detector.config import KafkaConfig
from detector.runtime.state_topic import StateTopic
from tests.detector.runtime.test_topology_kafka import broker, stop_all  # noqa: F401
from tests.detector.runtime.test_watch import checkout_exporter

pytestmark = pytest.mark.skipif(not promlocal.prometheus_available(),
                                reason="needs the Debian package prometheus (make test installs it)")

QUERY = {"name": "latency", "query": "checkout_latency_ms", "step_seconds": 1,
         "lookback_seconds": 30, "warmup": 10, "baseline": "level"}


def start(b: Broker, tmp: Path, name: str, prom_url: str) -> subprocess.Popen[bytes]:
    work = tmp / name
    work.mkdir(parents=True, exist_ok=True)
    env = {**consumer_env(b.addr, work), "VIGIL_PROMETHEUS__URL": prom_url,
           "VIGIL_PROMETHEUS__QUERIES": json.dumps([QUERY]),
           "VIGIL_TOPOLOGY__SNAPSHOT_EVERY_S": "1"}
    log = (tmp / f"{name}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "detector", "consume", "--role", "incidents"],
                            env=env, cwd=work, stdout=log, stderr=log)


def until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def snapshot(b: Broker) -> dict[str, Any] | None:
    """The newest incidents snapshot's poller state (None: none yet)."""
    k = KafkaConfig(bootstrap_servers=[b.addr])
    producer = KafkaProducer(bootstrap_servers=[b.addr])
    try:
        found = StateTopic(k, "vigil.state", producer).load({"incidents/vigil.judge/0"}, 10)
    finally:
        producer.close()
    snap = found.get("incidents/vigil.judge/0")
    metrics = snap[1].get("metrics") if snap else None
    return metrics if isinstance(metrics, dict) else None


def test_the_poller_runs_once_fleet_wide_and_a_standby_takes_it_over_warm(
        broker: Broker, tmp_path: Path) -> None:  # noqa: F811
    exp = checkout_exporter()
    logs: dict[str, str] = {}
    with promlocal.LocalPrometheus(tmp_path / "prom", scrape_targets=[exp.target]) as prom:
        procs = {n: start(broker, tmp_path, n, prom.url) for n in ("c0", "c1")}
        try:
            def read(n: str) -> str:
                return (tmp_path / f"{n}.log").read_text()

            boss = until(lambda: next((n for n in procs if "polling Prometheus" in read(n)), None),
                         60, "a process to start polling")
            standby = next(n for n in procs if n != boss)
            t_start = time.time()
            # A baseline of normal points, in a snapshot with the incidents it produced.
            until(lambda: (s := snapshot(broker)) and "latency" in s["queries"] and
                  s["queries"]["latency"]["next_start"] >= t_start + 12, 60, "a warm snapshot")
            assert "polling Prometheus" not in read(standby)  # one poller in the fleet
            procs[boss].kill()
            procs[boss].wait()
            until(lambda: "restored latency" in read(standby), 60, "the standby to take over")
            exp.value = 400.0

            def metric_incident() -> bool:
                return any(i["service"] == "checkout" and "metric:latency" in i["features"]
                           for i in incidents(broker, timeout=2))
            until(metric_incident, 40, "an incident from the metric change after the takeover")
        finally:
            stop_all(list(procs.values()))
            exp.close()
            logs = {n: (tmp_path / f"{n}.log").read_text() for n in procs}
    assert logs[standby].count("polling Prometheus") == 1, logs
    assert "warming up from the lookback" not in logs[standby], logs
