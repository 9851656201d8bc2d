"""Call chains and root-cause verdicts for a whole block of closed requests, in numpy over the
block's columns: the rules `correlation.chains` states, with no Python call per request (only the
verdict objects are built one by one, for the anomalous requests).

Keys: a (request, service) node is `request * K + service`, K one more than the block's largest
service id; every grouping below is a sort or a search over such keys.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detector.correlation.chains import Chain, RequestVerdict
from detector.correlation.flags import ERROR, SLOW
from detector.correlation.requests import ClosedRequests, RequestTrace

I64 = npt.NDArray[np.int64]
METHODS = ("timing", "caller", "spans")
_NONE = np.zeros(0, dtype=np.int64)


@dataclass(slots=True)
class BlockChains:
    """The call chains of a block: unique (request, caller, callee) edges sorted by request,
    each request's method (an index into `METHODS`), and its nodes' depths below its entry."""

    k: int  # node key = request * k + service
    edge_q: I64
    edge_a: I64
    edge_b: I64
    method: npt.NDArray[np.int8]
    node_key: I64  # sorted
    node_depth: I64
    node_present: npt.NDArray[np.bool_]  # logged in the request, or called in it

    def depth_of(self, keys: I64) -> I64:
        """Depths of these node keys; 0 for a node not in any chain."""
        if not len(self.node_key):
            return np.zeros(len(keys), dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.node_key, keys), len(self.node_key) - 1)
        return np.where(self.node_key[pos] == keys, self.node_depth[pos], 0)


def block_chains(c: ClosedRequests) -> BlockChains:
    """Every request's chain: span/parent edges, plus caller/callee field edges, and each
    service's call depth below the request's entry (a breadth-first depth, all at once).

    >>> import numpy as np
    >>> from detector.correlation.requests import RequestTrace
    >>> z = lambda *v: np.array(v)
    >>> t = RequestTrace("r", ts=z(0.1, 0.2, 0.3), service=z(0, 1, 2), flags=z(0, 0, 1),
    ...                  span=z(10, 11, 12).astype(np.uint32), parent=z(0, 10, 11).astype(np.uint32),
    ...                  callee=z(-1, -1, -1), caller=z(-1, -1, -1), template=z(1, 2, 3),
    ...                  latency=z(1.0, 1.0, 1.0), status=z(200, 200, 500))
    >>> ch = block_chains(ClosedRequests.of([t]))
    >>> list(zip(ch.edge_a.tolist(), ch.edge_b.tolist())), ch.node_depth.tolist(), METHODS[ch.method[0]]
    ([(0, 1), (1, 2)], [0, 1, 2], 'spans')
    """
    m, col = len(c), c.columns
    q = c.request_of_rows()
    svc = col["service"].astype(np.int64)
    span, parent = col["span"].astype(np.int64), col["parent"].astype(np.int64)
    caller, callee = col["caller"].astype(np.int64), col["callee"].astype(np.int64)
    k = int(max(svc.max(initial=0), caller.max(initial=0), callee.max(initial=0))) + 1

    # span -> the service of its last event, per request; then each event's parent span
    with_span = np.flatnonzero(span != 0)
    req_spans = np.zeros(m, dtype=bool)
    req_spans[q[with_span]] = True
    sk = (q[with_span] << 32) | span[with_span]
    order = np.argsort(sk, kind="stable")
    sk, sv = sk[order], svc[with_span][order]
    last = np.r_[sk[1:] != sk[:-1], True] if len(sk) else np.zeros(0, dtype=bool)
    keys, vals = sk[last], sv[last]
    in_spans = req_spans[q]
    linked = np.flatnonzero(in_spans & (parent != 0))
    pk = (q[linked] << 32) | parent[linked]
    if len(keys):
        pos = np.minimum(np.searchsorted(keys, pk), len(keys) - 1)
        found = keys[pos] == pk
    else:
        pos, found = _NONE, np.zeros(len(pk), dtype=bool)
    child, psvc = linked[found], vals[pos[found]]
    cross = psvc != svc[child]
    sq, sa, sb = q[child][cross], psvc[cross], svc[child][cross]
    roots = np.flatnonzero(in_spans & (parent == 0))

    fc = np.flatnonzero((caller >= 0) & (caller != svc))
    fe = np.flatnonzero((callee >= 0) & (callee != svc))
    fq = np.r_[q[fc], q[fe]]
    method = np.zeros(m, dtype=np.int8)
    method[fq] = 1
    spans_method = np.zeros(m, dtype=bool)
    spans_method[sq] = True
    spans_method |= req_spans & (np.bincount(q[roots], minlength=m) > 0)
    method[spans_method] = 2
    eq, ea, eb = _unique_triples(np.r_[sq, fq], np.r_[sa, caller[fc], svc[fe]],
                                 np.r_[sb, svc[fc], callee[fe]])

    # nodes: logged services, and both ends of every edge
    logged = q * k + svc
    akey, bkey = eq * k + ea, eq * k + eb
    node_key = np.unique(np.r_[logged, akey, bkey])

    def where(keys: I64) -> I64:  # every key asked for is a node
        return np.searchsorted(node_key, keys)

    nq = node_key // k
    is_callee = np.zeros(len(node_key), dtype=bool)
    is_callee[where(bkey)] = True
    is_logged = np.zeros(len(node_key), dtype=bool)
    is_logged[where(logged)] = True
    is_root = np.zeros(len(node_key), dtype=bool)
    is_root[where(logged[roots])] = True
    # the entries: roots nobody calls, else logged services nobody calls, else the first event's
    first = np.zeros(len(node_key), dtype=bool)
    if m:
        first[where(logged[c.bounds[:-1]])] = True
    entry = np.zeros(len(node_key), dtype=bool)
    for candidates in (is_root & ~is_callee, is_logged & ~is_callee, first):
        open_q = np.bincount(nq[entry], minlength=m) == 0
        entry |= candidates & open_q[nq]
    has_edges = np.bincount(eq, minlength=m) > 0
    depth = np.where(entry | ~has_edges[nq], 0, np.iinfo(np.int64).max // 2)
    ai, bi = where(akey), where(bkey)
    while len(ai):
        relaxed = depth.copy()
        np.minimum.at(relaxed, bi, depth[ai] + 1)
        if np.array_equal(relaxed, depth):
            break
        depth = relaxed
    depth[depth >= np.iinfo(np.int64).max // 2] = 0  # not reached from an entry
    return BlockChains(k, eq, ea, eb, method, node_key, depth, is_logged | is_callee)


def normal_edges(c: ClosedRequests, chains: BlockChains | None = None) -> Counter[tuple[int, int]]:
    """Caller -> callee edges of the block's normal requests, each counted once per request."""
    ch = chains or block_chains(c)
    normal = ~c.anomalous()[ch.edge_q] if len(ch.edge_q) else np.zeros(0, dtype=bool)
    pairs, counts = np.unique(np.c_[ch.edge_a[normal], ch.edge_b[normal]], axis=0,
                              return_counts=True)
    return Counter({(int(a), int(b)): int(n) for (a, b), n in zip(pairs.tolist(), counts.tolist(),
                                                                  strict=True)})


