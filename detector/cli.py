"""The `vigil` command line: replay, simulate, bench and config. Thin: each command calls a module."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table

from detector.config import ConfigError, VigilConfig, config_as_yaml, load_config
from detector.eval.nab.run import DEFAULT_DETECTOR as DEFAULT_NAB_DETECTOR

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the configuration.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures.")
policy_app = typer.Typer(no_args_is_help=True, help="Check and try remediation policies.")
app.add_typer(config_app, name="config")
app.add_typer(policy_app, name="policy")
app.add_typer(bench_app, name="bench")

out = Console() if sys.stdout.isatty() else Console(width=160)  # tables stay readable in logs
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (VIGIL_* env overrides it)")
]


def _config(path: Path | None) -> VigilConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _choose(kind: str, value: str, choices: list[str]) -> None:
    """Exit with a clear error unless `value` is one of `choices`."""
    if value not in choices:
        err.print(f"[red]error:[/red] unknown {kind} {value!r}; choose from {', '.join(choices)}")
        raise typer.Exit(2)


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective configuration (file, then environment overrides) as YAML."""
    out.print(config_as_yaml(_config(config)), markup=False, highlight=False, end="")


@app.command()
def replay(
    files: Annotated[list[str], typer.Argument(help="JSONL files (.gz too), or - for stdin")],
    config: ConfigOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="output directory")] = None,
    summary: Annotated[Path | None, typer.Option(help="also write the run's figures to this "
                                                 "file as JSON")] = None,
) -> None:
    """Replay JSON logs through the detector; write anomalies, incidents and dead letters.

    Exit 0, or 1 when not one line became an event (the summary says what the lines look like).
    """
    from detector.runtime.replay import InputError, input_hint
    from detector.runtime.replay import replay as run

    cfg = _config(config)
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
    _print_summary(figures, result.incidents, target)
    if summary is not None:
        _write_json(summary, {"files": [str(f) for f in files], "out_dir": str(target), **figures})
    hint = input_hint(result.stats)
    if hint is not None:
        err.print(f"[yellow]warning:[/yellow] {hint}", markup=True, highlight=False)
    if result.stats.lines and not result.stats.events:
        raise typer.Exit(1)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as indented JSON, atomically (a script never reads half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    tmp.replace(path)


def _print_summary(stats: dict[str, object], incidents: list[dict[str, object]], target: Path,
                   ) -> None:
    t = Table(title="Replay summary", show_header=False)
    for key in ("lines", "events", "windows_closed", "anomalies", "incidents_opened",
                "dead_letters_total", "seconds"):
        t.add_row(key.replace("_", " "), str(stats[key]))
    dead = stats["dead_letters"]
    assert isinstance(dead, dict)
    for reason, n in dead.items():
        if n:
            t.add_row(f"  dead: {reason}", str(n))
    corr = stats.get("correlation") or {}
    assert isinstance(corr, dict)
    for key, label in (("requests_closed", "requests"), ("anomalous_requests", "  anomalous"),
                       ("evicted_requests", "  evicted"), ("late_events", "  late events"),
                       ("dropped_events", "  over the cap"), ("no_request_id", "  no request id")):
        if key in corr and (corr[key] or key in ("requests_closed", "anomalous_requests")):
            t.add_row(label, str(corr[key]))
    out.print(t)
    if incidents:
        it = Table(title="Incidents")
        for col in ("id", "root cause", "status", "opened (UTC)", "anomalies", "services",
                    "top explanation"):
            it.add_column(col)
        from detector.simulate.fleet import rfc3339

        for inc in incidents:
            ranked = inc.get("root_cause") or []
            assert isinstance(ranked, list)
            cause = str(inc["service"])
            if ranked:
                top = ranked[0]
                ev = top["evidence"]
                cause = (f"{top['service']} ({top['confidence']:.0%}; {ev['requests']} requests"
                         f"{', silent' if ev['silent_requests'] else ''})")
            services = inc.get("services") or {}
            assert isinstance(services, dict)
            it.add_row(str(inc["id"]), cause, str(inc["status"]),
                       rfc3339(float(inc["opened_at"])), str(inc["anomaly_count"]),  # type: ignore[arg-type]
                       ", ".join(sorted(services)), str(inc["top_explanation"]))
        out.print(it)
    else:
        out.print("No incidents.")
    out.print(f"Outputs in {target}/ (anomalies.jsonl, incidents.jsonl, dead_letter.jsonl)")


@app.command("dead-letters")
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


@app.command()
def simulate(
    scenario: Annotated[str, typer.Option(help="error_burst, latency_regression, crash_loop, "
                                          "new_exception, traffic_spike or none")] = "error_burst",
    events: Annotated[int, typer.Option(min=1, help="number of log lines")] = 200_000,
    out_file: Annotated[Path, typer.Option("--out", "-o", help="output JSONL (.gz compresses)")
                        ] = Path("sim.jsonl"),
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    shape: Annotated[str, typer.Option(help="plain, ecs or otel")] = "plain",
) -> None:
    """Write a microservice fleet's JSON logs with an injected fault, plus OUT.truth.json."""
    from detector.simulate.scenarios import SCENARIOS, truth_path, write_run

    _choose("scenario", scenario, list(SCENARIOS))
    _choose("shape", shape, ["plain", "ecs", "otel"])
    truth = write_run(out_file, scenario, events, seed=seed, shape=shape)
    for f in truth.faults:
        out.print(f"fault {f.kind} on {f.service}: {f.start - truth.start:.0f}s to "
                  f"{f.end - truth.start:.0f}s into the run")
    out.print(f"wrote {truth.events} lines to {out_file} and the truth to {truth_path(out_file)}")


@bench_app.command("pipeline")
def bench_pipeline_cmd(
    events: Annotated[int, typer.Option(min=1000, help="lines to generate")] = 1_000_000,
    input_file: Annotated[Path | None, typer.Option("--input", help="read lines from a JSONL "
                                                    "file instead")] = None,
    config: ConfigOpt = None,
) -> None:
    """Pipeline events/s against a bare orjson.loads loop on the same lines, RSS and state size."""
    from detector.bench.all import bench_pipeline, file_lines, simulate_to_file

    cfg = _config(config)
    if input_file is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.jsonl"
            simulate_to_file(path, events)
            lines = file_lines(path)
    else:
        lines = file_lines(input_file)
    f = bench_pipeline(lines, cfg)
    t = Table(title=f"vigil bench pipeline ({f.events:,} events, {f.bytes_per_line:.0f} B/line)",
              show_header=False)
    t.add_row("pipeline events/s", f"{f.pipeline_eps:,.0f}")
    t.add_row("orjson.loads loop, batch kept (events/s)", f"{f.parse_eps:,.0f}")
    t.add_row("ratio pipeline / orjson (target >= 0.5)", f"{f.ratio:.2f}")
    t.add_row("orjson.loads loop, each dict dropped (events/s)", f"{f.parse_discard_eps:,.0f}")
    t.add_row("ratio pipeline / orjson-dropped", f"{f.ratio_discard:.2f}")
    t.add_row("RSS before the pipeline (MiB: the lines held in memory)", f"{f.rss_before_mib:,.0f}")
    t.add_row("peak RSS during the pipeline (MiB)", f"{f.peak_rss_mib:,.0f}")
    t.add_row("tracked (service, feature) series", str(f.series))
    t.add_row("state bytes per series (target <= 2048)", f"{f.state_bytes_per_series:,.0f}")
    for k, v in f.state_breakdown.items():
        t.add_row(f"  state: {k} (bytes)", f"{v:,}")
    t.add_row("anomalies / incidents on this run", f"{f.anomalies} / {f.incidents}")
    out.print(t)


@bench_app.command("detection")
def bench_detection_cmd(
    events: Annotated[int, typer.Option(min=10_000, help="lines per run")] = 200_000,
    seeds: Annotated[int, typer.Option(min=1, help="runs per scenario")] = 3,
    config: ConfigOpt = None,
) -> None:
    """Each simulator scenario, several seeds: detection, onset delay, false incidents."""
    from detector.bench.all import bench_detection

    cfg = _config(config)
    verdicts = bench_detection(cfg, events, range(seeds))
    t = Table(title=f"vigil bench detection ({events:,} events per run)")
    for col in ("scenario", "seed", "root cause", "detected", "onset (windows)",
                "delay (s)", "false incidents", "false / 100k events"):
        t.add_column(col)
    for i, v in enumerate(verdicts):
        t.add_row(v.scenario, str(i % seeds), v.root_cause or "-", "yes" if v.detected else
                  ("-" if not v.root_cause else "NO"),
                  "-" if v.onset_windows is None else str(v.onset_windows),
                  "-" if v.delay_seconds is None else f"{v.delay_seconds:.1f}",
                  str(v.false_incidents), f"{v.false_per_100k:.2f}")
    out.print(t)
    total_events = sum(v.events for v in verdicts)
    total_false = sum(v.false_incidents for v in verdicts)
    out.print(f"false incidents per 100k events overall: {1e5 * total_false / total_events:.3f}")


@bench_app.command("models")
def bench_models_cmd(
    series: Annotated[int, typer.Option(min=1, help="independent series")] = 10_000,
    steps: Annotated[int, typer.Option(min=1, help="time steps per series")] = 100,
    batch: Annotated[int, typer.Option(min=1, help="series per model call")] = 1_000,
) -> None:
    """Points/s and state bytes per series of each online model (1M points by default)."""
    from detector.bench.all import bench_models

    t = Table(title=f"vigil bench models ({series:,} series x {steps} steps, {batch:,} a call)")
    for col in ("model", "points/s", "state bytes per series"):
        t.add_column(col)
    for f in bench_models(series, steps, batch):
        t.add_row(f.name, f"{f.points_per_s:,.0f}", f"{f.state_bytes_per_series:,.0f}")
    out.print(t)


@bench_app.command("correlation")
def bench_correlation_cmd(
    open_requests: Annotated[int, typer.Option(help="requests kept open throughout")] = 1_000_000,
    events: Annotated[int, typer.Option(help="events in the steady phase")] = 2_000_000,
    batch: Annotated[int, typer.Option(help="events a call")] = 65_536,
) -> None:
    """Events/s and requests/s through request correlation with many requests open; memory."""
    from detector.bench.all import bench_correlation

    f = bench_correlation(open_requests, events, batch)
    t = Table(title=f"vigil bench correlation ({f.open_requests:,} open requests, {batch:,} events "
                    "a call)")
    t.add_column("figure")
    t.add_column("value")
    t.add_row("fill: events/s (one event opens each request)", f"{f.fill_events_per_s:,.0f}")
    t.add_row(f"steady: events/s ({f.events:,} events, 1/3 new requests)", f"{f.events_per_s:,.0f}")
    t.add_row("steady: requests opened and closed per s", f"{f.requests_per_s:,.0f}")
    t.add_row("steady: anomalous requests judged", f"{f.anomalous_requests:,}")
    t.add_row("bytes per open request (correlator's accounting)", f"{f.bytes_per_open_request:,.0f}")
    t.add_row("resident MiB per million open requests (after fill, 1 event each)",
              f"{f.rss_mib_per_million_open:,.0f}")
    t.add_row(f"resident MiB at the end ({f.open_at_end:,} open, "
              f"{f.events_per_open_request:.1f} events each)", f"{f.rss_mib_steady:,.0f}")
    out.print(t)


@bench_app.command("kafka")
def bench_kafka_cmd(
    events: Annotated[int, typer.Option(help="log lines for the throughput comparison")] = 60_000,
    rate: Annotated[float, typer.Option(help="events/s in the steady-rate latency run")] = 1000.0,
    seconds: Annotated[float, typer.Option(help="length of the steady-rate run")] = 45.0,
    bootstrap: Annotated[str | None, typer.Option(help="use this broker instead of starting "
                                                  "a local Tansu")] = None,
) -> None:
    """`vigil consume` vs a bare kafka-python loop on the same broker and topic; end-to-end
    latency at a steady rate (bounded: the run lasts --seconds plus ~30 s)."""
    from detector.bench.all import bench_kafka

    f = bench_kafka(events, steady_rate=rate, steady_seconds=seconds, bootstrap=bootstrap)
    t = Table(title=f"vigil bench kafka ({f.events:,} events, {f.partitions} partitions)")
    t.add_column("figure")
    t.add_column("value")
    t.add_row("bare consumer: poll + orjson.loads (events/s)", f"{f.bare_events_per_s:,.0f}")
    t.add_row("vigil consume: pipeline + outputs + flush + commit (events/s)",
              f"{f.vigil_events_per_s:,.0f}")
    t.add_row("ratio vigil / bare (target >= 0.8)", f"{f.ratio:.2f}")
    t.add_row(f"steady run: {f.steady_rate:,.0f} events/s for {f.steady_seconds:g}s; produce -> "
              "committed p50 / p99 (s)", f"{f.latency_p50_s:.3f} / {f.latency_p99_s:.3f}")
    t.add_row("fault start -> incident received (s; includes the 10 s window + 5 s lateness)",
              ", ".join(f"{d:.1f}" for d in f.incident_delays_s) or "no incident")
    out.print(t)


@bench_app.command("webhook")
def bench_webhook_cmd(
    notifications: Annotated[int, typer.Option(help="notifications to send")] = 5000,
    alerts: Annotated[int, typer.Option(help="alerts per notification")] = 10,
    concurrency: Annotated[int, typer.Option(help="connections (requests in flight at most)")] = 32,
    rate: Annotated[list[float] | None, typer.Option(
        help="offered notifications/s (an open load); 0 = as fast as answers come back; "
             "repeatable; default: 500 (the target), then 0")] = None,
) -> None:
    """`vigil serve` in a child process under a bounded load over loopback: notifications/s,
    latency, and whether every accepted alert was stored and finished by the engine."""
    from detector.bench.all import bench_webhook

    runs = [bench_webhook(notifications, alerts, concurrency, r or None)
            for r in (rate if rate else [500.0, 0.0])]
    t = Table(title=f"vigil bench webhook ({notifications:,} notifications x {alerts} alerts, "
                    f"{concurrency} connections)")
    t.add_column("figure")
    for f in runs:
        t.add_column(f"offered {f.rate:,.0f}/s" if f.rate else "closed loop")

    def row(name: str, fn: Callable[[Any], str]) -> None:
        t.add_row(name, *(fn(f) for f in runs))
    row("notifications/s (target >= 500)", lambda f: f"{f.notifications_per_s:,.0f}")
    row("latency p50 / p99 (ms; target p99 < 100)", lambda f: f"{f.p50_ms:.1f} / {f.p99_ms:.1f}")
    row("status codes", lambda f: ", ".join(f"{k}: {v:,}" for k, v in sorted(f.statuses.items())))
    row("alerts stored durably / accepted", lambda f: f"{f.stored_alerts:,} / "
        f"{f.statuses.get(200, 0) * f.alerts_per_notification:,}")
    row("alerts finished by the engine / dry-run actions audited",
        lambda f: f"{f.processed_alerts:,} / {f.dry_run_actions:,}")
    row("engine alerts/s (first request to last alert finished)",
        lambda f: f"{f.processed_alerts / f.engine_seconds:,.0f}")
    row("server CPU (web + engine processes)", lambda f: f"{f.server_cpu_s:.1f} s")
    out.print(t)


@bench_app.command("prometheus")
def bench_prometheus_cmd(
    series: Annotated[int, typer.Option(help="series in the test Prometheus")] = 10_000,
    steps: Annotated[int, typer.Option(help="live steps polled after the warm-up")] = 10,
    step: Annotated[float, typer.Option(help="query step, seconds")] = 15.0,
) -> None:
    """The poll -> score path against a real Prometheus (Debian package) backfilled with
    `series` series: warm-up read, then one step at a time; CPU per step (target < 1 s)."""
    import statistics

    from detector.bench.all import bench_prometheus
    from detector.bench.prometheus_local import available

    if not available():
        err.print("error: needs the Debian package prometheus (prometheus and promtool)")
        raise typer.Exit(2)
    f = bench_prometheus(series, steps, step)
    t = Table(title=f"vigil bench prometheus ({f.series:,} series, step {f.step_s:g} s, "
                    f"{f.steps} live steps)")
    t.add_column("figure")
    t.add_column("value")
    t.add_row("warm-up: points read and scored / seconds",
              f"{f.warmup_points:,} / {f.warmup_seconds:.2f} "
              f"({f.warmup_points / f.warmup_seconds:,.0f} points/s)")
    med_cpu = statistics.median(f.step_cpu_s)
    t.add_row("one step of every series: CPU median / max (target < 1 s)",
              f"{med_cpu:.3f} / {max(f.step_cpu_s):.3f} s")
    t.add_row("  of which the HTTP request and JSON parsing (median)",
              f"{statistics.median(f.fetch_cpu_s):.3f} s")
    t.add_row("one step: wall median", f"{statistics.median(f.step_wall_s):.3f} s")
    t.add_row("series/s and points/s at the median step (CPU)",
              f"{f.series / med_cpu:,.0f} / {statistics.median(f.points_per_step) / med_cpu:,.0f}")
    t.add_row("anomalies raised on the random-noise series (false alarms)", f"{f.anomalies}")
    out.print(t)


@bench_app.command("remediation")
def bench_remediation_cmd(
    triggers: Annotated[int, typer.Option(help="triggers (alert episodes)")] = 10_000,
    targets: Annotated[int, typer.Option(help="distinct targets")] = 10_000,
) -> None:
    """Decisions/s through policy, guard, the log hook and a durable audit."""
    from detector.bench.all import bench_remediation

    f = bench_remediation(triggers, targets)
    t = Table(title=f"vigil bench remediation ({f.triggers:,} triggers, {f.targets:,} targets)")
    t.add_column("figure")
    t.add_column("value")
    t.add_row("decisions/s (policy + guard + claim + log hook + verify + audit)",
              f"{f.decisions_per_s:,.0f}")
    t.add_row("durable audit writes/s (rows + claims; WAL, synchronous=FULL, group commit)",
              f"{f.audit_writes_per_s:,.0f}")
    t.add_row("audit records", f"{f.audit_records:,}")
    t.add_row("verdicts", ", ".join(f"{k} {v:,}" for k, v in sorted(f.verdicts.items())))
    t.add_row("seconds", f"{f.seconds:.2f}")
    out.print(t)


@bench_app.command("templates")
def bench_templates_cmd(
    events: Annotated[int, typer.Option(min=1000, help="messages to mine")] = 200_000,
    distinct: Annotated[str, typer.Option(help="sizes of the all-distinct case, comma-separated "
                                          "('' skips it)")] = "16384,65536,262144",
    config: ConfigOpt = None,
) -> None:
    """Template mining: this miner (batches) against drain3 (per message), same masks and data;
    then all-distinct messages at growing sizes (linear when µs/message stays flat)."""
    from detector.bench.all import bench_templates, bench_templates_distinct, simulated_lines

    cfg = _config(config)
    if distinct:
        try:
            sizes = tuple(int(x) for x in distinct.split(","))
        except ValueError as exc:
            err.print(f"[red]error:[/red] --distinct takes sizes like 16384,65536, not {distinct!r}")
            raise typer.Exit(2) from exc
        d = Table(title="all-distinct messages (no two alike, none masked)")
        for col in ("messages", "seconds", "µs/message", "templates kept", "evicted"):
            d.add_column(col, justify="right")
        for fig in bench_templates_distinct(cfg, sizes):
            d.add_row(f"{fig.messages:,}", f"{fig.seconds:.2f}", f"{fig.us_per_message:.1f}",
                      f"{fig.templates:,}", f"{fig.evictions:,}")
        out.print(d)
    lines, _ = simulated_lines(events, seed=7)
    messages = [orjson.loads(x)["msg"] for x in lines]
    f = bench_templates(messages, cfg)
    t = Table(title=f"vigil bench templates ({f.messages:,} simulated messages)", show_header=False)
    t.add_row("vigil TemplateMiner (messages/s)", f"{f.ours_per_s:,.0f}")
    t.add_row("vigil templates", str(f.ours_templates))
    if f.drain3_per_s is None:
        t.add_row("drain3", "not installed (pip install drain3 to compare)")
    else:
        t.add_row("drain3 TemplateMiner.add_log_message (messages/s)", f"{f.drain3_per_s:,.0f}")
        t.add_row("drain3 templates", str(f.drain3_templates))
        t.add_row("speed-up", f"{f.ours_per_s / f.drain3_per_s:.1f}x")
    out.print(t)


eval_app = typer.Typer(no_args_is_help=True, help="Evaluate detectors on labelled data.")
app.add_typer(eval_app, name="eval")


@eval_app.command("nab")
def eval_nab(
    data: Annotated[Path, typer.Option(help="NAB data directory (<corpus>/<file>.csv)")],
    labels: Annotated[Path, typer.Option(help="NAB windows JSON (combined_windows.json)")],
    out_dir: Annotated[Path, typer.Option("--out", help="where NAB-format results go")],
    detector: Annotated[str, typer.Option(help="detector name")] = DEFAULT_NAB_DETECTOR,
) -> None:
    """Run a detector over a NAB corpus, write NAB-format results, print the NAB scores."""
    from detector.eval.nab.corpus import CorpusError, load_corpus
    from detector.eval.nab.run import DETECTORS, detect, evaluate, write_results

    _choose("detector", detector, list(DETECTORS))
    try:
        series = load_corpus(data, labels)
    except CorpusError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    scores = detect(series, detector)
    write_results(out_dir, series, scores)
    results = evaluate(series, scores)
    t = Table(title=f"NAB scores of {detector!r} on {len(series)} files")
    corpora = sorted(results[0].by_corpus)
    for col in ("profile", "score", "threshold", "windows found", "false positives", *corpora):
        t.add_column(col)
    for r in results:
        t.add_row(r.profile, f"{r.score:.1f}", f"{r.threshold:.6g}", f"{r.tp}/{r.tp + r.fn}",
                  str(r.fp), *[f"{r.by_corpus[c]:.1f}" for c in corpora])
    out.print(t)
    out.print("Per-corpus columns: the normalised score at the profile's threshold; for a corpus "
              "without anomaly windows, the raw false-positive cost (0 is best).")
    out.print(f"Results in {out_dir}/<corpus>/<file>.csv")


def _print_metrics(title: str, rows: list[tuple[str, object]]) -> None:
    t = Table(title=title)
    for col in ("set", "precision", "recall", "F1", "TP", "FP", "FN"):
        t.add_column(col)
    for name, m in rows:
        if m is None:
            continue
        d = m.as_dict()  # type: ignore[attr-defined]
        t.add_row(name, f"{d['precision']:.3f}", f"{d['recall']:.3f}", f"{d['f1']:.3f}",
                  str(d["tp"]), str(d["fp"]), str(d["fn"]))
    out.print(t)


@eval_app.command("sessions")
def eval_sessions_cmd(
    events: Annotated[Path, typer.Option(help="JSON lines, one event each")],
    session_field: Annotated[str, typer.Option(help="the field that names the session")],
    out_file: Annotated[Path, typer.Option("--out", help="CSV: session_id,score,predicted")],
    labels: Annotated[Path | None, typer.Option(help="CSV id,Label (for the report only)")] = None,
    message_field: Annotated[str, typer.Option(help="the field with the message")] = "message",
    warmup_share: Annotated[float, typer.Option(help="share of sessions learned up front, "
                                                "unlabeled")] = 0.1,
    alpha: Annotated[float, typer.Option(help="p-value at or below which a session is "
                                         "predicted anomalous")] = 0.02,
) -> None:
    """Score sessions online and unsupervised by their template counts; report F1 if labeled."""
    from detector.eval.loghub import eval_sessions

    if not events.is_file():
        err.print(f"[red]error:[/red] no such file: {events}")
        raise typer.Exit(2)
    try:
        r = eval_sessions(events, session_field, out_file, labels, message_field, warmup_share, alpha)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    out.print(f"{r.sessions} sessions from {r.events} events ({r.bad_lines} bad lines skipped), "
              f"{r.warmup} learned up front; {r.predicted} predicted anomalous -> {out_file}")
    if r.overall is not None:
        _print_metrics("sessions", [("all sessions", r.overall), (
            f"distinguishable ({r.indistinguishable_anomalies} anomalous sessions that repeat a "
            "normal one's sequence left out)", r.distinguishable)])


@eval_app.command("lines")
def eval_lines_cmd(
    log: Annotated[Path, typer.Option(help="raw log file")],
    fmt: Annotated[str, typer.Option("--format", help="hdfs or bgl")],
    out_file: Annotated[Path, typer.Option("--out", help="CSV: line_id,score,predicted")],
    labels: Annotated[Path | None, typer.Option(help="CSV (BGL: LineId,Label; HDFS: "
                                                "BlockId,Label), for the report only")] = None,
    warmup_share: Annotated[float, typer.Option(help="HDFS: share of blocks learned up "
                                                "front")] = 0.1,
) -> None:
    """Score raw Loghub lines online (HDFS: grouped by block id); report F1 if labeled."""
    from detector.eval.loghub import eval_lines

    _choose("format", fmt, ["hdfs", "bgl"])
    if not log.is_file():
        err.print(f"[red]error:[/red] no such file: {log}")
        raise typer.Exit(2)
    try:
        r = eval_lines(log, fmt, out_file, labels, warmup_share)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    extra = f", {r.sessions} blocks" if r.sessions else ""
    out.print(f"{r.lines} lines ({r.unparsed} not in the {fmt} layout){extra}; {r.predicted} "
              f"lines predicted anomalous -> {out_file}")
    if r.overall is not None:
        rows: list[tuple[str, object]] = [(f"per {r.unit}", r.overall)]
        if r.distinguishable is not None:
            rows.append((f"per {r.unit}, distinguishable", r.distinguishable))
        if r.baseline is not None and fmt == "bgl":
            rows.append(("severity keyword rule (FATAL)", r.baseline))
        _print_metrics(f"{fmt} lines", rows)


@eval_app.command("rootcause")
def eval_rootcause(
    cases: Annotated[int, typer.Option(help="seeded cases per fault kind")] = 50,
    events: Annotated[int, typer.Option(help="log lines per case")] = 50_000,
    kinds: Annotated[str | None, typer.Option(help="comma-separated fault kinds (default all)")] = None,
    first_seed: Annotated[int, typer.Option(help="seed of the first case")] = 0,
    config: ConfigOpt = None,
) -> None:
    """AC@1 and AC@3 of the incidents' root-cause ranking on simulated faults with known roots."""
    from detector.eval.rootcause import evaluate
    from detector.simulate.scenarios import ROOTS

    chosen = kinds.split(",") if kinds else list(ROOTS)
    for k in chosen:
        _choose("fault kind", k, list(ROOTS))
    figs = evaluate(_config(config), cases=cases, events=events, kinds=chosen, first_seed=first_seed)
    t = Table(title=f"root cause on the simulator ({cases} cases per kind, {events:,} lines each)")
    for col in ("fault kind", "root services", "cases", "incident found", "AC@1", "AC@3", "AC@1 misses"):
        t.add_column(col)
    for f in figs:
        t.add_row(f.kind, ", ".join(ROOTS[f.kind]), str(f.cases), str(f.covered), f"{f.ac(1):.2f}",
                  f"{f.ac(3):.2f}", "; ".join(f.misses[:4]) + (" ..." if len(f.misses) > 4 else ""))
    n = sum(f.cases for f in figs)
    ac1 = sum(f.ac(1) * f.cases for f in figs) / max(n, 1)
    ac3 = sum(f.ac(3) * f.cases for f in figs) / max(n, 1)
    t.add_row("all", "", str(n), str(sum(f.covered for f in figs)), f"{ac1:.3f}", f"{ac3:.3f}", "")
    out.print(t)


@app.command("consume")
def consume(config: ConfigOpt = None,
            log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO") -> None:
    """Run the Kafka consumer group (topics, outputs and checkpoints from config / VIGIL_KAFKA__*).
    SIGTERM or SIGINT drains: the batch finishes, outputs are flushed, offsets committed, state
    checkpointed; then exit 0."""
    import logging
    import signal
    import threading

    from detector.runtime.consume import LogConsumer
    from detector.runtime.probes import serve

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    cfg = _config(config)
    consumer = LogConsumer(cfg)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = serve(consumer, cfg.kafka.http_host, cfg.kafka.http_port)
    host, port = server.server_address[:2]
    err.print(f"vigil consume: /healthz /readyz /metrics on http://{host!s}:{port}", markup=False)
    code = consumer.run(stop)
    server.shutdown()
    raise typer.Exit(code)


@app.command("metrics")
def metrics_cmd(config: ConfigOpt = None,
                out_dir: Annotated[Path | None, typer.Option(
                    "--out", help="anomalies.jsonl and incidents.jsonl (default: output.dir)")] = None,
                polls: Annotated[int | None, typer.Option(help="stop after this many polls")] = None,
                http_port: Annotated[int | None, typer.Option(
                    help="serve /healthz /readyz /metrics on 127.0.0.1:PORT (0: any free port)")
                ] = None,
                ) -> None:
    """Watch the Prometheus queries of the config (`prometheus.queries`): warm up from each
    query's lookback, then poll each step; anomalies and incidents are written as JSON lines.
    (`vigil consume` with the same config joins them to the log incidents.)"""
    import signal
    import threading

    from detector.pipeline import Pipeline
    from detector.runtime.watch import MetricWatcher, PollResult
    from detector.sinks.base import JsonlSink

    cfg = _config(config)
    if not cfg.prometheus.queries:
        err.print("error: no prometheus.queries in the config")
        raise typer.Exit(2)
    out = out_dir or cfg.output.dir
    out.mkdir(parents=True, exist_ok=True)
    pipe = Pipeline(cfg, anomalies=JsonlSink(out / "anomalies.jsonl"),
                    incidents=JsonlSink(out / "incidents.jsonl"))
    watcher = MetricWatcher(cfg, pipeline=pipe)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    if http_port is not None:
        from detector.runtime.probes import serve

        server = serve(watcher, "127.0.0.1", http_port)
        err.print(f"vigil metrics: /healthz /readyz /metrics on http://127.0.0.1:"
                  f"{server.server_address[1]}", markup=False)

    def report(res: PollResult) -> None:
        pipe.flush()
        ok, why = watcher.ready()
        err.print(f"{res.points:,} points, {res.series:,} series, {len(res.anomalies)} anomalies, "
                  f"{res.cpu_seconds:.3f} s CPU; {'ready' if ok else why}", markup=False)
    watcher.run(stop, on_poll=report, max_polls=polls)
    pipe.close()
    st = watcher.source.stats.as_dict()
    err.print(orjson.dumps(st).decode(), markup=False)


@app.command("serve")
def serve_cmd(
    policy: Annotated[Path, typer.Option(help="remediation policy YAML")],
    host: Annotated[str, typer.Option(help="listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="listen port")] = 9107,
    audit_db: Annotated[Path, typer.Option(help="audit database")] = Path("vigil-audit.db"),
    inbox_db: Annotated[Path, typer.Option(help="durable intake database")] = Path("vigil-inbox.db"),
    token_file: Annotated[Path | None, typer.Option(help="bearer token file (or "
                                                    "$VIGIL_WEBHOOK_TOKEN)")] = None,
    basic_user: Annotated[str | None, typer.Option(help="basic-auth user")] = None,
    password_file: Annotated[Path | None, typer.Option(help="basic-auth password file (or "
                                                       "$VIGIL_WEBHOOK_PASSWORD)")] = None,
    act: Annotated[bool, typer.Option("--act", help="really run hooks (default: dry-run)")] = False,
    queue_size: Annotated[int, typer.Option(help="accepted alerts the engine may have unfinished "
                                            "before the webhook answers 503")] = 100_000,
    tls_cert: Annotated[Path | None, typer.Option(help="serve HTTPS with this certificate (PEM)")
                        ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="the certificate's private key (PEM)")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(
        help="mTLS: require client certificates signed by this CA (PEM)")] = None,
    public_docs: Annotated[bool, typer.Option(
        "--public-docs", help="serve /docs, /redoc and /openapi.json without credentials")] = False,
    header_timeout: Annotated[float, typer.Option(
        min=0.1, max=300, help="close a connection whose request headers take longer (seconds)")
    ] = 10.0,
) -> None:
    """The Alertmanager webhook receiver: POST /alertmanager, GET /incidents, GET /actions,
    POST /actions/{id}/approve|reject, /healthz, /readyz, /metrics, /docs. Auth is required
    (for /docs too, unless --public-docs)."""
    from remediation.alertmanager import server
    from remediation.alertmanager.app import create_app
    from remediation.alertmanager.settings import AuthError, ServeSettings
    from remediation.policy import PolicyError

    settings = ServeSettings(policy=policy, audit_db=audit_db, inbox_db=inbox_db,
                             bearer_token_file=token_file, basic_user=basic_user,
                             basic_password_file=password_file, dry_run=not act,
                             queue_size=queue_size, public_docs=public_docs,
                             header_timeout_s=header_timeout)
    try:
        application = create_app(settings)
    except (AuthError, PolicyError) as exc:
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
    server.run(application, host, port, settings.header_timeout_s, **tls)


@policy_app.command("check")
def policy_check(file: Annotated[Path, typer.Argument(help="policy YAML")]) -> None:
    """Validate a policy file; problems are printed as FILE:LINE: field: message."""
    from remediation.policy import PolicyError, load_policy

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        for line in exc.problems:
            err.print(line, markup=False, highlight=False)
        raise typer.Exit(2) from exc
    for line in policy.warnings:  # loud: on stderr, before the verdict
        err.print(line, markup=False, highlight=False, style="bold yellow")
    rungs = sum(len(r.ladder) for r in policy.rules)
    warned = f", {len(policy.warnings)} warning(s)" if policy.warnings else ""
    out.print(f"{file}: ok, {len(policy.rules)} rules, {rungs} rungs{warned}", markup=False)


@policy_app.command("test")
def policy_test(
    file: Annotated[Path, typer.Argument(help="policy YAML")],
    trigger: Annotated[Path, typer.Option(help="a trigger as JSON (source, fingerprint, status, "
                                          "starts_at, labels, ...)")],
) -> None:
    """Show, step by step, what the policy would do with a trigger. Nothing is acted on."""
    from remediation.actions import redact
    from remediation.guard import Guard
    from remediation.policy import PolicyError, load_policy, render_target
    from remediation.templating import SHOWN, TemplateError, render
    from remediation.trigger import Trigger, TriggerError

    try:
        policy = load_policy(file)
        t = Trigger.from_dict(orjson.loads(trigger.read_bytes()))
        t = policy.redact_trigger(t)  # as the engine sees it: secret fields are '***'
    except PolicyError as exc:
        for line in exc.problems:
            err.print(line, markup=False, highlight=False)
        raise typer.Exit(2) from exc
    except (OSError, orjson.JSONDecodeError, TriggerError) as exc:
        err.print(f"error: trigger {trigger}: {exc}", markup=False)
        raise typer.Exit(2) from exc
    for line in policy.warnings:
        err.print(line, markup=False, highlight=False, style="bold yellow")
    out.print(f"trigger {t.episode} ({t.source}, {t.status}, service {t.service or '-'})",
              markup=False)
    rules = policy.matching(t)
    if t.status == "resolved":
        out.print("resolved: closes the episode's record and stops its waiting steps.")
        return
    if not rules:
        out.print("no rule matches: recorded as suppressed (policy); nothing happens.")
        return
    from remediation.actions import Action

    guard = Guard(policy.guards)
    for rule in rules:
        out.print(f"rule {rule.name!r}" + (f" (approval required, expires in "
                                          f"{rule.approval.expires_s:g}s)" if rule.approval else ""),
                  markup=False)
        for i, rung in enumerate(rule.ladder):
            try:
                target = render_target(rung, t)
                params = redact(render(rung.params, t, False, SHOWN), frozenset(rung.secrets))
            except TemplateError as exc:
                out.print(f"  {i + 1}. {rung.name}: would fail: {exc}", markup=False)
                continue
            action = Action(rule.name, i, rung.name, rung.hook, target, rung.params, rung.timeout_s,
                            rung.wait_s, t.episode, restart=rung.restart)
            d = guard.check(action)
            verdict = "allowed" if d else f"suppressed by {d.guard}: {d.detail}"
            success = " or ".join(x for x in (
                "the alert resolves" if rung.success.resolved else "",
                f"{rung.success.http.field} < {rung.success.http.below:g} at {rung.success.http.url}"
                if rung.success.http else "") if x) or "nothing (climbs at once)"
            out.print(f"  {i + 1}. {rung.name}: hook {rung.hook} on {target} "
                      f"(timeout {rung.timeout_s:g}s) - guard: {verdict}", markup=False)
            out.print(f"     params: {orjson.dumps(params).decode()}", markup=False)
            out.print(f"     then waits {rung.wait_s:g}s for {success}; if not better, the next "
                      "step", markup=False)
        out.print(f"  then: {'page ' + policy.page.url if policy.page else 'escalate (no page set)'}",
                  markup=False)
    out.print("(dry-run is the default: the engine records these without acting until "
              "remediation runs with dry_run off)", markup=False)


@app.command("audit")
def audit_cmd(
    db: Annotated[Path, typer.Option(help="the audit database")] = Path("vigil-audit.db"),
    since: Annotated[str | None, typer.Option(help="only records since: epoch seconds or "
                                              "a duration like 15m, 2h, 1d")] = None,
    target: Annotated[str | None, typer.Option(help="only this target")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """Print remediation decisions from the audit database."""
    import time as _time

    from remediation.audit import AuditStore

    if not db.is_file():
        err.print(f"error: no audit database at {db}", markup=False)
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
    recs = AuditStore(db).query(since=when, target=target, limit=limit)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
