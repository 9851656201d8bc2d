"""Commands that run the detector: replay, follow, consume, metrics, simulate, dead-letters, config."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import orjson
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table

from detector.cli.common import ConfigOpt, choose, err, load_or_exit, out, write_json
from detector.cli.tables import print_replay_summary

if TYPE_CHECKING:
    from detector.config import VigilConfig


def config_reference() -> None:
    """Print the configuration reference (every key, type, default and meaning) as Markdown."""
    from detector.cli.config_reference import reference

    typer.echo(reference(), nl=False)


def config_show(config: ConfigOpt = None) -> None:
    """Print the effective configuration (file, then environment overrides) as YAML."""
    from detector.config import config_as_yaml

    out.print(config_as_yaml(load_or_exit(config)), markup=False, highlight=False, end="")


def replay(
    files: Annotated[list[str], typer.Argument(help="JSONL files (.gz too), or - for stdin")],
    config: ConfigOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", help="parsing.format for this run: "
                                            "json, logfmt or regex")] = None,
    preset: Annotated[str | None, typer.Option(help="parsing.preset for this run (implies "
                                               "--format regex): syslog-rfc5424, "
                                               "syslog-rfc3164, nginx-combined, hdfs, bgl")] = None,
    pattern: Annotated[str | None, typer.Option(help="parsing.pattern for this run (implies "
                                                "--format regex): a regex with named groups")
                       ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="output directory")] = None,
    summary: Annotated[Path | None, typer.Option(help="also write the run's figures to this "
                                                 "file as JSON")] = None,
    policy: Annotated[Path | None, typer.Option(
        help="what-if: pass the incidents, in event time, through this remediation policy in "
        "dry-run and print what Vigil would have done and when (audit: OUT/whatif.db, "
        "decisions: OUT/whatif.jsonl)")] = None,
) -> None:
    """Replay logs (JSON lines, or logfmt or raw text: see --format) through the detector; write
    anomalies, incidents and dead letters.

    Exit 0, or 1 when not one line became an event (the summary says what the lines look like).
    """
    from detector.cli.remediation import load_policy_or_exit

    pol = load_policy_or_exit(policy) if policy is not None else None
    from detector.runtime.replay import InputError, input_hint
    from detector.runtime.replay import replay as run

    cfg = _with_parsing(load_or_exit(config), fmt, preset, pattern)
    target = out_dir or cfg.output.dir
    show_bar = sys.stderr.isatty()
    try:
        with Progress(
            "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
            TimeRemainingColumn(), console=err, disable=not show_bar, transient=True,
        ) as bar:
            task = bar.add_task("replaying", total=None)

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total or None)

            result = run(files, cfg, target, tick)
    except InputError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    figures = result.stats.as_dict()
    print_replay_summary(figures, result.incidents, target)
    if summary is not None:
        write_json(summary, {"files": [str(f) for f in files], "out_dir": str(target), **figures})
    if pol is not None:
        _what_if(pol, target)
    hint = input_hint(result.stats)
    if hint is not None:
        err.print(f"[yellow]warning:[/yellow] {hint}", markup=True, highlight=False)
    if result.stats.lines and not result.stats.events:
        raise typer.Exit(1)


def _with_parsing(cfg: VigilConfig, fmt: str | None, preset: str | None,
                  pattern: str | None) -> VigilConfig:
    """`cfg` with the command line's parsing options over the file's (exit 2 if invalid)."""
    from pydantic import ValidationError

    from detector.config import ParsingConfig

    if fmt is None and preset is None and pattern is None:
        return cfg
    update: dict[str, Any] = {"format": fmt or ("regex" if preset or pattern else None)}
    if preset is not None or pattern is not None:  # one replaces the other
        update |= {"preset": preset, "pattern": pattern}
    elif update["format"] != "regex":
        update |= {"preset": None, "pattern": None}
    data = cfg.parsing.model_dump() | {k: v for k, v in update.items()
                                       if v is not None or k != "format"}
    try:
        parsing = ParsingConfig.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            where = ".".join(map(str, e["loc"]))
            err.print(f"[red]error:[/red] {'parsing.' + where + ': ' if where else ''}"
                      f"{e['msg'].removeprefix('Value error, ')}", markup=True, highlight=False)
        raise typer.Exit(2) from exc
    return cfg.model_copy(update={"parsing": parsing})


def _what_if(policy: Any, target: Path) -> None:
    from detector.incidents.whatif import story, what_if

    with (target / "incidents.jsonl").open("rb") as fh:
        records = [orjson.loads(line) for line in fh if line.strip()]
    result = what_if(records, policy, target / "whatif.db")
    with (target / "whatif.jsonl").open("wb") as fh:
        for d in result.decisions:  # what was decided; not how long the log hook took
            row = {k: v for k, v in d.to_dict().items() if k not in ("trigger", "duration_s")}
            fh.write(orjson.dumps(row) + b"\n")
    lines = story(result)
    out.print(f"What-if (dry-run, nothing acted on): {len(result.actions)} step(s) would have run "
              f"for {len({e for _, t in result.triggers for e in [t.episode]})} incident(s)",
              markup=False, highlight=False)
    for line in lines:
        out.print(line, markup=False, highlight=False)
    out.print(f"Audit of the what-if: {target / 'whatif.db'} (vigil audit --db it); decisions: "
              f"{target / 'whatif.jsonl'}", markup=False, highlight=False)


def follow(
    files: Annotated[list[Path], typer.Argument(
        help="JSONL files to follow as they grow; one that does not exist yet is waited for")],
    config: ConfigOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="output directory")] = None,
    from_end: Annotated[bool, typer.Option(
        "--from-end", help="only lines written from now on (default: each file from its start)")
    ] = False,
    policy: Annotated[Path | None, typer.Option(
        help="also remediate: each incident change, once the outputs are flushed, goes to an "
        "in-process engine with this policy (dry-run unless --act)")] = None,
    audit_db: Annotated[Path | None, typer.Option(
        help="with --policy: the audit database (default serve.audit_db)")] = None,
    act: Annotated[bool, typer.Option("--act", help="with --policy: really run hooks (default: "
                                      "dry-run)")] = False,
) -> None:
    """Follow growing JSON log files, like tail -F (rotation-safe), through the detector; write
    anomalies, incidents and dead letters, flushed after every batch, until SIGINT or SIGTERM;
    with --policy, act on the incidents as `vigil consume --role partitions --policy` does.

    A stop processes what was read, closes every window, writes the open incidents, waits
    (bounded) for started remediation steps, and exits 0.
    """
    import signal
    import threading

    from detector.runtime.follow import run_follow
    from detector.runtime.replay import latest_incidents

    cfg = load_or_exit(config)
    for f in files:
        if str(f) == "-" or (f.exists() and not f.is_file()):
            err.print(f"error: {f} is not a file to follow (`vigil replay -` reads stdin)",
                      markup=False, highlight=False)
            raise typer.Exit(2)
    if (audit_db is not None or act) and policy is None:
        err.print("error: --audit-db and --act go with --policy", markup=False)
        raise typer.Exit(2)
    target = out_dir or cfg.output.dir
    feed = None
    if policy is not None:
        from detector.cli.remediation import engine_host_or_exit
        from detector.runtime.engine_feed import EngineFeed

        feed = EngineFeed(engine_host_or_exit(cfg, policy, audit_db, act))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    names = ", ".join(str(f) for f in files)
    err.print(f"vigil follow: {names} from the {'end' if from_end else 'start'}, writing to "
              f"{target}/; SIGINT or SIGTERM stops"
              + (f"; remediation {'acting' if act else 'dry-run'} with {policy}" if policy else ""),
              markup=False, highlight=False)
    try:
        result = run_follow(files, cfg, target, stop, from_end=from_end, on_outcome=(
            None if feed is None else lambda o: feed([i.to_dict() for i in o.incidents])))
    finally:
        if feed is not None:
            feed.close(cfg.kafka.drain_timeout_s)
    print_replay_summary(result.stats.as_dict(), latest_incidents(target / "incidents.jsonl"),
                         target, title="Follow summary")
    err.print(f"vigil follow: stopped; {orjson.dumps(result.follow.as_dict()).decode()}",
              markup=False, highlight=False)


def dead_letters(
    file: Annotated[Path, typer.Argument(help="a dead_letter.jsonl written by vigil")],
    reason: Annotated[list[str] | None, typer.Option(help="only these reasons (repeatable)")] = None,
    raw: Annotated[bool, typer.Option(help="write the original bytes, one record a line, to "
                                      "replay them")] = False,
) -> None:
    """Summarise dead letters by reason, or (--raw) write their original bytes for a replay."""
    from detector.decode.deadletter import read_dead_letters

    if not file.exists() or not file.is_file():
        err.print(f"error: {file}: {'not a file' if file.exists() else 'no such file'}",
                  markup=False, highlight=False)
        raise typer.Exit(2)
    letters = read_dead_letters(file, set(reason) if reason else None)
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    try:
        if raw:
            sink = sys.stdout.buffer
            for letter in letters:
                # A raw newline can only be JSON whitespace, so a space keeps the record's meaning.
                sink.write(letter.raw.replace(b"\n", b" ") + b"\n")
            sink.flush()
            return
        for letter in letters:
            counts[letter.reason] = counts.get(letter.reason, 0) + 1
            first.setdefault(letter.reason, f"{letter.source}: {letter.detail}")
    except OSError as exc:
        err.print(f"error: {file}: {exc.strerror or exc}", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    except (ValueError, KeyError, TypeError) as exc:  # orjson's errors are ValueErrors
        err.print(f"error: {file}: not a dead-letter file ({type(exc).__name__}: {exc})",
                  markup=False, highlight=False)
        raise typer.Exit(2) from exc
    t = Table(title=f"Dead letters in {file}")
    for col in ("reason", "count", "first"):
        t.add_column(col)
    for r, n in sorted(counts.items(), key=lambda x: -x[1]):
        t.add_row(r, str(n), first[r])
    out.print(t)


def simulate(
    scenario: Annotated[str, typer.Option(help="error_burst, latency_regression, crash_loop, "
                                          "hang, new_exception, traffic_spike, weak_latency, "
                                          "cpu_contention, code_exception, network_delay or none")
                        ] = "error_burst",
    events: Annotated[int, typer.Option(min=1, help="number of log lines")] = 200_000,
    out_file: Annotated[Path | None, typer.Option(
        "--out", "-o", help="output JSONL (.gz compresses; default sim.jsonl), or with --rca-cases "
        "the dataset directory (default rca-cases)")] = None,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    shape: Annotated[str, typer.Option(help="plain, ecs or otel")] = "plain",
    rca_cases: Annotated[int | None, typer.Option(
        min=1, help="instead: write N short captures per fault kind (spans and logs, 1 min before "
        "the fault, 2 after) as an RCA dataset, OUT/cases.csv and OUT/cases/<id>/")] = None,
    kinds: Annotated[str | None, typer.Option(
        help="with --rca-cases: comma-separated fault kinds (default all but traffic_spike)")] = None,
) -> None:
    """Write a microservice fleet's JSON logs with an injected fault, plus OUT.truth.json; or,
    with --rca-cases, an RCA dataset of short span and log captures."""
    if rca_cases is not None:
        _simulate_rca_cases(out_file or Path("rca-cases"), rca_cases, kinds, seed)
        return
    from detector.simulate.scenarios import SCENARIOS, truth_path, write_run

    out_file = out_file or Path("sim.jsonl")
    choose("scenario", scenario, list(SCENARIOS))
    choose("shape", shape, ["plain", "ecs", "otel"])
    truth = write_run(out_file, scenario, events, seed=seed, shape=shape)
    for f in truth.faults:
        out.print(f"fault {f.kind} on {f.service}: {f.start - truth.start:.0f}s to "
                  f"{f.end - truth.start:.0f}s into the run")
    out.print(f"wrote {truth.events} lines to {out_file} and the truth to {truth_path(out_file)}")


def _simulate_rca_cases(out_dir: Path, per_kind: int, kinds: str | None, seed: int) -> None:
    from collections import Counter

    from detector.simulate.captures import RCA_KINDS, write_rca_cases
    from detector.simulate.scenarios import ROOTS

    chosen = kinds.split(",") if kinds else list(RCA_KINDS)
    for k in chosen:
        choose("fault kind", k, list(ROOTS))
    cases = write_rca_cases(out_dir, chosen, per_kind, seed)
    for kind, n in Counter(c.fault_type for c in cases).items():
        roots = sorted({c.root_cause_service for c in cases if c.fault_type == kind})
        out.print(f"{kind}: {n} case(s), root cause {', '.join(roots)}")
    out.print(f"wrote {len(cases)} cases to {out_dir / 'cases.csv'} and {out_dir / 'cases'}/<case_id>/"
              "{spans,logs}.jsonl.gz", markup=False, highlight=False)


CONSUME_ROLES = ("ingest", "merge", "incidents", "remediate", "all", "partitions")


def consume(
    config: ConfigOpt = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
    policy: Annotated[Path | None, typer.Option(
        help="also remediate with this policy (dry-run unless --act): with the stages (the "
        "default), the remediate role consumes --triggers-topic in this process (at least "
        "once); with --role partitions, each incident change, once the outputs are flushed, "
        "goes to an in-process engine (a trigger not yet claimed is lost on a crash)")] = None,
    audit_db: Annotated[Path | None, typer.Option(
        help="with --policy: the audit database (default serve.audit_dsn if set, else "
        "serve.audit_db)")] = None,
    act: Annotated[bool, typer.Option("--act", help="with --policy: really run hooks (default: "
                                      "dry-run)")] = False,
    triggers_topic: Annotated[str | None, typer.Option(
        help="produce each incident change's trigger to this topic, keyed by its target and "
        "flushed before the offsets are committed, for the remediate role (--policy) or "
        "vigil remediate")] = None,
    role: Annotated[list[str] | None, typer.Option(
        help="run these roles (repeatable; default all): ingest, merge, incidents (the stages "
        "of the topology, each a consumer group wired by topics, topology.*, state in the state "
        "topic), remediate (the triggers topic as group <kafka.group_id>-remediate, acting "
        "through --policy), all (the three stages, and remediate with --policy); or partitions "
        "alone: one whole pipeline per partition, checkpoints in kafka.checkpoint_dir")
    ] = None,
) -> None:
    """Run the Kafka consumer groups (topics, outputs and state from config / VIGIL_KAFKA__*,
    topology.*): by default every stage of the topology in this process (`--role all`), so N
    copies scale every stage; with --policy and --triggers-topic, remediation too.
    SIGTERM or SIGINT drains: the batches in hand finish, outputs are flushed, state is
    snapshotted and offsets committed, decisions in flight are waited for (bounded); then
    exit 0. A bad combination of options exits 2."""
    import logging

    roles = sorted(set(role or ["all"]))
    bad = [r for r in roles if r not in CONSUME_ROLES]
    if bad:
        _usage(f"--role {bad[0]}: choose ingest, merge, incidents, remediate, all or partitions")
    if (audit_db is not None or act) and policy is None:
        _usage("--audit-db and --act go with --policy")
    if "partitions" in roles and len(roles) > 1:
        _usage("--role partitions (one whole pipeline per partition) runs alone; the other "
               "roles are the stages of the topology")
    if roles == ["partitions"]:
        if policy is not None and triggers_topic is not None:
            _usage("with --role partitions, --policy acts in-process and --triggers-topic "
                   "leaves it to vigil remediate: choose one")
    elif "remediate" in roles and policy is None:
        _usage("--role remediate acts through a policy: give --policy (and --triggers-topic)")
    elif policy is not None and not {"remediate", "all"} & set(roles):
        _usage("--policy goes with --role remediate or all (or partitions, in-process)")
    elif policy is not None and triggers_topic is None:
        _usage("the remediate role (--policy) consumes the triggers the incidents role "
               "produces: give --triggers-topic (or --role partitions for the in-process engine)")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    cfg = load_or_exit(config)
    if roles != ["partitions"]:
        _run_roles(cfg, roles, triggers_topic, policy, audit_db, act)
    from detector.runtime.consume import LogConsumer

    feed = None
    if policy is not None:
        from detector.cli.remediation import engine_host_or_exit
        from detector.runtime.engine_feed import EngineFeed

        feed = EngineFeed(engine_host_or_exit(cfg, policy, audit_db, act))
    consumer = LogConsumer(cfg, on_incidents=feed, triggers_topic=triggers_topic)
    try:
        code = _run_with_probes(consumer, cfg, "vigil consume --role partitions",
                                f"; triggers to {triggers_topic}" if triggers_topic else "")
    finally:
        if feed is not None:
            feed.close(cfg.kafka.drain_timeout_s)
    raise typer.Exit(code)


def _usage(message: str) -> NoReturn:
    """A bad combination of `vigil consume`'s options: the message, exit 2."""
    err.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(2)