def judge_requests(c: ClosedRequests, chains: BlockChains | None = None
                   ) -> list[RequestVerdict]:
    """The verdict of every anomalous request of the block, in block order: among the services
    showing the request's strongest kind of anomaly (errors, else latency, else templates), the
    deepest, earliest first on ties, then the first to show it; silent callees of failed calls
    count one level below their caller."""
    if not len(c) or not c.anomalous().any():
        return []
    ch = chains or block_chains(c)
    k, col, bounds = ch.k, c.columns, c.bounds
    q = c.request_of_rows()
    n = len(q)
    svc, ts, flags = col["service"].astype(np.int64), col["ts"], col["flags"]
    callee = col["callee"].astype(np.int64)
    some = np.bitwise_or.reduceat(flags, bounds[:-1])
    primary = np.where(some & ERROR, ERROR, np.where(some & SLOW, SLOW, 0xFF)).astype(np.uint8)
    hr = np.flatnonzero(flags & primary[q])  # rows showing their request's primary kind
    hq = q[hr]

    # candidates that logged: per (request, service), the first hit's time and all hits' kinds
    hkey = hq * k + svc[hr]
    order = np.lexsort((hr, hkey))
    starts = np.flatnonzero(np.r_[True, hkey[order][1:] != hkey[order][:-1]])
    g = order[starts]
    c_key = hkey[g]
    c_onset = np.minimum.reduceat(ts[hr][order], starts)
    c_kinds = np.bitwise_or.reduceat(flags[hr][order], starts).astype(np.int64)
    c_rank = hr[g]
    c_depth = ch.depth_of(c_key)
    c_silent = np.zeros(len(c_key), dtype=bool)

    # silent candidates: the callee of a failed call that logged nothing in the request
    logged = np.unique(q * k + svc)
    ck = hq * k + callee[hr]
    pos = np.minimum(np.searchsorted(logged, ck), len(logged) - 1)
    sr = np.flatnonzero((callee[hr] >= 0) & (logged[pos] != ck))
    if len(sr):
        skey = ck[sr]
        order = np.lexsort((hr[sr], skey))
        starts = np.flatnonzero(np.r_[True, skey[order][1:] != skey[order][:-1]])
        s_key = skey[order][starts]
        s_onset = np.minimum.reduceat(ts[hr[sr]][order], starts)
        below = ch.depth_of(hq[sr] * k + svc[hr[sr]]) + 1
        s_depth = np.maximum(ch.depth_of(s_key), np.maximum.reduceat(below[order], starts))
        c_key = np.r_[c_key, s_key]
        c_onset = np.r_[c_onset, s_onset]
        c_kinds = np.r_[c_kinds, np.full(len(s_key), ERROR, dtype=np.int64)]
        c_rank = np.r_[c_rank, n + hr[sr][order][starts]]  # after every service that logged
        c_depth = np.r_[c_depth, s_depth]
        c_silent = np.r_[c_silent, np.ones(len(s_key), dtype=bool)]
    c_q = c_key // k

    # the root: deepest, then earliest, then first shown; the others by onset, then first shown
    best = np.lexsort((c_rank, c_onset, -c_depth, c_q))
    firsts = best[np.r_[True, c_q[best][1:] != c_q[best][:-1]]]
    req = c_q[firsts]  # the anomalous requests, ascending
    root_of = np.full(len(c), -1, dtype=np.int64)
    root_of[req] = c_key[firsts]
    ancestors = _ancestors(c_key[firsts], ch.edge_q * k + ch.edge_a, ch.edge_q * k + ch.edge_b)
    has_edges = np.bincount(ch.edge_q, minlength=len(c)) > 0
    rest = np.lexsort((c_rank, c_onset, c_q))
    rest = rest[c_key[rest] != root_of[c_q[rest]]]
    keep = ~has_edges[c_q[rest]] | np.isin(c_key[rest], ancestors)
    rest = rest[keep]
    # the root's templates: of its rows that show the primary kind
    rt = hr[hkey == root_of[hq]]
    tq, tt = q[rt], col["template"][rt].astype(np.int64)
    tpl = np.unique(np.c_[tq[tt != -1], tt[tt != -1]], axis=0)
    onset = np.minimum.reduceat(ts[hr], np.flatnonzero(np.r_[True, hq[1:] != hq[:-1]]))

    # one object per anomalous request, from lists sliced by request
    def spans(keys: I64) -> tuple[list[int], list[int]]:
        return (np.searchsorted(keys, req, "left").tolist(),
                np.searchsorted(keys, req, "right").tolist())

    props, (p_lo, p_hi) = (c_key[rest] % k).tolist(), spans(c_q[rest])
    tpls, (t_lo, t_hi) = tpl[:, 1].tolist(), spans(tpl[:, 0])
    e_a, e_b, (e_lo, e_hi) = ch.edge_a.tolist(), ch.edge_b.tolist(), spans(ch.edge_q)
    ids, method = c.request_ids, ch.method.tolist()
    out = []
    for i, (r, key, o, ro, kd, sil) in enumerate(zip(
            req.tolist(), c_key[firsts].tolist(), onset.tolist(), c_onset[firsts].tolist(),
            c_kinds[firsts].tolist(), c_silent[firsts].tolist(), strict=True)):
        out.append(RequestVerdict(
            request_id=ids[r], root=key % k, propagators=props[p_lo[i]:p_hi[i]], onset=o,
            root_onset=ro, kinds=kd, templates=tpls[t_lo[i]:t_hi[i]], silent=sil,
            method=METHODS[method[r]],
            edges=set(zip(e_a[e_lo[i]:e_hi[i]], e_b[e_lo[i]:e_hi[i]], strict=True))))
    return out


