"""The analysis on simulated short captures (1 min before the fault, 2 after): the root cause is
named for every fault kind, with and without a baseline and an onset, and the onset is found."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from detector.config import VigilConfig
from detector.eval.rca import read_dir
from detector.rca.analyze import analyze
from detector.rca.capture import Capture, read_capture
from detector.rca.tree import derive
from detector.simulate.captures import render_capture, write_rca_cases
from detector.simulate.fleet import START_EPOCH


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rca-cases")
    write_rca_cases(out, ["weak_latency", "cpu_contention", "network_delay", "code_exception",
                          "crash_loop", "error_burst"], cases_per_kind=1, seed=7)
    return out


def _case(cases: Path, kind: str) -> tuple[Capture, str, float]:
    import csv

    row = next(r for r in csv.DictReader((cases / "cases.csv").open())
               if r["fault_type"] == kind)
    return (read_dir(cases / "cases" / row["case_id"], VigilConfig()),
            row["root_cause_service"], float(row["inject_unix"]))


@pytest.mark.parametrize("kind", ["weak_latency", "cpu_contention", "network_delay",
                                  "code_exception", "crash_loop", "error_burst"])
def test_the_root_cause_of_each_fault_kind_is_named_without_being_told_the_onset(
        cases: Path, kind: str) -> None:
    cap, truth, inject = _case(cases, kind)
    res = analyze(cap)
    assert res.onset_source == "change point" and res.onset is not None
    assert abs(res.onset - inject) <= 15.0, (res.onset - inject)
    assert res.top == truth, res.ranking[:3]
    assert {r["service"] for r in res.ranking} == set(cap.services())  # every service, ranked


def test_a_network_delay_is_the_callee_s_though_only_its_callers_spans_grow(cases: Path) -> None:
    cap, truth, inject = _case(cases, "network_delay")
    res = analyze(cap, onset=inject)
    top = res.ranking[0]
    assert top["service"] == truth
    assert top["evidence"]["network"] > 1.0 and top["evidence"]["latency"] < 0.2


def test_a_weak_exception_is_where_errors_start_not_where_they_are_logged_most(
        cases: Path) -> None:
    cap, truth, inject = _case(cases, "code_exception")
    errors = dict(cap.logs.filter(pl.col("level") >= 17).group_by("service").len().rows())
    assert max(n for s, n in errors.items() if s != truth) >= errors[truth]  # callers: as much
    res = analyze(cap, onset=inject)
    assert res.top == truth
    assert res.ranking[0]["evidence"]["errors"] > 1.0


def test_with_a_fault_free_baseline_the_part_after_the_onset_is_compared_with_it(
        cases: Path, tmp_path: Path) -> None:
    cap, truth, _ = _case(cases, "weak_latency")
    spans, logs = render_capture([], 180.0, seed=99, start=START_EPOCH - 86400)
    (tmp_path / "spans.jsonl.gz").write_bytes(gzip.compress(spans))
    (tmp_path / "logs.jsonl.gz").write_bytes(gzip.compress(logs))
    ref = read_capture([tmp_path / "spans.jsonl.gz", tmp_path / "logs.jsonl.gz"], VigilConfig())
    res = analyze(cap, baseline=ref)
    assert res.compared_with == "baseline" and res.top == truth


def test_an_empty_capture_names_nobody() -> None:
    res = analyze(Capture())
    assert res.top is None and res.compared_with == "nothing"


def test_exclusive_time_merges_parallel_children() -> None:
    df = pl.DataFrame({
        "t": [0.0, 0.0, 0.002], "service": ["web", "a", "b"], "pod": [None] * 3,
        "trace": ["t"] * 3, "span": ["p", "c1", "c2"], "parent": ["", "p", "p"],
        "name": ["GET", "A", "B"], "kind": [None] * 3, "dur_ms": [10.0, 4.0, 4.0],
        "error": [False] * 3, "callee_hint": [None] * 3})
    # Children cover [0, 4] and [2, 6] ms: 6 ms together, not 8.
    assert derive(df)["self_ms"].to_list()[0] == pytest.approx(4.0)
