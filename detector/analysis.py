"""`analyze`: what Vigil saw in a log, as polars DataFrames a notebook can filter and plot.

It runs the pipeline `vigil replay` runs (the same batches, the same `Pipeline`), over a file, a
list of lines or a DataFrame of records, and keeps what each stage produced instead of writing
JSON lines: a sample of the events, every window's features, the anomalies, the incidents (their
last state, root-cause ranking included), the anomalous requests and the call graph the
correlator learned, the templates and the dead letters; its `plot_*` methods draw them
(`detector.plots`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import orjson
import polars as pl

from detector.config import VigilConfig, load_config
from detector.correlation.flags import kinds
from detector.pipeline import BatchOutcome, Pipeline, PipelineStats
from detector.sources.files import iter_batches
from detector.windows.aggregate import FEATURES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from detector.incidents.whatif import WhatIf
    from remediation.policy import Policy

Source = str | Path | Sequence[str] | Sequence[bytes] | Any  # Any: a polars or pandas DataFrame

_REQUEST_SCHEMA: dict[str, Any] = {"request_id": pl.String, "onset": pl.Float64, "root": pl.String,
                   "propagators": pl.List(pl.String), "kinds": pl.List(pl.String),
                   "silent": pl.Boolean, "method": pl.String, "edges": pl.List(pl.String)}
_EVENT_SCHEMA = {"ts": pl.Float64, "service": pl.String, "level": pl.Int16, "message": pl.String,
                 "template_id": pl.Int64, "request_id": pl.String, "latency_ms": pl.Float64,
                 "status": pl.Int32}


@dataclass
class Analysis:
    """What one `analyze` run saw; every table a polars DataFrame (`to_pandas()` for pandas).

    - `events`: a sample of the decoded events (every k-th, at most `max_events`), with their
      template ids; `events_seen` says how many there were.
    - `windows`: one row per closed window and service: start, end, service, events and every
      window feature (null where a window had too few events to judge).
    - `anomalies`: value, baseline mean and spread, score, the model that spoke, explanation.
    - `incidents`: the last state of each incident: id, service, status, opened and resolved
      times, anomaly count, the top root cause (and the one named when it opened: what a
      remediation trigger first saw), and the features and whole ranking (score, confidence
      and evidence of each service) as JSON text: `pl.col("ranking").str.json_decode()` opens
      it.
    - `requests`: every anomalous request the correlator judged (the first `max_events`):
      id, onset, the root-cause candidate it names, the services it only propagated through,
      its anomaly kinds, whether the root was silent, how its chain was found, and its
      caller -> callee edges.
    - `call_graph`: caller, callee and calls of every edge learned from requests.
    - `incident_log`: every incident update as `vigil replay` writes it to incidents.jsonl, in
      order (what `what_if` replays through a remediation policy).
    - `templates`: id, text, count and first seen of every live template, most frequent first.
    - `dead_letters`: reason, detail and where (file:line), for every line that was not an event.
    """

    events: pl.DataFrame
    windows: pl.DataFrame
    anomalies: pl.DataFrame
    incidents: pl.DataFrame
    templates: pl.DataFrame
    dead_letters: pl.DataFrame
    stats: PipelineStats
    requests: pl.DataFrame = field(default_factory=pl.DataFrame)
    call_graph: pl.DataFrame = field(default_factory=pl.DataFrame)
    incident_log: list[dict[str, Any]] = field(default_factory=list)  # every update, in order
    config: VigilConfig = field(default_factory=VigilConfig)
    events_seen: int = 0
    sample_every: int = 1  # the events table holds every k-th event
    tables: ClassVar[tuple[str, ...]] = ("events", "windows", "anomalies", "incidents",
                                         "requests", "call_graph", "templates", "dead_letters")

    def to_pandas(self) -> dict[str, Any]:
        """Every table as a pandas DataFrame, by name (needs pandas and pyarrow installed: Vigil
        itself does not depend on them)."""
        return {name: getattr(self, name).to_pandas() for name in self.tables}

    def plot_series(self, service: str, feature: str) -> Figure:
        """A window feature of a service, its baseline band and its anomalies
        (`detector.plots.plot_series`)."""
        from detector.plots import plot_series
        return plot_series(self, service, feature)

    def plot_incidents(self) -> Figure:
        """The incident timeline per service (`detector.plots.plot_incidents`)."""
        from detector.plots import plot_incidents
        return plot_incidents(self)

    def plot_templates(self, at: float | None = None, top: int = 6) -> Figure:
        """The templates that changed most around a moment (`detector.plots.plot_templates`)."""
        from detector.plots import plot_templates
        return plot_templates(self, at, top)

    def what_if(self, policy: Policy | str | Path, audit_db: str | Path | None = None) -> WhatIf:
        """What the remediation engine would have done over this history: every incident
        update, in event time, through `policy` (a `Policy`, or a YAML file's path) in dry-run
        and virtual time (`detector.incidents.whatif.what_if`: nothing acts, no hook but the
        log hook runs). `audit_db`: where its audit goes (default: a temporary file, replaced
        on each call). `.table()` is the decisions as a DataFrame, `.story()` in words.
        """
        import tempfile

        from detector.incidents.whatif import what_if
        from remediation.policy import load_policy

        pol = policy if not isinstance(policy, str | Path) else load_policy(policy)
        db = Path(audit_db) if audit_db is not None else (
            Path(tempfile.mkdtemp(prefix="vigil-whatif-")) / "whatif.db")
        return what_if(self.incident_log, pol, db)

    def plot_what_if(self, w: WhatIf) -> Figure:
        """The decisions of a what-if on the incidents' timeline (`detector.plots.plot_what_if`)."""
        from detector.plots import plot_what_if
        return plot_what_if(self, w)

    def plot_call_graph(self, incident: str | None = None) -> Figure:
        """The call graph around an incident's root cause, evidence on its edges and nodes
        (`detector.plots.plot_call_graph`)."""
        from detector.plots import plot_call_graph
        return plot_call_graph(self, incident)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name} {len(getattr(self, name)):,}" for name in self.tables)
        return f"Analysis({sizes}; {self.events_seen:,} events seen)"


