"""A person's reading of an `RcaResult`: what broke, why, and what only passed it on."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from detector.rca.analyze import RcaResult

_SIGNALS = (
    ("latency", "own (exclusive) time"), ("network", "call gaps on its edges"),
    ("errors", "errors that start here"), ("templates", "new log templates"),
    ("metrics", "pod metrics"), ("cut", "requests cut short"), ("load", "incoming requests"),
)


def when(ts: float | None) -> str:
    """RFC 3339 text of an epoch time ('-' for None).

    >>> when(1795435200.5)
    '2026-11-23T12:00:00.500Z'
    """
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def why(row: dict[str, Any]) -> str:
    """The signals behind one ranked service, strongest first, as one line.

    >>> why({"service": "db", "score": 2.0, "evidence": {"latency": 1.5, "network": 0.5,
    ...      "slowest_operation": {"name": "Query", "self_ms_before": 2.0,
    ...                            "self_ms_after": 9.0}}})
    'own (exclusive) time x4.5 (Query 2.0 -> 9.0 ms); call gaps on its edges x1.6'
    """
    ev = row["evidence"]
    parts = []
    for key, label in sorted(_SIGNALS, key=lambda kv: -float(ev.get(kv[0], 0.0))):
        v = float(ev.get(key, 0.0))
        if v <= 0.05:
            continue
        text = f"{label} x{math.exp(v):.1f}" if key != "cut" else label
        if key == "latency" and "slowest_operation" in ev:
            op = ev["slowest_operation"]
            text += f" ({op['name']} {op['self_ms_before']:.1f} -> {op['self_ms_after']:.1f} ms)"
        elif key == "network" and "slowest_edge" in ev:
            text += f" (worst {ev['slowest_edge']})"
        elif key == "errors" and "error_rate" in ev:
            er = ev["error_rate"]
            text = f"{label}: {er['before']:.1%} -> {er['after']:.1%} of calls"
        elif key == "metrics" and "metric" in ev:
            m = ev["metric"]
            text += f" ({m['name']} {m['before']:.3g} -> {m['after']:.3g})"
        elif key == "cut" and "cut_short" in ev:
            text += f" ({ev['cut_short']})"
        parts.append(text)
    return "; ".join(parts) or "no change of its own"


def explain(res: RcaResult, top: int = 3) -> list[str]:
    """A few lines: the onset, what it was compared with, the top candidates and why."""
    lines = [f"onset {when(res.onset)} ({res.onset_source}); compared with {res.compared_with}; "
             f"{res.counts.get('spans', 0):,} spans, {res.counts.get('logs', 0):,} log records, "
             f"{res.counts.get('metric_rows', 0):,} metric rows"]
    if res.top is None:
        lines.append("no service changed on its own: no root cause to name")
        return lines
    for i, row in enumerate(res.ranking[:top], 1):
        lines.append(f"{i}. {row['service']} (score {row['score']:.2f}): {why(row)}")
    return lines
