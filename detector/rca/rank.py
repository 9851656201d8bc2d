"""From per-service changes to a ranking: own change scores, passed-on change does not.

The score of a service sums the rises of its own signals (`detector.rca.compare`): exclusive
latency, the gap on its edges, errors that start at it, and — at lower weights, because they
also move with traffic and with what a service relays — its own new log templates and its pod
metrics. Drops count for nothing, except that a service whose received calls fell while its
callers' did not is where requests were cut short (`return` / `exception` faults that remove work
rather than add errors): that counts at `weights.cut`.

The weights of network, metrics and cut were chosen by leave-one-fault-type-out cross-validation
on the Online Boutique cases (a grid of 18; the held-out type's choice was this one in 9 of 10
folds; docs/evaluation.md); latency and errors stay at 1 (they are the scale), templates at a
quarter (no logs in that set to choose it on). Nothing is tuned per case or per service.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from detector.rca.compare import ServiceChange

CONFIDENCE_TEMPERATURE = 0.5


@dataclass(frozen=True, slots=True)
class Weights:
    latency: float = 1.0
    network: float = 0.5
    errors: float = 1.0
    templates: float = 0.25
    metrics: float = 0.1
    cut: float = 0.5
    load: float = 1.0


def score(c: ServiceChange, w: Weights) -> float:
    """One service's score: the weighted sum of its signals' rises."""
    return (w.latency * max(c.latency, 0.0) + w.network * max(c.network, 0.0)
            + w.errors * max(c.errors, 0.0) + w.templates * max(c.templates, 0.0)
            + w.metrics * max(c.metrics, 0.0) + w.cut * c.cut + w.load * c.load)


def rank(changes: dict[str, ServiceChange], w: Weights | None = None) -> list[dict[str, Any]]:
    """Every service, best candidate first, with its score and evidence.

    >>> from detector.rca.compare import ServiceChange
    >>> r = rank({"web": ServiceChange("web", network=0.2),
    ...           "db": ServiceChange("db", latency=2.0, network=1.5)})
    >>> [(x["service"], x["score"]) for x in r]
    [('db', 2.75), ('web', 0.1)]
    """
    w = w or Weights()
    rows: list[dict[str, Any]] = []
    for svc, c in changes.items():
        evidence: dict[str, Any] = {k: round(getattr(c, k), 3) for k in
                                    ("latency", "network", "errors", "templates", "metrics",
                                     "cut", "load")}
        evidence.update(c.detail)
        rows.append({"service": svc, "score": round(score(c, w), 4), "evidence": evidence})
    rows.sort(key=lambda r: (-float(r["score"]), str(r["service"])))
    # Confidence: a softmax of the scores (temperature 0.5 in log-ratio units), so a candidate
    # one unit (about x2.7) ahead of the next is about 88% sure and a tie splits evenly.
    if rows:
        top = float(rows[0]["score"])
        weight = [math.exp((float(r["score"]) - top) / CONFIDENCE_TEMPERATURE) for r in rows]
        norm = sum(weight)
        for r, wt in zip(rows, weight, strict=True):
            r["confidence"] = round(wt / norm, 4)
    return rows
