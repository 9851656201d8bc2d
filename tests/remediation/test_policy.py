"""Policy files: validation with line numbers, hook params and references, argv that would
run a shell, credentials that never come from alert data, rule matching, and the documented
example policy."""

from __future__ import annotations

import json
import textwrap

import pytest

from remediation.policy import PolicyError, parse_policy
from remediation.trigger import Trigger
from tests.support import ROOT


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


def test_the_documented_policy_loads() -> None:
    """The documentation's example policy is a valid policy (credentials by name, no alert data
    in credentials, no shell), so what it teaches works."""
    doc = ROOT / "docs" / "remediation.md"
    readme = (doc if doc.is_file() else ROOT / "README.md").read_text()
    start = readme.index("```yaml\n# policy.yaml")
    block = readme[start + len("```yaml\n"):readme.index("```", start + 7)]
    pol = parse_policy(block, "README.md")
    assert pol.warnings == [] and set(pol.credentials) == {"gateway", "pager"}
    assert [r.name for r in pol.rules[0].ladder] == ["throttle", "restart", "rollback"]
    assert pol.is_secret_field("annotations", "session_id")


# ---- verify: (success: is its old name), promql conditions ----------------------------------------
PROM = 'prometheus: {url: "http://127.0.0.1:9090"}\n'
ERRORS = 'rate(http_errors_total{service="${trigger.service}"}[30s]) < 0.1'


def one_rung(rung: str, top: str = PROM) -> str:
    """A policy of one rung (its `rung` keys from line 8 on), after `top` (one line)."""
    return top + ("rules:\n  - name: r\n    ladder:\n      - name: throttle\n        hook: log\n"
                  "        wait_s: 120\n") + textwrap.indent(rung, "        ")


def test_verify_is_the_new_name_of_success_and_both_is_an_error_at_the_line() -> None:
    old = parse_policy(one_rung("success: {resolved: false}")).rules[0].ladder[0]
    new = parse_policy(one_rung("verify: {resolved: false}")).rules[0].ladder[0]
    assert old.verify == new.verify and not new.verify.resolved and old.success is old.verify
    assert parse_policy(one_rung("")).rules[0].ladder[0].verify.resolved  # the default
    got = problems(one_rung("verify: {resolved: true}\nsuccess: {resolved: false}"))
    assert got == ["p.yaml:9: rules[0].ladder[0].success: give verify (or its old name success), "
                   "not both"]
    # a problem inside the old spelling is said with it
    got = problems(one_rung("success: {resolved: maybe}"))
    assert got[0].startswith("p.yaml:8: rules[0].ladder[0].success.resolved: ")


@pytest.mark.parametrize(("given", "seconds"), [
    ("60", 60.0), ("60s", 60.0), ("2m", 120.0), ("1m30s", 90.0), ("1.5s", 1.5), ("500ms", 0.5)])
def test_for_and_interval_take_seconds_or_a_duration(given: str, seconds: float) -> None:
    rung = parse_policy(one_rung(f"verify: {{promql: 'up == 1', for: {given}, interval: {given}}}")
                        ).rules[0].ladder[0]
    assert rung.verify.for_s == seconds and rung.verify.interval_s == seconds


def test_a_verify_with_promql_parses_with_its_defaults() -> None:
    pol = parse_policy(one_rung(f"verify: {{promql: '{ERRORS}', for: 60s}}",
                                top='prometheus: {url: "http://127.0.0.1:9090/", timeout_s: 2}\n'))
    v = pol.rules[0].ladder[0].verify
    assert (v.resolved, v.promql, v.for_s, v.interval_s) == (True, ERRORS, 60.0, 5.0)
    assert pol.prometheus is not None and pol.prometheus.url == "http://127.0.0.1:9090"
    assert pol.prometheus.timeout_s == 2


