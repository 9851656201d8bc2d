"""`vigil eval ...`: detection measured on labelled data (`detector.eval`)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from detector.cli.common import ConfigOpt, choose, err, load_or_exit, out
from detector.cli.tables import print_metrics
from detector.eval.nab import DEFAULT_DETECTOR


def eval_nab(
    data: Annotated[Path, typer.Option(help="NAB data directory (<corpus>/<file>.csv)")],
    labels: Annotated[Path, typer.Option(help="NAB windows JSON (combined_windows.json)")],
    out_dir: Annotated[Path, typer.Option("--out", help="where NAB-format results go")],
    detector: Annotated[str, typer.Option(help="detector name")] = DEFAULT_DETECTOR,
    quiet: Annotated[int, typer.Option(min=0, help="rows an alarm silences its file for (the "
                                       "episode rule; 0: every crossing fires)")] = 100,
    rest: Annotated[int, typer.Option(min=0, help="instead, the older rule: a score fires "
                                      "only if it beats the file's last REST scores")] = 0,
) -> None:
    """Run a detector over a NAB corpus, write NAB-format results, print the NAB scores: at
    each profile's best threshold, per corpus, and per corpus held out (its threshold chosen
    on the other corpora)."""
    from detector.eval.nab.corpus import CorpusError
    from detector.eval.nab.report import nab_report
    from detector.eval.nab.run import DETECTORS, write_results

    choose("detector", detector, list(DETECTORS))
    try:  # the report is the evaluation: the notebook's tables come from the same call
        report = nab_report(data, labels, detector, quiet=quiet, rest=rest)
    except CorpusError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    results = report.results
    write_results(out_dir, report.series, report.scores, report.threshold, report.quiet)
    t = Table(title=f"NAB scores of {detector!r} on {len(report.series)} files ({report.rule})")
    corpora = sorted(results[0].by_corpus)
    for col in ("profile", "score", "threshold", "windows found", "false positives", *corpora):
        t.add_column(col)
    for r in results:
        t.add_row(r.profile, f"{r.score:.1f}", f"{r.threshold:.6g}", f"{r.tp}/{r.tp + r.fn}",
                  str(r.fp), *[f"{r.by_corpus[c]:.1f}" for c in corpora])
    out.print(t)
    out.print("Per-corpus columns: the normalised score at the profile's threshold; for a corpus "
              "without anomaly windows, the raw false-positive cost (0 is best).")
    held = sorted(results[0].held_out)
    h = Table(title="Each corpus held out: scored at the threshold chosen on all the others")
    for col in ("profile", "mean", *held):
        h.add_column(col)
    for r in results:
        h.add_row(r.profile, f"{r.held_out_mean:.1f}", *[f"{r.held_out[c]:.1f}" for c in held])
    out.print(h)
    out.print(f"Results in {out_dir}/<corpus>/<file>.csv")


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
        print_metrics("sessions", [("all sessions", r.overall), (
            f"distinguishable ({r.indistinguishable_anomalies} anomalous sessions that repeat a "
            "normal one's sequence left out)", r.distinguishable)])


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

    choose("format", fmt, ["hdfs", "bgl"])
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
        print_metrics(f"{fmt} lines", rows)


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
        choose("fault kind", k, list(ROOTS))
    figs = evaluate(load_or_exit(config), cases=cases, events=events, kinds=chosen, first_seed=first_seed)
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
