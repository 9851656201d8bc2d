"""Gathers each request's events across services until it has been quiet for a TTL, in bounded
memory, and hands over the requests that hold an anomalous event.

Storage is columnar: a numpy hash table (`IdTable`) from the request id's 64-bit hash to a slot,
per-slot numpy arrays (first/last event time, event and anomaly counts), and an append-only
event arena whose rows name their slot and the slot's request sequence number (a slot is reused;
the sequence tells old rows from new). Normal requests are closed by freeing their slot: their
rows die in place and the arena is compacted when a quarter of it is dead and it would grow.
Only anomalous requests (and a sample of normal ones, for the call graph) are materialised.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.config import CorrelationConfig
from detector.correlation.idtable import IdTable
from detector.correlation.recent_ids import RecentIds

U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]

_COLUMNS: dict[str, type] = {
    # seq, span and parent keep their low 32 bits: enough to tell a reused slot's rows apart and
    # to link spans within one request (a collision needs 2^32 requests or spans in one request).
    "slot": np.int32, "seq": np.uint32, "ts": np.float64, "service": np.int32, "flags": np.uint8,
    "span": np.uint32, "parent": np.uint32, "callee": np.int32, "caller": np.int32,
    "template": np.int32, "latency": np.float32, "status": np.int16,
}


def _enc(arr: npt.NDArray[Any]) -> dict[str, str]:
    return {"dtype": arr.dtype.str, "b64": base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode()}


def _dec(d: dict[str, str]) -> npt.NDArray[Any]:
    return np.frombuffer(base64.b64decode(d["b64"]), dtype=np.dtype(d["dtype"])).copy()


def _check_tables(slots: dict[str, npt.NDArray[Any]], free: npt.NDArray[np.int64], next_seq: int,
                  arena: dict[str, npt.NDArray[Any]], max_open: int) -> None:
    """The invariants `RequestCorrelator` relies on, checked on a loaded state."""
    n = len(slots["_seq"])
    if any(len(a) != n for a in slots.values()) or n == 0:
        raise ValueError("slot arrays differ in length or are empty")
    live = slots["_seq"] >= 0
    if int(live.sum()) > max_open:
        raise ValueError(f"{int(live.sum())} open requests, over correlation.max_open_requests")
    if len(free) and (free.min() < 0 or free.max() >= n or live[free].any()
                      or len(np.unique(free)) != len(free)):
        raise ValueError("the free-slot list names slots out of range, in use or twice")
    if len(free) + int(live.sum()) != n:
        raise ValueError("slots are neither free nor in use")
    if live.any() and int(slots["_seq"][live].max()) >= next_seq:
        raise ValueError("a request sequence number is not below next_seq")
    rows = len(arena["ts"])
    if any(len(a) != rows for a in arena.values()):
        raise ValueError("event columns differ in length")
    if rows and (arena["slot"].min() < 0 or arena["slot"].max() >= n):
        raise ValueError("an event names a slot out of range")
    for name in ("_first", "_last"):
        if not np.isfinite(slots[name]).all():
            raise ValueError(f"{name} holds a value that is not finite")
    if (slots["_n"] < 0).any() or (slots["_anom"] < 0).any():
        raise ValueError("negative event counts")


def _low32(h: U64) -> npt.NDArray[np.uint32]:
    """The low 32 bits of non-zero hashes, kept non-zero (0 means "none")."""
    low = (h & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return np.where((low == 0) & (h != 0), np.uint32(1), low)


def id_hash(ids: pl.Series) -> U64:
    """64-bit hashes of text ids (0 for null; a real id hashing to 0 becomes 1).

    >>> h = id_hash(pl.Series(["a", None, "a"]))
    >>> bool(h[0] == h[2] != 0), int(h[1])
    (True, 0)
    """
    c = pl.col(ids.name)
    out = ids.to_frame().select(c.hash(seed=0x5EED).alias("h"), c.is_null().alias("null"))
    h = out["h"].to_numpy().astype(np.uint64)  # one query for both: each costs ~0.2 ms
    h = np.where(h == 0, np.uint64(1), h)
    return np.where(out["null"].to_numpy(), np.uint64(0), h)


@dataclass(slots=True)
class RequestTrace:
    """One closed request, events in time order: one that holds an anomalous event, or one of
    the normal requests sampled (one in `graph_sample`) to learn the call graph."""

    request_id: str
    ts: F64
    service: I32
    flags: npt.NDArray[np.uint8]
    span: npt.NDArray[np.unsignedinteger[Any]]  # low 32 bits of the span id's hash; 0: none
    parent: npt.NDArray[np.unsignedinteger[Any]]
    callee: I32
    caller: I32
    template: I32
    latency: npt.NDArray[np.float32]
    status: npt.NDArray[np.int16]
    evicted: bool = False  # closed early to make room, so possibly incomplete

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def anomalous(self) -> bool:
        return bool((self.flags > 0).any())


_TRACE_COLUMNS = ("ts", "service", "flags", "span", "parent", "callee", "caller", "template",
                  "latency", "status")


@dataclass(slots=True)
class ClosedRequests:
    """Closed requests as columns: request i's events, in time order, are rows
    `bounds[i]:bounds[i + 1]` of every column (those of `RequestTrace`). Judged a block at a
    time (`correlation.verdicts`); indexing or iterating gives `RequestTrace` views.

    >>> z = ClosedRequests.of([])
    >>> len(z), list(z)
    (0, [])
    """

    request_ids: list[str]
    bounds: npt.NDArray[np.int64]
    columns: dict[str, npt.NDArray[Any]]
    evicted: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, traces: list[RequestTrace]) -> ClosedRequests:
        """A block of these traces, in this order."""
        sizes = [len(t) for t in traces]
        bounds = np.zeros(len(traces) + 1, dtype=np.int64)
        np.cumsum(sizes, out=bounds[1:])
        columns = {k: np.concatenate([getattr(t, k) for t in traces]) if traces
                   else np.zeros(0, dtype=_COLUMNS[k]) for k in _TRACE_COLUMNS}
        return cls([t.request_id for t in traces], bounds, columns,
                   np.array([t.evicted for t in traces], dtype=bool))

    def __len__(self) -> int:
        return len(self.request_ids)

    def __getitem__(self, i: int) -> RequestTrace:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        lo, hi = int(self.bounds[i]), int(self.bounds[i + 1])
        cols = {k: v[lo:hi] for k, v in self.columns.items()}
        return RequestTrace(self.request_ids[i], evicted=bool(self.evicted[i]), **cols)

    def __iter__(self) -> Iterator[RequestTrace]:
        return (self[i] for i in range(len(self)))

    def __add__(self, other: ClosedRequests) -> ClosedRequests:
        if not len(other):
            return self
        if not len(self):
            return other
        return ClosedRequests(
            self.request_ids + other.request_ids,
            np.concatenate([self.bounds, other.bounds[1:] + self.bounds[-1]]),
            {k: np.concatenate([v, other.columns[k]]) for k, v in self.columns.items()},
            np.concatenate([self.evicted, other.evicted]))

    @property
    def rows(self) -> int:
        return int(self.bounds[-1])

    def request_of_rows(self) -> npt.NDArray[np.int64]:
        """Each row's request index."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.bounds))

    def anomalous(self) -> npt.NDArray[np.bool_]:
        """Per request: whether it holds an anomalous event."""
        if not len(self):
            return np.zeros(0, dtype=bool)
        return np.bitwise_or.reduceat(self.columns["flags"], self.bounds[:-1]) > 0


