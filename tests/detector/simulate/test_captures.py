"""Captures in the shared RCA layout: cases.csv and per case spans.jsonl.gz + logs.jsonl.gz, server
and client spans that join, logs without latency or status, the same bytes for the same seed."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from detector.simulate.captures import RCA_KINDS, render_capture, rfc3339_us, write_rca_cases
from detector.simulate.scenarios import ROOTS, short_capture

SPAN_KEYS = {"ts", "service", "pod", "trace_id", "span_id", "parent_span_id", "name", "kind",
             "duration_ms", "status_code"}
LOG_KEYS = ["ts", "service", "pod", "trace_id", "span_id", "level", "message"]


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in gzip.decompress(path.read_bytes()).splitlines()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rca")
    write_rca_cases(out, ["code_exception", "hang", "error_burst"], cases_per_kind=2, seed=1,
                    rate=8.0)
    return out


def test_cases_csv_lists_every_case_with_its_root_cause_and_times(dataset: Path) -> None:
    with (dataset / "cases.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["case_id", "root_cause_service", "fault_type", "inject_unix",
                             "data_start_unix", "data_end_unix"]
    assert [(r["case_id"], r["fault_type"], r["root_cause_service"]) for r in rows] == [
        ("case-0000", "code_exception", "catalog"), ("case-0001", "code_exception", "cart"),
        ("case-0002", "hang", "cart"), ("case-0003", "hang", "checkout"),
        ("case-0004", "error_burst", "checkout"), ("case-0005", "error_burst", "payments")]
    for r in rows:
        start, inject, end = (int(r[k]) for k in ("data_start_unix", "inject_unix", "data_end_unix"))
        assert (inject - start, end - inject) == (60, 120)
        assert sorted(p.name for p in (dataset / "cases" / r["case_id"]).iterdir()) == [
            "logs.jsonl.gz", "spans.jsonl.gz"]


def test_spans_and_logs_have_the_shared_fields_and_join_by_trace_and_span(dataset: Path) -> None:
    case = dataset / "cases" / "case-0001"
    spans, logs = read(case / "spans.jsonl.gz"), read(case / "logs.jsonl.gz")
    assert all(set(s) == SPAN_KEYS for s in spans) and all(list(x) == LOG_KEYS for x in logs)
    assert [s["ts"] for s in spans] == sorted(s["ts"] for s in spans)
    assert spans[0]["ts"].startswith("2026-11-23T01:00:00.") and spans[0]["ts"].endswith("Z")
    by_id = {s["span_id"]: s for s in spans}
    assert len(by_id) == len(spans)
    assert {s["status_code"] for s in spans} == {"OK", "ERROR"}
    for s in spans:
        if s["kind"] == "SERVER" and s["parent_span_id"]:
            client = by_id[s["parent_span_id"]]  # a callee's server span hangs off a client span
            assert (client["kind"], client["trace_id"], client["name"]) == (
                "CLIENT", s["trace_id"], s["name"])
            assert 0.99 <= client["duration_ms"] - s["duration_ms"] <= 3.01
            assert by_id[client["parent_span_id"]]["service"] == client["service"]
        elif s["kind"] == "SERVER":
            assert s["service"] == "gateway" and s["name"].startswith("gateway/")
    pods = {s["service"]: s["pod"] for s in spans}
    joined = [x for x in logs if x["span_id"]]
    assert joined and all(by_id[x["span_id"]]["trace_id"] == x["trace_id"] for x in joined)
    assert all(x["pod"] == pods[x["service"]] for x in logs)
    assert {x["level"] for x in logs} >= {"INFO", "DEBUG", "ERROR"}


def test_a_hung_root_leaves_failed_client_spans_and_no_server_spans(dataset: Path) -> None:
    spans = read(dataset / "cases" / "case-0002" / "spans.jsonl.gz")  # hang on cart
    late = [s for s in spans if s["ts"] >= rfc3339_us(1795399260.0)]
    into = [s for s in late if s["kind"] == "CLIENT" and s["name"].startswith("cart/")]
    assert into and all(s["status_code"] == "ERROR" and s["duration_ms"] >= 1000 for s in into)
    assert not [s for s in late if s["kind"] == "SERVER" and s["service"] == "cart"]


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    def files(d: Path) -> dict[str, bytes]:
        return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}

    for d, seed in (("a", 3), ("b", 3), ("c", 4)):
        write_rca_cases(tmp_path / d, ["network_delay"], cases_per_kind=1, seed=seed, rate=4.0)
    a, b, c = (files(tmp_path / d) for d in "abc")
    assert a == b and len(a) == 3
    assert a["cases/case-0000/spans.jsonl.gz"][4:8] == b"\0\0\0\0"  # gzip mtime 0
    assert a["cases/case-0000/spans.jsonl.gz"] != c["cases/case-0000/spans.jsonl.gz"]


def test_every_kind_but_the_traffic_spike_is_written_by_default_and_unknown_ones_fail(
    tmp_path: Path,
) -> None:
    assert set(RCA_KINDS) == set(ROOTS) - {"traffic_spike"}
    assert {"weak_latency", "cpu_contention", "code_exception", "network_delay",
            "crash_loop"} <= set(RCA_KINDS)
    with pytest.raises(ValueError, match="unknown fault kind"):
        write_rca_cases(tmp_path, ["disk_full"])


def test_render_capture_is_two_jsonl_streams() -> None:
    faults, duration = short_capture("cpu_contention", "db")
    spans, logs = render_capture(faults, 5.0, seed=2, rate=5.0)
    assert spans.endswith(b"\n") and logs.endswith(b"\n")
    assert all(orjson.loads(x)["kind"] in ("SERVER", "CLIENT") for x in spans.splitlines())
    assert b"latency_ms" not in logs and b'"status' not in logs
    assert duration == 180.0
