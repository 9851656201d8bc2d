"""Prometheus series as a source, through prometheus-api-client's `query_range`.

Each configured query starts with a warm-up read of its lookback, then each poll asks for the
points since the last one it has (aligned to the query's step), so a poll after an outage
backfills what was missed (up to `max_backfill_seconds`). Points are deduplicated per series by
timestamp; NaN and infinite values are dropped and counted (Prometheus's stale markers never
reach a range query: a stale series simply has no points, which counts as a gap). Series are
dense ids that are reused after a series has been idle for `idle_series_seconds` (pod churn), so
memory follows the live series, and at most `max_series` are held per query.

Failed requests are retried with exponential backoff and full jitter; when a query still fails,
the poll reports it, `ready()` says why, and the next poll starts from the same point.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from detector.config import PrometheusConfig, PromQuery

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_MAX_POINTS = 10_000  # Prometheus refuses ranges of more than 11,000 steps per series


class SourceUnavailable(RuntimeError):
    """A query failed after its retries."""


@dataclass(slots=True)
class Points:
    """New points of one query from one poll, in time order (ties in series order)."""

    query: PromQuery
    series: IntArray
    ts: FloatArray
    values: FloatArray
    expired: IntArray  # series ids forgotten in this poll (their ids may be reused from now on)
    end: float  # the poll's range end
    warmup: bool = False  # the lookback read at start: history to learn, not to report


@dataclass
class SourceStats:
    polls: int = 0
    requests: int = 0
    errors: int = 0  # failed requests, retries included
    failed_polls: int = 0  # query polls that failed after their retries
    points: int = 0  # new finite points passed on
    duplicates: int = 0  # points at or before a series' last timestamp
    non_finite: int = 0  # NaN / Inf points dropped
    gaps: int = 0  # a series' consecutive points more than 1.5 steps apart
    new_series: int = 0
    expired_series: int = 0
    dropped_series: int = 0  # new series refused at max_series
    skipped_seconds: float = 0.0  # of an outage longer than max_backfill_seconds
    fetch_cpu_s: float = 0.0  # CPU spent in requests and JSON parsing (prometheus-api-client)
    last_error: str = ""
    last_success: float = 0.0  # wall clock

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class SeriesIndex:
    """Label sets of one query -> dense ids; ids of idle series are reused."""

    def __init__(self, query: PromQuery, max_series: int) -> None:
        self.query = query
        self.max_series = max_series
        self.ids: dict[tuple[str, ...] | tuple[tuple[str, str], ...], int] = {}
        self.labels: list[dict[str, str]] = []
        self.service: list[str] = []
        self.last_ts = np.zeros(0, dtype=np.float64)  # -inf for a free id
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self.ids)

    def key(self, labels: dict[str, str]) -> tuple[Any, ...]:
        names = self.query.series_labels
        if names is None:
            return tuple(sorted(labels.items()))
        return tuple(labels.get(n, "") for n in names)

    def lookup(self, labels: dict[str, str], stats: SourceStats) -> int | None:
        key = self.key(labels)
        sid = self.ids.get(key)
        if sid is not None:
            return sid
        if len(self.ids) >= self.max_series:
            stats.dropped_series += 1
            return None
        if self._free:
            sid = self._free.pop()
        else:
            sid = len(self.labels)
            self.labels.append({})
            self.service.append("")
            if sid >= len(self.last_ts):
                grown = np.full(max(16, 2 * len(self.last_ts)), -np.inf)
                grown[: len(self.last_ts)] = self.last_ts
                self.last_ts = grown
        self.ids[key] = sid
        self.labels[sid] = dict(labels)
        self.service[sid] = next((labels[n] for n in self.query.service_labels if labels.get(n)),
                                 self.query.name)
        self.last_ts[sid] = -np.inf
        stats.new_series += 1
        return sid

    def state_dict(self) -> dict[str, Any]:
        """The ids, labels, services and last timestamps as strict JSON data (a free id's last
        timestamp is null), for the incidents role's snapshot."""
        return {"ids": [[[list(k) if isinstance(k, tuple) else k for k in key], sid]
                        for key, sid in self.ids.items()],
                "labels": self.labels, "service": self.service,
                "last_ts": [float(t) if math.isfinite(t) else None
                            for t in self.last_ts[: len(self.labels)].tolist()],
                "free": list(self._free)}

    def load_state(self, state: dict[str, Any]) -> None:
        """Load `state_dict` output; a state that does not hold together raises ValueError and
        leaves the index as it was.

        >>> from detector.config import PromQuery
        >>> a = SeriesIndex(PromQuery(name="q", query="up"), 10)
        >>> sid = a.lookup({"job": "cart"}, SourceStats())
        >>> b = SeriesIndex(PromQuery(name="q", query="up"), 10)
        >>> b.load_state(a.state_dict())
        >>> b.ids == a.ids, b.service
        (True, ['cart'])
        """
        try:
            labels = [{str(k): str(v) for k, v in d.items()} for d in state["labels"]]
            service = [str(x) for x in state["service"]]
            last = [(-math.inf if t is None else float(t)) for t in state["last_ts"]]
            free = [int(x) for x in state["free"]]
            ids: dict[Any, int] = {}
            for key, sid in state["ids"]:
                k = tuple(tuple(str(y) for y in x) if isinstance(x, list) else str(x) for x in key)
                ids[k] = int(sid)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"series index state: {exc!r}") from exc
        n = len(labels)
        if len(service) != n or len(last) != n or any(not 0 <= i < n for i in
                                                          [*ids.values(), *free]):
            raise ValueError("series index state: ids, labels, services and times disagree")
        if len(ids) > self.max_series:
            raise ValueError(f"series index state holds {len(ids)} series, over max_series")
        grown = np.full(max(16, n), -np.inf)
        grown[:n] = last
        self.ids, self.labels, self.service, self._free = ids, labels, service, free
        self.last_ts = grown

    def expire(self, before: float) -> IntArray:
        """Forget series whose newest point is older than `before`; their ids."""
        used = np.fromiter(self.ids.values(), dtype=np.int64, count=len(self.ids))
        idle = used[(self.last_ts[used] < before) & np.isfinite(self.last_ts[used])]
        if len(idle):
            gone = set(idle.tolist())
            self.ids = {k: v for k, v in self.ids.items() if v not in gone}
            for sid in gone:
                self.labels[sid] = {}
                self.last_ts[sid] = -np.inf
            self._free.extend(sorted(gone, reverse=True))
        return idle


