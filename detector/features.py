"""Per-service tumbling windows of event time and the features computed when each one closes.

Events are folded into their window in batches (numpy group-bys, no per-event Python); a window
closes once the watermark (newest event time minus the allowed lateness) passes its end. Events
for a window that has already closed are reported back as too late, never dropped silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.config import WindowConfig
from detector.events import LEVEL_ERROR, EventBatch
from detector.sketch import LogBuckets
from detector.templates import MinedBatch

FEATURES = (
    "rate", "error_ratio", "latency_p50", "latency_p95", "latency_p99",
    "new_template_share", "rare_template_share",
)
_QUANTILES = [0.5, 0.95, 0.99]
LATE, SKEWED = 1, 2  # what `WindowAggregator.add` says of an event it did not fold in
OTHER_SERVICES = "(other services)"  # where services past `window.max_services` are counted


@dataclass(slots=True)
class _Acc:
    count: int = 0
    errors: float = 0.0
    new: float = 0.0
    rare: float = 0.0
    lat: npt.NDArray[np.int64] | None = None


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


@dataclass(slots=True)
class _ServiceInfo:
    first_window: int
    last_window: int


@dataclass
class WindowAggregator:
    """Folds `EventBatch`es into per-service windows and emits `WindowRows` as windows close.

    >>> from detector.events import LogEvent, EventBatch
    >>> from detector.templates import MinedBatch
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
    late_events: int = 0
    overflow_events: int = 0
    max_ts: float = -math.inf
    _open: dict[int, dict[int, _Acc]] = field(default_factory=dict)
    _sid: dict[str, int] = field(default_factory=dict)
    _names: list[str] = field(default_factory=list)
    _info: list[_ServiceInfo] = field(default_factory=list)
    _next_close: int | None = None
    _input_end: float = math.inf

    def add(self, batch: EventBatch, mined: MinedBatch) -> npt.NDArray[np.int8]:
        """Fold a batch in; returns per event 0 (folded), LATE or SKEWED (not folded).

        LATE: its window had already closed. SKEWED: its timestamp is more than
        `max_future_seconds` ahead of the stream, a clock error that would otherwise move the
        watermark and close every window.
        """
        n = len(batch)
        verdict = np.zeros(n, dtype=np.int8)
        if n == 0:
            return verdict
        width = self.cfg.seconds
        reference = max(self.max_ts, float(np.median(batch.ts)))
        skewed = batch.ts > reference + self.cfg.max_future_seconds
        if skewed.sum() >= max(50, n // 10):
            skewed[:] = False  # that many agree: the data jumps ahead (a gap), not a clock
        w = np.floor(batch.ts / width).astype(np.int64)
        if self._next_close is None:
            self._next_close = int(w[~skewed].min()) if (~skewed).any() else int(w.min())
        late = (w < self._next_close) & ~skewed
        verdict[late] = LATE
        verdict[skewed] = SKEWED
        ok = verdict == 0
        self.late_events += int(late.sum())
        names = batch.service.unique(maintain_order=True).to_list()  # first come, first tracked
        for name in names:
            if name not in self._sid and len(self._names) < self.cfg.max_services - 1:
                first = int(w[(batch.service == name).to_numpy()].min())
                self._register(name, first)
        codes = [self._sid.get(x, -1) for x in names]
        if -1 in codes:  # past max_services: the long tail shares one series
            other = self._sid.get(OTHER_SERVICES)
            if other is None:
                other = self._register(OTHER_SERVICES, int(w.min()))
            codes = [other if c < 0 else c for c in codes]
            self.overflow_events += int(np.sum(
                batch.service.is_in([x for x in names if x not in self._sid]).to_numpy()))
        sids = batch.service.replace_strict(names, codes, return_dtype=pl.Int64).to_numpy()
        if not ok.any():
            return verdict
        wk, sk = w[ok], sids[ok]
        w0 = int(wk.min())
        nserv = len(self._names)
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
            if hist is not None and hist[g].any():
                acc.lat = hist[g].copy() if acc.lat is None else acc.lat + hist[g]
            info = self._info[sid]
            info.last_window = max(info.last_window, win)
            info.first_window = min(info.first_window, win)
        self.max_ts = max(self.max_ts, float(batch.ts[ok].max()))
        return verdict

    def close_ready(self) -> list[WindowRows]:
        """Close every window whose end the watermark has passed."""
        if self._next_close is None:
            return []
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
        self._input_end = self.max_ts
        try:
            return self._close_until(max(self._open) + 1)
        finally:
            self._input_end = math.inf  # input may go on (another file): windows are whole again

    # ---- internals ----------------------------------------------------------------------
    def _register(self, name: str, win: int) -> int:
        sid = len(self._names)
        self._sid[name] = sid
        self._names.append(name)
        self._info.append(_ServiceInfo(first_window=win, last_window=win))
        return sid

    def _close_until(self, stop: int) -> list[WindowRows]:
        out: list[WindowRows] = []
        assert self._next_close is not None
        win = self._next_close
        while win < stop:
            if win not in self._open and not self._tracked_silent(win):
                # Nothing to say for this window; jump to the next one that holds events.
                later = [x for x in self._open if x > win]
                win = min(min(later), stop) if later else stop
                continue
            out.append(self._rows(win, self._open.pop(win, {})))
            win += 1
        self._next_close = max(win, self._next_close)
        return out

    def _tracked_silent(self, win: int) -> bool:
        limit = self.cfg.silence_after
        return any(i.first_window <= win <= i.last_window + limit for i in self._info)

    def _rows(self, win: int, accs: dict[int, _Acc]) -> WindowRows:
        width, limit, min_ev = self.cfg.seconds, self.cfg.silence_after, self.cfg.min_events
        sids = sorted(
            set(accs) | {
                s for s, i in enumerate(self._info) if i.first_window <= win <= i.last_window + limit
            }
        )
        values = np.full((len(sids), len(FEATURES)), np.nan, dtype=np.float64)
        counts = np.zeros(len(sids), dtype=np.int64)
        covered = min(width, self._input_end - win * width)
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
            start=win * width, end=(win + 1) * width, services=[self._names[s] for s in sids],
            counts=counts, values=values,
        )

    def state_nbytes(self) -> int:
        """Bytes held for tracked services and open windows (for the benchmark's state figure)."""
        per_service = 2 * 8 + 64  # window bounds and the name map entry, roughly
        open_bytes = sum(
            64 + (0 if a.lat is None else a.lat.nbytes) for accs in self._open.values()
            for a in accs.values()
        )
        return len(self._names) * per_service + open_bytes
