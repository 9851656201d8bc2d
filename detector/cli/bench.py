"""`vigil bench ...`: each command runs one benchmark of `detector.bench` and prints its figures."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from detector.cli.common import ConfigOpt, err, load_or_exit, out


def bench_pipeline_cmd(
    events: Annotated[int, typer.Option(min=1000, help="lines to generate")] = 1_000_000,
    input_file: Annotated[Path | None, typer.Option("--input", help="read lines from a JSONL "
                                                    "file instead")] = None,
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="exactly one JSON line")] = False,
) -> None:
    """Pipeline events/s (as vigil replay runs it, JSONL sinks included) against a bare
    orjson.loads loop on the same lines; µs per event by stage; RSS and state size."""
    from detector.bench.pipeline import bench_pipeline, file_lines
    from detector.simulate.runs import simulate_to_file

    cfg = load_or_exit(config)
    if input_file is None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.jsonl"
            simulate_to_file(path, events)
            lines = file_lines(path)
    else:
        lines = file_lines(input_file)
    f = bench_pipeline(lines, cfg)
    if as_json:
        print(orjson.dumps(f.to_dict()).decode())
        return
    t = Table(title=f"vigil bench pipeline ({f.events:,} events, {f.bytes_per_line:.0f} B/line)",
              show_header=False)
    t.add_row("pipeline events/s", f"{f.pipeline_eps:,.0f}")
    t.add_row("orjson.loads loop, batch kept (events/s)", f"{f.parse_eps:,.0f}")
    t.add_row("ratio pipeline / orjson (target >= 1.0)", f"{f.ratio:.2f}")
    t.add_row("orjson.loads loop, each dict dropped (events/s)", f"{f.parse_discard_eps:,.0f}")
    t.add_row("ratio pipeline / orjson-dropped", f"{f.ratio_discard:.2f}")
    total = 1e6 / f.pipeline_eps if f.pipeline_eps else 0.0
    t.add_row("µs per event, whole pipeline", f"{total:.2f}")
    for k, v in f.stage_us_per_event.items():
        name = "decode, on its own thread beside the rest" if k == "decode" else k
        t.add_row(f"  {name} (µs per event, share)",
                  f"{v:.2f}  ({v / total:.0%})" if total else "-")
    t.add_row("decode alone, lines/s (target >= 1,000,000)", f"{f.decode_lines_per_s:,.0f}")
    t.add_row("  polars' NDJSON read alone, no schema (lines/s)", f"{f.polars_read_lines_per_s:,.0f}")
    t.add_row("  polars' NDJSON read alone, the decoder's schema (lines/s)",
              f"{f.polars_read_schema_lines_per_s:,.0f}")
    if f.decode_lines_per_s:
        t.add_row("  decode ÷ polars' read time (target <= 1.5)",
                  f"{f.polars_read_lines_per_s / f.decode_lines_per_s:.2f} "
                  f"(with its schema {f.polars_read_schema_lines_per_s / f.decode_lines_per_s:.2f})")
    t.add_row("RSS before the pipeline (MiB: imports and the lines held)", f"{f.rss_before_mib:,.0f}")
    t.add_row("peak RSS during the pipeline (MiB)", f"{f.peak_rss_mib:,.0f}")
    t.add_row("tracked (service, feature) series", str(f.series))
    t.add_row("state bytes per series (target <= 2048)", f"{f.state_bytes_per_series:,.0f}")
    for k, v in f.state_breakdown.items():
        t.add_row(f"  state: {k} (bytes)", f"{v:,}")
    t.add_row("anomalies / incidents on this run", f"{f.anomalies} / {f.incidents}")
    out.print(t)


def bench_detection_cmd(
    events: Annotated[int, typer.Option(min=10_000, help="lines per run")] = 200_000,
    seeds: Annotated[int, typer.Option(min=1, help="runs per scenario")] = 3,
    config: ConfigOpt = None,
) -> None:
    """Each simulator scenario, several seeds: detection, onset delay, false incidents."""
    from detector.bench.detection import bench_detection

    cfg = load_or_exit(config)
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


def bench_models_cmd(
    series: Annotated[int, typer.Option(min=1, help="independent series")] = 10_000,
    steps: Annotated[int, typer.Option(min=1, help="time steps per series")] = 100,
    batch: Annotated[int, typer.Option(min=1, help="series per model call")] = 1_000,
) -> None:
    """Points/s and state bytes per series of each online model (1M points by default)."""
    from detector.bench.models import bench_models

    t = Table(title=f"vigil bench models ({series:,} series x {steps} steps, {batch:,} a call)")
    for col in ("model", "points/s", "state bytes per series"):
        t.add_column(col)
    for f in bench_models(series, steps, batch):
        t.add_row(f.name, f"{f.points_per_s:,.0f}", f"{f.state_bytes_per_series:,.0f}")
    out.print(t)


def bench_correlation_cmd(
    open_requests: Annotated[int, typer.Option(help="requests kept open throughout")] = 1_000_000,
    events: Annotated[int, typer.Option(help="events in the steady phase")] = 2_000_000,
    batch: Annotated[int, typer.Option(help="events a call")] = 65_536,
) -> None:
    """Events/s and requests/s through request correlation with many requests open; memory."""
    from detector.bench.correlation import bench_correlation

    f = bench_correlation(open_requests, events, batch)
    t = Table(title=f"vigil bench correlation ({f.open_requests:,} open requests, {batch:,} events "
                    "a call)")
    t.add_column("figure")
    t.add_column("value")
    t.add_row("fill: events/s (one event opens each request)", f"{f.fill_events_per_s:,.0f}")
    t.add_row(f"steady: events/s ({f.events:,} events, 1/3 new requests)", f"{f.events_per_s:,.0f}")
    t.add_row("steady: requests opened and closed per s", f"{f.requests_per_s:,.0f}")
    t.add_row("steady: anomalous requests judged", f"{f.anomalous_requests:,}")
    t.add_row("µs per verdict (chains and verdicts a block of closed requests at a time)",
              f"{f.judge_us_per_request:.1f}")
    t.add_row("bytes per open request (correlator's accounting)", f"{f.bytes_per_open_request:,.0f}")
    t.add_row("resident MiB per million open requests (after fill, 1 event each)",
              f"{f.rss_mib_per_million_open:,.0f}")
    t.add_row(f"resident MiB at the end ({f.open_at_end:,} open, "
              f"{f.events_per_open_request:.1f} events each)", f"{f.rss_mib_steady:,.0f}")
    out.print(t)


def bench_kafka_cmd(
    events: Annotated[int, typer.Option(help="log lines for the throughput comparison")] = 60_000,
    rate: Annotated[float, typer.Option(help="events/s in the steady-rate latency run")] = 1000.0,
    seconds: Annotated[float, typer.Option(help="length of the steady-rate run")] = 45.0,
    bootstrap: Annotated[str | None, typer.Option(help="use this broker instead of starting "
                                                  "a local Tansu")] = None,
    client: Annotated[list[str] | None, typer.Option(
        help="bare client loops to measure, in this order: kafka-python, confluent "
             "(repeatable; default both)")] = None,
    clients_only: Annotated[bool, typer.Option(
        "--clients-only", help="only the bare client loops (records per CPU-second)")] = False,
) -> None:
    """`vigil consume` vs a bare consumer loop on the same broker and topic, a bare loop of each
    client (kafka-python, confluent-kafka) in records per CPU-second, one after the other on the
    same topic; end-to-end latency at a steady rate (bounded: the run lasts --seconds plus
    ~30 s)."""
    from detector.bench.kafka import BARE, BareFigures, bench_clients, bench_kafka

    clients = tuple(client or ("kafka-python", "confluent"))
    unknown = [c for c in clients if c not in BARE]
    if unknown:
        raise typer.BadParameter(f"unknown client(s) {', '.join(unknown)}: "
                                 f"choose from {', '.join(BARE)}")

    def client_rows(t: Table, bares: list[BareFigures]) -> None:
        for b in bares:
            t.add_row(f"bare {b.client}: poll + orjson.loads, records/s (wall) | records per "
                      "CPU-second", f"{b.per_s:,.0f} | {b.per_cpu_s:,.0f}")

    if clients_only:
        bares = bench_clients(events, bootstrap=bootstrap, clients=clients)
        t = Table(title=f"vigil bench kafka --clients-only ({events:,} events, 3 partitions)")
        t.add_column("figure")
        t.add_column("value")
        client_rows(t, bares)
        out.print(t)
        return
    f = bench_kafka(events, steady_rate=rate, steady_seconds=seconds, bootstrap=bootstrap,
                    clients=clients)
    t = Table(title=f"vigil bench kafka ({f.events:,} events, {f.partitions} partitions)")
    t.add_column("figure")
    t.add_column("value")
    client_rows(t, f.bare)
    t.add_row(f"bare consumer ({f.bare[0].client}): poll + orjson.loads (events/s)",
              f"{f.bare_events_per_s:,.0f}")
    for v in f.vigil:
        t.add_row(f"vigil consume, kafka.client {v.client}: pipeline + outputs + flush + commit, "
                  "events/s (wall) | per CPU-second", f"{v.per_s:,.0f} | {v.per_cpu_s:,.0f}")
    t.add_row(f"ratio vigil / bare, {f.bare[0].client} (target >= 0.8)", f"{f.ratio:.2f}")
    t.add_row(f"steady run: {f.steady_rate:,.0f} events/s for {f.steady_seconds:g}s; produce -> "
              "committed p50 / p99 (s)", f"{f.latency_p50_s:.3f} / {f.latency_p99_s:.3f}")
    t.add_row("fault start -> incident received (s; includes the 10 s window + 5 s lateness)",
              ", ".join(f"{d:.1f}" for d in f.incident_delays_s) or "no incident")
    out.print(t)


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
    from detector.bench.webhook import bench_webhook

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


def bench_prometheus_cmd(
    series: Annotated[int, typer.Option(help="series in the test Prometheus")] = 10_000,
    steps: Annotated[int, typer.Option(help="live steps polled after the warm-up")] = 10,
    step: Annotated[float, typer.Option(help="query step, seconds")] = 15.0,
) -> None:
    """The poll -> score path against a real Prometheus (Debian package) backfilled with
    `series` series: warm-up read, then one step at a time; CPU per step (target < 1 s)."""
    import statistics

    from detector.bench.prometheus import bench_prometheus
    from detector.bench.servers import prometheus_available

    if not prometheus_available():
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


def bench_remediation_cmd(
    triggers: Annotated[int, typer.Option(help="triggers (alert episodes)")] = 10_000,
    targets: Annotated[int, typer.Option(help="distinct targets")] = 10_000,
) -> None:
    """Decisions/s through policy, guard, the log hook and a durable audit."""
    from detector.bench.remediation import bench_remediation

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


def bench_formats_cmd(
    lines: Annotated[int, typer.Option(min=1000, help="lines per format")] = 500_000,
    batch: Annotated[int, typer.Option(min=1, help="lines decoded a call")] = 65_536,
) -> None:
    """Decode lines/s of each parsing.format on the same generated events (~200 B a line):
    JSON for the ratio, logfmt, and every regex preset (best of 3 runs)."""
    from detector.bench.formats import bench_formats

    figures = bench_formats(lines, batch)
    json_rate = next(f.lines_per_s for f in figures if f.name == "json")
    t = Table(title=f"vigil bench formats ({lines:,} lines each, {batch:,} a call)")
    for col in ("format", "B/line", "lines/s", "MB/s", "ratio to json", "events"):
        t.add_column(col, justify="right")
    for f in figures:
        t.add_row(f.name, f"{f.bytes_per_line:.0f}", f"{f.lines_per_s:,.0f}", f"{f.mb_per_s:.1f}",
                  f"{f.lines_per_s / json_rate:.2f}", f"{f.events:,}")
    out.print(t)


def bench_templates_cmd(
    events: Annotated[int, typer.Option(min=1000, help="messages to mine")] = 200_000,
    distinct: Annotated[str, typer.Option(help="sizes of the all-distinct case, comma-separated "
                                          "('' skips it)")] = "16384,65536,262144",
    config: ConfigOpt = None,
) -> None:
    """Template mining: this miner (batches) against drain3 (per message), same masks and data;
    then all-distinct messages at growing sizes (linear when µs/message stays flat)."""
    from detector.bench.templates import bench_templates, bench_templates_distinct
    from detector.simulate.runs import simulated_lines

    cfg = load_or_exit(config)
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


def bench_analyze_cmd(
    events: Annotated[int, typer.Option(min=1000, help="simulated events in the file")] = 1_000_000,
    rounds: Annotated[int, typer.Option(min=1, help="timed runs of each (best kept)")] = 2,
) -> None:
    """`analyze` (the notebook API) against `vigil replay` on the same file, alternately."""
    from detector.bench.analysis import bench_analyze

    f = bench_analyze(events, rounds)
    t = Table(title=f"vigil bench analyze ({f.events:,} events, best of {rounds})", show_header=False)
    t.add_row("vigil replay (s)", f"{f.replay_s:.2f}")
    t.add_row("analyze (s)", f"{f.analyze_s:.2f}")
    t.add_row("ratio analyze / replay (target <= 1.2)", f"{f.ratio:.2f}")
    out.print(t)


def bench_notebooks_cmd(
    folder: Annotated[Path, typer.Option(help="the notebooks' folder")] = Path("notebooks"),
) -> None:
    """Each notebook run top to bottom in a fresh Jupyter kernel, timed (target: under 60 s)."""
    from detector.bench.notebooks import bench_notebooks

    t = Table(title="vigil bench notebooks (fresh kernel each; target < 60 s)")
    for col in ("notebook", "seconds", "code cells", "pictures"):
        t.add_column(col)
    for r in bench_notebooks(folder):
        t.add_row(r.name, f"{r.seconds:.1f}", str(r.code_cells), str(r.images))
    out.print(t)


def bench_fleet_cmd(
    consumers: Annotated[int, typer.Option(min=1, help="`vigil consume --role all` processes")],
    events: Annotated[int, typer.Option(min=10_000, help="log lines (error_burst, seed 5)")
                      ] = 60_000,
    as_json: Annotated[bool, typer.Option("--json", help="exactly one JSON line")] = False,
    keep: Annotated[Path | None, typer.Option(help="keep the processes' directories and logs "
                                              "here")] = None,
    client_records: Annotated[int, typer.Option(
        min=1_000, help="records the bare client loops read (their own topic, after the fleet)")
    ] = 200_000,
) -> None:
    """N `vigil consume --role all` and 2 `vigil remediate` (PostgreSQL audit, a real HTTP hook
    on loopback) on a local Tansu broker; one consumer killed -9 while an incident is open:
    events/s, CPU per record against bare client loops, incidents per root cause, actions per
    (episode, rung), events lost (bounded: a few minutes)."""
    from detector.bench.fleet import bench_fleet

    try:
        f = bench_fleet(consumers, events, keep=keep, client_records=client_records,
                        say=(lambda _: None) if as_json else (lambda m: err.print(m, markup=False)))
    except RuntimeError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from exc
    if as_json:
        print(orjson.dumps(f.to_dict()).decode())
        return
    t = Table(title=f"vigil bench fleet ({f.consumers} consumers, {f.events:,} events, "
                    f"kill -9 of {f.killed or 'none'})")
    t.add_column("figure")
    t.add_column("value")
    t.add_row("events/s, first produce -> last window merged", f"{f.events_per_s:,.0f}")
    t.add_row(f"bare loop of the consumers' client ({f.client}), {f.client_records:,} records: "
              "CPU µs per record (target <= 5)",
              f"{f.client_cpu_us_per_record:.1f}")
    t.add_row("bare kafka-python loop: CPU µs per record",
              f"{f.kafka_python_cpu_us_per_record:.1f}")
    t.add_row("bare confluent-kafka loop: CPU µs per record",
              f"{f.confluent_cpu_us_per_record:.1f}")
    t.add_row(f"the {f.consumers} consumer processes: CPU µs per event",
              f"{f.process_cpu_us_per_record:.1f}")
    t.add_row("incidents per root cause (most; target 1)", str(f.incidents_per_root_cause))
    t.add_row("actions per (episode, rung) (most; target <= 1)", str(f.actions_per_episode_rung))
    t.add_row("events lost / counted twice (target 0 / 0)",
              f"{f.events_lost:,} / {f.events_doubled:,}")
    t.add_row("incidents / audited actions / HTTP hook calls",
              f"{f.incidents} / {f.actions} / {f.hook_calls}")
    out.print(t)
