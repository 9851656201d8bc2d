"""Each stage's whole state as plain JSON data, for the snapshots a task writes to the state
topic with the source offsets they correspond to (`runtime/stage_tasks.py`), and loads on any
host that takes the task over.

Unlike a `vigil consume` checkpoint, a merge snapshot keeps its open windows and an incidents
snapshot its open incidents: a new owner resumes at the snapshot's offsets and replays, so
nothing is missing and, once downstream dedupes by key, nothing is counted twice. A snapshot is
input like any other: one that does not load raises `SnapshotError` and the task starts cold.

>>> from detector.config import VigilConfig
>>> from detector.topology.merge import MergeStage
>>> from detector.windows.partials import WindowPartial
>>> b = MergeStage(VigilConfig(), sources=["logs/0"])
>>> b.add("logs/0", [WindowPartial(0, "cart", 60, 1.0, 0.0, 0.0, 0.5, 9.5, {})], 9.5)
>>> c = MergeStage(VigilConfig(), sources=["logs/0"])
>>> load_merge(c, merge_state(b))
>>> c.add("logs/0", [], 16.0)
>>> [(r.start, r.counts.tolist()) for r in c.close_ready().rows]
[(0.0, [60])]
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import Any

import numpy as np

from detector.correlation.chains import RequestVerdict
from detector.events import Incident
from detector.incidents.rootcause import Evidence
from detector.topology.incidents import IncidentStage
from detector.topology.ingest import IngestStage
from detector.topology.merge import MergeStage, ScoredWindow
from detector.windows.aggregate import WindowAggregator
from detector.windows.partials import WindowPartial

VERSION = 1


class SnapshotError(ValueError):
    """A snapshot that cannot be loaded."""


def _num(v: float) -> float | None:
    """Infinities as null (strict JSON has none)."""
    return v if math.isfinite(v) else None


def _inf(v: Any, sign: float = -1.0) -> float:
    return sign * math.inf if v is None else float(v)


# ---- ingest ---------------------------------------------------------------------------------
def ingest_state(a: IngestStage) -> dict[str, Any]:
    return {
        "version": VERSION, "stage": "ingest",
        "templates": a.miner.state_dict(), "services": a.services.state_dict(),
        "clock": a.windows.state_dict(), "windows": _window_state(a.windows),
        "flagger": a.flagger.state_dict() if a.flagger is not None else None,
        "correlator": a.correlator.state_dict() if a.correlator is not None else None,
        "now": _num(a._now), "events": a.events,
    }


def load_ingest(a: IngestStage, s: dict[str, Any]) -> None:
    _guard(s, "ingest", lambda: _load_ingest(a, s))


def _load_ingest(a: IngestStage, s: dict[str, Any]) -> None:
    a.miner.load_state(s["templates"])
    a.services.load_state(s["services"])
    a.windows.load_state(s["clock"])
    _load_windows(a.windows, s["windows"])
    if a.flagger is not None and s.get("flagger"):
        a.flagger.load_state(s["flagger"])
    if a.correlator is not None and s.get("correlator"):
        a.correlator.load_state(s["correlator"])
    a._now = _inf(s["now"])
    a.events = int(s["events"])


# ---- merge ----------------------------------------------------------------------------------
def merge_state(b: MergeStage) -> dict[str, Any]:
    return {
        "version": VERSION, "stage": "merge", "scorer": b.scorer.state_dict(),
        "services": b.windows.services.state_dict(), "windows": _window_state(b.windows),
        "marks": {k: v for k, v in b.marks.marks.items() if math.isfinite(v)},
        "expected": sorted(b.marks.expected), "late_events": b.late_events,
        "partials": b.partials,
    }


def load_merge(b: MergeStage, s: dict[str, Any]) -> None:
    _guard(s, "merge", lambda: _load_merge(b, s))


def _load_merge(b: MergeStage, s: dict[str, Any]) -> None:
    b.scorer.load_state(s["scorer"])
    b.windows.services.load_state(s["services"])
    _load_windows(b.windows, s["windows"])
    b.marks.load_state({"marks": s["marks"], "expected": s["expected"]})
    b.late_events, b.partials = int(s["late_events"]), int(s["partials"])


def _window_state(w: WindowAggregator) -> dict[str, Any]:
    """Open windows (as partials), the close position and what closing needs of the past."""
    opened = [p.to_dict() for p in w.open_partials()]
    return {
        "open": opened, "next_close": w._next_close, "max_ts": _num(w.max_ts),
        "last_seen": w._last_seen.tolist(), "last_tmax": _num(w._last_tmax), "gaps": w.gaps,
    }


def _load_windows(w: WindowAggregator, s: dict[str, Any]) -> None:
    nc = s["next_close"]
    if nc is not None and type(nc) is not int:
        raise TypeError("next_close is not a window index")
    last_seen = np.asarray(s["last_seen"], dtype=np.int64)
    if len(last_seen) != len(w.services):
        raise ValueError("last_seen does not match the services")
    w._next_close = None
    w.merge([WindowPartial.from_dict(p, w.buckets.size) for p in s["open"]])
    w._next_close = nc
    w.max_ts = _inf(s["max_ts"])
    w._last_seen = last_seen
    w._last_tmax = _inf(s["last_tmax"])
    w.gaps = int(s["gaps"])


# ---- incidents ------------------------------------------------------------------------------
def incidents_state(c: IncidentStage) -> dict[str, Any]:
    t, r = c.tracker, c.ranker
    return {
        "version": VERSION, "stage": "incidents", "services": c.services.state_dict(),
        "texts": [[i, c.texts.text(i)] for i in sorted(c.texts._text)],
        "next_text": c.texts._next,
        "open": [[k, i.to_dict()] for k, i in t.open.items()],
        "closed": [[k, a, b] for k, (a, b) in t._closed.items()],
        "top": [[k, v] for k, v in t._top.items()],
        "evidence": [[k, _evidence(e)] for k, e in t._evidence.items()],
        "opened": t.opened, "resolved": t.resolved,
        "verdicts": [_verdict(v) for v in r.recent] if r is not None else [],
        "edges": r.state_dict() if r is not None else [],
        "marks": {k: v for k, v in c.marks.marks.items() if math.isfinite(v)},
        "expected": sorted(c.marks.expected),
        "held": [{"task": t, **w.to_dict()} for t, w in c.held()],
        "judged": _num(c.judged_through),
    }


def load_incidents(c: IncidentStage, s: dict[str, Any]) -> None:
    _guard(s, "incidents", lambda: _load_incidents(c, s))


def _load_incidents(c: IncidentStage, s: dict[str, Any]) -> None:
    from detector.topology.records import anomaly_from

    c.services.load_state(s["services"])
    for i, text in s["texts"]:
        c.texts._id[str(text)] = int(i)
        c.texts._text[int(i)] = str(text)
    c.texts._next = int(s["next_text"])
    t = c.tracker
    fields = set(Incident.__dataclass_fields__)
    for k, d in s["open"]:
        t.open[str(k)] = Incident(**{f: v for f, v in d.items() if f in fields})
    t._closed = {str(k): (float(a), float(b)) for k, a, b in s["closed"]}
    t._top = {str(k): v for k, v in s["top"]}
    t._evidence = {str(k): _evidence_from(e) for k, e in s["evidence"]}
    t.opened, t.resolved = int(s["opened"]), int(s["resolved"])
    if c.ranker is not None:
        c.ranker.load_state(s["edges"])
        c.ranker.recent = deque((_verdict_from(v) for v in s["verdicts"]),
                                maxlen=c.ranker.recent.maxlen)
    c.marks.load_state({"marks": s["marks"], "expected": s["expected"]})
    for w in s["held"]:
        c.add_scored(str(w["task"]), [ScoredWindow(
            float(w["start"]), float(w["end"]), [anomaly_from(a) for a in w["anomalies"]])],
            -math.inf)
    c.judged_through = _inf(s["judged"])


def _evidence(e: Evidence) -> dict[str, Any]:
    return {"key": e.key, "opened_at": e.opened_at, "last_at": e.last_at,
            "services": dict(e.services), "features": {k: dict(v) for k, v in e.features.items()},
            "first_anomaly": dict(e.first_anomaly)}


def _evidence_from(d: dict[str, Any]) -> Evidence:
    return Evidence(key=str(d["key"]), opened_at=float(d["opened_at"]), last_at=float(d["last_at"]),
                    services=Counter({str(k): int(v) for k, v in d["services"].items()}),
                    features={str(k): Counter(v) for k, v in d["features"].items()},
                    first_anomaly={str(k): float(v) for k, v in d["first_anomaly"].items()})


def _verdict(v: RequestVerdict) -> dict[str, Any]:
    return {"request_id": v.request_id, "root": v.root, "propagators": v.propagators,
            "onset": v.onset, "root_onset": v.root_onset, "kinds": v.kinds,
            "templates": v.templates, "silent": v.silent, "method": v.method,
            "edges": sorted([a, b] for a, b in v.edges)}


def _verdict_from(d: dict[str, Any]) -> RequestVerdict:
    return RequestVerdict(
        request_id=str(d["request_id"]), root=int(d["root"]),
        propagators=[int(x) for x in d["propagators"]], onset=float(d["onset"]),
        root_onset=float(d["root_onset"]), kinds=int(d["kinds"]),
        templates=[int(x) for x in d["templates"]], silent=bool(d["silent"]),
        method=str(d["method"]), edges={(int(a), int(b)) for a, b in d["edges"]})


def _guard(s: Any, stage: str, load: Any) -> None:
    if not isinstance(s, dict) or s.get("version") != VERSION or s.get("stage") != stage:
        raise SnapshotError(f"not a version-{VERSION} {stage} snapshot")
    try:
        load()
    except SnapshotError:
        raise
    except Exception as exc:
        raise SnapshotError(f"{stage} snapshot: {type(exc).__name__}: {str(exc)[:300]}") from exc
