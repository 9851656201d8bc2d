"""The merge property: for random splits of a stream across P ingest tasks, the windows stage B
closes from their partials equal the windows one process closes from the events (silent
services, whole-stream gaps and out-of-order events within the allowed lateness included); an
event later than that is dead-lettered by its task or counted late by merge, never lost."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.config import TopologyConfig, VigilConfig, WindowConfig
from detector.events import EventBatch, LogEvent
from detector.templates.miner import MinedBatch
from detector.topology.merge import MergeStage
from detector.windows.aggregate import LATE, WindowAggregator, WindowRows
from detector.windows.partials import PartialError, WindowPartial

CFG = WindowConfig(seconds=10, allowed_lateness=5, min_events=3, gap_seconds=60,
                   silence_after=3, max_ahead_of_clock_seconds=1e12)


def stream(seed: int, n: int = 3000, late_beyond: float = 0.0) -> list[tuple[LogEvent, bool, bool]]:
    """Events of five services over ~10 minutes: jittered within the allowed lateness, one
    service falling silent, a whole-stream gap, latencies, errors, new and rare flags."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.uniform(1000.0, 1600.0, n))
    ts = ts[(ts < 1300) | (ts > 1400)]  # a 100 s silence of the whole stream: a gap
    ts = ts + rng.uniform(-4.0, 0.0, len(ts))  # out of order, within the allowed lateness
    out = []
    for i, t in enumerate(ts.tolist()):
        svc = f"s{int(rng.integers(0, 5))}"
        if svc == "s4" and t > 1200:  # falls silent
            svc = "s3"
        if late_beyond and rng.random() < 0.02:
            t -= late_beyond  # far behind the stream
        lat = None if rng.random() < 0.1 else float(rng.lognormal(3, 1))
        out.append((LogEvent(ts=t, service=svc, level=17 if rng.random() < 0.05 else 9,
                             message="m", latency_ms=lat, status=200),
                    bool(rng.random() < 0.1), bool(rng.random() < 0.2)))
        del i
    return out


def fold(agg: WindowAggregator, evs: list[tuple[LogEvent, bool, bool]]) -> np.ndarray:
    n = len(evs)
    if n == 0:
        return np.zeros(0, np.int8)
    mined = MinedBatch(np.zeros(n, np.int64), np.array([e[1] for e in evs]),
                       np.array([e[2] for e in evs]))
    return agg.add(EventBatch.from_events([e[0] for e in evs]), mined)


def single(evs: list[tuple[LogEvent, bool, bool]], batch: int) -> tuple[list[WindowRows], int]:
    agg = WindowAggregator(CFG)
    rows: list[WindowRows] = []
    late = 0
    for i in range(0, len(evs), batch):
        late += int((fold(agg, evs[i:i + batch]) == LATE).sum())
        rows += agg.close_ready()
    return rows + agg.close_all(), late


def split(evs: list[tuple[LogEvent, bool, bool]], batch: int, parts: int, seed: int
          ) -> tuple[list[WindowRows], int, int]:
    rng = np.random.default_rng(seed + 1000)
    tasks = [WindowAggregator(CFG) for _ in range(parts)]
    merge = MergeStage(VigilConfig(window=CFG, topology=TopologyConfig(max_wait_s=1e9)),
                       sources=[f"p{k}" for k in range(parts)])
    rows: list[WindowRows] = []
    local_late = 0
    for i in range(0, len(evs), batch):
        chunk = evs[i:i + batch]
        where = rng.integers(0, parts, len(chunk))
        for k, task in enumerate(tasks):
            mine = [e for e, w in zip(chunk, where.tolist(), strict=True) if w == k]
            local_late += int((fold(task, mine) == LATE).sum())
            # through the record form, as the partials topic carries them
            sent = [WindowPartial.from_dict(p.to_dict()) for p in task.take_partials()]
            merge.add(f"p{k}", sent, task.max_ts)
        rows += merge.close_ready().rows
    return rows + merge.finish().rows, local_late, merge.late_events


Table = list[tuple[float, float, dict[str, tuple[int, list[float | None]]]]]


def as_table(rows: list[WindowRows]) -> Table:
    def vals(v: np.ndarray) -> list[float | None]:  # NaN (too few events) compares equal
        return [None if np.isnan(x) else round(float(x), 9) for x in v]
    return [(r.start, r.end, {s: (int(r.counts[i]), vals(r.values[i]))
                              for i, s in enumerate(r.services)}) for r in rows]


@pytest.mark.parametrize("parts", [1, 2, 4, 7])
@pytest.mark.parametrize("batch", [64, 1000])
def test_merged_partials_equal_the_single_process_windows(parts: int, batch: int) -> None:
    evs = stream(seed=parts * 31 + batch)
    want, late = single(evs, batch)
    got, local_late, merge_late = split(evs, batch, parts, seed=parts)
    assert late == local_late == merge_late == 0
    assert len(want) > 50 and any(not np.isnan(r.values[:, 2]).all() for r in want)
    assert {s for r in want for s in r.services} == {"s0", "s1", "s2", "s3", "s4"}
    assert as_table(got) == as_table(want)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), parts=st.integers(1, 6), batch=st.integers(16, 700))
def test_the_merge_property_holds_for_random_splits(seed: int, parts: int, batch: int) -> None:
    evs = stream(seed, n=800)
    want, _ = single(evs, batch)
    got, _, _ = split(evs, batch, parts, seed)
    assert as_table(got) == as_table(want)


def test_an_event_later_than_the_allowed_lateness_is_dead_lettered_or_counted_never_lost() -> None:
    evs = stream(seed=5, late_beyond=60.0)
    got, local_late, merge_late = split(evs, 200, 4, seed=5)
    merged = sum(int(r.counts.sum()) for r in got)
    assert local_late > 0
    assert merged + local_late + merge_late == len(evs)


def test_a_partial_record_that_is_not_one_is_refused() -> None:
    good = WindowPartial(1, "cart", 3, 1.0, 0.0, 0.0, 10.0, 12.0, {4: 3}).to_dict()
    assert WindowPartial.from_dict(good).lat == {4: 3}
    for bad in ({**good, "n": -1}, {**good, "lo": 13.0}, {**good, "lat": [[1]]},
                {**good, "e": float("nan")}, {**good, "s": 5}, [1, 2], {"w": 1}):
        with pytest.raises(PartialError):
            WindowPartial.from_dict(bad)
