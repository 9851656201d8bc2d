"""`vigil bench correlation`: the correlation stage with a million requests open."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

from detector.bench.measure import rss_mib


@dataclass(slots=True)
class CorrelationFigures:
    open_requests: int
    fill_events_per_s: float  # opening `open_requests` requests, one event each
    events: int  # steady phase: events for open requests, new requests, closes, verdicts
    events_per_s: float
    requests_per_s: float  # requests opened (and as many closed) per second, steady phase
    anomalous_requests: int
    bytes_per_open_request: float  # the correlator's own accounting
    rss_mib_per_million_open: float  # resident memory the open requests added (after fill)
    rss_mib_steady: float  # the same at the end of the steady phase
    open_at_end: int
    events_per_open_request: float  # at the end
    judge_us_per_request: float  # chains and verdicts of closed requests, a block at a time


def bench_correlation(open_requests: int = 1_000_000, steady_events: int = 2_000_000,
                      batch: int = 65_536, anomalous_share: float = 0.01, seed: int = 0
                      ) -> CorrelationFigures:
    """The correlation stage as the pipeline runs it (id hashing, per-request storage, TTL
    closing, a verdict per anomalous request) with `open_requests` requests open throughout.

    Fill: `open_requests` requests get their first event (32-hex ids, 6 services). Steady: each
    batch holds a third of new requests' first events and two thirds of later events of open
    requests, and event time advances so that as many requests close as open."""
    import numpy as np
    import polars as pl

    from detector.config import CorrelationConfig
    from detector.correlation.requests import RequestCorrelator, id_hash
    from detector.correlation.verdicts import judge_requests

    rng = np.random.default_rng(seed)
    total_new = open_requests + steady_events // 3 + batch
    ids = pl.Series("rid", [f"{v:032x}" for v in rng.integers(0, 2**63, total_new, dtype=np.int64)
                            .astype(np.uint64).tolist()], dtype=pl.String)
    ttl = 5.0
    cfg = CorrelationConfig(ttl_seconds=ttl, max_open_requests=open_requests + batch)
    corr = RequestCorrelator(cfg)
    gc.collect()
    rss0 = rss_mib()

    judged = [0.0, 0]  # seconds in judge_requests, verdicts

    def feed(idx: np.ndarray, ts: np.ndarray) -> int:
        n = len(idx)
        rid = ids.gather(idx)
        flags = (rng.random(n) < anomalous_share / 3).astype(np.uint8)
        corr.add(rid, ts=ts, service=rng.integers(0, 6, n).astype(np.int32), flags=flags,
                 span=id_hash(rid), parent=np.zeros(n, dtype=np.uint64),
                 latency=rng.lognormal(2.0, 0.3, n), status=np.full(n, 200, dtype=np.int32))
        closed = corr.close_due(float(ts.max())) + corr.take_evicted()
        t1 = time.perf_counter()
        verdicts = len(judge_requests(closed))
        judged[0] += time.perf_counter() - t1
        judged[1] += verdicts
        return verdicts

    # Fill: first events of open_requests requests within one TTL, so none closes.
    t0 = time.perf_counter()
    for lo in range(0, open_requests, batch):
        hi = min(lo + batch, open_requests)
        feed(np.arange(lo, hi), np.full(hi - lo, ttl * lo / open_requests))
    fill_s = time.perf_counter() - t0
    gc.collect()
    rss_open = rss_mib() - rss0
    nbytes = corr.nbytes()
    # Steady: new requests arrive at the rate old ones close.
    next_new = open_requests
    opened0, anomalous0 = corr.stats.requests_opened, corr.stats.anomalous_requests
    now = ttl
    per_step_new = batch // 3
    step_dt = ttl * per_step_new / open_requests
    t0 = time.perf_counter()
    done = 0
    while done < steady_events:
        new = np.arange(next_new, next_new + per_step_new)
        next_new += per_step_new
        lo_open = max(0, next_new - open_requests)
        old = rng.integers(lo_open, next_new, batch - per_step_new)
        idx = np.concatenate([new, old])
        now += step_dt
        feed(idx, np.full(len(idx), now))
        done += len(idx)
    steady_s = time.perf_counter() - t0
    gc.collect()
    rss_end = rss_mib() - rss0
    return CorrelationFigures(
        open_requests=open_requests, fill_events_per_s=open_requests / fill_s, events=done,
        events_per_s=done / steady_s,
        requests_per_s=(corr.stats.requests_opened - opened0) / steady_s,
        anomalous_requests=corr.stats.anomalous_requests - anomalous0,
        bytes_per_open_request=nbytes / open_requests,
        rss_mib_per_million_open=rss_open * 1e6 / open_requests, rss_mib_steady=rss_end,
        open_at_end=corr.open_requests,
        events_per_open_request=int(corr._n[corr._seq >= 0].sum()) / max(corr.open_requests, 1),
        judge_us_per_request=judged[0] * 1e6 / max(int(judged[1]), 1),
    )
