"""Static plots of an `Analysis` (matplotlib figures without pyplot: they render in CI, in any
notebook viewer and to files, with no display).

- `plot_series`: one window feature of one service over time, an EWMA band with the level
  model's weight, and the anomalies Vigil reported on it;
- `plot_incidents`: a timeline per service: each incident from opening to resolution on the row
  of its root cause, and every anomaly on the row of its service;
- `plot_templates`: counts per window of the templates that changed most around a moment (an
  incident's opening by default);
- `plot_call_graph`: the learned call graph around an incident's root cause, the failing
  requests' path and counts on its edges and the ranking's evidence on its nodes;
- `plot_what_if`: a remediation what-if over the history: each incident as a bar, and on it
  every decision the engine would have taken (steps, climbs, guards, pages, recoveries);
- `plot_metric`, `plot_baselines`: a metric series judged by `from_prometheus`/`from_series`,
  its baseline band and anomalies, and where each baseline fires.

(NAB's per-file and per-corpus plots are in `detector.eval.nab.plots`.)

Each is a `Plot`: a matplotlib `Figure` that renders itself as PNG wherever IPython displays it
(`_repr_png_`), so a notebook shows it without `pyplot` or `%matplotlib inline`.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import polars as pl
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from detector.analysis import Analysis
    from detector.incidents.whatif import WhatIf


class Plot(Figure):
    """A `Figure` that IPython shows as a PNG (`_repr_png_`); `savefig` works as on any figure.

    >>> fig = Plot(figsize=(2, 1))
    >>> _ = fig.subplots().plot([0, 1], [1, 0])
    >>> fig._repr_png_()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """

    def _repr_png_(self) -> bytes:
        import io

        from matplotlib.backends.backend_agg import FigureCanvasAgg

        out = io.BytesIO()
        FigureCanvasAgg(self).print_png(out)  # type: ignore[no-untyped-call]
        return out.getvalue()


def plot_series(a: Analysis, service: str, feature: str) -> Figure:
    """`feature` of `service` per window, its EWMA band (mean ± 3 spreads, with the level model's
    alpha: the shape of the baseline, not the calibrated judge) and the anomalies reported.

    >>> from detector import analyze
    >>> from detector.simulate.runs import simulated_lines
    >>> a = analyze(simulated_lines(60_000, seed=3, scenario="error_burst")[0])
    >>> fig = plot_series(a, "payments", "error_ratio")
    >>> [len(line.get_xdata()) > 10 for line in fig.axes[0].lines][:1], len(fig.axes[0].collections)
    ([True], 2)
    """
    if feature not in a.windows.columns:
        raise ValueError(f"no window feature {feature!r}; the features are "
                         f"{', '.join(c for c in a.windows.columns if c not in _WINDOW_KEYS)}")
    rows = a.windows.filter(pl.col("service") == service).sort("window_start")
    if not len(rows):
        raise ValueError(f"no windows of service {service!r}")
    t = rows["window_end"].to_numpy()
    x = rows[feature].to_numpy().astype(np.float64)
    mean, std = _ewma_band(x, a.config.scoring.alpha)
    fig = Plot(figsize=(10, 3.2))
    ax = fig.subplots()
    ax.plot(t - t[0], x, lw=1, color="tab:blue", label=feature)
    ax.fill_between(t - t[0], mean - 3 * std, mean + 3 * std, color="tab:blue", alpha=0.15,
                    label=f"EWMA ± 3 sd (alpha {a.config.scoring.alpha:g})")
    hits = a.anomalies.filter((pl.col("service") == service) & (pl.col("feature") == feature))
    ax.scatter(hits["window_end"].to_numpy() - t[0], hits["value"].to_numpy(), color="tab:red",
               zorder=3, s=18, label=f"anomalies ({len(hits)})")
    ax.set_xlabel("seconds from the first window")
    ax.set_title(f"{service}: {feature}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_incidents(a: Analysis) -> Figure:
    """One row per service: each incident as a bar from opening to resolution (or the last
    window) on the row of its root cause, labelled with its id and size; every anomaly as a dot
    on the row of its service.

    >>> from detector import analyze
    >>> from detector.simulate.runs import simulated_lines
    >>> a = analyze(simulated_lines(60_000, seed=3, scenario="error_burst")[0])
    >>> fig = plot_incidents(a)
    >>> len(fig.axes[0].patches), [t.get_text() for t in fig.axes[0].get_yticklabels()][:2]
    (1, ['cart', 'catalog'])
    """
    services = sorted(set(a.windows["service"].to_list()) if len(a.windows) else set())
    row = {s: i for i, s in enumerate(services)}
    t0 = float(a.windows["window_start"].to_numpy().min()) if len(a.windows) else 0.0
    end = float(a.windows["window_end"].to_numpy().max()) if len(a.windows) else 1.0
    fig = Plot(figsize=(10, 0.5 * max(len(services), 2) + 1.2))
    ax = fig.subplots()
    for inc in a.incidents.iter_rows(named=True):
        y = row.setdefault(inc["root_cause"], len(row))
        stop = inc.get("resolved_at") or end
        ax.barh(y, stop - inc["opened_at"], left=inc["opened_at"] - t0, height=0.6,
                color="tab:orange", alpha=0.6)
        ax.text(inc["opened_at"] - t0, y + 0.35, f"{inc['id']} ({inc['anomaly_count']} anomalies, "
                f"{inc['status']})", fontsize=7)
    if len(a.anomalies):
        ys = [row.setdefault(s, len(row)) for s in a.anomalies["service"].to_list()]
        ax.scatter(a.anomalies["window_end"].to_numpy() - t0, ys, s=10, color="tab:red",
                   zorder=3)
    ax.set_yticks(range(len(row)), list(row))
    ax.set_xlim(0, end - t0)
    ax.set_xlabel("seconds from the first window")
    ax.set_title("incidents (bars, on the root cause's row) and anomalies (dots)")
    fig.tight_layout()
    return fig


def plot_templates(a: Analysis, at: float | None = None, top: int = 6,
                   span: float = 300.0) -> Figure:
    """Counts per window (scaled back from the event sample) of the `top` templates whose share
    changed most between the `span` seconds before and after `at` (default: the first
    incident's opening).

    >>> from detector import analyze
    >>> from detector.simulate.runs import simulated_lines
    >>> a = analyze(simulated_lines(60_000, seed=3, scenario="error_burst")[0])
    >>> fig = plot_templates(a, top=3)
    >>> len(fig.axes[0].lines) - 1, fig.axes[0].lines[0].get_label().startswith("#")  # + the onset
    (3, True)
    """
    if at is None:
        if not len(a.incidents):
            raise ValueError("no incident: say at= which moment to look around")
        at = float(a.incidents["opened_at"].to_numpy().min())
    width = a.config.window.seconds
    ev = a.events.filter((pl.col("ts") >= at - span) & (pl.col("ts") < at + span))
    if not len(ev):
        raise ValueError(f"no events within {span:g} s of {at}")
    share = (ev.with_columns(after=pl.col("ts") >= at)
               .group_by("template_id", "after").len()
               .with_columns(pl.col("len") / pl.col("len").sum().over("after"))
               .pivot(on="after", index="template_id", values="len").fill_null(0.0))
    before = share["false"] if "false" in share.columns else pl.Series(np.zeros(len(share)))
    after = share["true"] if "true" in share.columns else pl.Series(np.zeros(len(share)))
    share = share.with_columns(change=(after - before).abs()).sort("change", descending=True)
    chosen = [int(t) for t in share["template_id"].head(top).to_list()]
    text = dict(zip(a.templates["id"].to_list(), a.templates["text"].to_list(), strict=True))
    fig = Plot(figsize=(10, 3.6))
    ax = fig.subplots()
    edges = np.arange(at - span, at + span + width, width)
    for tid in chosen:
        ts = ev.filter(pl.col("template_id") == tid)["ts"].to_numpy()
        counts, _ = np.histogram(ts, bins=edges)
        label = f"#{tid} {text.get(tid, '?')[:50]}"
        ax.plot(edges[:-1] - at, counts * a.sample_every, lw=1.2, label=label)
    ax.axvline(0.0, color="black", lw=0.8, ls="--")
    ax.set_xlabel(f"seconds from {at:.0f}")
    ax.set_ylabel(f"events per {width:g} s window")
    ax.set_title("the templates that changed most around the moment")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def plot_call_graph(a: Analysis, incident: str | None = None) -> Figure:
    """The call graph the correlator learned (callers above callees, every edge with its calls),
    and an incident's evidence on it: the anomalous requests rooted in its root cause during
    the incident, counted on each edge of their failing path (caller and callee both on it:
    the services they propagated through, down to the root), the root cause in red with the
    ranking's evidence, the services it propagated to in orange. `incident`: an id (default:
    the first to open).

    >>> from detector import analyze
    >>> from detector.simulate.runs import simulated_lines
    >>> a = analyze(simulated_lines(60_000, seed=3, scenario="error_burst")[0])
    >>> fig = plot_call_graph(a)
    >>> sorted(t.get_text() for t in fig.axes[0].texts if "failing" in t.get_text())
    ['539 failing (error 538, latency 1)', '539 failing (error 538, latency 1)']
    """
    if not len(a.call_graph):
        raise ValueError("no call graph: the input has no request ids to correlate")
    inc = _incident(a, incident)
    root = inc["root_cause"]
    ranking = orjson.loads(inc["ranking"])
    evidence: dict[str, Any] = next((r.get("evidence", {}) for r in ranking if r["service"] == root), {})
    lo = inc["opened_at"] - a.config.correlation.explain_gap
    hi = (inc["resolved_at"] or float("inf")) + a.config.correlation.explain_gap
    mine = a.requests.filter((pl.col("root") == root) & pl.col("onset").is_between(lo, hi))
    path: dict[tuple[str, ...], tuple[int, Counter[str]]] = {}
    for row in mine.iter_rows(named=True):
        calls = [tuple(e.split(" -> ")) for e in row["edges"]]
        for caller, callee in _towards(root, calls):
            n, k = path.get((caller, callee), (0, Counter()))
            k.update(row["kinds"])
            path[(caller, callee)] = (n + 1, k)
    edges = list(a.call_graph.iter_rows())
    pos = _layers([(c, d) for c, d, _ in edges])
    fig = Plot(figsize=(12, 1.1 * (max(-y for _, y in pos.values()) + 1) + 1.0))
    ax, side = fig.subplots(1, 2, width_ratios=[3, 1.2])
    spread = set(evidence.get("propagated_to") or ())
    for caller, callee, calls in edges:
        hot = path.get((caller, callee))
        (x0, y0), (x1, y1) = pos[caller], pos[callee]
        level = y0 == y1  # a call within a layer: an arc, so it passes no node
        ax.annotate("", xy=(x1, y1 + (0 if level else 0.12)), xytext=(x0, y0 - (0 if level else 0.12)),
                    arrowprops={"arrowstyle": "-|>", "color": "tab:red" if hot else "0.6",
                                "lw": 2.5 if hot else 1.0, "shrinkA": 12, "shrinkB": 12,
                                "connectionstyle": f"arc3,rad={0.35 if level else 0.0}"})
        label = (f"{hot[0]} failing ({', '.join(f'{k} {n}' for k, n in hot[1].most_common())})"
                 if hot else f"{calls} calls")
        bend = 0.35 if level else 0.0  # the label sits on the arc's middle
        ax.text((x0 + x1) / 2 + bend / 2 * (y1 - y0), (y0 + y1) / 2 - bend / 2 * (x1 - x0),
                label, fontsize=7, ha="center", color="tab:red" if hot else "0.35",
                bbox={"boxstyle": "round", "fc": "white", "ec": "none", "alpha": 0.8})
    for name, (x, y) in pos.items():
        color = "tab:red" if name == root else "tab:orange" if name in spread else "0.85"
        ax.text(x, y, name, ha="center", va="center", fontsize=9, color="black",
                bbox={"boxstyle": "round", "fc": color, "ec": "0.3"})
    ys = [y for _, y in pos.values()]
    ax.set_xlim(-0.6, max(x for x, _ in pos.values()) + 0.6)
    ax.set_ylim(min(ys) - 0.6, 0.5)
    ax.axis("off")
    ax.set_title(f"{inc['id']}: root cause {root} (red), the failing requests' path (red edges)",
                 fontsize=9)
    side.axis("off")
    side.text(0.0, 1.0, _evidence_text(root, evidence), transform=side.transAxes, fontsize=7,
              va="top", family="monospace", wrap=True)
    side.set_title("the ranking's evidence", fontsize=9)
    fig.tight_layout()
    return fig


_MARKS = {  # verdict -> (marker, colour, legend)
    "dry_run": ("^", "tab:green", "would act"),
    "not_better": ("v", "tab:orange", "no better: climbs"),
    "suppressed": ("X", "tab:red", "suppressed by a guard"),
    "escalated": ("s", "tab:purple", "page"),
    "verified": ("*", "tab:blue", "recovered"),
}


def plot_what_if(a: Analysis, w: WhatIf) -> Figure:
    """Each incident as a bar (opened to resolved) on its own row, named by the root cause it
    opened with; on it, at event time, every decision of the what-if `w` (`Analysis.what_if`):
    a step that would have run (labelled with the step and target), a climb, a guard's
    suppression (labelled with the guard), a page, a recovery.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from detector import analyze
    >>> from detector.simulate.runs import simulated_lines
    >>> from remediation.policy import parse_policy
    >>> a = analyze(simulated_lines(60_000, seed=3, scenario="error_burst")[0])
    >>> w = a.what_if(parse_policy("rules: [{name: r, match: {kind: [error]}, "
    ...                            "ladder: [{name: restart, hook: log, wait_s: 60}]}]"))
    >>> fig = plot_what_if(a, w)
    >>> sorted(t.get_text() for t in fig.axes[0].texts)
    ['restart payments']
    """
    rows = a.incidents.sort("opened_at")
    if not len(rows):
        raise ValueError("no incident in this analysis: nothing for a policy to decide on")
    t0 = float(rows["opened_at"].min())  # type: ignore[arg-type]
    end = float(a.windows["window_end"].max()) if len(a.windows) else t0 + 1  # type: ignore[arg-type]
    y = {r["id"]: i for i, r in enumerate(rows.iter_rows(named=True))}
    fig = Plot(figsize=(11, 0.9 * len(y) + 1.6))
    ax = fig.subplots()
    for r in rows.iter_rows(named=True):
        stop = r.get("resolved_at") or end
        ax.barh(y[r["id"]], (stop - r["opened_at"]) / 60, left=(r["opened_at"] - t0) / 60,
                height=0.5, color="0.85", edgecolor="0.5")
    table = w.table()
    for verdict, (marker, color, legend) in _MARKS.items():
        part = table.filter((pl.col("verdict") == verdict) & pl.col("incident").is_in(list(y)))
        if not len(part):
            continue
        xs = (part["ts"].to_numpy() - t0) / 60
        ys = [y[i] for i in part["incident"].to_list()]
        ax.scatter(xs, ys, marker=marker, color=color, s=60, zorder=3, label=legend)
        for x, yy, row in zip(xs, ys, part.iter_rows(named=True), strict=True):
            text = (f"{row['step']} {row['target']}" if verdict == "dry_run"
                    else ("no rule matches" if row["guard"] == "policy" else row["guard"])
                    if verdict == "suppressed" else None)
            if text:  # steps above the bar, guards below, slanted so neighbours don't collide
                up = verdict == "dry_run"
                ax.text(x, yy + (-0.32 if up else 0.32), text, fontsize=7, color=color,
                        rotation=20, ha="left", va="bottom" if up else "top")
    ax.set_yticks(range(len(y)), [f"{r['root_cause_at_open']} ({r['id'][-6:]})"
                                  for r in rows.iter_rows(named=True)])
    ax.set_ylim(len(y) - 0.4, -0.8)
    ax.set_xlabel("minutes from the first incident's opening")
    ax.set_title(f"what-if: {len(w.actions)} step(s) would have run for {len(y)} incident(s)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlim(-0.5, (end - t0) / 60 + 1)
    fig.tight_layout()
    return fig


def _incident(a: Analysis, incident: str | None) -> dict[str, Any]:
    if not len(a.incidents):
        raise ValueError("no incident in this analysis")
    rows = a.incidents.sort("opened_at")
    if incident is not None:
        rows = rows.filter(pl.col("id") == incident)
        if not len(rows):
            raise ValueError(f"no incident {incident!r}; the incidents are "
                             f"{', '.join(a.incidents['id'].to_list())}")
    return rows.row(0, named=True)


def _towards(root: str, edges: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """The edges of one request that lead to `root`: calls into it or into a service that
    reaches it (its path from the entry), not the calls it or its healthy siblings made.

    >>> _towards("b", [("a", "b"), ("a", "c"), ("b", "d"), ("e", "a")])
    [('a', 'b'), ('e', 'a')]
    """
    up = {root}
    grew = True
    while grew:
        grew = False
        for caller, callee in edges:
            if callee in up and caller not in up:
                up.add(caller)
                grew = True
    return [e for e in edges if e[1] in up and e[0] in up and e[1] != e[0]]


def _layers(edges: list[tuple[str, str]]) -> dict[str, tuple[float, float]]:
    """(x, y) of each service: y = minus its depth below the entry services (those nobody
    calls; shortest path), x = its place in its layer, layers centred on each other."""
    nodes = sorted({n for e in edges for n in e})
    callers: dict[str, set[str]] = {n: set() for n in nodes}
    for c, d in edges:
        callers[d].add(c)
    depth = {n: 0 for n in nodes if not callers[n] - {n}} or {nodes[0]: 0}
    frontier = sorted(depth)
    while frontier:
        nxt = sorted({d for c, d in edges if c in frontier and d not in depth})
        depth.update(dict.fromkeys(nxt, max(depth[f] for f in frontier) + 1))
        frontier = nxt
    for n in nodes:  # in a cycle with no entry
        depth.setdefault(n, max(depth.values()) + 1)
    layers: dict[int, list[str]] = {}
    for n in nodes:
        layers.setdefault(depth[n], []).append(n)
    width = max(len(v) for v in layers.values())
    pos: dict[str, tuple[float, float]] = {}
    def under(n: str) -> float:
        xs = [pos[c][0] for c in callers[n] if c in pos]
        return sum(xs) / len(xs) if xs else 0.0

    for level in sorted(layers):  # each layer ordered by where its callers are (fewer crossings)
        names = sorted(layers[level], key=lambda n: (under(n), n))
        pos.update({n: ((width - len(names)) / 2 + i, -float(level)) for i, n in enumerate(names)})
    return pos


def _evidence_text(root: str, ev: dict[str, Any]) -> str:
    """The ranking's evidence for the root cause, a line per fact it has."""
    lines = [f"{root}: {ev.get('requests', 0)} anomalous requests",
             f"rooted here ({100 * ev.get('share_of_anomalous_requests', 0.0):.0f}% of all)"]
    if ev.get("kinds"):
        lines.append(f"kinds: {', '.join(ev['kinds'])}")
    for key, unit in (("error_rate", ""), ("requests_per_second", "/s")):
        if isinstance(ev.get(key), dict):
            lines.append(f"{key.replace('_', ' ')}: {ev[key]['before']:g}{unit} -> "
                         f"{ev[key]['after']:g}{unit}")
    if ev.get("propagated_to"):
        lines.append(f"propagated to: {', '.join(ev['propagated_to'])}")
    if ev.get("features"):
        lines.append("window anomalies: " + ", ".join(f"{f} x{n}" for f, n in ev["features"].items()))
    return "\n".join(lines)