def _run_roles(cfg: Any, roles: list[str], triggers_topic: str | None, policy: Path | None,
               audit_db: Path | None, act: bool) -> None:
    """The topology's roles in this process, the remediate role's engine started from
    `policy` when there is one; exits with the runner's code."""
    from detector.runtime.topology_run import TopologyRunner, remediate_group

    engine = None
    if policy is not None:
        from detector.cli.remediation import engine_host_or_exit

        engine = engine_host_or_exit(cfg, policy, audit_db, act)
    try:
        runner = TopologyRunner(cfg, roles, triggers_topic, engine=engine)
    except BaseException:
        if engine is not None:
            engine.stop(cfg.kafka.drain_timeout_s)
        raise
    extra = (f"; triggers to {triggers_topic}" if triggers_topic else "") + (
        f", remediated as group {remediate_group(cfg)}" if runner.remediator is not None else "")
    raise typer.Exit(_run_with_probes(runner, cfg, f"vigil consume --role {','.join(runner.roles)}",
                                      extra))


def _run_with_probes(loop: Any, cfg: Any, name: str, extra: str = "") -> int:
    """`loop.run(stop)` with SIGTERM/SIGINT setting `stop` and the side server (/healthz
    /readyz /metrics on kafka.http_host:kafka.http_port) up meanwhile; its exit code."""
    import signal
    import threading

    from detector.runtime.probes import serve

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = serve(loop, cfg.kafka.http_host, cfg.kafka.http_port)
    host, port = server.server_address[:2]
    err.print(f"{name}: /healthz /readyz /metrics on http://{host!s}:{port}{extra}", markup=False)
    try:
        return int(loop.run(stop))
    finally:
        server.shutdown()


