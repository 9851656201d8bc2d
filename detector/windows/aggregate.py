"""Per-service tumbling windows of event time and the features computed when each one closes.

Events are folded into their window in batches (numpy group-bys, no per-event Python); a window
closes once the watermark (newest event time minus the allowed lateness) passes its end. Events
for a window that has already closed are reported back as too late, and events whose clock is
far off (`windows.clock`) as skewed, never dropped silently.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.config import WindowConfig
from detector.events import LEVEL_ERROR, EventBatch
from detector.services import ServiceIndex
from detector.templates.miner import MinedBatch
from detector.windows.clock import AHEAD, ClockGuard
from detector.windows.clock import OK as CLOCK_OK
from detector.windows.partials import WindowPartial
from detector.windows.sketch import LogBuckets

FEATURES = (
    "rate", "error_ratio", "latency_p50", "latency_p95", "latency_p99",
    "new_template_share", "rare_template_share",
)
_QUANTILES = [0.5, 0.95, 0.99]
# What `WindowAggregator.add` says of an event it did not fold in: too late, or a clock error
# ahead of the stream, behind it, or ahead of this machine's clock.
LATE, SKEWED_AHEAD, SKEWED_BEHIND, SKEWED_CLOCK = 1, 2, 3, 4


@dataclass(slots=True)
class _Acc:
    count: int = 0
    errors: float = 0.0
    new: float = 0.0
    rare: float = 0.0
    lat: npt.NDArray[np.int64] | None = None
    tmin: float = math.inf  # first and last event time folded in (what a partial carries)
    tmax: float = -math.inf


@dataclass(slots=True)
class WindowRows:
    """The features of every tracked service for one closed window."""

    start: float
    end: float
    services: list[str]
    counts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]  # (services, FEATURES); NaN where too few events to judge

    def value(self, service: str, feature: str) -> float:
        return float(self.values[self.services.index(service), FEATURES.index(feature)])


_NEVER = -(2**62)  # the window index of "no window yet"


@dataclass
class WindowAggregator:
    """Folds `EventBatch`es into per-service windows and emits `WindowRows` as windows close.

    Only windows in which the stream had events are visited, so a gap in event time of any
    length costs nothing. A service silent while others log is reported (rate 0) for at most
    `silence_after` windows after its last event. A silence of the whole stream shorter than
    `gap_seconds` is quiet windows (rate 0 for the services seen just before); a longer one is a
    gap in the input: its windows are skipped, and the windows at its edges are rated over the
    time the stream covered in them (as the first and last windows of the input are).

    >>> from detector.events import LogEvent, EventBatch
    >>> from detector.templates.miner import MinedBatch
    >>> agg = WindowAggregator(WindowConfig(seconds=10, allowed_lateness=0, min_events=1))
    >>> b = EventBatch.from_events([LogEvent(ts=t, service="cart", level=17 if t == 3 else 9,
    ...                                      message="m", latency_ms=10.0) for t in range(11)])
    >>> mined = MinedBatch(np.zeros(11, np.int64), np.zeros(11, bool), np.zeros(11, bool))
    >>> _ = agg.add(b, mined)
    >>> rows = agg.close_ready()  # the event at t=10 moves the watermark past window [0, 10)
    >>> rows[0].value("cart", "rate"), rows[0].value("cart", "error_ratio")
    (1.0, 0.1)
    """

    cfg: WindowConfig
    buckets: LogBuckets = field(default_factory=LogBuckets)
    wall: Callable[[], float] = time.time
    gaps: int = 0  # silences of the whole stream of at least gap_seconds, skipped
    max_ts: float = -math.inf
    guard: ClockGuard = field(init=False)
    _open: dict[int, dict[int, _Acc]] = field(default_factory=dict)
    _tmin: dict[int, float] = field(default_factory=dict)  # first event time in an open window
    _tmax: dict[int, float] = field(default_factory=dict)
    # The pipeline's one service registry (a new one, capped at max_services, when not given).
    services: ServiceIndex = None  # type: ignore[assignment]
    _last_seen: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    _last_tmax: float = -math.inf  # last event time of the last closed window with events
    _next_close: int | None = None
    _input_end: float = math.inf

    def __post_init__(self) -> None:
        self.guard = ClockGuard(self.cfg, self.wall)
        if self.services is None:
            self.services = ServiceIndex(self.cfg.max_services)

    def add(self, batch: EventBatch, mined: MinedBatch) -> npt.NDArray[np.int8]:
        """Fold a batch in; returns per event 0 (folded), LATE or one of the SKEWED codes.

        LATE: its window had already closed. SKEWED_AHEAD, SKEWED_BEHIND, SKEWED_CLOCK: its
        timestamp is far from the stream's (`ClockGuard`), a clock error that would otherwise
        move the watermark and close every window.
        """
        n = len(batch)
        verdict = np.zeros(n, dtype=np.int8)
        if n == 0:
            return verdict
        width = self.cfg.seconds
        clock = self.guard.judge(batch.ts)
        skewed = clock != CLOCK_OK
        verdict[skewed] = clock[skewed] + (SKEWED_AHEAD - AHEAD)
        good = ~skewed
        if not good.any():
            return verdict
        w = np.zeros(n, dtype=np.int64)
        w[good] = np.floor(batch.ts[good] / width).astype(np.int64)
        if self._next_close is None:
            self._next_close = int(w[good].min())
        late = good & (w < self._next_close)
        verdict[late] = LATE
        ok = verdict == 0
        if not ok.any():
            return verdict
        idx = np.flatnonzero(ok)
        # the whole column's ids (the correlator asks for the same column: mapped once)
        sk = self._service_ids(batch.service)[idx]
        wk, tk = w[ok], batch.ts[ok]
        w0 = int(wk.min())
        nserv = len(self.services)
        key = (wk - w0) * nserv + sk
        space = int(key.max()) + 1
        nb = self.buckets.size
        if space * nb <= 4_000_000:  # the usual case: a batch spans a few windows
            uniq = np.flatnonzero(np.bincount(key, minlength=space))
            inv = np.searchsorted(uniq, key)
        else:  # a batch that spans a long time: group by sorting instead
            uniq, inv = np.unique(key, return_inverse=True)
        groups = len(uniq)
        counts = np.bincount(inv, minlength=groups)
        is_err = (batch.level[ok] >= LEVEL_ERROR) | (batch.status[ok] >= 500)
        errors = np.bincount(inv, weights=is_err, minlength=groups)
        new = np.bincount(inv, weights=mined.is_new[ok], minlength=groups)
        rare = np.bincount(inv, weights=mined.is_rare[ok], minlength=groups)
        lat = batch.latency_ms[ok]
        has = ~np.isnan(lat)
        hist = None
        if has.any():
            flat = inv[has] * nb + self.buckets.index(lat[has])
            hist = np.bincount(flat, minlength=groups * nb).reshape(groups, nb)
        glo = np.full(groups, np.inf)
        ghi = np.full(groups, -np.inf)
        np.minimum.at(glo, inv, tk)
        np.maximum.at(ghi, inv, tk)
        for g in range(groups):
            k = int(uniq[g])
            win, sid = w0 + k // nserv, k % nserv
            acc = self._open.setdefault(win, {}).get(sid)
            if acc is None:
                acc = self._open[win][sid] = _Acc()
            acc.count += int(counts[g])
            acc.errors += float(errors[g])
            acc.new += float(new[g])
            acc.rare += float(rare[g])
            acc.tmin, acc.tmax = min(acc.tmin, float(glo[g])), max(acc.tmax, float(ghi[g]))
            if hist is not None and hist[g].any():
                acc.lat = hist[g].copy() if acc.lat is None else acc.lat + hist[g]
            # The stream's first and last event time in each window it touched (gap edges).
            self._tmin[win] = min(self._tmin.get(win, math.inf), acc.tmin)
            self._tmax[win] = max(self._tmax.get(win, -math.inf), acc.tmax)
        self.max_ts = max(self.max_ts, float(tk.max()))
        return verdict

    # ---- partials: one aggregator per ingest task, one merging them ----------------------
    def take_partials(self) -> list[WindowPartial]:
        """What was folded in since the last call, as one partial per (service, window), and
        forget it. The windows the watermark has passed are then closed here without rows, so
        later events for them are LATE as in a single process; merge closes and judges them.

        >>> from detector.events import LogEvent, EventBatch
        >>> from detector.templates.miner import MinedBatch
        >>> agg = WindowAggregator(WindowConfig(seconds=10, allowed_lateness=0))
        >>> b = EventBatch.from_events([LogEvent(ts=t, service="cart", level=9, message="m")
        ...                             for t in (1, 2, 12)])
        >>> _ = agg.add(b, MinedBatch(np.zeros(3, np.int64), np.zeros(3, bool), np.zeros(3, bool)))
        >>> [(p.window, p.service, p.count) for p in agg.take_partials()], agg.take_partials()
        ([(0, 'cart', 2), (1, 'cart', 1)], [])
        """
        out = self.open_partials()
        self._open.clear()
        self._tmin.clear()
        self._tmax.clear()
        if self._next_close is not None and math.isfinite(self.max_ts):
            done = math.floor((self.max_ts - self.cfg.allowed_lateness) / self.cfg.seconds)
            self._next_close = max(self._next_close, done)
        return out

    def open_partials(self) -> list[WindowPartial]:
        """The open windows as partials, one per (service, window), in window order."""
        out = []
        names = self.services.names
        for win in sorted(self._open):
            for sid, acc in sorted(self._open[win].items()):
                lat = {} if acc.lat is None else {
                    int(b): int(acc.lat[b]) for b in np.flatnonzero(acc.lat).tolist()}
                out.append(WindowPartial(win, names[sid], acc.count, acc.errors, acc.new,
                                         acc.rare, acc.tmin, acc.tmax, lat))
        return out

    def merge(self, partials: list[WindowPartial]) -> int:
        """Fold partials of other aggregators in (the watermark is moved by `advance`, not
        here); returns the events of partials whose window had already closed here, which
        are not folded in (late)."""
        late = 0
        nb = self.buckets.size
        for p in partials:
            if self._next_close is not None and p.window < self._next_close:
                late += p.count
                continue
            sid = self.services.id_of(p.service)
            self._grow()
            acc = self._open.setdefault(p.window, {}).get(sid)
            if acc is None:
                acc = self._open[p.window][sid] = _Acc()
            acc.count += p.count
            acc.errors += p.errors
            acc.new += p.new
            acc.rare += p.rare
            acc.tmin, acc.tmax = min(acc.tmin, p.tmin), max(acc.tmax, p.tmax)
            if p.lat:
                if acc.lat is None:
                    acc.lat = np.zeros(nb, dtype=np.int64)
                for b, c in p.lat.items():
                    acc.lat[min(b, nb - 1)] += c
            self._tmin[p.window] = min(self._tmin.get(p.window, math.inf), p.tmin)
            self._tmax[p.window] = max(self._tmax.get(p.window, -math.inf), p.tmax)
        return late

    def closed_through(self) -> float:
        """The event time below which every window has closed (-inf before the first)."""
        return -math.inf if self._next_close is None else self._next_close * self.cfg.seconds

    def advance(self, watermark: float) -> None:
        """Move a merging aggregator's view of the stream's newest event time to `watermark`
        (the slowest source's); `close_ready` then closes what it has passed."""
        self.max_ts = max(self.max_ts, watermark)

    def close_ready(self) -> list[WindowRows]:
        """Close every window whose end the watermark has passed."""
        if self._next_close is None:  # a merging aggregator starts at its first partials
            if not self._open or not math.isfinite(self.max_ts):
                return []
            self._next_close = min(self._open)
        watermark = self.max_ts - self.cfg.allowed_lateness
        last = math.floor(watermark / self.cfg.seconds)  # windows below this index are complete
        return self._close_until(last)

    def close_all(self) -> list[WindowRows]:
        """Close every open window (end of input).

        The last window is cut short by the end of input: its rate counts only the time it
        covered, and is left unjudged when that is under half a window.
        """
        if not self._open:
            return []
        if self._next_close is None:  # a merging aggregator that never closed a window
            self._next_close = min(self._open)
        self._input_end = self.max_ts
        try:
            return self._close_until(max(self._open) + 1)
        finally:
            self._input_end = math.inf  # input may go on (another file): windows are whole again

    def state_dict(self) -> dict[str, Any]:
        """The clock guard's view of the stream (windows themselves start afresh on restore)."""
        return {"clock": self.guard.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.guard.load_state(state["clock"])

    # ---- internals ----------------------------------------------------------------------
    def _service_ids(self, services: pl.Series) -> npt.NDArray[np.int64]:
        """Ids of a batch's services in the pipeline's registry (past its cap the long tail
        shares `OTHER_SERVICES`); the per-service arrays grow to match."""
        ids = self.services.ids(services).astype(np.int64)
        self._grow()
        return ids

    def _grow(self) -> None:
        """The per-service arrays, grown to the registry's size."""
        if len(self.services) > len(self._last_seen):
            grown = np.full(len(self.services), _NEVER, dtype=np.int64)
            grown[: len(self._last_seen)] = self._last_seen
            self._last_seen = grown

    def _close_until(self, stop: int) -> list[WindowRows]:
        assert self._next_close is not None
        out: list[WindowRows] = []
        win = self._next_close
        due = sorted(k for k in self._open if k < stop)
        later = [self._tmin[k] for k in self._open if k >= stop]
        after = min(later) if later else math.inf  # first event time past what closes now
        for i, k in enumerate(due):
            if k < win:
                continue
            out.extend(self._quiet(win, k, self._tmin[k]))
            nxt = self._tmin[due[i + 1]] if i + 1 < len(due) else after
            out.append(self._close(k, nxt))
            win = k + 1
        if win < stop and math.isfinite(after):
            out.extend(self._quiet(win, stop, after))
        self._next_close = max(stop, self._next_close)
        return out

    def _quiet(self, lo: int, hi: int, resumed: float) -> list[WindowRows]:
        """Windows [lo, hi) in which the stream was silent, until it resumed at `resumed`: rate
        0 for the services seen just before when the silence was short, nothing for a gap."""
        if hi <= lo:
            return []
        if resumed - self._last_tmax >= self.cfg.gap_seconds:
            if math.isfinite(self._last_tmax):
                self.gaps += 1
            return []
        return [self._rows(win, {}, self.cfg.seconds) for win in range(lo, hi)
                if (self._last_seen >= win - self.cfg.silence_after).any()]

    def _close(self, win: int, next_event: float) -> WindowRows:
        """Close window `win` (which has events); `next_event`: the stream's next event time."""
        width, gap = self.cfg.seconds, self.cfg.gap_seconds
        accs = self._open.pop(win)
        tmin, tmax = self._tmin.pop(win), self._tmax.pop(win)
        start, end = win * width, min((win + 1) * width, self._input_end)
        if tmin - self._last_tmax >= gap:  # the stream (re)starts inside this window
            start = max(start, tmin)
        if next_event - tmax >= gap and math.isfinite(next_event):  # a gap begins in it
            end = min(end, tmax)
        row = self._rows(win, accs, end - start)
        self._last_seen[list(accs)] = win
        self._last_tmax = tmax
        return row

    def _rows(self, win: int, accs: dict[int, _Acc], covered: float) -> WindowRows:
        width, limit, min_ev = self.cfg.seconds, self.cfg.silence_after, self.cfg.min_events
        recent = np.flatnonzero(self._last_seen >= win - limit).tolist()
        sids = sorted(set(accs) | set(recent))
        values = np.full((len(sids), len(FEATURES)), np.nan, dtype=np.float64)
        counts = np.zeros(len(sids), dtype=np.int64)
        for r, sid in enumerate(sids):
            acc = accs.get(sid) or _Acc()
            counts[r] = acc.count
            if covered >= width / 2:
                values[r, 0] = acc.count / covered
            if acc.count >= min_ev:
                values[r, 1] = acc.errors / acc.count
                values[r, 5] = acc.new / acc.count
                values[r, 6] = acc.rare / acc.count
            if acc.lat is not None and int(acc.lat.sum()) >= min_ev:
                values[r, 2:5] = self.buckets.quantiles(acc.lat, _QUANTILES)
        return WindowRows(
            start=win * width, end=(win + 1) * width, services=[self.services.names[s] for s in sids],
            counts=counts, values=values,
        )

    def state_nbytes(self) -> int:
        """Bytes held for tracked services and open windows (for the benchmark's state figure)."""
        per_service = 8 + 64  # last window seen and the name map entry, roughly
        open_bytes = sum(
            64 + (0 if a.lat is None else a.lat.nbytes) for accs in self._open.values()
            for a in accs.values()
        )
        return len(self._last_seen) * per_service + open_bytes