@dataclass
class _QueryState:
    index: SeriesIndex
    next_start: float | None = None  # first timestamp not read yet (None: warm-up pending)
    failing: str = ""  # why the last poll of this query failed ("" if it did not)


class PrometheusSource:
    """Polls every configured query; `poll()` returns the new points per query.

    `clock` and `sleep` are injectable so tests can replay a backfilled history as if live.
    """

    def __init__(self, cfg: PrometheusConfig, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        headers = None
        if cfg.bearer_token_file is not None:
            headers = {"Authorization": f"Bearer {cfg.bearer_token_file.read_text().strip()}"}
        # Retries are ours (bounded, jittered, counted), not the client's urllib3 adapter's.
        self.client = PrometheusConnect(cfg.url.rstrip("/"), headers=headers,
                                        disable_ssl=not cfg.verify_tls, retry=Retry(total=0),
                                        timeout=cfg.timeout_s)
        self.stats = SourceStats()
        self.state = {q.name: _QueryState(SeriesIndex(q, cfg.max_series)) for q in cfg.queries}

    def ready(self) -> tuple[bool, str]:
        failing = [f"{name}: {st.failing}" for name, st in self.state.items() if st.failing]
        if failing:
            return False, "prometheus queries failing: " + "; ".join(failing)
        if any(st.next_start is None for st in self.state.values()):
            return False, "warming up"
        return True, "ok"

    def progress(self) -> dict[str, float | None]:
        """Each query's first timestamp not read yet (None: its warm-up read is pending)."""
        return {name: st.next_start for name, st in self.state.items()}

    def series_count(self) -> int:
        return sum(len(st.index) for st in self.state.values())

    def poll(self) -> list[Points]:
        """One poll of every query (a failing query is skipped and retried next time)."""
        out = []
        for q in self.cfg.queries:
            try:
                pts = self.poll_query(q)
            except SourceUnavailable:
                continue
            if pts is not None:
                out.append(pts)
        return out

    def poll_query(self, q: PromQuery) -> Points | None:
        st = self.state[q.name]
        step = q.step_seconds
        now = self.clock()
        end = math.floor(now / step) * step
        start = end - math.floor(q.lookback_seconds / step) * step if st.next_start is None \
            else st.next_start
        if end < start:
            return None
        limit = math.floor(self.cfg.max_backfill_seconds / step) * step
        if st.next_start is not None and end - start > limit:
            self.stats.skipped_seconds += end - limit - start
            start = end - limit
        self.stats.polls += 1
        try:
            results = self._fetch(q, start, end)
        except SourceUnavailable as exc:
            st.failing = str(exc)
            self.stats.failed_polls += 1
            raise
        st.failing = ""
        warmup = st.next_start is None
        st.next_start = end + step
        self.stats.last_success = time.time()
        pts = self._points(q, st.index, results, end)
        pts.warmup = warmup
        return pts

    def read_range(self, q: PromQuery, start: float, end: float) -> Points:
        """Every point of `q` from `start` to `end` (epoch seconds, both included; Prometheus
        evaluates at `start + k * step`), read as a poll reads (in chunks of at most 10,000
        steps; labels to series ids and services, duplicates, NaN/Inf and gaps counted) but
        without moving the query's poll position: a range a notebook asks for
        (`detector.series_analysis.from_prometheus`). Raises `SourceUnavailable` when a request
        still fails after its retries."""
        self.stats.polls += 1
        try:
            results = self._fetch(q, start, end)
        except SourceUnavailable:
            self.stats.failed_polls += 1
            raise
        self.stats.last_success = time.time()
        return self._points(q, self.state[q.name].index, results, end)

    def _fetch(self, q: PromQuery, start: float, end: float) -> list[dict[str, Any]]:
        """query_range results from `start` to `end`, in chunks Prometheus accepts."""
        step = q.step_seconds
        results: list[dict[str, Any]] = []
        chunk = _MAX_POINTS * step
        lo = start
        while lo <= end:
            hi = min(end, lo + chunk - step)
            results.extend(self._query_range(q, lo, hi))
            lo = hi + step
        return results

    def _query_range(self, q: PromQuery, start: float, end: float) -> list[dict[str, Any]]:
        cfg = self.cfg
        delays = cfg.retry.delays(cfg.retry.attempts, self.rng)
        last = ""
        for attempt in range(cfg.retry.attempts + 1):
            self.stats.requests += 1
            cpu = time.process_time()
            try:
                data = self.client.custom_query_range(
                    q.query, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC),
                    step=f"{q.step_seconds:g}")
                self.stats.fetch_cpu_s += time.process_time() - cpu
                if not isinstance(data, list):
                    raise ValueError(f"unexpected result type {type(data).__name__}")
                return data
            except (requests.RequestException, PrometheusApiClientException, ValueError,
                    KeyError) as exc:
                self.stats.errors += 1
                last = f"{type(exc).__name__}: {str(exc)[:300]}"
                self.stats.last_error = last
                if attempt < cfg.retry.attempts:
                    self.sleep(delays[attempt])
        raise SourceUnavailable(last)

    def _points(self, q: PromQuery, index: SeriesIndex, results: list[dict[str, Any]],
                end: float) -> Points:
        # Known series first; then idle ones expire (freeing room and ids); then new series.
        known: list[tuple[dict[str, Any], int]] = []
        unknown: list[tuple[dict[str, Any], int]] = []
        for r in results:
            sid = index.ids.get(index.key(r.get("metric", {})))
            if sid is None:
                unknown.append((r, -1))
            else:
                known.append((r, sid))
        parts = [self._accept(index, q.step_seconds, known)]
        expired = index.expire(end - self.cfg.idle_series_seconds)
        self.stats.expired_series += len(expired)
        if unknown:
            added = [(r, index.lookup(r.get("metric", {}), self.stats)) for r, _ in unknown]
            parts.append(self._accept(index, q.step_seconds,
                                      [(r, sid) for r, sid in added if sid is not None]))
        ids = np.concatenate([p[0] for p in parts])
        t = np.concatenate([p[1] for p in parts])
        x = np.concatenate([p[2] for p in parts])
        order = np.argsort(t, kind="stable")
        self.stats.points += len(order)
        return Points(q, ids[order], t[order], x[order], expired, end)

    def _accept(self, index: SeriesIndex, step: float, pairs: list[tuple[dict[str, Any], int]]
                ) -> tuple[IntArray, FloatArray, FloatArray]:
        """The new finite points of these (result, series id) pairs, as columns (`accept`)."""
        sids: list[int] = []
        tss: list[float] = []
        raw: list[str] = []
        for r, sid in pairs:
            for v in r.get("values") or ():
                sids.append(sid)
                tss.append(v[0])
                raw.append(v[1])
        s = np.asarray(sids, dtype=np.int64)
        t = np.asarray(tss, dtype=np.float64)
        x = np.asarray(raw, dtype=np.float64)  # Prometheus's "NaN", "+Inf", "-Inf" included
        return accept(index, self.stats, step, s, t, x)


