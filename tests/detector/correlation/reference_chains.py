"""The per-request root-cause rules as they were written before they were computed a block at a
time (`detector.correlation.verdicts`): kept as the reference the columnar code must equal."""

from __future__ import annotations

from collections import deque

import numpy as np

from detector.correlation.chains import Chain, Edges, RequestVerdict
from detector.correlation.flags import ERROR, SLOW
from detector.correlation.requests import RequestTrace


def infer_chain(trace: RequestTrace) -> Chain:
    """Caller -> callee edges of one request and each service's depth below the entry."""
    edges: Edges = set()
    svc = trace.service.tolist()
    span_svc = {int(s): v for s, v in zip(trace.span.tolist(), svc, strict=True) if s}
    roots: set[int] = set()
    method = "timing"
    for v, p in zip(svc, trace.parent.tolist(), strict=True):
        if not span_svc:
            break
        if p and p in span_svc:
            if span_svc[p] != v:
                edges.add((span_svc[p], v))
        elif not p:
            roots.add(v)
    if edges or (span_svc and roots):
        method = "spans"
    field_edges = {(c, v) for v, c in zip(svc, trace.caller.tolist(), strict=True) if c >= 0 and c != v}
    field_edges |= {(v, c) for v, c in zip(svc, trace.callee.tolist(), strict=True) if c >= 0 and c != v}
    if field_edges and method == "timing":
        method = "caller"
    edges |= field_edges
    present = set(svc) | {b for _, b in edges}
    if not edges:
        return Chain(edges, dict.fromkeys(present, 0), method)
    callees = {b for _, b in edges}
    entries = (roots - callees) or (present - callees) or {svc[int(np.argmin(trace.ts))]}
    depth = dict.fromkeys(entries, 0)
    queue = deque(entries)
    children: dict[int, list[int]] = {}
    for a, b in edges:
        children.setdefault(a, []).append(b)
    while queue:
        a = queue.popleft()
        for b in children.get(a, []):
            if b not in depth:
                depth[b] = depth[a] + 1
                queue.append(b)
    for s in present:
        depth.setdefault(s, 0)
    return Chain(edges, depth, method)


def judge_request(trace: RequestTrace) -> RequestVerdict | None:
    """The request's root-cause candidate: among the services showing its strongest kind of
    anomaly (errors, else latency, else templates), the deepest, earliest first on ties.

    None if the request holds no anomalous event.
    """
    flags = trace.flags
    if not (flags > 0).any():
        return None
    chain = infer_chain(trace)
    primary = ERROR if (flags & ERROR).any() else SLOW if (flags & SLOW).any() else 0xFF
    hit = (flags & primary) > 0
    svc, ts = trace.service, trace.ts
    onset: dict[int, float] = {}
    kinds: dict[int, int] = {}
    for s, t, f in zip(svc[hit].tolist(), ts[hit].tolist(), flags[hit].tolist(), strict=True):
        onset[s] = min(onset.get(s, t), t)
        kinds[s] = kinds.get(s, 0) | f
    silent: set[int] = set()
    logged = set(svc.tolist())
    for s, t, c in zip(svc[hit].tolist(), ts[hit].tolist(), trace.callee[hit].tolist(), strict=True):
        if c >= 0 and c not in logged:  # a failed call to a service that logged nothing
            silent.add(c)
            onset[c] = min(onset.get(c, t), t)
            kinds[c] = kinds.get(c, 0) | ERROR
            chain.depth[c] = max(chain.depth.get(c, 0), chain.depth.get(s, 0) + 1)
    root = max(onset, key=lambda s: (chain.depth.get(s, 0), -onset[s]))
    ancestors = _ancestors(root, chain.edges)
    others = [s for s in sorted(onset, key=onset.__getitem__) if s != root]
    propagators = [s for s in others if s in ancestors] if chain.edges else others
    root_rows = hit & (svc == root)
    return RequestVerdict(
        request_id=trace.request_id, root=root, propagators=propagators,
        onset=float(ts[hit].min()), root_onset=onset[root], kinds=kinds[root],
        templates=sorted(set(trace.template[root_rows].tolist()) - {-1}),
        silent=root in silent, method=chain.method, edges=chain.edges,
    )


def _ancestors(node: int, edges: Edges) -> set[int]:
    parents: dict[int, list[int]] = {}
    for a, b in edges:
        parents.setdefault(b, []).append(a)
    seen: set[int] = set()
    stack = [node]
    while stack:
        for p in parents.get(stack.pop(), []):
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return seen
