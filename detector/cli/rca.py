"""`vigil rca` (root cause of a capture) and `vigil eval rca` (scored on labelled cases)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from detector.cli.common import ConfigOpt, err, load_or_exit, out, write_json


def rca_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="JSON-lines files of logs and/or spans "
                                                 "(plain or .gz; OTLP/JSON exports too)")],
    out_dir: Annotated[Path, typer.Option("--out", help="directory for rootcause.json")],
    metrics: Annotated[list[Path] | None, typer.Option(
        "--metrics", help="long-format CSV timestamp,service,pod,metric,value")] = None,
    baseline: Annotated[list[Path] | None, typer.Option(
        "--baseline", help="a fault-free capture of the same system to compare with")] = None,
    baseline_metrics: Annotated[list[Path] | None, typer.Option(
        "--baseline-metrics", help="metrics CSV of the fault-free capture")] = None,
    onset: Annotated[str | None, typer.Option(
        help="when the trouble started (RFC 3339 or epoch seconds); found when not given")] = None,
    config: ConfigOpt = None,
) -> None:
    """Root cause of a capture: "here are the minutes around the incident; what broke?"

    Writes OUT/rootcause.json ({"onset", "ranking": [{"service", "score", "evidence"}]}, every
    service seen, best first) and prints a short explanation.
    """
    from detector.decode.timestamps import TimestampError, epoch_seconds
    from detector.rca.analyze import analyze
    from detector.rca.capture import read_capture
    from detector.rca.report import explain

    cfg = load_or_exit(config)
    at: float | None = None
    if onset is not None:
        try:
            at = epoch_seconds(onset)
        except TimestampError as exc:
            err.print(f"[red]error:[/red] --onset: {exc}")
            raise typer.Exit(2) from exc
    for p in [*inputs, *(metrics or []), *(baseline or []), *(baseline_metrics or [])]:
        if not p.is_file():
            err.print(f"[red]error:[/red] {p}: no such file")
            raise typer.Exit(2)
    try:
        cap = read_capture(inputs, cfg, metrics or [])
        ref = (read_capture(baseline or [], cfg, baseline_metrics or [])
               if baseline or baseline_metrics else None)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    res = analyze(cap, baseline=ref, onset=at)
    doc = res.to_dict()
    if cap.dead_letters:
        doc["dead_letters"] = cap.dead_reasons
    write_json(out_dir / "rootcause.json", doc)
    for line in explain(res):
        out.print(line, highlight=False)
    if cap.dead_letters:
        err.print(f"{cap.dead_letters:,} records did not decode: "
                  + ", ".join(f"{k} {v:,}" for k, v in sorted(cap.dead_reasons.items())))
    out.print(f"wrote {out_dir / 'rootcause.json'}", highlight=False)


def eval_rca_cmd(
    data: Annotated[Path, typer.Option(help="dataset directory: cases.csv, cases/<id>/..., "
                                       "optional normal/ (fault-free reference)")],
    cases: Annotated[str | None, typer.Option(help="comma-separated case ids (default all)")] = None,
    no_baseline: Annotated[bool, typer.Option(
        "--no-baseline", help="skip the runs against the fault-free reference")] = False,
    stream: Annotated[bool, typer.Option(
        "--stream", help="also replay each case through the pipeline and score the root cause "
        "of the first incident it opens (the stream's judgement)")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="per-case results as JSON")] = None,
    config: ConfigOpt = None,
) -> None:
    """AC@1/3/5 and MRR of `vigil rca` on labelled fault cases, by fault type, beside the naive
    baselines computed in the same run."""
    from detector.eval.rca import evaluate

    if not (data / "cases.csv").is_file():
        err.print(f"[red]error:[/red] {data / 'cases.csv'}: no such file")
        raise typer.Exit(2)
    rep = evaluate(data, load_or_exit(config), cases=cases.split(",") if cases else None,
                   baseline=not no_baseline, stream=stream, progress=lambda s: err.print(s, highlight=False))
    t = Table(title=f"root cause on {rep.cases} cases of {data}")
    for col in ("method", "fault type", "cases", "AC@1", "AC@3", "AC@5", "MRR"):
        t.add_column(col)
    for method, sc in rep.methods.items():
        s = sc.summary()
        t.add_row(method, "all", str(len(sc.rr)), *(f"{s[k]:.3f}" for k in
                                                    ("ac@1", "ac@3", "ac@5", "mrr")))
    for ft in sorted(rep.by_type):
        for method, sc in rep.by_type[ft].items():
            s = sc.summary()
            t.add_row(method, ft, str(len(sc.rr)), *(f"{s[k]:.3f}" for k in
                                                     ("ac@1", "ac@3", "ac@5", "mrr")))
    out.print(t)
    if out_file is not None:
        write_json(out_file, {"summary": {m: s.summary() for m, s in rep.methods.items()},
                              "by_fault_type": {ft: {m: s.summary() for m, s in d.items()}
                                                for ft, d in rep.by_type.items()},
                              "per_case": rep.per_case})