def analyze(source: Source, config: VigilConfig | str | Path | None = None,
            baseline: Source | None = None, max_events: int = 100_000) -> Analysis:
    """Run Vigil's pipeline over `source` and return what it saw.

    `source` is a path (JSON lines, or raw text with `parsing.format`; `.gz` too), a list of
    lines (text or bytes) or a DataFrame (polars or pandas) of records, one row an event, whose
    columns the field mapping reads as it reads JSON keys. `config` is a `VigilConfig` or the
    path of a YAML file (default: the built-in defaults). `baseline`, of the same kinds and
    earlier in time, is learned first and not reported: what normal looks like.

    >>> from detector.simulate.runs import simulated_lines
    >>> lines, truth = simulated_lines(60_000, seed=3, scenario="error_burst")
    >>> a = analyze(lines)
    >>> truth.faults[0].service, a.incidents["root_cause"].to_list()
    ('payments', ['payments'])
    >>> sorted(set(a.anomalies["feature"])), len(a.dead_letters), a.events_seen
    (['error_ratio'], 0, 60000)
    """
    cfg = config if isinstance(config, VigilConfig) else (
        VigilConfig() if config is None else load_config(Path(config)))
    pipe = Pipeline(cfg)
    if baseline is not None:
        for lines, where, numbers in _batches(baseline, cfg.batch_size):
            pipe.process(lines, where, numbers)
        pipe.stats = PipelineStats()  # what the baseline did is not this run's
    keep = _Keep(max_events, pipe.services.names)
    for lines, where, numbers in _batches(source, cfg.batch_size):
        keep.add(pipe.process(lines, where, numbers))
    keep.add(pipe.finish())
    return keep.analysis(pipe, cfg)


def _batches(source: Source, size: int
             ) -> Iterator[tuple[list[bytes], str, Sequence[int] | None]]:
    """(lines, source name, line numbers) batches of any source kind."""
    if isinstance(source, str | Path):
        for batch in iter_batches(source, size):
            yield batch.lines, batch.source, batch.line_numbers
        return
    frame: Any = source
    if hasattr(frame, "to_dicts") or hasattr(frame, "to_dict"):  # polars or pandas
        rows: Iterable[dict[str, Any]] = (frame.to_dicts() if hasattr(frame, "to_dicts")
                                          else _pandas_rows(frame))
        lines = [orjson.dumps(r, default=str, option=orjson.OPT_SERIALIZE_NUMPY) for r in rows]
        where = "dataframe"
    elif isinstance(source, Sequence):
        lines = [x.encode("utf-8", "surrogateescape") if isinstance(x, str) else bytes(x)
                 for x in source]
        where = "lines"
    else:
        raise TypeError(f"analyze reads a path, a list of lines or a DataFrame, not "
                        f"{type(source).__name__}")
    for i in range(0, len(lines), size):
        yield lines[i:i + size], where, list(range(i + 1, i + 1 + len(lines[i:i + size])))


def _pandas_rows(frame: Any) -> list[dict[str, Any]]:
    """A pandas frame's records as a log's: a missing value (NaN, NA, None) is an absent key,
    and a column of integers with gaps (which pandas holds as floats) gives integers again."""
    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and v != v) or type(v).__name__ == "NAType"

    return [{k: v for k, v in r.items() if not missing(v)}
            for r in frame.convert_dtypes().to_dict(orient="records")]


