"""Request correlation: chains with and without span ids, TTL, caps, late events, per-request root
cause, and incidents keyed by root cause on the simulator (propagation, concurrent faults)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from detector.config import CorrelationConfig, VigilConfig
from detector.correlation.flags import ERROR, SLOW
from detector.correlation.requests import RequestCorrelator, RequestTrace, id_hash
from detector.correlation.verdicts import infer_chain, judge_request
from detector.eval.detection import root_cause_rank
from detector.runtime.replay import replay_lines
from detector.simulate.fleet import START_EPOCH, Fault, Fleet, render
from detector.simulate.runs import simulated_lines
from detector.simulate.scenarios import upstream_of

GATEWAY, CHECKOUT, PAYMENTS, DB = 0, 1, 2, 3


def trace(rows: list[dict[str, Any]]) -> RequestTrace:
    """A request from rows of {svc, ts, flags, span, parent, callee, caller}."""
    def col(name: str, default: Any, dtype: Any) -> np.ndarray:
        return np.array([r.get(name, default) for r in rows], dtype=dtype)
    return RequestTrace(
        request_id="r", ts=col("ts", 0.0, np.float64), service=col("svc", 0, np.int32),
        flags=col("flags", 0, np.uint8), span=col("span", 0, np.uint64),
        parent=col("parent", 0, np.uint64), callee=col("callee", -1, np.int32),
        caller=col("caller", -1, np.int32), template=col("tmpl", -1, np.int32),
        latency=col("lat", np.nan, np.float32), status=col("status", -1, np.int16))


# ---- chains and per-request verdicts ------------------------------------------------------------
def test_chain_from_span_ids_finds_the_deepest_failure() -> None:
    # gateway -> checkout -> payments -> db; db fails first, the others pass it up.
    t = trace([
        {"svc": DB, "ts": 0.10, "flags": ERROR, "span": 4, "parent": 3},
        {"svc": PAYMENTS, "ts": 0.11, "flags": ERROR, "span": 3, "parent": 2},
        {"svc": CHECKOUT, "ts": 0.12, "flags": ERROR, "span": 2, "parent": 1},
        {"svc": GATEWAY, "ts": 0.13, "flags": ERROR, "span": 1},
    ])
    chain = infer_chain(t)
    assert chain.method == "spans"
    assert chain.depth == {GATEWAY: 0, CHECKOUT: 1, PAYMENTS: 2, DB: 3}
    v = judge_request(t)
    assert v is not None and v.root == DB and v.propagators == [PAYMENTS, CHECKOUT, GATEWAY]
    assert not v.silent


def test_chain_from_caller_and_callee_fields_without_span_ids() -> None:
    t = trace([
        {"svc": PAYMENTS, "ts": 0.2, "flags": ERROR, "caller": CHECKOUT},
        {"svc": CHECKOUT, "ts": 0.3, "flags": ERROR, "callee": PAYMENTS, "caller": GATEWAY},
        {"svc": GATEWAY, "ts": 0.4, "flags": ERROR, "callee": CHECKOUT},
    ])
    chain = infer_chain(t)
    assert chain.method == "caller"
    assert chain.depth[PAYMENTS] == 2 and chain.depth[GATEWAY] == 0
    v = judge_request(t)
    assert v is not None and v.root == PAYMENTS and set(v.propagators) == {CHECKOUT, GATEWAY}


def test_without_any_structure_the_first_anomaly_wins() -> None:
    t = trace([
        {"svc": GATEWAY, "ts": 0.5, "flags": ERROR},
        {"svc": PAYMENTS, "ts": 0.2, "flags": ERROR},
        {"svc": CHECKOUT, "ts": 0.3, "flags": 0},
    ])
    v = judge_request(t)
    assert v is not None and v.method == "timing" and v.root == PAYMENTS and v.propagators == [GATEWAY]


def test_a_silent_callee_is_the_root_when_its_caller_reports_the_failed_call() -> None:
    # db crashed: it logged nothing; payments says its call to db failed.
    t = trace([
        {"svc": PAYMENTS, "ts": 0.2, "flags": ERROR, "span": 3, "parent": 2, "callee": DB},
        {"svc": CHECKOUT, "ts": 0.3, "flags": ERROR, "span": 2, "parent": 1, "callee": PAYMENTS},
        {"svc": GATEWAY, "ts": 0.4, "flags": ERROR, "span": 1, "callee": CHECKOUT},
    ])
    v = judge_request(t)
    assert v is not None and v.root == DB and v.silent
    assert v.propagators == [PAYMENTS, CHECKOUT, GATEWAY]


def test_errors_outrank_a_deeper_slow_event_and_normal_requests_have_no_verdict() -> None:
    t = trace([
        {"svc": DB, "ts": 0.1, "flags": SLOW, "span": 3, "parent": 2},
        {"svc": PAYMENTS, "ts": 0.2, "flags": ERROR, "span": 2, "parent": 1},
        {"svc": GATEWAY, "ts": 0.3, "flags": ERROR, "span": 1},
    ])
    v = judge_request(t)
    assert v is not None and v.root == PAYMENTS
    assert judge_request(trace([{"svc": DB, "ts": 0.1}])) is None


# ---- the correlator ---------------------------------------------------------------------------
def add(c: RequestCorrelator, rids: list[str | None], ts: list[float], flags: list[int] | None = None,
        services: list[int] | None = None) -> None:
    n = len(rids)
    c.add(pl.Series(rids, dtype=pl.String), ts=np.array(ts, dtype=np.float64),
          service=np.array(services or [0] * n, dtype=np.int32),
          flags=np.array(flags or [0] * n, dtype=np.uint8))


def test_requests_close_a_ttl_after_their_last_event_not_before() -> None:
    c = RequestCorrelator(CorrelationConfig(ttl_seconds=5.0, graph_sample=0))
    add(c, ["a", "a", "b", None], [0.0, 4.0, 1.0, 1.0], flags=[0, 1, 0, 0], services=[0, 1, 0, 0])
    assert c.stats.no_request_id == 1
    assert len(c.close_due(now=5.5)) == 0 and c.open_requests == 2  # a: last event at 4.0, b at 1.0
    assert len(c.close_due(now=7.0)) == 0 and c.open_requests == 1  # b (normal) closed quietly
    closed = c.close_due(now=9.5)
    assert [t.request_id for t in closed] == ["a"] and closed[0].service.tolist() == [0, 1]
    assert c.open_requests == 0 and c.stats.anomalous_requests == 1


def test_late_events_for_a_closed_request_are_counted_not_reopened() -> None:
    c = RequestCorrelator(CorrelationConfig(ttl_seconds=1.0))
    add(c, ["a"], [0.0])
    c.close_due(now=5.0)
    add(c, ["a", "b"], [0.5, 5.0])
    assert c.stats.late_events == 1 and c.open_requests == 1


def test_open_requests_are_capped_by_evicting_the_least_recent() -> None:
    c = RequestCorrelator(CorrelationConfig(max_open_requests=100, graph_sample=0))
    for i in range(5):
        rids: list[str | None] = [f"r{i}-{j}" for j in range(50)]
        add(c, rids, [float(i)] * 50, flags=[1] + [0] * 49)
    assert c.open_requests <= 100
    assert c.stats.evicted_requests == 150
    evicted = c.take_evicted()
    assert sorted(t.request_id for t in evicted) == ["r0-0", "r1-0", "r2-0"]  # the anomalous ones
    assert all(t.evicted for t in evicted) and len(c.take_evicted()) == 0


def test_events_per_request_are_capped_and_the_rest_counted() -> None:
    c = RequestCorrelator(CorrelationConfig(max_events_per_request=3, graph_sample=0))
    add(c, ["a"] * 5, [0.0, 0.1, 0.2, 0.3, 0.4], flags=[1, 0, 0, 0, 0])
    add(c, ["a"], [0.5])
    assert c.stats.dropped_events == 3
    (t,) = c.close_all()
    assert len(t) == 3


def test_the_arena_compacts_and_slots_are_reused_without_mixing_requests() -> None:
    c = RequestCorrelator(CorrelationConfig(ttl_seconds=1.0, graph_sample=0))
    for step in range(40):
        rids: list[str | None] = [f"s{step}-{j}" for j in range(200)]
        add(c, rids, [float(step)] * 200, flags=[1 if j == 7 else 0 for j in range(200)],
            services=[j % 3 for j in range(200)])
        for t in c.close_due(now=float(step)):
            assert len(t) == 1 and t.request_id.endswith("-7") and t.service.tolist() == [1]
    assert c.stats.compactions >= 1
    assert c.nbytes() > 0


def test_id_hash_keeps_nulls_apart() -> None:
    h = id_hash(pl.Series(["x", None, "y"]))
    assert h[1] == 0 and h[0] != h[2] and h[0] != 0


# ---- incidents keyed by root cause, through the pipeline ---------------------------------------
def run_faults(faults: list[Fault], events: int, seed: int) -> list[dict[str, Any]]:
    recs = Fleet(faults, seed=seed).records(events)
    return replay_lines([render(r, "plain") for _, r in recs], VigilConfig())


def test_a_fault_that_shows_in_five_services_opens_one_incident_on_its_root() -> None:
    lines, truth = simulated_lines(50_000, seed=3, scenario="hang", service="db")
    fault = truth.faults[0]
    assert len({fault.service, *fault.propagates_to}) == 5
    incidents = replay_lines(lines, VigilConfig())
    during = [i for i in incidents if fault.start - 10 <= i["opened_at"] <= fault.end]
    assert [i["service"] for i in during] == ["db"], [(i["service"], i["services"]) for i in during]
    inc = during[0]
    assert len(inc["services"]) >= 4  # the anomalies of the propagating services joined it
    top = inc["root_cause"][0]
    assert top["service"] == "db" and top["evidence"]["silent_requests"] > 0
    assert top["evidence"]["sample_request_ids"] and top["confidence"] > 0.5
    assert set(top["evidence"]["propagated_to"]) >= {"payments", "gateway"}


def test_two_concurrent_faults_open_two_incidents() -> None:
    events = 60_000
    start = START_EPOCH + 200.0
    faults = [Fault("error_burst", "payments", start, start + 60, upstream_of("payments")),
              Fault("latency_regression", "cart", start, start + 60, upstream_of("cart"))]
    incidents = run_faults(faults, events, seed=4)
    during = {i["service"]: i for i in incidents if start - 10 <= i["opened_at"] <= start + 60}
    assert set(during) == {"payments", "cart"}, {k: v["services"] for k, v in during.items()}
    assert during["payments"]["root_cause"][0]["service"] == "payments"
    assert during["cart"]["root_cause"][0]["service"] == "cart"


@pytest.mark.parametrize(("kind", "service"), [("crash_loop", "payments"), ("new_exception", "db"),
                                               ("traffic_spike", "gateway"),
                                               ("latency_regression", "catalog")])
def test_root_cause_ranks_first_on_the_simulator(kind: str, service: str) -> None:
    lines, truth = simulated_lines(50_000, seed=8, scenario=kind, service=service)
    cfg = VigilConfig()
    rank, inc = root_cause_rank(truth, replay_lines(lines, cfg), cfg.window.seconds,
                                cfg.incidents.gap_seconds)
    assert inc is not None and rank == 1, inc and inc["root_cause"][:2]


def test_id_table_agrees_with_a_dict_through_inserts_deletes_and_rebuilds() -> None:
    from detector.correlation.idtable import IdTable

    rng = np.random.default_rng(0)
    table, ref = IdTable(8), {}
    for step in range(60):
        keys = np.unique(rng.integers(1, 5_000, 300).astype(np.uint64))
        present = table.get(keys)
        assert present.tolist() == [ref.get(int(k), -1) for k in keys]
        new = keys[present < 0]
        table.insert(new, np.arange(len(new)) + step * 1000)
        ref.update({int(k): int(v) for k, v in zip(new, np.arange(len(new)) + step * 1000, strict=True)})
        gone = np.array(list(ref)[: len(ref) // 3], dtype=np.uint64)
        table.delete(gone)
        for k in gone.tolist():
            del ref[k]
        assert len(table) == len(ref)
    probe = np.arange(1, 5_000, dtype=np.uint64)
    assert table.get(probe).tolist() == [ref.get(int(k), -1) for k in probe]


def test_open_requests_survive_a_checkpoint_round_trip() -> None:
    import json

    c = RequestCorrelator(CorrelationConfig(ttl_seconds=5.0, graph_sample=0))
    add(c, ["a", "a", "b"], [0.0, 0.5, 1.0], flags=[0, 1, 0], services=[0, 1, 2])
    c.add(pl.Series(["a"]), ts=np.array([0.7]), service=np.array([3], dtype=np.int32),
          flags=np.array([0], dtype=np.uint8))
    state = json.loads(json.dumps(c.state_dict()))  # plain JSON all the way
    d = RequestCorrelator(CorrelationConfig(ttl_seconds=5.0, graph_sample=0))
    d.load_state(state)
    assert d.open_requests == 2
    add(d, ["b"], [2.0], flags=[1], services=[4])  # b continues after the restore
    closed = {t.request_id: t for t in d.close_due(now=20.0)}
    assert sorted(closed) == ["a", "b"]
    assert closed["a"].service.tolist() == [0, 1, 3] and closed["b"].service.tolist() == [2, 4]


def test_a_pipeline_checkpoint_restores_baselines_templates_and_open_requests(tmp_path: Any) -> None:
    from detector.pipeline import Pipeline
    from detector.runtime import checkpoint

    lines, _ = simulated_lines(20_000, seed=2)
    cfg = VigilConfig()
    p = Pipeline(cfg)
    p.process(lines)
    path = checkpoint.save(tmp_path, "logs/0", checkpoint.pipeline_state(p))
    q = Pipeline(cfg)
    checkpoint.restore_pipeline(q, checkpoint.load(tmp_path, "logs/0") or {})
    assert path.name == "logs-p0.json"
    assert q.scorer.series_count == p.scorer.series_count > 0
    assert len(q.miner) == len(p.miner) and q.services.names == p.services.names
    assert q.correlator is not None and p.correlator is not None
    assert q.correlator.open_requests == p.correlator.open_requests > 0
    s1 = p.scorer.model.state_dict()
    assert q.scorer.model.state_dict()["mean"] == s1["mean"]
