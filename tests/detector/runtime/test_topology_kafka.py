"""`vigil consume --role all` processes against a real Tansu broker: however many consumers
share the logs, one fault opens one incident id, keyed by its root cause; a killed incidents
owner is taken over by another process from its snapshot in the state topic. Each test runs
with each consumer client (`kafka.client`)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from detector.bench.fleet import consumer_env, incidents, judged, lost_and_doubled, produce, window_counts
from detector.bench.servers import Broker
from detector.simulate.runs import simulated_lines
from tests.detector.runtime.test_consume import client  # noqa: F401  (each consumer client)

LOGS = 4


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker(partitions=LOGS)
    b.topics("logs", "vigil.anomalies", "vigil.incidents", "vigil.dead-letters")
    b.topics("vigil.partials", partitions=2)
    b.topics("vigil.judge", "vigil.state", partitions=1)
    yield b
    b.stop()


def env_for(b: Broker, tmp: Path, name: str) -> dict[str, str]:
    work = tmp / name
    work.mkdir(parents=True, exist_ok=True)
    return consumer_env(b.addr, work)

def start(b: Broker, tmp: Path, name: str) -> subprocess.Popen[bytes]:
    log = (tmp / f"{name}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "detector", "consume", "--role", "all"],
                            env=env_for(b, tmp, name), cwd=tmp / name, stdout=log, stderr=log)


def wait_for(b: Broker, pred, timeout: float) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    found: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        found = incidents(b, timeout=2)
        if pred(found):
            return found
        time.sleep(1)
    return found


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def test_three_consumers_open_exactly_one_incident_keyed_by_the_root_cause(
        broker: Broker, tmp_path: Path, client: str) -> None:  # noqa: F811
    lines, _ = simulated_lines(40_000, seed=5, scenario="error_burst")
    # Records on the stage topics that are not ours: skipped and counted, never fatal.
    for topic in ("vigil.partials", "vigil.judge"):
        broker.produce(topic, [(None, b"{broken"), (None, b'{"t": "p", "src": 5}'),
                               (None, b'{"t": "w", "src": "logs/0", "first": 9, "end": 1}'),
                               (None, b'{"t": "s", "task": "x", "w": [{"start": "a"}]}'),
                               (None, b'{"t": "v", "src": "logs/0", "first": 0, "end": 1, '
                                      b'"v": [{"root": 1}], "e": [[1, 2, 3]]}'),
                               (None, b"\xff\xfe"), (None, b"[1, 2]"), (None, b"")])
    procs = [start(broker, tmp_path, f"c{i}") for i in range(3)]
    try:
        produce(broker, lines)
        found = wait_for(broker, lambda f: any(i["status"] == "open" for i in f), 150)
        time.sleep(5)  # any other incident would have opened meanwhile
        found = incidents(broker)
    finally:
        stop_all(procs)
    logs = "".join((tmp_path / f"c{i}.log").read_text() for i in range(3))
    assert found, logs[-3000:]
    ids = {i["id"] for i in found}
    assert len(ids) == 1, (ids, logs[-2000:])
    assert {i["service"] for i in found} == {"payments"}
    assert found[0]["root_cause"][0]["service"] == "payments"  # type: ignore[index]
    assert "skipped: " in logs and "Traceback" not in logs


def owner(tmp: Path, names: list[str]) -> str:
    """The process whose last incidents assignment holds the judge partition."""
    for name in names:
        lines = [x for x in (tmp / f"{name}.log").read_text().splitlines()
                 if "incidents: assigned" in x]
        if lines and "vigil.judge/0" in lines[-1]:
            return name
    raise AssertionError("no process owns the judge partition")


def test_kill_9_of_the_incidents_owner_and_another_is_taken_over_with_the_same_incident(
        broker: Broker, tmp_path: Path, client: str) -> None:  # noqa: F811
    lines, _ = simulated_lines(60_000, seed=5, scenario="error_burst")
    cut = int(len(lines) * 0.75)  # the fault runs from 64% to 81% of the run
    names = ["c0", "c1", "c2"]
    procs = {n: start(broker, tmp_path, n) for n in names}
    try:
        produce(broker, lines[:cut])
        before = wait_for(broker, lambda f: any(i["status"] == "open" for i in f), 150)
        assert before, "no incident before the kill"
        time.sleep(3)  # a snapshot of the owner holds the open incident
        boss = owner(tmp_path, names)
        other = next(n for n in names if n != boss)
        for n in (boss, other):
            procs[n].kill()
            procs[n].wait()
        for n in ("c3", "c4"):  # fresh working directories: nothing on local disk
            procs[n] = start(broker, tmp_path, n)
        produce(broker, lines[cut:])
        last = max(orjson.loads(x)["ts"] for x in lines[-50:])
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            scored = judged(broker.addr)
            tasks = {str(r["task"]) for r in scored}
            through = [max(float(r["through"] or 0) for r in scored if r["task"] == t)
                       for t in tasks]
            if len(tasks) == 2 and through and min(through) >= _epoch(last) - 60:
                break
            time.sleep(2)
        after = incidents(broker)
    finally:
        stop_all(list(procs.values()))
    logs = {n: (tmp_path / f"{n}.log").read_text() for n in procs}
    ids = {i["id"] for i in after}
    assert len(ids) == 1 and {i["service"] for i in after} == {"payments"}, (ids, logs)
    assert any("incidents: restored" in logs[n] for n in ("c3", "c4", *names)), logs
    # No window missing or counted twice: the merged windows hold exactly the events one
    # process puts in them, up to where every merge task has closed.
    assert window_counts(scored)
    assert lost_and_doubled(scored, lines) == (0, 0)


def _epoch(ts: object) -> float:
    from detector.decode.timestamps import epoch_seconds

    return epoch_seconds(ts)


ONE_RUNG = """rules:
  - name: one
    match: {{}}
    ladder:
      - {{name: throttle, hook: http, wait_s: 0, params: {{url: "{url}/throttle/${{labels.service}}",
          json: {{limit: 5}}}}}}
