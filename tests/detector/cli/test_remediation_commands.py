"""The remediation commands: `vigil policy check`, `vigil policy test`, `vigil audit`, and
`vigil serve` refusing a policy that runs a shell."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from detector.cli import app

runner = CliRunner()


def test_policy_check_and_serve_refuse_a_shell_in_argv(tmp_path: Path) -> None:
    import subprocess

    bad = tmp_path / "shell.yaml"
    bad.write_text(textwrap.dedent("""
        rules:
          - name: r
            ladder:
              - name: restart
                hook: command
                params: {argv: ["/bin/sh", "-c", "eval \\"$VIGIL_LABEL_SERVICE\\""]}
    """))
    res = runner.invoke(app, ["policy", "check", str(bad)])
    assert res.exit_code == 2 and "shell.yaml:7: rules[0].ladder[0]: command: " in res.output
    (tmp_path / "token").write_text("a-token-of-more-than-16-bytes")
    served = subprocess.run(  # the real `vigil serve` refuses to start with it
        [sys.executable, "-m", "detector", "serve", "--policy", str(bad), "--token-file",
         str(tmp_path / "token"), "--audit-db", str(tmp_path / "a.db"), "--inbox-db",
         str(tmp_path / "i.db"), "--port", "0"], capture_output=True, text=True, timeout=60)
    assert served.returncode == 2 and "/bin/sh" in served.stderr and "shell" in served.stderr
    allowed = tmp_path / "allowed.yaml"
    allowed.write_text(bad.read_text().replace("hook: command", "hook: command\n        allow_shell: true"))
    res = runner.invoke(app, ["policy", "check", str(allowed)])
    assert res.exit_code == 0 and "warning" in res.output and "allowed.yaml:8" in res.output


def test_serve_says_at_start_whether_it_acts(tmp_path: Path) -> None:
    import subprocess

    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - name: r\n    ladder:\n      - {name: log, hook: log}\n")
    (tmp_path / "token").write_text("a-token-of-more-than-16-bytes")
    for extra, want in (([], "vigil serve: dry-run (hooks are planned and audited, never run; "
                              "--act runs them)"), (["--act"], "vigil serve: acting (hooks run)")):
        p = subprocess.Popen(
            [sys.executable, "-m", "detector", "serve", "--policy", str(policy), "--token-file",
             str(tmp_path / "token"), "--audit-db", str(tmp_path / "a.db"), "--inbox-db",
             str(tmp_path / "i.db"), "--port", "0", *extra], stderr=subprocess.PIPE, text=True)
        try:
            assert p.stderr is not None
            first = p.stderr.readline()
        finally:
            p.terminate()
            p.wait(timeout=30)
        assert first.startswith(want) and f"policy {policy}" in first, first


def test_policy_check_and_test_commands(tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text(textwrap.dedent("""
        rules:
          - name: cart-errors
            match: {labels: {service: {in: [cart, checkout]}}, severity: [page]}
            ladder:
              - name: throttle
                hook: http
                params: {url: "http://127.0.0.1:9/admin/${labels.service}/limit", json: {limit: 5},
                         headers: {Authorization: "Bearer hush", X-Key: "${credentials.k}"}}
                secrets: [json]
                wait_s: 60
              - {name: restart, hook: log, restart: true}
        page: {url: "http://127.0.0.1:9/page"}
        credentials: {k: {env: VIGIL_TEST_UNSET_CREDENTIAL}}  # shown as ***, never read
    """))
    ok = runner.invoke(app, ["policy", "check", str(good)])
    assert ok.exit_code == 0 and "1 rules, 2 rungs" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    ladder:\n      - {name: y, hook: nope}\n")
    res = runner.invoke(app, ["policy", "check", str(bad)])
    assert res.exit_code == 2 and "bad.yaml:4: rules[0].ladder[0]: unknown hook 'nope'" in res.output
    trig = tmp_path / "t.json"
    trig.write_text(json.dumps({"source": "alertmanager", "fingerprint": "f", "status": "firing",
                                "starts_at": 1, "labels": {"service": "cart", "severity": "page"}}))
    res = runner.invoke(app, ["policy", "test", str(good), "--trigger", str(trig)])
    assert res.exit_code == 0, res.output
    assert "1. throttle: hook http on cart" in res.output and "2. restart" in res.output
    assert "/admin/cart/limit" in res.output and "hush" not in res.output
    assert '"X-Key":"***"' in res.output and "would fail" not in res.output
    assert '"json":"***"' in res.output  # the rung's own secrets, as the engine plans it
    assert "then: page http://127.0.0.1:9/page" in res.output


def test_policy_test_takes_an_incident_record_or_an_alert_as_they_are(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent("""
        rules:
          - name: payments-errors
            match: {source: [detector], root_cause: [payments], kind: [error]}
            ladder:
              - {name: throttle, hook: log}
          - name: pages
            match: {source: [alertmanager], labels: {severity: page}}
            ladder:
              - {name: restart, hook: log, restart: true}
    """))
    incident = {"kind": "incident", "id": "inc-payments-1", "fingerprint": "root_cause=payments",
                "service": "payments", "status": "open", "opened_at": 1796126400.0,
                "features": {"error_ratio": 4}, "root_cause": [
                    {"service": "payments", "score": 3.0, "confidence": 0.9, "evidence": {}}],
                "top_explanation": "error ratio 0.6 vs baseline 0.01"}
    f = tmp_path / "incident.json"
    f.write_text(json.dumps(incident))
    res = runner.invoke(app, ["policy", "test", str(policy), "--trigger", str(f)])
    assert res.exit_code == 0, res.output
    assert "rule 'payments-errors'" in res.output and "1. throttle: hook log on payments" in res.output
    assert "rule 'pages' does not match: source is 'detector', not one of ['alertmanager']" in (
        res.output.replace("\n", " "))
    alert = {"status": "firing", "labels": {"alertname": "HighLatency", "service": "cart",
                                            "severity": "ticket"},
             "annotations": {}, "startsAt": "2026-12-01T12:04:10.123Z", "fingerprint": "ab12"}
    f.write_text(json.dumps(alert))
    res = runner.invoke(app, ["policy", "test", str(policy), "--trigger", str(f)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "trigger ab12@1796126650.123 (alertmanager, firing, service cart)" in text
    assert "rule 'pages' does not match: label severity is 'ticket', not 'page'" in text
    assert "no rule matches" in text
    f.write_text(json.dumps({"version": "4", "groupKey": "g", "status": "firing", "receiver": "r",
                             "alerts": [alert, {**alert, "fingerprint": "cd34", "labels": {
                                 **alert["labels"], "severity": "page"}}]}))
    res = runner.invoke(app, ["policy", "test", str(policy), "--trigger", str(f)])
    assert res.exit_code == 0 and "1. restart: hook log on cart" in res.output, res.output
    f.write_text(json.dumps({**alert, "startsAt": "yesterday"}))
    res = runner.invoke(app, ["policy", "test", str(policy), "--trigger", str(f)])
    assert res.exit_code == 2 and "not an Alertmanager alert: startsAt" in res.output
    f.write_text(json.dumps({"source": "manual", "fingerprint": "m", "status": "firing",
                             "starts_at": "2026-12-01T12:00:00Z"}))
    res = runner.invoke(app, ["policy", "test", str(policy), "--trigger", str(f)])
    assert res.exit_code == 0 and "trigger m@1796126400.000" in res.output, res.output


def test_audit_command_lists_and_filters(tmp_path: Path) -> None:
    from remediation.audit import AuditRecord, AuditStore

    db = tmp_path / "a.db"
    store = AuditStore(db)
    store.add(AuditRecord("e1", "f", "manual", "acted", rule="r", target="cart", hook="log"))
    store.add(AuditRecord("e2", "g", "manual", "suppressed", rule="r", target="db", guard="cooldown"))
    res = runner.invoke(app, ["audit", "--db", str(db), "--target", "db", "--json"])
    assert res.exit_code == 0
    (line,) = [json.loads(x) for x in res.output.splitlines() if x.strip()]
    assert line["guard"] == "cooldown"
    assert runner.invoke(app, ["audit", "--db", str(db), "--since", "1h"]).exit_code == 0
    assert runner.invoke(app, ["audit", "--db", str(tmp_path / "none.db")]).exit_code == 2


def test_policy_check_and_test_show_a_promql_verify(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent("""
        prometheus: {url: "http://127.0.0.1:9090"}
        rules:
          - name: cart-errors
            ladder:
              - name: throttle
                hook: log
                wait_s: 90
                verify:
                  resolved: false
                  promql: 'rate(http_errors_total{service="${trigger.service}"}[30s]) < 0.1'
                  for: 1m
              - {name: restart, hook: log, success: {resolved: true}}
    """))
    res = runner.invoke(app, ["policy", "check", str(policy)])
    assert res.exit_code == 0, res.output
    assert "1 rules, 2 rungs, 1 promql check(s) against http://127.0.0.1:9090" in res.output
    trig = tmp_path / "t.json"
    trig.write_text(json.dumps({"source": "alertmanager", "fingerprint": "f", "status": "firing",
                                "starts_at": 1, "labels": {"service": 'cart"}'}}))
    res = runner.invoke(app, ["policy", "test", str(policy), "--trigger", str(trig)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # rich wraps long lines
    assert ('waits 90s for promql rate(http_errors_total{service="cart\\"}"}[30s]) < 0.1 to hold '
            "for 60s (every 5s at http://127.0.0.1:9090)") in text
    policy.write_text(policy.read_text().replace('prometheus: {url: "http://127.0.0.1:9090"}', ""))
    res = runner.invoke(app, ["policy", "check", str(policy)])
    assert res.exit_code == 2 and "policy.yaml:11: rules[0].ladder[0].verify.promql: no " \
        "Prometheus to ask" in " ".join(res.output.split())


def test_policy_test_says_what_a_rung_without_a_check_does(tmp_path: Path) -> None:
    """No check to wait for: with no wait the step counts as verified at once (the engine's
    `verified`), with a wait the ladder climbs once it has passed (`not_better`)."""
    pol = tmp_path / "p.yaml"
    pol.write_text(textwrap.dedent("""
        rules:
          - name: r
            ladder:
              - {name: note, hook: log, wait_s: 0, verify: {resolved: false}}
              - {name: wait, hook: log, wait_s: 30, verify: {resolved: false}}
    """))
    trig = tmp_path / "t.json"
    trig.write_text(json.dumps({"source": "manual", "fingerprint": "f", "status": "firing",
                                "starts_at": 1, "labels": {"service": "cart"}}))
    res = runner.invoke(app, ["policy", "test", str(pol), "--trigger", str(trig)])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "waits 0s for nothing (no check: the step counts as verified at once)" in out
    assert "waits 30s for nothing (no check: after the wait the ladder climbs)" in out