class _Keep:
    """Collects the outcomes of one run into tables (events sampled as they come)."""

    def __init__(self, max_events: int, names: Sequence[str]) -> None:
        self.max_events = max_events
        self.names = names  # service id -> name (the pipeline's index: it only grows)
        self.requests: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []  # every incident update (what a what-if replays)
        self.every = 1
        self.seen = 0
        self.events: list[pl.DataFrame] = []
        self.kept = 0
        self.windows: list[pl.DataFrame] = []
        self.anomalies: list[dict[str, Any]] = []
        self.incidents: dict[str, dict[str, Any]] = {}
        self.dead: list[dict[str, Any]] = []

    def add(self, out: BatchOutcome) -> None:
        ev = out.events
        if len(ev):
            # every k-th event, k doubling whenever the sample would pass max_events
            pos = np.arange(self.seen, self.seen + len(ev))
            while self.kept + int((pos % self.every == 0).sum()) > self.max_events:
                self.every *= 2
                self.events = [f.filter(pl.col("_n") % self.every == 0) for f in self.events]
                self.kept = sum(len(f) for f in self.events)
            take = np.flatnonzero(pos % self.every == 0)
            if len(take):
                tid = ev.template_id if len(ev.template_id) == len(ev) else np.full(len(ev), -1)
                self.events.append(pl.DataFrame({
                    "_n": pos[take], "ts": ev.ts[take], "service": ev.service.gather(take),
                    "level": ev.level[take], "message": ev.message.gather(take),
                    "template_id": tid[take], "request_id": ev.request_id.gather(take),
                    "latency_ms": ev.latency_ms[take], "status": ev.status[take]}))
                self.kept += len(take)
            self.seen += len(ev)
        for w in out.windows:
            if w.services:
                self.windows.append(pl.DataFrame({
                    "window_start": [w.start] * len(w.services),
                    "window_end": [w.end] * len(w.services), "service": w.services,
                    "events": w.counts.tolist(),
                    **{f: pl.Series(f, w.values[:, j], dtype=pl.Float64).fill_nan(None)
                       for j, f in enumerate(FEATURES)}}))
        self.anomalies.extend(a.to_dict() for a in out.anomalies)
        for inc in out.incidents:
            record = inc.to_dict()
            first = self.incidents.get(inc.id, {}).get("_first_root")
            ranked = record.get("root_cause") or []
            self.incidents[inc.id] = {**record, "_first_root": first or (
                ranked[0]["service"] if ranked else record["service"])}
            self.log.append(record)
        self.dead.extend(d.to_dict() for d in out.dead)
        room = self.max_events - len(self.requests)
        n = self.names
        self.requests.extend({
            "request_id": v.request_id, "onset": v.onset, "root": n[v.root],
            "propagators": [n[p] for p in v.propagators], "kinds": kinds(v.kinds),
            "silent": v.silent, "method": v.method,
            "edges": [f"{n[a]} -> {n[b]}" for a, b in sorted(v.edges)],
        } for v in out.verdicts[:max(room, 0)])

    def analysis(self, pipe: Pipeline, cfg: VigilConfig) -> Analysis:
        events = (pl.concat(self.events).drop("_n") if self.events
                  else pl.DataFrame(schema=_EVENT_SCHEMA))
        templates = pl.DataFrame(pipe.miner.table(), orient="row", schema={
            "id": pl.Int64, "text": pl.String, "count": pl.Int64, "first_seen": pl.Float64})
        return Analysis(
            events=events,
            windows=pl.concat(self.windows) if self.windows else pl.DataFrame(),
            anomalies=_frame(self.anomalies), incidents=_incidents(self.incidents.values()),
            templates=templates, dead_letters=_frame(self.dead, ("reason", "detail", "source")),
            requests=pl.DataFrame(self.requests, schema=_REQUEST_SCHEMA),
            call_graph=_call_graph(pipe), incident_log=self.log, stats=pipe.stats, config=cfg,
            events_seen=self.seen, sample_every=self.every)


def _call_graph(pipe: Pipeline) -> pl.DataFrame:
    """caller, callee, calls of the correlator's learned edges, busiest first."""
    edges = pipe.ranker.edges if pipe.ranker is not None else {}
    names = pipe.services.names
    return pl.DataFrame([(names[a], names[b], n) for (a, b), n in edges.items()], orient="row",
                        schema={"caller": pl.String, "callee": pl.String, "calls": pl.Int64}
                        ).sort(["calls", "caller", "callee"], descending=[True, False, False])


def _frame(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame(schema=dict.fromkeys(columns or (), pl.String))
    keep = columns or list(rows[0])
    return pl.DataFrame([{k: r.get(k) for k in keep} for r in rows], infer_schema_length=None)


def _incidents(rows: Iterable[dict[str, Any]]) -> pl.DataFrame:
    """One row per incident, the ranking kept as a list of structs and its top as a column."""
    out = []
    for r in rows:
        ranking = r.get("root_cause") or []
        out.append({
            "id": r["id"], "service": r["service"], "status": r["status"],
            "opened_at": r["opened_at"], "resolved_at": r.get("resolved_at"),
            "anomaly_count": r.get("anomaly_count"), "max_score": r.get("max_score"),
            "root_cause": ranking[0]["service"] if ranking else r["service"],
            "root_cause_at_open": r.get("_first_root", r["service"]),
            "first_explanation": r.get("first_explanation"),
            "features": orjson.dumps(r.get("features") or {}).decode(),
            "ranking": orjson.dumps(ranking).decode(),
        })
    if not out:
        return pl.DataFrame(schema={"id": pl.String, "service": pl.String, "status": pl.String,
                                    "opened_at": pl.Float64, "root_cause": pl.String,
                                    "root_cause_at_open": pl.String})
    return pl.DataFrame(out, infer_schema_length=None)