guards: {{cooldown_s: 0, retries: {{attempts: 0}}}}
"""


def test_one_default_process_with_a_policy_opens_one_incident_and_acts_once(
        broker: Broker, tmp_path: Path) -> None:
    """`vigil consume --policy P --triggers-topic T --act` (no --role: `all`, and with the
    policy the remediate role): the stages open one incident, the incidents role produces its
    triggers to T, the same process's remediate role consumes them and runs the hook once
    against a real HTTP target, audited in SQLite; /readyz covers the remediate role; SIGTERM
    drains to exit 0."""
    import httpx

    from detector.bench.fleet import TRIGGERS, HookTarget
    from remediation.audit_log import open_audit

    broker.topics(TRIGGERS, partitions=2)
    hook = HookTarget()
    policy, audit = tmp_path / "policy.yaml", tmp_path / "audit.db"
    policy.write_text(ONE_RUNG.format(url=hook.url))
    lines, _ = simulated_lines(40_000, seed=5, scenario="error_burst")
    log_path = tmp_path / "c0.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "detector", "consume", "--policy", str(policy),
             "--triggers-topic", TRIGGERS, "--act", "--audit-db", str(audit)],
            env={**env_for(broker, tmp_path, "c0"), "VIGIL_KAFKA__DRAIN_TIMEOUT_S": "10"},
            cwd=tmp_path / "c0", stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        port = None
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            said = [x for x in log_path.read_text().splitlines() if "/readyz /metrics on" in x]
            port = int(said[0].rsplit(":", 1)[1].split(";")[0]) if said else None
            time.sleep(0.2)
        assert port is not None, log_path.read_text()[-3000:]
        ready: dict[str, object] = {}
        while time.monotonic() < deadline and not ready.get("ready"):
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
            time.sleep(0.5)
        assert ready.get("ready") and "remediate: " in str(ready["detail"]), ready
        produce(broker, lines)
        deadline = time.monotonic() + 150
        while not hook.calls and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1)
        time.sleep(5)  # a second action, or another incident, would show meanwhile
        found = incidents(broker)
        triggers = broker.read(TRIGGERS, 10**9, timeout=3)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        hook.stop()
    logs = log_path.read_text()
    assert code == 0, logs[-3000:]
    assert len({i["id"] for i in found}) == 1, ({i["id"] for i in found}, logs[-3000:])
    assert {i["service"] for i in found} == {"payments"}
    assert triggers, "the incidents role produced no trigger"
    assert hook.calls == ["/throttle/payments"], (hook.calls, logs[-3000:])
    store = open_audit(audit)
    try:
        acted = [r for r in store.query() if r.verdict == "acted"]
    finally:
        store.close()
    assert [(r.rung_name, r.target) for r in acted] == [("throttle", acted[0].target)], acted
    assert "remediation: acting" in logs and "remediated as group fleet-remediate" in logs
    assert "Traceback" not in logs, logs[-3000:]
