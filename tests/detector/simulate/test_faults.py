"""The weak faults change what they should and nothing else: weak_latency and cpu_contention the
root's own time (not its callees'), code_exception one operation's errors (and every caller's),
network_delay the wire into the root (not its own spans); inactive, they draw nothing."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

import pytest

from detector.simulate.captures import capture_rows
from detector.simulate.fleet import START_EPOCH, Fault, Fleet
from detector.simulate.scenarios import short_capture

INJECT = START_EPOCH + 60.0


def run(kind: str, service: str, seed: int) -> tuple[Fleet, list[dict[str, Any]]]:
    """A short capture's plain records (no network time), in event order."""
    faults, duration = short_capture(kind, service)
    fleet = Fleet(faults, seed=seed, rate=20.0)
    recs = [r for _, r in fleet.records(2**62, until=START_EPOCH + duration)]
    return fleet, sorted(recs, key=lambda r: r["ts"])


def own_times(recs: list[dict[str, Any]], service: str) -> tuple[list[float], list[float]]:
    """`service`'s own time per call (its latency minus its callees'), before and during the fault."""
    calls = [r for r in recs if "latency_ms" in r and "parent_id" in r]
    children: dict[str, float] = defaultdict(float)
    for r in calls:
        children[r["parent_id"]] += r["latency_ms"]
    before: list[float] = []
    during: list[float] = []
    for r in calls:
        if r["service"] == service:
            start = r["ts"] - r["latency_ms"] / 1e3
            (before if start < INJECT else during).append(r["latency_ms"] - children[r["span_id"]])
    return before, during


def test_weak_latency_adds_its_100_to_300_ms_to_the_roots_own_time_not_its_callees() -> None:
    fleet, recs = run("weak_latency", "payments", seed=4)
    extra = fleet.params[0]["extra_ms"]
    assert 100.0 <= extra <= 300.0
    before, during = own_times(recs, "payments")
    assert len(before) > 100 and len(during) > 200
    assert statistics.median(during) - statistics.median(before) == pytest.approx(extra, abs=15.0)
    db_before, db_during = own_times(recs, "db")
    assert statistics.median(db_during) == pytest.approx(statistics.median(db_before), rel=0.15)
    assert not [r for r in recs if r["level"] == "error"]


def test_cpu_contention_multiplies_the_roots_own_time_with_more_jitter() -> None:
    fleet, recs = run("cpu_contention", "payments", seed=5)
    factor = fleet.params[0]["factor"]
    assert 3.0 <= factor <= 5.0
    before, during = own_times(recs, "payments")
    ratio = statistics.median(during) / statistics.median(before)
    assert ratio == pytest.approx(factor, rel=0.2)
    spread = statistics.quantiles(during)[2] / statistics.quantiles(during)[0]
    assert spread > statistics.quantiles(before)[2] / statistics.quantiles(before)[0]
    db_before, db_during = own_times(recs, "db")
    assert statistics.median(db_during) == pytest.approx(statistics.median(db_before), rel=0.15)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_code_exception_fails_a_few_percent_of_one_operation_and_every_caller_logs_it(
    seed: int,
) -> None:
    fleet, recs = run("code_exception", "db", seed=seed)
    params = fleet.params[0]
    op = params["operation"]
    chain = ["payments", "checkout", "gateway"] if op == "InsertCharge" else ["catalog", "gateway"]
    direct = chain[0]
    # db's calls during the fault, by operation (known by who called it)
    span_service = {r["span_id"]: r["service"] for r in recs if "span_id" in r}
    db_calls = [r for r in recs if r["service"] == "db" and "latency_ms" in r
                and r["ts"] - r["latency_ms"] / 1e3 >= INJECT]
    faulty = [r for r in db_calls if span_service.get(r["parent_id"]) == direct]
    other = [r for r in db_calls if span_service.get(r["parent_id"]) != direct]
    root_errors = [r for r in faulty if r["level"] == "error"]
    assert 3 <= len(root_errors) < 0.15 * len(faulty)
    assert 0.03 <= params["rate"] <= 0.08
    assert not [r for r in other if r["level"] == "error"]
    assert {r["msg"] for r in root_errors} == {params["message"]}
    assert "Exception" in params["message"] and f"db/{op}" in params["message"]
    errors = defaultdict(int)
    for r in recs:
        if r["level"] == "error":
            assert r["ts"] >= INJECT
            errors[r["service"]] += 1
    assert all(errors[c] >= errors["db"] for c in chain)
    assert sum(errors[c] for c in chain) > errors["db"]
    assert any(r["msg"] == "call to db failed with 500" for r in recs if r["service"] == direct)


def test_network_delay_widens_the_client_gap_into_the_root_not_its_own_spans() -> None:
    faults, duration = short_capture("network_delay", "payments")
    spans, _ = capture_rows(faults, duration, seed=6)
    delay = Fleet(faults, seed=6).params[0]["delay_ms"]
    clients = {s["span_id"]: s for s in spans if s["kind"] == "CLIENT"}
    gaps: dict[tuple[str, bool], list[float]] = defaultdict(list)  # (callee, during the fault)
    own: dict[bool, list[float]] = defaultdict(list)
    for s in spans:
        if s["kind"] == "SERVER" and s["service"] in ("payments", "db"):
            client = clients[s["parent_span_id"]]
            late = client["ts"] >= "2026-11-23T00:01:00"
            gaps[(s["service"], late)].append(client["duration_ms"] - s["duration_ms"])
            if s["service"] == "payments":
                own[late].append(s["duration_ms"])
    assert 1.0 <= statistics.median(gaps[("payments", False)]) <= 3.0
    assert statistics.median(gaps[("payments", True)]) == pytest.approx(delay + 2.0, abs=1.5)
    assert max(gaps[("db", True)]) <= 3.05  # the wire into db is untouched
    assert statistics.median(own[True]) == pytest.approx(statistics.median(own[False]), rel=0.1)


@pytest.mark.parametrize("kind", ["weak_latency", "cpu_contention", "code_exception",
                                  "network_delay"])
def test_a_weak_fault_draws_nothing_from_the_fleet_before_it_starts(kind: str) -> None:
    later = [Fault(kind, "db", START_EPOCH + 1e6, START_EPOCH + 2e6)]
    assert Fleet(later, seed=9).records(4000) == Fleet([], seed=9).records(4000)


def test_a_short_capture_has_a_minute_before_the_fault_and_two_after() -> None:
    (fault,), duration = short_capture("weak_latency", "db", start=START_EPOCH + 7200.0)
    assert (fault.start - START_EPOCH - 7200.0, fault.end - fault.start, duration) == (
        60.0, 120.0, 180.0)
    assert fault.propagates_to == ["catalog", "payments", "checkout", "gateway"]
    with pytest.raises(ValueError, match="can strike"):
        short_capture("code_exception", "gateway")
