"""Static plots of an `Analysis` (matplotlib figures without pyplot: they render in CI, in any
notebook viewer and to files, with no display).

- `plot_series`: one window feature of one service over time, an EWMA band with the level
  model's weight, and the anomalies Vigil reported on it;
- `plot_incidents`: a timeline per service: each incident from opening to resolution on the row
  of its root cause, and every anomaly on the row of its service;
- `plot_templates`: counts per window of the templates that changed most around a moment (an
  incident's opening by default).

Each is a `Plot`: a matplotlib `Figure` that renders itself as PNG wherever IPython displays it
(`_repr_png_`), so a notebook shows it without `pyplot` or `%matplotlib inline`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from detector.analysis import Analysis


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
        FigureCanvasAgg(self).print_png(out)
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