def metrics_cmd(config: ConfigOpt = None,
                out_dir: Annotated[Path | None, typer.Option(
                    "--out", help="anomalies.jsonl and incidents.jsonl (default: output.dir)")] = None,
                polls: Annotated[int | None, typer.Option(help="stop after this many polls")] = None,
                http_port: Annotated[int | None, typer.Option(
                    help="serve /healthz /readyz /metrics on --http-host:PORT (0: any free port)")
                ] = None,
                http_host: Annotated[str, typer.Option(
                    help="the address of /healthz /readyz /metrics (0.0.0.0: a pod's probes and "
                    "scrapes reach it)")] = "127.0.0.1",
                ) -> None:
    """Watch the Prometheus queries of the config (`prometheus.queries`): warm up from each
    query's lookback, then poll each step; anomalies and incidents are written as JSON lines.
    (`vigil consume` with the same config joins them to the log incidents.)"""
    import signal
    import threading

    from detector.pipeline import Pipeline
    from detector.runtime.watch import MetricWatcher, PollResult
    from detector.sinks.base import Outputs

    cfg = load_or_exit(config)
    if not cfg.prometheus.queries:
        err.print("error: no prometheus.queries in the config")
        raise typer.Exit(2)
    out = out_dir or cfg.output.dir
    out.mkdir(parents=True, exist_ok=True)
    pipe = Pipeline(cfg)  # the metric anomalies' incidents
    outputs = Outputs.jsonl(out, dead_letters=False)
    watcher = MetricWatcher(cfg)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    if http_port is not None:
        from detector.runtime.probes import serve

        server = serve(watcher, http_host, http_port)
        err.print(f"vigil metrics: /healthz /readyz /metrics on http://{http_host}:"
                  f"{server.server_address[1]}", markup=False)

    def report(res: PollResult) -> None:
        outputs.write(pipe.add_anomalies(res.anomalies))
        outputs.flush()
        ok, why = watcher.ready()
        err.print(f"{res.points:,} points, {res.series:,} series, {len(res.anomalies)} anomalies, "
                  f"{res.cpu_seconds:.3f} s CPU; {'ready' if ok else why}", markup=False)
    watcher.run(stop, on_poll=report, max_polls=polls)
    outputs.close()
    st = watcher.source.stats.as_dict()
    err.print(orjson.dumps(st).decode(), markup=False)
