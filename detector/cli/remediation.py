"""Commands of remediation: serve (the Alertmanager receiver), policy check / test, audit."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from detector.cli.common import ConfigOpt, err, load_or_exit, out


def serve_cmd(
    config: ConfigOpt = None,
    policy: Annotated[Path | None, typer.Option(help="remediation policy YAML (serve.policy)")
                      ] = None,
    host: Annotated[str | None, typer.Option(help="listen address (serve.host)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (serve.port)")] = None,
    audit_db: Annotated[Path | None, typer.Option(help="audit database (serve.audit_db)")] = None,
    inbox_db: Annotated[Path | None, typer.Option(help="durable intake database (serve.inbox_db)")
                        ] = None,
    token_file: Annotated[Path | None, typer.Option(help="bearer token file (serve."
                                                    "bearer_token_file, or "
                                                    "$VIGIL_SERVE__BEARER_TOKEN)")] = None,
    basic_user: Annotated[str | None, typer.Option(help="basic-auth user (serve.basic_user)")
                          ] = None,
    password_file: Annotated[Path | None, typer.Option(help="basic-auth password file (or "
                                                       "$VIGIL_SERVE__BASIC_PASSWORD)")] = None,
    act: Annotated[bool, typer.Option("--act", help="really run hooks (default: dry-run; "
                                      "serve.engine.dry_run)")] = False,
    queue_size: Annotated[int | None, typer.Option(help="accepted alerts the engine may have "
                                                   "unfinished before the webhook answers 503")
                          ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="serve HTTPS with this certificate (PEM)")
                        ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="the certificate's private key (PEM)")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(
        help="mTLS: require client certificates signed by this CA (PEM)")] = None,
    public_docs: Annotated[bool, typer.Option(
        "--public-docs", help="serve /docs, /redoc and /openapi.json without credentials")] = False,
    header_timeout: Annotated[float | None, typer.Option(
        min=0.1, max=300, help="close a connection whose request headers take longer (seconds)")
    ] = None,
    triggers_topic: Annotated[str | None, typer.Option(
        help="run no engine: produce each accepted alert's trigger to this Kafka topic, keyed "
        "by target, for `vigil remediate` (brokers and security: the `kafka` section; "
        "serve.triggers_topic)")] = None,
) -> None:
    """The Alertmanager webhook receiver: POST /alertmanager, GET /episodes, GET /actions,
    POST /actions/{id}/approve|reject, /healthz, /readyz, /metrics, /docs. Auth is required
    (for /docs too, unless --public-docs). Settings: the `serve` section of --config, then
    VIGIL_SERVE__* variables, then these flags. With --triggers-topic it runs no engine: an
    alert is marked done in the inbox once the broker acknowledged its trigger."""
    from remediation.alertmanager import server
    from remediation.alertmanager.app import create_app, mode_of
    from remediation.alertmanager.settings import AuthError
    from remediation.policy import PolicyError

    cfg = load_or_exit(config)
    base = cfg.serve
    flags: dict[str, Any] = {"triggers_topic": triggers_topic,
        "policy": policy, "host": host, "port": port, "audit_db": audit_db, "inbox_db": inbox_db,
        "bearer_token_file": token_file, "basic_user": basic_user,
        "basic_password_file": password_file, "queue_size": queue_size,
        "header_timeout_s": header_timeout, "public_docs": public_docs or None}
    settings = base.model_copy(update={k: v for k, v in flags.items() if v is not None})
    if act:
        settings = settings.model_copy(update={"engine": settings.engine.model_copy(
            update={"dry_run": False})})
    from remediation.audit_pg import AuditUnavailable

    forwarder = None
    if settings.triggers_topic:
        if act:
            err.print("error: --act with --triggers-topic: serve runs no hooks then; `vigil "
                      "remediate --act` does")
            raise typer.Exit(2)
        from detector.sinks.kafka import KafkaTriggerForwarder

        forwarder = KafkaTriggerForwarder(cfg.kafka, settings.triggers_topic)
    try:
        application = create_app(settings, forwarder)
    except (AuthError, PolicyError, AuditUnavailable) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    if (tls_cert is None) != (tls_key is None) or (tls_client_ca and not tls_cert):
        err.print("error: --tls-cert and --tls-key go together; --tls-client-ca needs both")
        raise typer.Exit(2)
    tls: dict[str, Any] = {}
    if tls_cert is not None:
        import ssl

        tls = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)}
        if tls_client_ca is not None:
            tls |= {"ssl_ca_certs": str(tls_client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    mode = mode_of(settings)
    how = {"dry-run": " (hooks are planned and audited, never run; --act runs them)",
           "acting": " (hooks run)",
           "forwarding": f" (no engine: alerts go to {settings.triggers_topic} on "
           f"{','.join(cfg.kafka.bootstrap_servers)} for `vigil remediate`)"}[mode]
    err.print(f"vigil serve: {mode}{how}"
              + f"; policy {settings.policy}; audit {settings.audit_shown()}; inbox "
              f"{settings.inbox_db}; {'https' if tls else 'http'}://{settings.host}:"
              f"{settings.port}", markup=False, highlight=False)
    server.run(application, settings.host, settings.port, settings.header_timeout_s, **tls)


def policy_check(file: Annotated[Path, typer.Argument(help="policy YAML")]) -> None:
    """Validate a policy file; problems are printed as FILE:LINE: field: message."""
    policy = load_policy_or_exit(file)  # warnings loud, on stderr, before the verdict
    rungs = sum(len(r.ladder) for r in policy.rules)
    warned = f", {len(policy.warnings)} warning(s)" if policy.warnings else ""
    checks = sum(r.verify.promql is not None for rule in policy.rules for r in rule.ladder)
    prom = (f", {checks} promql check(s) against {policy.prometheus.url}"
            if checks and policy.prometheus else "")
    out.print(f"{file}: ok, {len(policy.rules)} rules, {rungs} rungs{prom}{warned}", markup=False)


def policy_test(
    file: Annotated[Path, typer.Argument(help="policy YAML")],
    trigger: Annotated[Path, typer.Option(help="JSON: an incident record (a line of "
                                          "incidents.jsonl), an Alertmanager alert or webhook "
                                          "notification, or a trigger (source, fingerprint, "
                                          "status, starts_at, labels, ...); times as epoch "
                                          "seconds or RFC 3339")],
) -> None:
    """Show, step by step, what the policy would do with a trigger, and for every rule that
    does not match, which condition failed. Nothing is acted on."""
    from remediation.guard import Guard
    from remediation.policy import PolicyError, load_policy
    from remediation.trigger import TriggerError

    try:
        policy = load_policy(file)
        found = triggers_of(orjson.loads(trigger.read_bytes()))
        found = [policy.redact_trigger(t) for t in found]  # as the engine sees them: '***'
    except PolicyError as exc:
        for line in exc.problems:
            err.print(line, markup=False, highlight=False)
        raise typer.Exit(2) from exc
    except (OSError, orjson.JSONDecodeError, TriggerError) as exc:
        err.print(f"error: trigger {trigger}: {exc}", markup=False)
        raise typer.Exit(2) from exc
    for line in policy.warnings:
        err.print(line, markup=False, highlight=False, style="bold yellow")
    for t in found:
        _show_plan(policy, t, Guard(policy.guards))
    out.print("(dry-run is the default: the engine records these without acting until "
              "remediation runs with dry_run off)", markup=False)


def triggers_of(doc: Any) -> list[Any]:
    """The triggers in a JSON document as a user has it: an incident record, an Alertmanager
    webhook notification or a single alert, or a trigger.

    >>> [t.source for t in triggers_of({"kind": "incident", "id": "inc-a", "service": "a",
    ...     "fingerprint": "root_cause=a", "status": "open", "opened_at": 10.0})]
    ['detector']
    >>> triggers_of({"labels": {"alertname": "X"}, "status": "firing",
    ...              "startsAt": "2026-12-01T12:00:00Z"})[0].starts_at
    1796126400.0
    """
    from pydantic import ValidationError

    from detector.incidents.triggers import incident_trigger
    from remediation.alertmanager.payload import Alert, Notification
    from remediation.trigger import Trigger, TriggerError, fingerprint

    if not isinstance(doc, dict):
        raise TriggerError("a trigger is a JSON object")
    try:
        if doc.get("kind") == "incident" or {"opened_at", "fingerprint", "service"} <= set(doc):
            missing = [k for k in ("id", "fingerprint", "service", "opened_at") if k not in doc]
            if missing:
                raise TriggerError(f"incident record lacks {', '.join(missing)}")
            return [incident_trigger(doc)]
        if isinstance(doc.get("alerts"), list):
            return [a.trigger() for a in Notification.model_validate(doc).alerts]
        if "startsAt" in doc:
            if not doc.get("fingerprint"):
                labels = doc.get("labels")
                doc = {**doc, "fingerprint": fingerprint(labels if isinstance(labels, dict) else {})}
            return [Alert.model_validate(doc).trigger()]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise TriggerError(f"not an Alertmanager alert: {where}: {first['msg']}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise TriggerError(f"not an incident record: {exc}") from exc
    return [Trigger.from_dict(doc)]


def _show_plan(policy: Any, t: Any, guard: Any) -> None:
    from remediation.planning import plan_action, shown_params
    from remediation.templating import TemplateError

    out.print(f"trigger {t.episode} ({t.source}, {t.status}, service {t.service or '-'}"
              f"{', kind ' + t.kind if t.kind else ''})", markup=False)
    rules = policy.matching(t)
    for rule in policy.rules:
        if rule not in rules:
            out.print(f"rule {rule.name!r} does not match: " + "; ".join(rule.match.failures(t)),
                      markup=False)
    if t.status == "resolved":
        out.print("resolved: closes the episode's record and stops its waiting steps.")
        return
    if not rules:
        out.print("no rule matches: recorded as suppressed (policy); nothing happens.")
        return
    for rule in rules:
        out.print(f"rule {rule.name!r}" + (f" (approval required, expires in "
                                          f"{rule.approval.expires_s:g}s)" if rule.approval else ""),
                  markup=False)
        for i, rung in enumerate(rule.ladder):
            try:  # the engine's own planning, credentials left unread
                action = plan_action(policy, rule, i, rung, t, read_credentials=False)
                params = shown_params(action, t)
            except TemplateError as exc:
                out.print(f"  {i + 1}. {rung.name}: would fail: {exc}", markup=False)
                continue
            target = action.target
            d = guard.check(action)
            verdict = "allowed" if d else f"suppressed by {d.guard}: {d.detail}"
            success = _verify_text(policy, rung, t)
            out.print(f"  {i + 1}. {rung.name}: hook {rung.hook} on {target} "
                      f"(timeout {rung.timeout_s:g}s) - guard: {verdict}", markup=False)
            out.print(f"     params: {orjson.dumps(params).decode()}", markup=False)
            out.print(f"     then waits {rung.wait_s:g}s for {success}; if not better, the next "
                      "step", markup=False)
        out.print(f"  then: {'page ' + policy.page.url if policy.page else 'escalate (no page set)'}",
                  markup=False)


def _verify_text(policy: Any, rung: Any, t: Any) -> str:
    """What a rung waits for, in words: `vigil policy test`'s 'then waits Ns for ...'."""
    from remediation.templating import TemplateError, render_promql

    v = rung.verify
    promql = ""
    if v.promql is not None:
        try:
            query = render_promql(v.promql, t)
        except TemplateError as exc:
            query = f"{v.promql} (would fail: {exc})"
        held = f" for {v.for_s:g}s" if v.for_s else ""
        promql = (f"promql {query} to hold{held} (every {v.interval_s:g}s at "
                  f"{policy.prometheus.url if policy.prometheus else '?'})")
    return " or ".join(x for x in (
        "the alert resolves" if v.resolved else "",
        f"{v.http.field} < {v.http.below:g} at {v.http.url}" if v.http else "",
        promql) if x) or ("nothing (no check: the step counts as verified at once)"
                          if rung.wait_s == 0 else
                          "nothing (no check: after the wait the ladder climbs)")


