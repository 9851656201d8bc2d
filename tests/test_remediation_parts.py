"""Remediation parts: policy validation with line numbers, the policy and audit commands, the
Kubernetes hook against a local server that follows the API's paths and payloads (no cluster runs
here), and third-party hooks from entry points."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from detector.cli import app
from remediation.actions import Action
from remediation.hooks.base import HookRegistry
from remediation.hooks.kubernetes import RATE_LIMIT, RESTARTED_AT, KubernetesHook, connection
from remediation.policy import PolicyError, parse_policy
from remediation.trigger import Trigger
from tests.services.fake_kube import FakeKube, write_kubeconfig

runner = CliRunner()


# ---- policy files -------------------------------------------------------------------------------
def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        parse_policy(textwrap.dedent(text), "p.yaml")
    return exc.value.problems


def test_bad_policies_are_reported_with_their_line_and_field() -> None:
    got = problems("""
        rules:
          - name: a
            match: {labels: {alertname: {regex: "High("}}}
            ladder:
              - {name: x, hook: htp}
          - name: a
            ladder: []
          - name: c
            ladder:
              - {name: y, hook: command, params: {argv: ["restart", "${labels.service}"]}}
              - {name: z, hook: http, params: {url: "http://${labels.host}/x"}}
              - {name: w, hook: log, params: {note: "${trigger.nonsense}"}}
        guards: {cooldown_s: -1, bogus: 1}
    """)
    text = "\n".join(got)
    assert "p.yaml:4: rules[0].match.labels.alertname" in text and "bad regex" in text
    assert "p.yaml:8: rules[1].ladder" in text
    assert "p.yaml:14: guards.cooldown_s" in text and "p.yaml:14: guards.bogus" in text


def test_hook_params_and_references_are_checked_after_the_schema() -> None:
    got = "\n".join(problems("""
        rules:
          - name: a
            ladder:
              - {name: x, hook: htp}
          - name: a
            ladder:
              - {name: y, hook: command, params: {argv: ["restart", "${labels.service}"]}}
              - {name: z, hook: http, params: {url: "http://${labels.host}/x"}}
              - {name: w, hook: log, params: {note: "${trigger.nonsense}"}}
    """))
    assert "p.yaml:5: rules[0].ladder[0]: unknown hook 'htp'" in got
    assert "p.yaml:6: rules[1].name: 'a' is used twice" in got
    assert "rules[1].ladder[0]: command: argv cannot use ${...}" in got
    assert "rules[1].ladder[1]: http: the scheme and host must be literal" in got
    assert "unknown reference ${trigger.nonsense}" in got


SHELLY = [
    ["/bin/sh", "-c", 'eval "$VIGIL_LABEL_SERVICE"'], ["bash", "/opt/restart.sh"], ["dash"],
    ["/usr/bin/zsh", "-c", "x"], ["ksh", "-c", "x"], ["fish", "-c", "x"], ["cmd.exe", "/c", "x"],
    ["powershell", "-Command", "x"], ["pwsh", "-c", "x"], ["busybox", "sh", "-c", "x"],
    ["python3", "-c", "import os"], ["/usr/bin/python3.11", "-uc", "x"], ["perl", "-e", "x"],
    ["perl", "-lne", "x"], ["node", "-e", "x"], ["node", "--eval", "x"], ["ruby", "-e", "x"],
    ["php", "-r", "x"], ["awk", "{ system($0) }"], ["env", "sh", "-c", "x"],
    ["/usr/bin/env", "-i", "A=1", "bash", "x.sh"], ["env", "-S", "restart --all"],
    ["sudo", "-u", "root", "sh", "-c", "x"], ["sudo", "-s"], ["timeout", "5", "bash", "-c", "x"],
    ["nice", "-n", "10", "python", "-c", "x"], ["xargs", "sh", "-c", "x"], ["su", "-c", "x"],
]
PLAIN = [
    ["/usr/local/bin/restart", "--service", "cart"], ["python3", "/opt/restart.py", "-c", "x.ini"],
    ["python3", "-m", "vigil_restart"], ["env", "FOO=1", "/opt/restart"], ["perl", "/opt/x.pl"],
    ["sudo", "-u", "deploy", "/opt/restart"], ["awk", "-f", "/opt/prog.awk"], ["kubectl", "get", "po"],
]


@pytest.mark.parametrize("argv", SHELLY, ids=lambda a: " ".join(a)[:30])
def test_shells_and_inline_code_in_argv_are_refused_unless_allowed(argv: list[str]) -> None:
    """A shell (or an interpreter given code inline) in argv is one `eval` of a VIGIL_* variable
    away from running alert data as code: refused, unless the rung says allow_shell: true, and
    then loudly warned about."""
    rung = {"name": "restart", "hook": "command", "params": {"argv": argv}}
    text = "rules:\n  - name: r\n    ladder:\n      - " + json.dumps(rung) + "\n"
    (got,) = problems(text)
    assert got.startswith("p.yaml:4: rules[0].ladder[0]: ") and "allow_shell: true" in got, got
    allowed = parse_policy(text.replace('"hook"', '"allow_shell": true, "hook"'), "p.yaml")
    (warning,) = allowed.warnings
    assert "warning" in warning and "rules[0].ladder[0]" in warning


@pytest.mark.parametrize("argv", PLAIN, ids=lambda a: " ".join(a)[:30])
def test_plain_programs_in_argv_pass_without_warnings(argv: list[str]) -> None:
    rung = {"name": "restart", "hook": "command", "params": {"argv": argv}}
    pol = parse_policy("rules: [{name: r, ladder: [" + json.dumps(rung) + "]}]", "p.yaml")
    assert pol.warnings == []


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


def test_credentials_never_come_from_alert_data() -> None:
    """A secret-looking param (Authorization, token, ...) or one the rung lists in `secrets` may
    not be filled from labels, annotations or the trigger: it would take a credential from
    whoever can send alerts, and store it. Credentials are declared (a file or an environment
    variable) and referenced by name."""
    got = "\n".join(problems("""
        credentials:
          gateway: {file: /etc/vigil/gateway-token}
          both: {file: /x, env: Y}
        rules: [{name: a, ladder: [{name: x, hook: log}]}]
        secret_fields: [annotations.session, nonsense]
    """))
    assert "p.yaml:4: credentials.both" in got and "exactly one of file or env" in got
    assert "secret_fields[1]" in got and "labels.NAME or annotations.NAME" in got
    got = "\n".join(problems("""
        credentials:
          gateway: {file: /etc/vigil/gateway-token}
        rules:
          - name: a
            ladder:
              - name: x
                hook: http
                secrets: [key]
                params:
                  url: "http://gw/x?api_key=${annotations.k}"
                  headers:
                    Authorization: "Bearer ${annotations.gateway_token}"
                    X-Ok: "${credentials.gateway}"
                  json:
                    key: "${labels.service}"
                    note: "${annotations.session}"
                    other: "${credentials.nope}"
        secret_fields: [annotations.session]
    """))
    for field in ("params.headers.Authorization", "params.json.key", "params.url (query api_key)"):
        assert f"rules[0].ladder[0]: {field}: a credential cannot come from alert data" in got, got
    assert "${annotations.session} is a secret field" in got
    assert "${annotations.gateway_token} is a secret field" in got
    assert "${credentials.nope} is not declared under credentials" in got
    assert "X-Ok" not in got  # a declared credential in a header is the way
    ok = parse_policy(textwrap.dedent("""
        credentials: {gateway: {env: GATEWAY_TOKEN}}
        rules:
          - name: a
            ladder:
              - {name: x, hook: command, params: {argv: [/opt/x], env: {TOKEN: "${credentials.gateway}"}}}
        page: {url: "http://pager/x", headers: {Authorization: "Bearer ${credentials.gateway}"}}
    """), "p.yaml")
    assert list(ok.credentials) == ["gateway"]
    assert "only ${credentials.NAME}" in "\n".join(problems("""
        rules:
          - name: a
            ladder:
              - {name: x, hook: command, params: {argv: [/opt/x], env: {SVC: "${labels.service}"}}}
    """))


def test_yaml_syntax_errors_point_at_the_line() -> None:
    assert problems("rules:\n  - name: a\n    ladder: [\n")[0].startswith("p.yaml:4: not valid YAML")


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


# ---- kubernetes, against a local server with the API's paths and payloads ------------------------
@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[FakeKube, Path]]:
    fake = FakeKube()
    cfg = write_kubeconfig(tmp_path / "kubeconfig", fake.url)
    yield fake, cfg
    fake.server.shutdown()


def kube_action(params: dict[str, Any]) -> Any:
    hook = KubernetesHook()
    p = hook.validate(params)
    a = Action("r", 0, p["operation"], "kubernetes", "cart", p, 5.0, 0.0, "e")
    t = Trigger("manual", "f", "firing", 0.0, labels={"service": "cart", "ns": "shop"})
    return asyncio.run(hook.run(a, t))


def test_kubernetes_rollout_restart_sets_the_restartedAt_annotation(kube: tuple[FakeKube, Path]
                                                                    ) -> None:
    fake, cfg = kube
    out = kube_action({"operation": "restart", "namespace": "${labels.ns}",
                       "deployment": "${labels.service}", "kubeconfig": str(cfg)})
    assert out.ok, out.detail
    method, path, ctype, _ = fake.calls[-1]
    assert (method, path, ctype) == ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/cart",
                                     "application/strategic-merge-patch+json")
    assert RESTARTED_AT in fake.deployment["spec"]["template"]["metadata"]["annotations"]


def test_kubernetes_rollback_takes_the_previous_replicasets_template(kube: tuple[FakeKube, Path]
                                                                     ) -> None:
    fake, cfg = kube
    out = kube_action({"operation": "rollback", "namespace": "shop", "deployment": "cart",
                       "kubeconfig": str(cfg)})
    assert out.ok, out.detail
    assert out.data == {"from_revision": 3, "to_revision": 2}
    tmpl = fake.deployment["spec"]["template"]
    assert tmpl["spec"]["containers"][0]["image"] == "cart:1.0"
    assert "pod-template-hash" not in tmpl["metadata"]["labels"]


def test_kubernetes_scale_and_throttle(kube: tuple[FakeKube, Path]) -> None:
    fake, cfg = kube
    assert kube_action({"operation": "scale", "namespace": "shop", "deployment": "cart",
                        "replicas": 5, "kubeconfig": str(cfg)}).ok
    assert fake.deployment["spec"]["replicas"] == 5
    assert fake.calls[-1][2] == "application/merge-patch+json"
    assert kube_action({"operation": "throttle", "namespace": "shop", "ingress": "cart",
                        "rps": 20, "kubeconfig": str(cfg)}).ok
    assert fake.ingress["metadata"]["annotations"][RATE_LIMIT] == "20"


def test_kubernetes_refuses_names_that_cannot_exist_and_reports_api_errors(
        kube: tuple[FakeKube, Path]) -> None:
    """A name that is not a DNS-1123 label/subdomain never reaches the API server: literal ones
    fail the policy check, ones rendered from an alert are input errors (a path like
    `namespaces/../..` would otherwise climb to another resource)."""
    from remediation.actions import InputError
    from remediation.hooks.base import HookParamError

    fake, cfg = kube
    with pytest.raises(HookParamError, match="not a valid Kubernetes name"):
        KubernetesHook().validate({"operation": "restart", "namespace": "../../x",
                                   "deployment": "cart", "kubeconfig": str(cfg)})
    for labels in ({"ns": "..", "service": "cart"}, {"ns": "shop", "service": "a/b"},
                   {"ns": "shop", "service": "Cärt"}, {"ns": "shop", "service": "c" * 300}):
        hook = KubernetesHook()
        p = hook.validate({"operation": "restart", "namespace": "${labels.ns}",
                           "deployment": "${labels.service}", "kubeconfig": str(cfg)})
        a = Action("r", 0, "restart", "kubernetes", "cart", p, 5.0, 0.0, "e")
        t = Trigger("manual", "f", "firing", 0.0, labels=labels)
        with pytest.raises(InputError, match="not a valid Kubernetes name"):
            hook.prepare(a, t)
        with pytest.raises(InputError):
            asyncio.run(hook.run(a, t))
    assert fake.calls == []  # nothing was sent
    cfg.write_text(cfg.read_text().replace("kube-token", "wrong"))
    out = kube_action({"operation": "scale", "namespace": "shop", "deployment": "cart",
                       "replicas": 1, "kubeconfig": str(cfg)})
    assert not out.ok and "401" in out.detail


def test_kubernetes_in_cluster_auth_reads_the_service_account(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import remediation.hooks.kubernetes as k

    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_text("CA")
    monkeypatch.setattr(k, "SA_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    server, headers, verify, cert = connection({"in_cluster": True})
    assert server == "https://10.0.0.1:6443" and headers == {"Authorization": "Bearer sa-token"}
    assert verify == str(tmp_path / "ca.crt") and cert is None


# ---- third-party hooks --------------------------------------------------------------------------
def test_third_party_hooks_load_from_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    (tmp_path / "acme_hooks.py").write_text(textwrap.dedent("""
        from remediation.actions import Outcome

        class PagerHook:
            name = "acme-pager"
            def validate(self, params):
                return params
            def run(self, action, trigger):  # synchronous: the engine runs it in a thread
                return Outcome(True, "paged acme")

        broken = 42
    """))
    dist = tmp_path / "acme_hooks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-hooks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[vigil.remediation_hooks]\nacme = acme_hooks:PagerHook\nbad = acme_hooks:broken\n"
        "missing = acme_hooks:Nope\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("acme_hooks", None)
    reg = HookRegistry()
    assert "acme-pager" in reg.hooks and {"http", "command", "kubernetes", "log"} <= set(reg.hooks)
    assert any("not a Hook" in e for e in reg.errors) and any("failed to load" in e for e in reg.errors)

    from remediation.audit import AuditStore
    from remediation.engine import Engine, EngineSettings

    policy = parse_policy("rules: [{name: r, ladder: [{name: p, hook: acme-pager, wait_s: 0, "
                          "success: {resolved: false}}]}]", hooks=reg)
    store = AuditStore(tmp_path / "a.db")

    async def go() -> None:
        e = Engine(policy, store, hooks=reg, settings=EngineSettings(dry_run=False))
        e.submit(Trigger("manual", "f", "firing", 0.0, labels={"service": "x"}))
        await e.drain()
    asyncio.run(go())
    assert [(r.verdict, r.detail) for r in store.query()][:2] == [("acted", "paged acme"),
                                                                  ("verified", "no verification configured")]


def test_rules_match_on_source_labels_severity_root_cause_and_kind() -> None:
    from detector.incidents.triggers import incident_trigger

    pol = parse_policy(textwrap.dedent("""
        rules:
          - name: db-errors
            match: {source: [detector], root_cause: [db], kind: [error], severity: [page],
                    labels: {service: {regex: "check.*"}, incident: {in: [inc-1, inc-2]}}}
            ladder: [{name: n, hook: log}]
          - name: anything-from-alertmanager
            match: {source: [alertmanager]}
            ladder: [{name: n, hook: log}]
    """))
    inc = {"id": "inc-1", "fingerprint": "root_cause=db", "service": "checkout", "status": "open",
           "opened_at": 5.0, "features": {"error_ratio": 4, "latency_p99": 1},
           "root_cause": [{"service": "db", "confidence": 0.97}]}
    assert [r.name for r in pol.matching(incident_trigger(inc))] == ["db-errors"]
    assert pol.matching(incident_trigger({**inc, "id": "inc-3"})) == []
    assert pol.matching(incident_trigger({**inc, "features": {"latency_p99": 3}})) == []
    am = Trigger("alertmanager", "f", "firing", 0.0, labels={"service": "checkout"})
    assert [r.name for r in pol.matching(am)] == ["anything-from-alertmanager"]


def test_finished_episodes_are_forgotten_and_a_late_resend_is_still_refused(tmp_path: Path) -> None:
    from remediation.audit import AuditStore
    from remediation.engine import Engine, EngineSettings

    policy = parse_policy("rules: [{name: r, ladder: [{name: n, hook: log, wait_s: 0, "
                          "success: {resolved: false}}]}]\nguards: {cooldown_s: 0, budget: "
                          "{max_actions: 100000, max_per_target: 100000}}\n", "p.yaml")
    now = [1000.0]
    store = AuditStore(tmp_path / "audit.db")

    async def run() -> Engine:
        e = Engine(policy, store, settings=EngineSettings(episode_memory_s=60),
                   clock=lambda: now[0])
        first = Trigger("alertmanager", "old", "firing", 1.0, labels={"service": "a"})
        await e.process(first)
        now[0] += 120  # the episode is finished and older than its memory
        await asyncio.gather(*(  # a sweep every 4,096 triggers
            e.process(Trigger("alertmanager", f"new{i}", "firing", 2.0, labels={"service": f"s{i}"}))
            for i in range(4095)))
        assert e.episodes_in_memory() == 4095  # "old" forgotten; the new ones are recent
        await e.process(first)  # a late resend of the forgotten episode
        return e
    asyncio.run(run())
    old = store.query(episode="old@1.000")
    assert [r.verdict for r in old].count("dry_run") == 1
    assert any(r.guard == "idempotency" for r in old)  # refused by its durable claim


def test_an_audit_database_from_before_claim_states_is_migrated(tmp_path: Path) -> None:
    """Claims of an older database had no state: those without an outcome row become open
    (interrupted) claims, with the trigger taken from the episode's audit rows."""
    import sqlite3

    from remediation.audit import AuditStore

    db = tmp_path / "old.db"
    trig = json.dumps({"source": "alertmanager", "fingerprint": "f", "status": "firing",
                       "starts_at": 1.0, "labels": {"service": "cart"}})
    with sqlite3.connect(db) as old:
        old.executescript("""
            CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL,
                episode TEXT NOT NULL, fingerprint TEXT NOT NULL, source TEXT NOT NULL, rule TEXT,
                rung INTEGER, rung_name TEXT, hook TEXT, target TEXT, params TEXT,
                verdict TEXT NOT NULL, guard TEXT, detail TEXT, output TEXT, duration_s REAL,
                trigger TEXT);
            CREATE TABLE claims (episode TEXT NOT NULL, rule TEXT NOT NULL, rung INTEGER NOT NULL,
                ts REAL NOT NULL, PRIMARY KEY (episode, rule, rung));
        """)
        old.execute("INSERT INTO claims VALUES ('done@1.000', 'r', 0, 5.0), "
                    "('lost@1.000', 'r', 1, 6.0)")
        old.execute("INSERT INTO audit (ts, episode, fingerprint, source, rule, rung, verdict, "
                    "trigger) VALUES (5, 'done@1.000', 'done', 'alertmanager', 'r', 0, 'acted', ?),"
                    " (6, 'lost@1.000', 'lost', 'alertmanager', 'r', 0, 'not_better', ?)",
                    (trig, trig))
    store = AuditStore(db)
    (claim,) = store.interrupted_claims()
    assert (claim.episode, claim.rule, claim.rung, claim.dry_run) == ("lost@1.000", "r", 1, False)
    assert claim.trigger is not None and claim.trigger["labels"] == {"service": "cart"}
    assert store.claim("new@1.000", "r", 0)  # the new columns work on the old table
    store.close()


def test_the_readme_policy_loads() -> None:
    """The README's example policy is a valid policy (credentials by name, no alert data in
    credentials, no shell), so what it teaches works."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("```yaml\n# policy.yaml")
    block = readme[start + len("```yaml\n"):readme.index("```", start + 7)]
    pol = parse_policy(block, "README.md")
    assert pol.warnings == [] and set(pol.credentials) == {"gateway", "pager"}
    assert [r.name for r in pol.rules[0].ladder] == ["throttle", "restart", "rollback"]
    assert pol.is_secret_field("annotations", "session_id")