@dataclass
class CorrelationStats:
    events: int = 0
    no_request_id: int = 0
    requests_opened: int = 0
    requests_closed: int = 0
    anomalous_requests: int = 0
    evicted_requests: int = 0
    dropped_events: int = 0  # over max_events_per_request
    late_events: int = 0  # for a request already closed
    compactions: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class RequestCorrelator:
    """Open requests keyed by request id; `add` a batch's columns, `close_due(now)` the quiet ones.

    >>> import polars as pl
    >>> from detector.config import CorrelationConfig
    >>> c = RequestCorrelator(CorrelationConfig(ttl_seconds=5))
    >>> rid = pl.Series(["r1", "r1", "r2"])
    >>> c.add(rid, ts=np.array([0.0, 0.1, 0.2]), service=np.array([0, 1, 0], dtype=np.int32),
    ...       flags=np.array([0, 1, 0], dtype=np.uint8))
    >>> c.open_requests, [t.request_id for t in c.close_due(now=10.0)], c.open_requests
    (2, ['r1'], 0)
    """

    def __init__(self, cfg: CorrelationConfig) -> None:
        self.cfg = cfg
        self.stats = CorrelationStats()
        self._table = IdTable(min(cfg.max_open_requests, 1 << 16))  # key hash -> slot
        cap = 1024
        self._key = np.zeros(cap, dtype=np.uint64)
        self._seq = np.full(cap, -1, dtype=np.int64)  # -1: free
        self._first = np.zeros(cap)
        self._last = np.zeros(cap)
        self._n = np.zeros(cap, dtype=np.int32)
        self._anom = np.zeros(cap, dtype=np.int32)
        self._free = np.arange(cap - 1, -1, -1, dtype=np.int64)  # a stack of free slots
        self._nfree = cap
        self._next_seq = 0
        self._rid: dict[int, str] = {}  # seq -> request id text, for anomalous requests only
        self._arena: dict[str, npt.NDArray[Any]] = {
            k: np.zeros(4096, dtype=t) for k, t in _COLUMNS.items()}
        self._rows = 0
        self._dead = 0
        self._recent = RecentIds(cfg.late_memory, max(10 * cfg.ttl_seconds, 60.0))
        self._pending = ClosedRequests.of([])  # anomalous requests closed by eviction

    @property
    def open_requests(self) -> int:
        return len(self._table)

    def nbytes(self) -> int:
        """Bytes held: slot arrays, arena, key table, and the recently closed ids."""
        slots = sum(a.nbytes for a in (self._key, self._seq, self._first, self._last, self._n,
                                       self._anom))
        arena = sum(a.nbytes for a in self._arena.values())
        return int(slots + arena + self._table.nbytes() + self._free.nbytes
                   + self._recent.nbytes())

    # ---- checkpoints --------------------------------------------------------------------
    _SLOT_ARRAYS = ("_key", "_seq", "_first", "_last", "_n", "_anom")

    def state_dict(self) -> dict[str, Any]:
        """Open requests and their events as plain data (numpy buffers in base64): no pickle.
        The late-event memory is not kept."""
        self._compact()
        return {
            "slots": {name: _enc(getattr(self, name)) for name in self._SLOT_ARRAYS},
            "free": _enc(self._free[: self._nfree]), "next_seq": self._next_seq,
            "rid": [[k, v] for k, v in self._rid.items()],
            "arena": {k: _enc(v[: self._rows]) for k, v in self._arena.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Load `state_dict` output; a state that breaks an invariant of the tables (a tampered
        or truncated checkpoint) raises ValueError before anything is replaced."""
        slots = {name: self._typed(state["slots"][name], getattr(self, name).dtype)
                 for name in self._SLOT_ARRAYS}
        free = self._typed(state["free"], self._free.dtype)
        next_seq = int(state["next_seq"])
        rid = {int(k): str(v) for k, v in state["rid"]}
        arena = {k: self._typed(state["arena"][k], t) for k, t in _COLUMNS.items()}
        _check_tables(slots, free, next_seq, arena, self.cfg.max_open_requests)
        for name, arr in slots.items():
            setattr(self, name, arr)
        self._free, self._nfree, self._next_seq, self._rid = free, len(free), next_seq, rid
        self._rows = len(arena["ts"])
        size = max(4096, self._rows)
        self._arena = {}
        for k, t in _COLUMNS.items():
            col: npt.NDArray[Any] = np.zeros(size, dtype=t)
            col[: self._rows] = arena[k]
            self._arena[k] = col
        self._dead = 0
        live = np.flatnonzero(self._seq >= 0)
        self._table = IdTable(max(len(live), min(self.cfg.max_open_requests, 1 << 16)))
        if len(live):
            self._table.insert(self._key[live], live)

    @staticmethod
    def _typed(d: dict[str, str], dtype: np.dtype[Any] | type) -> npt.NDArray[Any]:
        arr = _dec(d)
        if arr.dtype != np.dtype(dtype):
            raise ValueError(f"array of {arr.dtype}, expected {np.dtype(dtype)}")
        return arr

    # ---- intake -------------------------------------------------------------------------
    def add(
        self,
        request_id: pl.Series,
        ts: F64,
        service: I32,
        flags: npt.NDArray[np.uint8],
        span: U64 | None = None,
        parent: U64 | None = None,
        callee: I32 | None = None,
        caller: I32 | None = None,
        template: npt.NDArray[np.int64] | None = None,
        latency: F64 | None = None,
        status: npt.NDArray[np.int32] | None = None,
    ) -> None:
        """Add one batch of events (columns of equal length); events without a request id are
        counted and skipped."""
        n = len(ts)
        self.stats.events += n
        if n == 0:
            return
        keys = id_hash(request_id)
        has = keys != 0
        self.stats.no_request_id += int(n - has.sum())
        idx = np.flatnonzero(has)
        if not len(idx):
            return
        ek = keys[idx]
        slot = self._table.get(ek)
        miss = np.flatnonzero(slot < 0)
        if len(miss):
            # New ids (and late events of closed ones): one decision per distinct id.
            uniq, inv = np.unique(ek[miss], return_inverse=True)
            slots_u = np.full(len(uniq), -2, dtype=np.int64)
            late = self._recent.contains(uniq, float(ts[idx].max()))
            fresh = np.flatnonzero(~late)
            if len(fresh):
                # Existing requests in this batch count as active now, so eviction spares them.
                live = slot[slot >= 0]
                self._last[live] = np.maximum(self._last[live], float(ts[idx].max()))
                slots_u[fresh] = self._allocate(uniq[fresh], float(ts[idx].min()))
            slot[miss] = slots_u[inv]
        late_ev = slot == -2
        if late_ev.any():
            self.stats.late_events += int(late_ev.sum())
            idx, slot = idx[~late_ev], slot[~late_ev]
        if not len(idx):
            return
        # At most max_events_per_request per request: only slots that would pass it need ranks.
        counts = np.bincount(slot, minlength=len(self._n))
        over = self._n + counts > self.cfg.max_events_per_request
        if over.any():
            at_risk = np.flatnonzero(over[slot])
            order = at_risk[np.argsort(slot[at_risk], kind="stable")]
            s_sorted = slot[order]
            starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
            group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(order)]))
            rank = np.arange(len(order)) - starts[group]
            drop = order[self._n[s_sorted] + rank >= self.cfg.max_events_per_request]
            keep = np.ones(len(idx), dtype=bool)
            keep[drop] = False
            self.stats.dropped_events += len(drop)
            idx, slot = idx[keep], slot[keep]
        if not len(idx):
            return
        m = len(idx)
        self._reserve(m)
        r0, r1 = self._rows, self._rows + m
        a = self._arena
        a["slot"][r0:r1] = slot
        a["seq"][r0:r1] = self._seq[slot].astype(np.uint32)
        a["ts"][r0:r1] = ts[idx]
        a["service"][r0:r1] = service[idx]
        a["flags"][r0:r1] = flags[idx]
        a["span"][r0:r1] = 0 if span is None else _low32(span[idx])
        a["parent"][r0:r1] = 0 if parent is None else _low32(parent[idx])
        a["callee"][r0:r1] = -1 if callee is None else callee[idx]
        a["caller"][r0:r1] = -1 if caller is None else caller[idx]
        a["template"][r0:r1] = -1 if template is None else template[idx]
        a["latency"][r0:r1] = np.nan if latency is None else latency[idx]
        a["status"][r0:r1] = -1 if status is None else status[idx]
        self._rows = r1
        # Per-slot counters.
        anom = (flags[idx] > 0).astype(np.int32)
        size = len(self._n)
        self._n += np.bincount(slot, minlength=size).astype(np.int32)
        if anom.any():
            np.add.at(self._anom, slot, anom)
        np.maximum.at(self._last, slot, ts[idx])
        np.minimum.at(self._first, slot, ts[idx])
        if anom.any():
            rids = request_id.gather(idx[anom > 0]).to_list()
            for s, r in zip(slot[anom > 0].tolist(), rids, strict=True):
                self._rid.setdefault(int(self._seq[s]), r)

    def _allocate(self, keys: U64, now: float) -> npt.NDArray[np.int64]:
        need = len(keys)
        room = self.cfg.max_open_requests - len(self._table)
        if need > room:
            self._evict(need - room)
        while self._nfree < need:
            self._grow_slots()
        slots = self._free[self._nfree - need: self._nfree][::-1].copy()
        self._nfree -= need
        seqs = np.arange(self._next_seq, self._next_seq + need)
        self._next_seq += need
        self._key[slots] = keys
        self._seq[slots] = seqs
        self._first[slots] = np.inf
        self._last[slots] = now
        self._n[slots] = 0
        self._anom[slots] = 0
        self._table.insert(keys, slots)
        self.stats.requests_opened += need
        return slots

    def _grow_slots(self) -> None:
        old = len(self._key)
        new = min(max(2 * old, 1024), max(self.cfg.max_open_requests, old + 1))
        for name, fill in (("_key", 0), ("_seq", -1), ("_first", 0.0), ("_last", 0.0), ("_n", 0),
                           ("_anom", 0)):
            arr = getattr(self, name)
            grown = np.full(new, fill, dtype=arr.dtype)
            grown[:old] = arr
            setattr(self, name, grown)
        self._push_free(np.arange(new - 1, old - 1, -1, dtype=np.int64))

    def _push_free(self, slots: npt.NDArray[np.int64]) -> None:
        end = self._nfree + len(slots)
        if end > len(self._free):
            grown = np.zeros(max(end, 2 * len(self._free)), dtype=np.int64)
            grown[: self._nfree] = self._free[: self._nfree]
            self._free = grown
        self._free[self._nfree: end] = slots
        self._nfree = end

    def _reserve(self, m: int) -> None:
        size = len(self._arena["ts"])
        if self._rows + m <= size:
            return
        if self._dead * 4 >= self._rows:  # compact before growing when a quarter is dead
            self._compact()
            if self._rows + m <= len(self._arena["ts"]):
                return
        new = max(size + size // 2, self._rows + m)
        for k, arr in self._arena.items():
            grown = np.zeros(new, dtype=arr.dtype)
            grown[: self._rows] = arr[: self._rows]
            self._arena[k] = grown

    def _alive(self, slots: I32, seqs: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
        """Rows that belong to the request now open in their slot."""
        current = self._seq[slots]
        alive: npt.NDArray[np.bool_] = (current >= 0) & (current.astype(np.uint32) == seqs)
        return alive

    def _compact(self) -> None:
        a = self._arena
        r = self._rows
        alive = self._alive(a["slot"][:r], a["seq"][:r])
        keep = np.flatnonzero(alive)
        for k in a:
            a[k][: len(keep)] = a[k][keep]
        self._rows = len(keep)
        self._dead = 0
        self.stats.compactions += 1

    # ---- closing ------------------------------------------------------------------------
    def close_due(self, now: float) -> ClosedRequests:
        """Close requests quiet for the TTL at event time `now`; the anomalous ones, materialised."""
        cutoff = now - self.cfg.ttl_seconds
        slots = np.flatnonzero((self._seq >= 0) & (self._last < cutoff))
        return self._close(slots, evicted=False)

    def close_all(self) -> ClosedRequests:
        """End of input: close every open request."""
        return self._close(np.flatnonzero(self._seq >= 0), evicted=False)

    def _evict(self, count: int) -> None:
        open_slots = np.flatnonzero(self._seq >= 0)
        count = min(count, len(open_slots))
        if count <= 0:
            return
        victims = open_slots[np.argpartition(self._last[open_slots], count - 1)[:count]]
        self.stats.evicted_requests += count
        self._pending += self._close(victims, evicted=True)

    def take_evicted(self) -> ClosedRequests:
        """Anomalous requests closed early by eviction since the last call."""
        out, self._pending = self._pending, ClosedRequests.of([])
        return out

    def _close(self, slots: npt.NDArray[np.int64], evicted: bool) -> ClosedRequests:
        if not len(slots):
            return ClosedRequests.of([])
        anomalous = slots[self._anom[slots] > 0]
        every = self.cfg.graph_sample
        pick = (self._anom[slots] > 0) | ((self._seq[slots] % every == 0) if every else False)
        out = self._materialise(slots[pick], evicted) if pick.any() else ClosedRequests.of([])
        self._table.delete(self._key[slots])
        self._recent.add(self._key[slots], self._last[slots])
        self._dead += int(self._n[slots].sum())
        self._seq[slots] = -1
        self._push_free(slots.astype(np.int64))
        self.stats.requests_closed += len(slots)
        self.stats.anomalous_requests += len(anomalous)
        return out

    def _materialise(self, slots: npt.NDArray[np.int64], evicted: bool) -> ClosedRequests:
        a = self._arena
        r = self._rows
        mark = np.zeros(len(self._seq), dtype=bool)
        mark[slots] = True
        rs = a["slot"][:r]
        rows = np.flatnonzero(mark[rs] & self._alive(rs, a["seq"][:r]))
        rows = rows[np.lexsort((a["ts"][rows], a["slot"][rows]))]
        if not len(rows):
            return ClosedRequests.of([])
        starts = np.flatnonzero(np.r_[True, a["slot"][rows][1:] != a["slot"][rows][:-1]])
        seqs = self._seq[a["slot"][rows[starts]]].tolist()
        return ClosedRequests(
            [self._rid.pop(int(q), "?") for q in seqs], np.r_[starts, len(rows)].astype(np.int64),
            {k: a[k][rows] for k in _TRACE_COLUMNS}, np.full(len(starts), evicted))