def audit_cmd(
    db: Annotated[Path | None, typer.Option(help="the audit database (default: the "
                                            "configuration's serve.audit_dsn if set, else "
                                            "serve.audit_db)")] = None,
    config: ConfigOpt = None,
    since: Annotated[str | None, typer.Option(help="only records since: epoch seconds or "
                                              "a duration like 15m, 2h, 1d")] = None,
    target: Annotated[str | None, typer.Option(help="only this target")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """Print remediation decisions from the audit database."""
    import time as _time

    from remediation.audit_log import open_audit

    where = db if db is not None else audit_or_exit(load_or_exit(config))
    if isinstance(where, Path) and not where.is_file():
        err.print(f"error: no audit database at {where}", markup=False)
        raise typer.Exit(2)
    when = None
    if since:
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        try:
            when = (_time.time() - float(since[:-1]) * units[since[-1]]) if since[-1] in units \
                else float(since)
        except ValueError as exc:
            err.print(f"error: --since {since!r}: use epoch seconds or 15m / 2h / 1d", markup=False)
            raise typer.Exit(2) from exc
    from remediation.audit_pg import AuditUnavailable

    try:
        store = open_audit(where, retries=1)
    except AuditUnavailable as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    try:
        recs = store.query(since=when, target=target, limit=limit)
    finally:
        store.close()
    if as_json:
        for r in recs:
            typer.echo(orjson.dumps(r.to_dict()).decode())
        return
    from detector.simulate.fleet import rfc3339

    t = Table(title=f"audit ({len(recs)} records)")
    for col in ("id", "time (UTC)", "episode", "rule", "step", "hook", "target", "decision",
                "guard", "detail"):
        t.add_column(col)
    for r in recs:
        t.add_row(str(r.id), rfc3339(r.ts), r.episode, r.rule or "", r.rung_name or "",
                  r.hook or "", r.target or "", r.verdict, r.guard or "", r.detail[:80])
    out.print(t)


def load_policy_or_exit(path: Path) -> Any:
    """The policy at `path`; its problems printed (FILE:LINE: ...) and exit 2 when it has any;
    its warnings printed."""
    from remediation.policy import PolicyError, load_policy

    try:
        policy = load_policy(path)
    except PolicyError as exc:
        for line in exc.problems:
            err.print(line, markup=False, highlight=False)
        raise typer.Exit(2) from exc
    for line in policy.warnings:
        err.print(line, markup=False, highlight=False, style="bold yellow")
    return policy


def engine_host_or_exit(cfg: Any, policy_path: Path, audit_db: Path | None, act: bool) -> Any:
    """The remediation engine of `vigil consume --policy` (either mode) and `vigil remediate`,
    started: the policy (problems printed, exit 2), the `serve.engine` settings with `--act`
    turning dry-run off, the audit at `audit_db` or `serve.audit_db`. A claim an earlier run
    left unfinished is resolved at start, as `vigil serve` does."""
    from detector.runtime.engine_host import EngineHost

    policy = load_policy_or_exit(policy_path)
    settings = cfg.serve.engine.model_copy(update={"dry_run": False}) if act else cfg.serve.engine
    db = audit_db or audit_or_exit(cfg)
    mode = "dry-run (hooks are planned and audited, never run; --act runs them)" \
        if settings.dry_run else "acting (hooks run)"
    err.print(f"remediation: {mode}; policy {policy_path}; audit {_shown(db)}", markup=False,
              highlight=False)
    from remediation.audit_pg import AuditUnavailable

    try:
        return EngineHost(policy, db, settings).start()
    except AuditUnavailable as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc


def audit_or_exit(cfg: Any) -> Path | str:
    """The configured audit: `serve.audit_dsn` (PostgreSQL) if set, else `serve.audit_db`;
    a DSN that is not a `postgresql://` URI is an error (exit 2)."""
    from remediation.alertmanager.settings import AuthError

    try:
        where: Path | str = cfg.serve.audit()
    except (AuthError, OSError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    return where


def _shown(where: Path | str) -> str:
    from remediation.audit_pg import redacted

    return redacted(where) if isinstance(where, str) else str(where)


def remediate_cmd(
    topic: Annotated[str, typer.Option(help="the triggers topic (`vigil consume "
                                       "--triggers-topic`)")],
    policy: Annotated[Path, typer.Option(help="remediation policy YAML")],
    config: ConfigOpt = None,
    group: Annotated[str, typer.Option(help="the consumer group (replicas of one group split "
                                       "the partitions, so one engine owns a target at a time)")
                     ] = "vigil-remediate",
    audit_db: Annotated[Path | None, typer.Option(help="audit database (default serve.audit_db; "
                                                  "replicas on one machine share it; replicas "
                                                  "on several share serve.audit_dsn)")] = None,
    act: Annotated[bool, typer.Option("--act", help="really run hooks (default: dry-run)")] = False,
    http_port: Annotated[int | None, typer.Option(
        help="/healthz /readyz /metrics on kafka.http_host:PORT (default kafka.http_port + 1; "
        "0: any free port)")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Act on the triggers `vigil consume --triggers-topic` produces: a Kafka consumer group
    (bootstrap, security, timeouts and dead-letter topic from the `kafka` config) whose every
    trigger goes through the policy, guards and audit; a partition's offsets are committed only
    up to the first trigger whose decisions are not all audited. A record that is not a trigger
    is dead-lettered. SIGTERM or SIGINT: no more polls, a bounded wait (kafka.drain_timeout_s) for
    the decisions in flight, commit, exit 0."""
    import logging
    import signal
    import threading

    from detector.runtime.probes import serve
    from detector.runtime.remediate import TriggerConsumer

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    cfg = load_or_exit(config)
    host = engine_host_or_exit(cfg, policy, audit_db, act)
    consumer = TriggerConsumer(cfg, topic, group, host)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    port = http_port if http_port is not None else (cfg.kafka.http_port + 1
                                                    if cfg.kafka.http_port else 0)
    server = serve(consumer, cfg.kafka.http_host, port)
    bound = server.server_address[:2]
    err.print(f"vigil remediate: {topic} as group {group}; /healthz /readyz /metrics on "
              f"http://{bound[0]!s}:{bound[1]}", markup=False)
    try:
        code = consumer.run(stop)
    finally:
        host.stop(cfg.kafka.drain_timeout_s)
        server.shutdown()
    raise typer.Exit(code)
