"""The records the stages send each other over Kafka, and their checked decoding.

Every record names its source and the source offsets it covers (`first`, `end`: an ingest
chunk of a `logs` partition), so the consumer can drop a copy sent again after a restart: ingest
chunks end at deterministic offsets (`topology/chunks.py`), so a chunk replayed from a snapshot
is the same chunk, with the same key.

- partials topic, keyed by service: `{"t": "p", "src", "first", "end", "p": [partial, ...]}`,
  and after a chunk's partials one watermark record to every partition,
  `{"t": "w", "src", "first", "end", "wm"}`; an ingest task caught up with nothing pending
  says so to every partition, `{"t": "i", "src", "first", "end", "wm"}` (first = end: its
  position);
- judge topic (one partition, read by the incidents owner): from ingest, keyed by source,
  `{"t": "v", "src", "first", "end", "v": [verdict], "e": [edge]}`; from merge, keyed by its
  task, `{"t": "s", "task", "w": [scored window], "through"}`.

>>> rec = decode(encode({"t": "w", "src": "logs/0", "first": 0, "end": 10, "wm": 5.0}))
>>> watermark(rec)
('logs/0', 0, 10, 5.0)
>>> decode(b'{"t": 1')
Traceback (most recent call last):
...
detector.topology.records.BadRecord: undecodable: unexpected end of data: line 1 column 8 (char 7)
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from detector.events import Anomaly
from detector.topology.merge import ScoredWindow
from detector.windows.partials import PartialError, WindowPartial


class BadRecord(ValueError):
    """A record on a stage topic that is not one of ours: counted, skipped, never fatal."""


def encode(rec: dict[str, Any]) -> bytes:
    return orjson.dumps(rec)


def decode(raw: bytes | None) -> dict[str, Any]:
    try:
        rec = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise BadRecord(f"undecodable: {exc}") from None
    if not isinstance(rec, dict):
        raise BadRecord("not an object")
    return rec


def _span(rec: dict[str, Any]) -> tuple[str, int, int]:
    src, first, end = rec.get("src"), rec.get("first"), rec.get("end")
    if not isinstance(src, str) or type(first) is not int or type(end) is not int or end < first:
        raise BadRecord("src, first, end must be a string and offsets first <= end")
    return src, first, end


def partials(rec: dict[str, Any], buckets: int) -> tuple[str, int, int, list[WindowPartial]]:
    src, first, end = _span(rec)
    try:
        return src, first, end, [WindowPartial.from_dict(p, buckets) for p in rec["p"]]
    except (KeyError, TypeError, PartialError) as exc:
        raise BadRecord(f"partials: {exc}") from exc


def watermark(rec: dict[str, Any]) -> tuple[str, int, int, float]:
    src, first, end = _span(rec)
    wm = rec.get("wm")
    if wm is None:
        return src, first, end, -math.inf
    if not isinstance(wm, int | float) or not math.isfinite(wm):
        raise BadRecord("wm must be a finite number or null")
    return src, first, end, float(wm)


def verdicts(rec: dict[str, Any]) -> tuple[str, int, int, list[Any], list[Any]]:
    src, first, end = _span(rec)
    v, e = rec.get("v"), rec.get("e")
    if not isinstance(v, list) or not isinstance(e, list):
        raise BadRecord("v and e must be lists")
    return src, first, end, v, e


def scored(rec: dict[str, Any]) -> tuple[str, list[ScoredWindow], float]:
    task, ws, through = rec.get("task"), rec.get("w"), rec.get("through")
    if not isinstance(task, str) or not isinstance(ws, list):
        raise BadRecord("task must be a string, w a list")
    if through is not None and (not isinstance(through, int | float) or math.isnan(through)):
        raise BadRecord("through must be a number or null")
    try:
        out = [ScoredWindow(float(w["start"]), float(w["end"]),
                            [anomaly_from(a) for a in w["anomalies"]],
                            {str(s): int(c) for s, c in w.get("counts", {}).items()})
               for w in ws]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRecord(f"scored windows: {exc}") from exc
    return task, out, -math.inf if through is None else float(through)


def anomaly_from(d: dict[str, Any]) -> Anomaly:
    """An `Anomaly` from its `to_dict` form (KeyError, TypeError or ValueError otherwise)."""
    b = d["baseline"]
    return Anomaly(
        service=str(d["service"]), feature=str(d["feature"]),
        window_start=float(d["window_start"]), window_end=float(d["window_end"]),
        value=float(d["value"]), baseline_mean=float(b["mean"]), baseline_std=float(b["std"]),
        score=float(d["score"]), model=str(d["model"]), explanation=str(d["explanation"]),
        events=int(d["events"]), labels=d.get("labels"), link=d.get("link"))
