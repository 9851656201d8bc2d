"""Short captures of the simulated fleet as tracing data arrives, in the layout of a shared RCA
dataset: spans and logs as two JSON-lines streams, joined only by trace_id / span_id.

Spans (OTel names): every service call is one SERVER span, and the caller keeps a CLIENT span for
it (`callee/Op`, the server span's parent) that lasts 1-3 ms longer (the network); a
`network_delay` fault lands in that gap. Logs carry no latency or status: those are on the spans.
A case directory holds `spans.jsonl.gz` and `logs.jsonl.gz`; `cases.csv` lists the cases with
their root cause. Same seed, same bytes (gzip mtime 0).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from random import Random
from typing import Any

import orjson

from detector.simulate.fleet import SERVICES, START_EPOCH, Fault, Fleet
from detector.simulate.scenarios import ROOTS, short_capture

# Every kind that strikes a service behind the gateway (a traffic spike has no such root cause).
RCA_KINDS = tuple(k for k in ROOTS if k != "traffic_spike")


@dataclass(slots=True, frozen=True)
class Case:
    """One row of cases.csv."""

    case_id: str
    root_cause_service: str
    fault_type: str
    inject_unix: int
    data_start_unix: int
    data_end_unix: int


def rfc3339_us(ts: float) -> str:
    """RFC 3339 UTC with microseconds, as span exporters write start times.

    >>> rfc3339_us(1795392000.25)
    '2026-11-23T00:00:00.250000Z'
    """
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pod_names(seed: int) -> dict[str, str]:
    """A Kubernetes-style pod name per service (deployment hash and pod suffix from the seed).

    >>> pods = pod_names(0)
    >>> pods["cart"].startswith("cart-"), len(pods["cart"].split("-")), pods == pod_names(0)
    (True, 3, True)
    """
    r = Random(f"pods/{seed}")
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return {svc: f"{svc}-{r.getrandbits(36):09x}-{''.join(r.choices(alphabet, k=5))}"
            for svc in SERVICES}


def capture_rows(
    faults: list[Fault], duration: float, seed: int = 0, rate: float = 20.0,
    start: float = START_EPOCH,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One run of `duration` seconds from `start` as (spans, logs): dicts in the shared layout,
    each sorted by time, cut at the end of the capture.

    >>> spans, logs = capture_rows([], 2.0, seed=1)
    >>> sorted(spans[0]), sorted(logs[0])[:4]
    ... # doctest: +NORMALIZE_WHITESPACE
    (['duration_ms', 'kind', 'name', 'parent_span_id', 'pod', 'service', 'span_id',
      'status_code', 'trace_id', 'ts'], ['level', 'message', 'pod', 'service'])
    """
    end = start + duration
    fleet = Fleet(faults, seed=seed, rate=rate, start=start, annotate=True)
    recs = sorted((rec for _, rec in fleet.records(2**62, until=end)), key=lambda r: r["ts"])
    pods = pod_names(seed)
    spans: list[tuple[float, dict[str, Any]]] = []
    logs: list[dict[str, Any]] = []
    for rec in recs:
        if rec["ts"] >= end:
            continue
        svc = rec["service"]
        logs.append({"ts": rfc3339_us(rec["ts"]), "service": svc, "pod": pods[svc],
                     "trace_id": rec.get("request_id", ""), "span_id": rec.get("span_id", ""),
                     "level": rec["level"].upper(), "message": rec["msg"]})
        if "_start" in rec:
            spans.append((rec["_start"], {
                "ts": rfc3339_us(rec["_start"]), "service": svc, "pod": pods[svc],
                "trace_id": rec["request_id"], "span_id": rec["span_id"],
                "parent_span_id": rec.get("_client") or "", "name": f"{svc}/{rec['_op']}",
                "kind": "SERVER", "duration_ms": rec["latency_ms"],
                "status_code": "ERROR" if rec["status"] >= 500 else "OK"}))
    for c in fleet.client_spans:
        if c["ts"] < end:
            spans.append((c["ts"], {
                "ts": rfc3339_us(c["ts"]), "service": c["service"], "pod": pods[c["service"]],
                "trace_id": c["trace"], "span_id": c["span"], "parent_span_id": c["parent"],
                "name": c["name"], "kind": "CLIENT", "duration_ms": round(c["duration_ms"], 3),
                "status_code": "ERROR" if c["status"] >= 500 else "OK"}))
    spans.sort(key=lambda x: x[0])
    return [s for _, s in spans], logs


def render_capture(
    faults: list[Fault], duration: float, seed: int = 0, rate: float = 20.0,
    start: float = START_EPOCH,
) -> tuple[bytes, bytes]:
    """One run as two JSON-lines streams, (spans, logs), one object per line.

    >>> spans, logs = render_capture([], 2.0, seed=1)
    >>> b'"kind":"CLIENT"' in spans, b'"latency_ms"' in logs, spans.endswith(b"\\n")
    (True, False, True)
    """
    spans, logs = capture_rows(faults, duration, seed, rate, start)
    return _jsonl(spans), _jsonl(logs)


def write_rca_cases(
    out_dir: Path | str, kinds: Iterable[str] | None = None, cases_per_kind: int = 1,
    seed: int = 0, rate: float = 20.0,
) -> list[Case]:
    """Write short captures (1 min before the fault, 2 after) as a shared RCA dataset:
    `out_dir/cases.csv` and `out_dir/cases/<case_id>/{spans,logs}.jsonl.gz`.

    `kinds` default to every kind with a root cause behind the gateway (RCA_KINDS); each kind's
    root cause cycles over the services it can strike (`ROOTS`), the k-th kind starting at the
    k-th of them (one case per kind still strikes several services). Case n (0, 1, ...) runs with
    seed `seed + n` and starts n hours after the simulator's epoch. Same arguments, same bytes.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     cases = write_rca_cases(d, ["code_exception"], cases_per_kind=2, rate=2.0)
    ...     names = sorted(p.name for p in (Path(d) / "cases" / cases[1].case_id).iterdir())
    >>> [(c.case_id, c.root_cause_service, c.inject_unix - c.data_start_unix) for c in cases], names
    ([('case-0000', 'catalog', 60), ('case-0001', 'cart', 60)], ['logs.jsonl.gz', 'spans.jsonl.gz'])
    """
    out = Path(out_dir)
    cases: list[Case] = []
    for k, kind in enumerate(kinds if kinds is not None else RCA_KINDS):
        if kind not in ROOTS:
            raise ValueError(f"unknown fault kind {kind!r}; choose from {', '.join(ROOTS)}")
        roots = ROOTS[kind]
        for i in range(cases_per_kind):
            n = len(cases)
            start = START_EPOCH + 3600.0 * n
            faults, duration = short_capture(kind, roots[(k + i) % len(roots)], start=start)
            case = Case(f"case-{n:04d}", faults[0].service, kind, round(faults[0].start),
                        round(start), round(start + duration))
            spans, logs = render_capture(faults, duration, seed + n, rate, start)
            case_dir = out / "cases" / case.case_id
            case_dir.mkdir(parents=True, exist_ok=True)
            (case_dir / "spans.jsonl.gz").write_bytes(gzip.compress(spans, mtime=0))
            (case_dir / "logs.jsonl.gz").write_bytes(gzip.compress(logs, mtime=0))
            cases.append(case)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([f.name for f in fields(Case)])
    writer.writerows(astuple(c) for c in cases)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cases.csv").write_text(buf.getvalue(), encoding="utf-8")
    return cases


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)
