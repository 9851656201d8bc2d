"""Static plots of a `NabReport` (matplotlib figures without pyplot, as `detector.plots`; each a
`Plot`, shown as PNG by IPython):

- `plot_nab_file`: one file's signal with its labelled windows as shaded spans (found: green;
  missed: red, hatched and named), the alarms (hit, false positive, later in a window, in the
  probationary period), and below it the anomaly score against the threshold;
- `plot_nab_corpora`: per corpus, hits, misses and false positives (bars), and each profile's
  score beside its held-out score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from detector.eval.nab.report import FALSE_POSITIVE, HIT, IN_WINDOW, PROBATION
from detector.eval.nab.scoring import PROFILES, probation_length
from detector.plots import Plot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from detector.eval.nab.report import NabReport

_SPAN = {  # window status: (gid, colour, hatch)
    HIT: ("window hit", "tab:green", ""),
    "missed": ("window missed", "tab:red", "//"),
    "not scored": ("window not scored", "tab:gray", ""),
}
_ALARM = {  # detection kind: (colour, marker)
    HIT: ("tab:green", "o"),
    FALSE_POSITIVE: ("tab:red", "X"),
    IN_WINDOW: ("tab:olive", "."),
    PROBATION: ("tab:gray", "."),
}


def plot_nab_file(report: NabReport, file: str) -> Figure:
    """One file of the report: its values, its labelled windows as shaded spans (a missed one
    hatched red and named "missed"), the alarms at the report's threshold by kind, and under
    it the anomaly score with the threshold and the end of the probationary period.

    >>> import tempfile
    >>> from detector.eval.nab.corpus import write_example
    >>> from detector.eval.nab.report import nab_report
    >>> r = nab_report(*write_example(tempfile.mkdtemp()))
    >>> fig = plot_nab_file(r, "subtle")
    >>> [p.get_gid() for p in fig.axes[0].patches], len(fig.axes[0].lines[0].get_xdata())
    (['window missed'], 500)
    """
    s = report.find(file)
    name = s.name.split("/", 1)[-1]
    mine = (pl.col("corpus") == s.corpus) & (pl.col("file") == name)
    windows = report.windows.filter(mine)
    alarms = report.detections.filter(mine)
    counts = report.files.filter(mine).row(0, named=True)
    scores = report.scores[report.series.index(s)]
    t = np.array(s.timestamps, dtype="datetime64[us]")
    fig = Plot(figsize=(11, 4.4))
    ax, low = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot(t, s.values, lw=0.7, color="tab:blue", label="value")
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for w in windows.iter_rows(named=True):
        gid, colour, hatch = _SPAN[w["status"]]
        span = ax.axvspan(w["start"], w["end"], facecolor=colour, alpha=0.2, hatch=hatch,
                          edgecolor=colour if hatch else "none", lw=0)
        span.set_gid(gid)
        if w["status"] == "missed":
            ax.text(w["start"], 0.97, " missed", transform=top, color="tab:red", fontsize=8,
                    va="top", fontweight="bold")
    handles: list[object] = [Patch(facecolor=c, alpha=0.3, hatch=h, edgecolor=c if h else "none",
                                   label=f"{gid} ({int((windows['status'] == status).sum())})")
                             for status, (gid, c, h) in _SPAN.items()
                             if (windows["status"] == status).any()]
    for kind, (colour, marker) in _ALARM.items():
        these = alarms.filter(pl.col("kind") == kind)
        if not len(these):
            continue
        x = these["timestamp"].to_numpy()
        handles.append(ax.scatter(x, these["value"].to_numpy(), color=colour, marker=marker,
                                  s=46 if marker != "." else 60, zorder=3, edgecolor="black",
                                  linewidths=0.4, label=f"{kind} ({len(these)})"))
        low.scatter(x, these["score"].to_numpy(), color=colour, marker=marker, s=30, zorder=3)
    start = t[min(probation_length(len(t)), len(t) - 1)]
    for a in (ax, low):
        a.axvline(start, color="gray", lw=0.8, ls="--")
    low.plot(t, scores, lw=0.6, color="tab:purple")
    low.axhline(report.threshold, color="tab:red", lw=0.8, ls=":")
    low.set_ylabel("score", fontsize=8)
    low.set_ylim(0, max(1.0, float(np.max(scores, initial=0.0))) * 1.05)
    low.set_title(f"score; dotted: the threshold {report.threshold:.3g} ({report.profile}); "
                  "dashed: the end of the probationary period", loc="left", fontsize=7)
    found = counts["hits"]
    scored = counts["hits"] + counts["misses"]
    fp = counts["false_positives"]
    ax.set_title(f"{s.name}: {found}/{scored} windows found, {fp} false "
                 f"positive{'' if fp == 1 else 's'} ({counts[f'{report.profile}_points']:+.2f} "
                 f"points, {report.profile})", fontsize=10)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def plot_nab_corpora(report: NabReport) -> Figure:
    """Per corpus: hits, misses and false positives at the report's threshold (bars, left);
    each profile's score at its own threshold, with the held-out score (the threshold chosen on
    the other corpora) as a diamond on its bar (right; corpora with windows only, the dotted
    line the whole corpus's score of the report's profile).

    >>> import tempfile
    >>> from detector.eval.nab.corpus import write_example
    >>> from detector.eval.nab.report import nab_report
    >>> fig = plot_nab_corpora(nab_report(*write_example(tempfile.mkdtemp())))
    >>> len(fig.axes[0].patches), len(fig.axes[1].patches)  # 3 counts and 3 profiles, 2 corpora
    (6, 6)
    """
    c = report.corpora
    names = c["corpus"].to_list()
    fig = Plot(figsize=(12, 4.0))
    counts, scores = fig.subplots(1, 2)
    x = np.arange(len(names))
    width = 0.27
    for k, (col, colour) in enumerate((("hits", "tab:green"), ("misses", "tab:red"),
                                       ("false_positives", "tab:orange"))):
        bars = counts.bar(x + (k - 1) * width, c[col].to_numpy(), width, color=colour,
                          label=col.replace("_", " "))
        counts.bar_label(bars, fontsize=7)
    counts.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    counts.set_title(f"windows found and missed, false alarms ({report.profile} threshold)",
                     fontsize=9)
    counts.legend(fontsize=7)
    scored = c.filter(pl.col(f"{report.profile}_held_out").is_not_null())
    y = np.arange(len(scored))
    for k, profile in enumerate(PROFILES):
        offset = (k - (len(PROFILES) - 1) / 2) * width
        scores.bar(y + offset, scored[profile].to_numpy(), width, label=profile, alpha=0.8)
        scores.scatter(y + offset, scored[f"{profile}_held_out"].to_numpy(), marker="D",
                       color="black", s=18, zorder=3,
                       label="held out" if k == 0 else None)
    overall = report.result(report.profile).score
    scores.axhline(overall, color="black", lw=0.8, ls=":",
                   label=f"all files, {report.profile} {overall:.1f}")
    scores.set_xticks(y, scored["corpus"].to_list(), rotation=20, ha="right", fontsize=8)
    scores.set_ylim(min(0.0, float(np.nanmin(scored.select(list(PROFILES)).to_numpy(),
                                              initial=0.0))), 100)
    scores.set_title("NAB score per corpus (0: never fires, 100: perfect)", fontsize=9)
    scores.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"{report.detector!r}, {report.rule}", fontsize=10)
    fig.tight_layout()
    return fig