@pytest.mark.parametrize(("rung", "top", "expect"), [
    ("verify:\n  promql: 'up == 1'\n  for: 3m", PROM,
     "p.yaml:10: rules[0].ladder[0].verify.for: 180s is longer than the rung's wait_s (120s)"),
    ("success: {promql: 'up == 1', for: 3m}", PROM,
     "p.yaml:8: rules[0].ladder[0].success.for: 180s is longer than the rung's wait_s (120s)"),
    ("verify: {promql: 'up == 1', for: soon}", PROM,
     "p.yaml:8: rules[0].ladder[0].verify.for: Value error, 'soon' is not a duration"),
    ("verify: {promql: 'up == 1', interval: 0}", PROM,
     "p.yaml:8: rules[0].ladder[0].verify.interval: Input should be greater than 0"),
    ("verify: {for: 60s}", PROM,
     "p.yaml:8: rules[0].ladder[0].verify: Value error, for applies to a promql condition"),
    ("verify:\n  resolved: true\n  promql: 'up == 1'", "",
     "p.yaml:9: rules[0].ladder[0].verify.promql: no Prometheus to ask: set prometheus: {url: "),
    ("verify: {promql: '${labels.metric} > 0'}", PROM,
     "p.yaml:8: rules[0].ladder[0].verify.promql: ${labels.metric} is outside a double-quoted "
     "label value"),
    ("verify: {promql: \"up{a='${labels.a}'}\"}", PROM,
     "p.yaml:8: rules[0].ladder[0].verify.promql: ${labels.a} is outside a double-quoted"),
    ("verify: {promql: 'up{t=\"${credentials.t}\"}'}", PROM,
     "p.yaml:8: rules[0].ladder[0].verify.promql: ${credentials.t}: a credential cannot go "
     "into a query"),
    ("verify: {promql: 'up{t=\"${labels.api_token}\"}'}", PROM,
     "p.yaml:8: rules[0].ladder[0].verify.promql: ${labels.api_token} is a secret field"),
    ("verify: {promql: 'up{t=\"${trigger.bogus}\"}'}", PROM,
     "p.yaml:8: rules[0].ladder[0].verify.promql: unknown reference ${trigger.bogus}"),
    ("", 'prometheus: {url: "http://${labels.host}:9090"}\n',
     "p.yaml:1: prometheus.url: Value error, 'http://${labels.host}:9090': an http(s) URL with "
     "a literal host"),
])
def test_verify_problems_point_at_their_line(rung: str, top: str, expect: str) -> None:
    got = problems(one_rung(rung, top))
    assert any(p.startswith(expect) for p in got), got


def test_alert_data_in_a_query_stays_a_label_value() -> None:
    """A hostile service label cannot close the matcher and add `or vector(1)`: it is escaped
    (backslash and double quote) and stays the value compared."""
    from remediation.templating import render_promql

    v = parse_policy(one_rung(f"verify: {{promql: '{ERRORS}'}}")).rules[0].ladder[0].verify
    hostile = Trigger("alertmanager", "f", "firing", 0.0,
                      labels={"service": 'cart"} or vector(1) #'})
    assert render_promql(v.promql or "", hostile) == (
        r'rate(http_errors_total{service="cart\"} or vector(1) #"}[30s]) < 0.1')
    slashes = Trigger("alertmanager", "f", "firing", 0.0, labels={"service": 'a\\"\nb'})
    assert render_promql(v.promql or "", slashes) == (
        r'rate(http_errors_total{service="a\\\"\nb"}[30s]) < 0.1')


def test_the_documented_verify_example_loads() -> None:
    doc = (ROOT / "docs" / "remediation.md").read_text()
    start = doc.index("```yaml\nprometheus:")
    block = doc[start + len("```yaml\n"):doc.index("```", start + 7)]
    v = parse_policy(block, "remediation.md").rules[0].ladder[0].verify
    assert v.resolved and v.for_s == 60 and v.interval_s == 5 and v.http is not None
    assert v.promql == 'rate(http_errors_total{service="${trigger.service}"}[30s]) < 0.1'