def infer_chain(trace: RequestTrace) -> Chain:
    """One request's caller -> callee edges and each service's depth below the entry.

    >>> import numpy as np
    >>> z = lambda *v: np.array(v)
    >>> t = RequestTrace("r", ts=z(0.3, 0.2, 0.1), service=z(0, 1, 2), flags=z(0, 0, 1),
    ...                  span=z(10, 11, 12).astype(np.uint32), parent=z(0, 10, 11).astype(np.uint32),
    ...                  callee=z(-1, -1, -1), caller=z(-1, -1, -1), template=z(1, 2, 3),
    ...                  latency=z(1.0, 1.0, 1.0), status=z(200, 200, 500))
    >>> c = infer_chain(t)
    >>> sorted(c.edges), c.depth, c.method
    ([(0, 1), (1, 2)], {0: 0, 1: 1, 2: 2}, 'spans')
    """
    ch = block_chains(ClosedRequests.of([trace]))
    present = ch.node_present
    return Chain(set(zip(ch.edge_a.tolist(), ch.edge_b.tolist(), strict=True)),
                 dict(zip((ch.node_key[present] % ch.k).tolist(), ch.node_depth[present].tolist(),
                          strict=True)),
                 METHODS[ch.method[0]])


def judge_request(trace: RequestTrace) -> RequestVerdict | None:
    """One request's verdict (`judge_requests` of a block of one); None if it holds no
    anomalous event."""
    found = judge_requests(ClosedRequests.of([trace]))
    return found[0] if found else None


def _ancestors(starts: I64, akey: I64, bkey: I64) -> I64:
    """Node keys from which a start node is reachable along the edges (not the starts, unless
    on a cycle through them): a breadth-first walk up the edges of all requests at once."""
    seen = _NONE
    frontier = np.unique(starts)
    while len(frontier) and len(akey):
        new = np.setdiff1d(akey[np.isin(bkey, frontier)], seen)
        seen = np.union1d(seen, new)
        frontier = new
    return seen


def _unique_triples(q: I64, a: I64, b: I64) -> tuple[I64, I64, I64]:
    """Distinct (q, a, b) rows sorted by q, then a, then b."""
    if not len(q):
        return _NONE, _NONE, _NONE
    order = np.lexsort((b, a, q))
    q, a, b = q[order], a[order], b[order]
    keep = np.r_[True, (q[1:] != q[:-1]) | (a[1:] != a[:-1]) | (b[1:] != b[:-1])]
    return q[keep], a[keep], b[keep]
