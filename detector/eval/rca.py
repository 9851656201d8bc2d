"""`vigil eval rca`: AC@1/3/5 and MRR of `vigil rca` on a dataset of labelled fault cases.

The layout is the shared one: `DIR/cases.csv` (`case_id`, `root_cause_service`, `fault_type`,
`inject_unix`, ...) and `DIR/cases/<id>/{logs,spans}.jsonl.gz` + `metrics.csv.gz`, with an
optional fault-free reference in `DIR/normal/`. Each case runs through the very code `vigil rca`
runs (`read_capture` + `analyze`), without and with the reference, and the naive baselines are
computed in the same run from the same capture:

- *first error per trace*: each trace votes for the first service that logged an error or
  failed a span in it;
- *duration increase*: the relative rise of a service's mean span duration after the onset;
- *random*: k / (number of services).

Ties count in expectation (a case where the truth shares the top score with two others counts
1/3 at AC@1), so a method with no evidence scores exactly random.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from detector.config import VigilConfig
from detector.events import LEVEL_ERROR
from detector.rca.analyze import analyze
from detector.rca.capture import Capture, read_capture
from detector.rca.rank import Weights

KS = (1, 3, 5)


@dataclass(slots=True)
class Case:
    case_id: str
    root_cause: str
    fault_type: str
    inject: float | None
    directory: Path


@dataclass(slots=True)
class Scores:
    """Per-case expected AC@k and reciprocal rank of one method."""

    ac: dict[int, list[float]] = field(default_factory=lambda: {k: [] for k in KS})
    rr: list[float] = field(default_factory=list)

    def add(self, scores: dict[str, float], truth: str) -> None:
        for k, v in tie_aware(scores, truth).items():
            if k == 0:
                self.rr.append(v)
            else:
                self.ac[k].append(v)

    def summary(self) -> dict[str, float]:
        n = max(len(self.rr), 1)
        out = {f"ac@{k}": round(sum(v) / n, 4) for k, v in self.ac.items()}
        out["mrr"] = round(sum(self.rr) / n, 4)
        return out


def tie_aware(scores: dict[str, float], truth: str) -> dict[int, float]:
    """Expected AC@k (keys 1, 3, 5) and reciprocal rank (key 0) under random tie-breaking.

    >>> tie_aware({"a": 2.0, "b": 1.0, "c": 1.0}, "b")[1], tie_aware({"a": 1.0}, "a")[0]
    (0.0, 1.0)
    >>> round(tie_aware({"a": 1.0, "b": 1.0}, "b")[1], 2)
    0.5
    """
    s = scores.get(truth, -math.inf)
    higher = sum(1 for v in scores.values() if v > s)
    tied = sum(1 for v in scores.values() if v == s) if truth in scores else 1
    if truth not in scores:
        higher = len(scores)
    out = {k: min(max(k - higher, 0), tied) / tied for k in KS}
    out[0] = sum(1.0 / (higher + i) for i in range(1, tied + 1)) / tied
    return out


def load_cases(data: Path) -> list[Case]:
    with (data / "cases.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        inj = r.get("inject_unix") or ""
        out.append(Case(r["case_id"], r["root_cause_service"], r.get("fault_type", "?"),
                        float(inj) if inj else None, data / "cases" / r["case_id"]))
    return out


def capture_files(d: Path) -> tuple[list[Path], list[Path]]:
    """(JSON-lines inputs, metric CSVs) of a case or reference directory."""
    inputs = [p for name in ("spans.jsonl.gz", "logs.jsonl.gz", "spans.jsonl", "logs.jsonl")
              if (p := d / name).exists()]
    metrics = [p for name in ("metrics.csv.gz", "metrics.csv") if (p := d / name).exists()]
    return inputs, metrics


def read_dir(d: Path, cfg: VigilConfig) -> Capture:
    inputs, metrics = capture_files(d)
    return read_capture(inputs, cfg, metrics)


def first_error_votes(cap: Capture) -> dict[str, float]:
    """Naive baseline: each trace votes for the first service with an error in it."""
    errs = pl.concat([
        cap.spans.filter(pl.col("error")).select("t", "trace", "service"),
        cap.logs.filter(pl.col("level") >= LEVEL_ERROR).select("t", "trace", "service"),
    ]).filter(pl.col("trace").is_not_null())
    votes = errs.sort("t").group_by("trace").agg(pl.col("service").first()).group_by(
        "service").len()
    scores = {s: 0.0 for s in cap.services()}
    scores.update({r[0]: float(r[1]) for r in votes.iter_rows()})
    return scores


def duration_increase(cap: Capture, onset: float) -> dict[str, float]:
    """Naive baseline: relative rise of each service's mean span duration after `onset`
    (at least 5 spans each side, else no evidence)."""
    sp = cap.spans
    scores = {s: 0.0 for s in cap.services()}
    g = sp.group_by("service").agg(
        b=pl.col("dur_ms").filter(pl.col("t") < onset).mean(),
        a=pl.col("dur_ms").filter(pl.col("t") >= onset).mean(),
        nb=(pl.col("t") < onset).sum(), na=(pl.col("t") >= onset).sum())
    for r in g.iter_rows(named=True):
        if r["nb"] >= 5 and r["na"] >= 5 and r["b"]:
            scores[r["service"]] = r["a"] / r["b"] - 1.0
    return scores


@dataclass(slots=True)
class Report:
    cases: int = 0
    methods: dict[str, Scores] = field(default_factory=dict)
    by_type: dict[str, dict[str, Scores]] = field(default_factory=dict)
    per_case: list[dict[str, Any]] = field(default_factory=list)

    def add(self, method: str, case: Case, scores: dict[str, float]) -> None:
        self.methods.setdefault(method, Scores()).add(scores, case.root_cause)
        self.by_type.setdefault(case.fault_type, {}).setdefault(method, Scores()).add(
            scores, case.root_cause)


def stream_ranking(case: Case, cfg: VigilConfig) -> dict[str, float]:
    """What `vigil replay` says: the case's records in time order through the pipeline; the
    first incident opened from one window before the injection on, ranked from spans, scores
    each service by its `root_cause` confidence (no such incident: no evidence)."""
    import orjson

    from detector.runtime.replay import replay_lines
    from detector.sources.files import iter_batches

    inputs, _ = capture_files(case.directory)
    lines = [ln for p in inputs for b in iter_batches(p, cfg.batch_size) for ln in b.lines]

    def ts(line: bytes) -> str:
        try:
            v = orjson.loads(line).get("ts", "")
        except (orjson.JSONDecodeError, AttributeError):
            return ""
        return str(v)

    lines.sort(key=ts)
    start = (case.inject or -math.inf) - cfg.window.seconds
    for inc in sorted(replay_lines(lines, cfg), key=lambda i: (i["opened_at"], -i["revision"])):
        ranked = inc.get("root_cause") or []
        if inc["opened_at"] >= start and ranked and "network" in ranked[0]["evidence"]:
            return {r["service"]: float(r.get("confidence", r["score"])) for r in ranked}
    return {}


def evaluate(data: Path, cfg: VigilConfig, cases: Iterable[str] | None = None,
             weights: Weights | None = None, baseline: bool = True, stream: bool = False,
             progress: Callable[[str], None] | None = None) -> Report:
    """Run `vigil rca`'s code on every case (or those named) and score it."""
    wanted = set(cases) if cases else None
    todo = [c for c in load_cases(data) if wanted is None or c.case_id in wanted]
    ref_dir = data / "normal"
    reference = read_dir(ref_dir, cfg) if baseline and ref_dir.is_dir() else None
    rep = Report()
    for case in todo:
        cap = read_dir(case.directory, cfg)
        rep.cases += 1
        services = cap.services()
        row: dict[str, Any] = {"case": case.case_id, "truth": case.root_cause,
                               "fault": case.fault_type}
        res = analyze(cap, weights=weights)
        _add(rep, "vigil rca", case, res.ranking, services)
        row["vigil rca"] = res.top
        row["onset_error_s"] = (round(res.onset - case.inject, 1)
                                if res.onset is not None and case.inject is not None else None)
        if reference is not None:
            resb = analyze(cap, baseline=reference, weights=weights)
            _add(rep, "vigil rca --baseline", case, resb.ranking, services)
            row["vigil rca --baseline"] = resb.top
        if stream:
            scores = {sv: 0.0 for sv in services}
            scores.update(stream_ranking(case, cfg))
            rep.add("vigil replay (stream)", case, scores)
            row["vigil replay (stream)"] = (max(scores, key=lambda k: scores[k])
                                            if any(scores.values()) else None)
        rep.add("naive: first error per trace", case, first_error_votes(cap))
        onset = case.inject if case.inject is not None else res.onset
        if onset is not None:
            rep.add("naive: duration increase", case, duration_increase(cap, onset))
        rep.add("random", case, {s: 0.0 for s in services})
        rep.per_case.append(row)
        if progress is not None:
            progress(f"{case.case_id} {case.fault_type} truth={case.root_cause} "
                     f"top={res.top} baseline_top={row.get('vigil rca --baseline')}")
    return rep


def _add(rep: Report, method: str, case: Case, ranking: list[dict[str, Any]],
         services: list[str]) -> None:
    scores = {s: 0.0 for s in services}
    scores.update({r["service"]: float(r["score"]) for r in ranking})
    rep.add(method, case, scores)
