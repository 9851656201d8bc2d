"""Chains and verdicts computed for a block of requests in numpy equal, request by request, what
the per-request rules (`reference_chains`) give: random requests of every shape (spans, broken
parent links, caller/callee fields, silent callees, cycles, tied times)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from detector.correlation.flags import ERROR, NEW_TEMPLATE, SLOW
from detector.correlation.requests import ClosedRequests, RequestTrace
from detector.correlation.verdicts import (
    block_chains,
    infer_chain,
    judge_request,
    judge_requests,
    normal_edges,
)
from tests.detector.correlation import reference_chains as ref


def random_trace(rng: np.random.Generator, i: int) -> RequestTrace:
    n = int(rng.integers(1, 12))
    services = int(rng.integers(1, 7))
    svc = rng.integers(0, services, n)
    ts = np.sort(np.round(rng.random(n), 1))  # ties on purpose
    flag_set = [0, 0, 0, ERROR, SLOW, NEW_TEMPLATE, ERROR | SLOW, SLOW | NEW_TEMPLATE]
    flags = np.array(flag_set, dtype=np.uint8)[rng.integers(0, len(flag_set), n)]
    if rng.random() < 0.3:
        flags[:] = 0
    shape = rng.integers(0, 4)  # 0: no ids, 1: spans, 2: fields, 3: both
    span = np.zeros(n, dtype=np.uint32)
    parent = np.zeros(n, dtype=np.uint32)
    if shape in (1, 3):
        span = rng.integers(0, 6, n).astype(np.uint32)  # 0: no span; repeats on purpose
        pick = rng.integers(0, 8, n)
        parent = np.where(pick < 6, pick, rng.integers(100, 200, n)).astype(np.uint32)
    callee = np.full(n, -1, dtype=np.int32)
    caller = np.full(n, -1, dtype=np.int32)
    if shape in (2, 3):
        some = rng.random(n) < 0.4
        callee[some] = rng.integers(0, services + 3, int(some.sum()))  # some never log
        other = rng.random(n) < 0.2
        caller[other] = rng.integers(0, services + 2, int(other.sum()))
    return RequestTrace(
        f"r{i}", ts=ts, service=svc.astype(np.int32), flags=flags, span=span, parent=parent,
        callee=callee, caller=caller, template=rng.integers(-1, 5, n).astype(np.int32),
        latency=rng.random(n).astype(np.float32), status=np.full(n, 200, dtype=np.int16))


@pytest.mark.parametrize("seed", range(8))
def test_a_block_judges_as_each_request_alone(seed: int) -> None:
    rng = np.random.default_rng(seed)
    traces = [random_trace(rng, i) for i in range(400)]
    block = ClosedRequests.of(traces)
    want = [v for v in (ref.judge_request(t) for t in traces) if v is not None]
    assert judge_requests(block) == want
    assert sum(1 for t in traces if t.anomalous) == len(want) > 0
    edges: Counter[tuple[int, int]] = Counter()
    for t in traces:
        if not t.anomalous:
            edges.update(ref.infer_chain(t).edges)
    assert normal_edges(block, block_chains(block)) == edges


@pytest.mark.parametrize("seed", range(4))
def test_one_request_alone_has_the_reference_chain_and_verdict(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    for i in range(300):
        t = random_trace(rng, i)
        assert infer_chain(t) == ref.infer_chain(t)
        assert judge_request(t) == ref.judge_request(t)


def test_an_empty_block_and_a_block_of_normal_requests() -> None:
    assert judge_requests(ClosedRequests.of([])) == []
    assert normal_edges(ClosedRequests.of([])) == Counter()
    rng = np.random.default_rng(5)
    quiet = []
    for i in range(20):
        t = random_trace(rng, i)
        t.flags[:] = 0
        quiet.append(t)
    assert judge_requests(ClosedRequests.of(quiet)) == []


def test_blocks_concatenate_and_index_as_their_traces() -> None:
    rng = np.random.default_rng(9)
    traces = [random_trace(rng, i) for i in range(30)]
    a, b = ClosedRequests.of(traces[:10]), ClosedRequests.of(traces[10:])
    both = a + b
    assert len(both) == 30 and [t.request_id for t in both] == [t.request_id for t in traces]
    assert both[-1].request_id == "r29" and np.array_equal(both[12].ts, traces[12].ts)
    assert judge_requests(both) == judge_requests(a) + judge_requests(b)
    with pytest.raises(IndexError):
        both[30]
