"""OTLP/JSON exports (`resourceSpans` / `resourceLogs`) as one flat record per span or log record.

An OpenTelemetry Collector's file exporter writes one export request per line, each holding many
spans or log records under their resource and scope. The decoder reads one record per line, so
such a line is expanded first into flat records that the default field mapping reads: `ts`,
`service`, `pod`, `trace_id`, `span_id`, `parent_span_id`, `name`, `kind`, `duration_ms`,
`status_code` for spans; `ts`, `service`, `trace_id`, `span_id`, `level`, `message` for logs.
A line that only looks like an export and does not parse is left as it is, so the decoder
dead-letters it with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from detector.decode.fields import unwrap

_MARKERS = (b'"resourceSpans"', b'"resourceLogs"')
_KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


def is_export(line: bytes) -> bool:
    """Whether a line may be an OTLP/JSON export request (cheap test, no parsing)."""
    return any(m in line for m in _MARKERS)


def expand_exports(lines: Sequence[bytes], positions: Sequence[int]
                   ) -> tuple[list[bytes], list[int]] | None:
    """Lines with every export expanded into flat records (each keeps its line's position), or
    None when no line is an export.

    >>> line = orjson.dumps({"resourceSpans": [{"resource": {"attributes": [
    ...     {"key": "service.name", "value": {"stringValue": "cart"}}]},
    ...     "scopeSpans": [{"spans": [{"traceId": "t1", "spanId": "s1", "name": "GET /cart",
    ...     "kind": 2, "startTimeUnixNano": "1795435200000000000",
    ...     "endTimeUnixNano": "1795435200250000000", "status": {"code": 2}}]}]}]})
    >>> out, pos = expand_exports([line], [7])
    >>> orjson.loads(out[0])["duration_ms"], orjson.loads(out[0])["status_code"], pos
    (250.0, 'ERROR', [7])
    """
    if not any(map(is_export, lines)):
        return None
    out: list[bytes] = []
    pos: list[int] = []
    for line, p in zip(lines, positions, strict=True):
        flat = _flatten(line) if is_export(line) else None
        if flat is None:
            out.append(line)
            pos.append(p)
        else:
            out.extend(flat)
            pos.extend([p] * len(flat))
    return out, pos


def _flatten(line: bytes) -> list[bytes] | None:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    recs: list[dict[str, Any]] = []
    try:
        for rs in doc.get("resourceSpans") or []:
            res = _attributes((rs.get("resource") or {}).get("attributes"))
            for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []:
                recs.extend(_span(s, res) for s in ss.get("spans") or [])
        for rl in doc.get("resourceLogs") or []:
            res = _attributes((rl.get("resource") or {}).get("attributes"))
            for sl in rl.get("scopeLogs") or []:
                recs.extend(_log(r, res) for r in sl.get("logRecords") or [])
    except (AttributeError, TypeError, ValueError):
        return None
    if not recs:
        return None
    return [orjson.dumps(r) for r in recs]


def _attributes(kvs: Any) -> dict[str, Any]:
    if not isinstance(kvs, list):
        return {}
    return {kv["key"]: unwrap(kv.get("value")) for kv in kvs
            if isinstance(kv, dict) and isinstance(kv.get("key"), str)}


def _service(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(res.get("service.name"), str):
        out["service"] = res["service.name"]
    pod = res.get("k8s.pod.name") or res.get("host.name")
    if isinstance(pod, str):
        out["pod"] = pod
    return out


def _span(s: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    start, end = int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"])
    rec: dict[str, Any] = {"ts": str(start), **_service(res), "trace_id": s.get("traceId"),
                           "span_id": s.get("spanId"), "parent_span_id": s.get("parentSpanId", ""),
                           "name": s.get("name"), "duration_ms": max(end - start, 0) / 1e6}
    kind = s.get("kind")
    if isinstance(kind, int):
        rec["kind"] = _KINDS.get(kind, "INTERNAL")
    elif isinstance(kind, str):
        rec["kind"] = kind.removeprefix("SPAN_KIND_")
    code = (s.get("status") or {}).get("code")
    if isinstance(code, int):
        code = _STATUS.get(code, "UNSET")
    if isinstance(code, str) and code.removeprefix("STATUS_CODE_") != "UNSET":
        rec["status_code"] = code.removeprefix("STATUS_CODE_")
    attrs = _attributes(s.get("attributes"))
    peer = attrs.get("peer.service")
    if isinstance(peer, str):
        rec["callee"] = peer
    return rec


def _log(r: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    body = unwrap(r.get("body"))
    rec: dict[str, Any] = {"ts": r.get("timeUnixNano") or r.get("observedTimeUnixNano"),
                           **_service(res), "message": body if isinstance(body, str)
                           else orjson.dumps(body).decode()}
    for src, dst in (("traceId", "trace_id"), ("spanId", "span_id")):
        if r.get(src):
            rec[dst] = r[src]
    if r.get("severityText"):
        rec["level"] = r["severityText"]
    elif r.get("severityNumber") is not None:
        rec["level"] = r["severityNumber"]
    return rec