def accept(index: SeriesIndex, stats: SourceStats, step: float, s: IntArray, t: FloatArray,
           x: FloatArray) -> tuple[IntArray, FloatArray, FloatArray]:
    """The new finite points of columns (series id, timestamp, value) of known series, sorted by
    series then time: duplicates (a timestamp at or before the series' last one, or repeated in
    the columns: the first is kept), gaps (more than 1.5 steps) and NaN/Inf counted in `stats`,
    each series' last timestamp moved; all vectorised. What a poll and a DataFrame
    (`detector.series_analysis.from_series`) both go through.

    >>> from detector.config import PromQuery
    >>> index, stats = SeriesIndex(PromQuery(name="q", query="q"), 10), SourceStats()
    >>> index.lookup({"service": "api"}, stats)
    0
    >>> s, t, x = accept(index, stats, 60.0, np.zeros(5, dtype=np.int64),
    ...                  np.array([0.0, 60.0, 60.0, 240.0, 300.0]), np.array([1, 2, 3, np.nan, 5]))
    >>> t.tolist(), x.tolist(), (stats.duplicates, stats.gaps, stats.non_finite)
    ([0.0, 60.0, 300.0], [1.0, 2.0, 5.0], (1, 1, 1))
    """
    if not len(s):
        return s, t, x
    order = np.lexsort((t, s))  # by series, then time (a long warm-up comes in chunks)
    s, t, x = s[order], t[order], x[order]
    fresh = t > index.last_ts[s]
    fresh[1:] &= (s[1:] != s[:-1]) | (t[1:] != t[:-1])  # a timestamp repeated within the columns
    stats.duplicates += int(len(t) - fresh.sum())
    s, t, x = s[fresh], t[fresh], x[fresh]
    if not len(s):
        return s, t, x
    first = np.ones(len(s), dtype=bool)
    first[1:] = s[1:] != s[:-1]
    prev = np.where(first, index.last_ts[s], np.concatenate(([-np.inf], t[:-1])))
    stats.gaps += int(((t - prev > 1.5 * step) & np.isfinite(prev)).sum())
    newest = np.ones(len(s), dtype=bool)
    newest[:-1] = s[1:] != s[:-1]
    index.last_ts[s[newest]] = t[newest]
    ok = np.isfinite(x)
    stats.non_finite += int(len(x) - ok.sum())
    return s[ok], t[ok], x[ok]


def graph_link(base_url: str, query: str, at: float, range_s: float = 3600.0) -> str:
    """A link to Prometheus's graph page for the query, an hour around `at` (the anomaly names
    its series' labels; an arbitrary PromQL expression cannot be narrowed to one series safely).

    >>> graph_link("http://prom:9090", "up", 0.0)
    'http://prom:9090/graph?g0.expr=up&g0.tab=0&g0.range_input=1h&g0.end_input=1970-01-01%2000%3A30%3A00'
    """
    from urllib.parse import quote

    end = datetime.fromtimestamp(at + range_s / 2, UTC).strftime("%Y-%m-%d %H:%M:%S")
    rng = f"{int(range_s // 3600)}h" if range_s % 3600 == 0 else f"{int(range_s)}s"
    return (f"{base_url.rstrip('/')}/graph?g0.expr={quote(query, safe='')}&g0.tab=0"
            f"&g0.range_input={rng}&g0.end_input={quote(end, safe='')}")