_WINDOW_KEYS = ("window_start", "window_end", "service", "events")


def _ewma_band(x: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Running EWMA mean and spread of `x` before each value (NaN values skipped)."""
    mean, std = np.full(len(x), np.nan), np.full(len(x), np.nan)
    m, v, seen = 0.0, 0.0, 0
    for i, value in enumerate(x):
        if seen:
            mean[i], std[i] = m, np.sqrt(v)
        if np.isnan(value):
            continue
        a = max(alpha, 1.0 / (seen + 1))
        d = value - m
        m += a * d
        v = (1 - a) * (v + a * d * d) if seen else 0.0
        seen += 1
    return mean, std


# ---- metric series (`detector.series_analysis`) --------------------------------------------
if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.axes import Axes

    from detector.series_analysis import Comparison, SeriesAnalysis


def plot_metric(a: SeriesAnalysis, series: int, windows: Sequence[tuple[float, float]] = ()
                ) -> Figure:
    """One series of a `SeriesAnalysis`: its values, the baseline band (mean ± 3 spreads of the
    member that spoke, where the series is past warm-up), the anomalies reported and, shaded,
    labelled `windows` (epoch-second pairs).

    >>> from detector.series_analysis import from_series
    >>> x = np.random.default_rng(0).normal(100.0, 2.0, 400)
    >>> x[300] = 160.0
    >>> a = from_series(pl.DataFrame({"timestamp": 60.0 * np.arange(400), "value": x}))
    >>> fig = plot_metric(a, 0, [(17_000.0, 19_000.0)])
    >>> len(fig.axes[0].lines), len(fig.axes[0].collections), len(fig.axes[0].patches)
    (1, 2, 1)
    """
    rows = a.points.filter(pl.col("series") == series).sort("ts")
    if not len(rows):
        raise ValueError(f"no points of series {series}")
    t = _datetimes(rows["ts"].to_numpy())
    ready = rows["ready"].to_numpy()
    mean = np.where(ready, rows["baseline_mean"].to_numpy(), np.nan)
    std = np.where(ready, rows["baseline_std"].to_numpy(), np.nan)
    fig = Plot(figsize=(10, 3.4))
    ax = fig.subplots()
    ax.plot(t, rows["value"].to_numpy(), lw=0.8, color="tab:blue", label="value")
    ax.fill_between(t, mean - 3 * std, mean + 3 * std, color="tab:blue", alpha=0.15,
                    label="baseline ± 3 spread (the member that spoke)")
    hits = rows.filter("anomaly")
    ax.scatter(_datetimes(hits["ts"].to_numpy()), hits["value"].to_numpy(), color="tab:red",
               zorder=3, s=22, label=f"anomalies ({len(hits)})")
    _shade(ax, windows)
    ax.set_title(f"{rows['labels'][0]} ({a.query.baseline} baseline)", fontsize=9)
    ax.set_ylabel(a.query.name)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)  # beside the data
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def plot_baselines(c: Comparison, series: int, windows: Sequence[tuple[float, float]] = ()
                   ) -> Figure:
    """Where each baseline of a `Comparison` fires on one series: the values above, a row per
    baseline below with a mark at each of its anomalies (labelled `windows` shaded in both).

    >>> from detector.series_analysis import from_series
    >>> x = np.random.default_rng(0).normal(100.0, 2.0, 400)
    >>> x[300] = 160.0
    >>> c = from_series(pl.DataFrame({"timestamp": 60.0 * np.arange(400), "value": x})).compare()
    >>> fig = plot_baselines(c, 0)
    >>> [t.get_text() for t in fig.axes[1].get_yticklabels()]
    ['default (2)', 'level (1)', 'periodic (1)', 'seasonal (1)']
    """
    first = next(iter(c.analyses.values()))
    rows = first.points.filter(pl.col("series") == series).sort("ts")
    if not len(rows):
        raise ValueError(f"no points of series {series}")
    fig = Plot(figsize=(10, 2.6 + 0.35 * len(c.analyses)))
    top, bottom = fig.subplots(2, 1, sharex=True,
                               gridspec_kw={"height_ratios": [3, max(1, len(c.analyses)) * 0.5]})
    top.plot(_datetimes(rows["ts"].to_numpy()), rows["value"].to_numpy(), lw=0.8,
             color="tab:blue")
    top.set_title(rows["labels"][0], fontsize=9)
    names = []
    for y, (name, a) in enumerate(c.analyses.items()):
        hits = a.anomalies.filter(pl.col("series") == series)
        bottom.scatter(_datetimes(hits["window_end"].to_numpy()), np.full(len(hits), y),
                       marker="|", s=200, color=f"C{y}")
        names.append(f"{name} ({len(hits)})")
    bottom.set_yticks(range(len(names)), names)
    bottom.set_ylim(-0.6, len(names) - 0.4)
    bottom.invert_yaxis()
    for ax in (top, bottom):
        _shade(ax, windows)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def _datetimes(ts: np.ndarray) -> np.ndarray:
    """Epoch seconds as numpy datetimes (UTC), which matplotlib places on a date axis."""
    return np.round(np.asarray(ts, dtype=np.float64) * 1e6).astype("datetime64[us]")


def _shade(ax: Axes, windows: Sequence[tuple[float, float]]) -> None:
    for i, (lo, hi) in enumerate(windows):
        ax.axvspan(_datetimes(np.array([lo]))[0], _datetimes(np.array([hi]))[0], color="tab:orange",
                   alpha=0.18, label="labelled window" if i == 0 else None)
