"""Root cause of a capture: split it at the onset, compare, rank.

With a baseline (a fault-free capture of the same system) the part after the onset is compared
with the baseline; without one, with the part before the onset. With no onset given, it is the
change point of the capture's own signals (`detector.rca.onset`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from detector.rca.capture import Capture
from detector.rca.compare import ServiceChange, Side, contrast
from detector.rca.onset import find_onset
from detector.rca.rank import Weights, rank
from detector.rca.tree import derive


@dataclass(slots=True)
class RcaResult:
    onset: float | None
    onset_source: str  # "given" | "change point" | "none"
    compared_with: str  # "baseline" | "before onset" | "nothing"
    ranking: list[dict[str, Any]]
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"onset": self.onset, "onset_source": self.onset_source,
                "compared_with": self.compared_with, "ranking": self.ranking,
                "counts": self.counts}

    @property
    def top(self) -> str | None:
        return self.ranking[0]["service"] if self.ranking and self.ranking[0]["score"] > 0 else None


def _side(cap: Capture, spans: pl.DataFrame, lo: float, hi: float) -> Side:
    def cut(df: pl.DataFrame) -> pl.DataFrame:
        return df.filter((pl.col("t") >= lo) & (pl.col("t") < hi))

    s, lg, m = cut(spans), cut(cap.logs), cut(cap.metrics)
    ts = [x for df in (s, lg, m) if df.height for x in (df["t"].min(), df["t"].max())
          if isinstance(x, float)]
    return Side(s, lg, m, (max(ts) - min(ts)) if ts else 0.0)


def analyze(cap: Capture, baseline: Capture | None = None, onset: float | None = None,
            weights: Weights | None = None) -> RcaResult:
    """Rank every service of `cap` by how much of the change it owns."""
    spans = derive(cap.spans)
    start, end = cap.start, cap.end
    source = "given" if onset is not None else "none"
    if onset is None:
        onset = find_onset(spans, cap.logs, cap.metrics, start, end)
        source = "change point" if onset is not None else "none"
    services = sorted(set(cap.services()) | (set(baseline.services()) if baseline else set()))
    counts = {"spans": cap.spans.height, "logs": cap.logs.height,
              "metric_rows": cap.metrics.height, "dead_letters": cap.dead_letters}
    if not math.isfinite(start):
        return RcaResult(onset, source, "nothing", rank({s: ServiceChange(s) for s in services}), counts)
    after = _side(cap, spans, onset if onset is not None else start, math.inf)
    if baseline is not None:
        bspans = derive(baseline.spans)
        before = _side(baseline, bspans, -math.inf, math.inf)
        against = "baseline"
    elif onset is not None:
        before = _side(cap, spans, -math.inf, onset)
        against = "before onset"
    else:
        return RcaResult(None, source, "nothing", rank({s: ServiceChange(s) for s in services}), counts)
    changes = contrast(before, after, services)
    return RcaResult(onset, source, against, rank(changes, weights), counts)

