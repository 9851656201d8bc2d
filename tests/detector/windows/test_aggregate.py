"""Windows of event time: boundaries, lateness, silence, and the features themselves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detector.config import VigilConfig, WindowConfig
from detector.events import EventBatch, LogEvent
from detector.pipeline import Pipeline
from detector.services import OTHER_SERVICES
from detector.templates.miner import MinedBatch
from detector.windows.aggregate import LATE, WindowAggregator, WindowRows
from tests.support import line


def ev(ts: float, service: str = "cart", level: int = 9, latency: float | None = 10.0,
       status: int | None = 200) -> LogEvent:
    return LogEvent(ts=ts, service=service, level=level, message="m", latency_ms=latency,
                    status=status)


def add(agg: WindowAggregator, events: list[LogEvent], new: bool = False) -> np.ndarray:
    n = len(events)
    mined = MinedBatch(np.zeros(n, np.int64), np.full(n, new), np.zeros(n, bool))
    return agg.add(EventBatch.from_events(events), mined)


def by_start(rows: list[WindowRows]) -> dict[float, WindowRows]:
    return {r.start: r for r in rows}


def test_event_on_a_boundary_belongs_to_the_window_it_starts() -> None:
    agg = WindowAggregator(WindowConfig(seconds=10, allowed_lateness=0, min_events=1))
    add(agg, [ev(9.999), ev(10.0), ev(10.5), ev(25.0)])
    rows = by_start(agg.close_ready())
    assert rows[0.0].counts.tolist() == [1] and rows[10.0].counts.tolist() == [2]
    assert 20.0 not in rows  # the watermark (25) has not passed its end (30)


def test_out_of_order_events_within_lateness_are_folded_into_their_window() -> None:
    agg = WindowAggregator(WindowConfig(seconds=10, allowed_lateness=5, min_events=1))
    add(agg, [ev(1.0), ev(12.0)])
    assert agg.close_ready() == []  # watermark 7: window [0, 10) still open
    verdict = add(agg, [ev(3.0), ev(14.9)])  # 3.0 is late but within the allowed 5 s
    assert not verdict.any()
    add(agg, [ev(15.0)])  # watermark 10 closes [0, 10)
    (row,) = agg.close_ready()
    assert (row.start, row.counts.tolist()) == (0.0, [2])


def test_events_behind_a_closed_window_are_reported_late_not_dropped() -> None:
    agg = WindowAggregator(WindowConfig(seconds=10, allowed_lateness=0, min_events=1))
    add(agg, [ev(1.0), ev(21.0)])
    agg.close_ready()
    verdict = add(agg, [ev(2.0), ev(22.0)])
    assert verdict.tolist() == [LATE, 0]  # counted as a too_late dead letter by the pipeline


def test_late_events_reach_the_dead_letter_sink_with_their_bytes() -> None:
    pipe = Pipeline(VigilConfig())
    pipe.process([line(ts=100.0, service="a", msg="x"), line(ts=200.0, service="a", msg="y")])
    late = line(ts=101.0, service="a", msg="z")
    out = pipe.process([late], "f.jsonl", [7])
    assert [(d.reason, d.source, d.raw) for d in out.dead] == [("too_late", "f.jsonl:7", late)]
    assert pipe.stats.dead.counts["too_late"] == 1


def test_features_of_a_window() -> None:
    agg = WindowAggregator(WindowConfig(seconds=10, allowed_lateness=0, min_events=4))
    events = [ev(float(i), latency=float(10 * (i + 1))) for i in range(9)]
    events.append(ev(9.5, level=17, latency=1000.0, status=503))
    add(agg, events, new=True)
    (row,) = agg.close_all()
    assert row.value("cart", "rate") == pytest.approx(10 / 9.5)  # input ended at 9.5 s
    assert row.value("cart", "error_ratio") == pytest.approx(0.1)
    assert row.value("cart", "new_template_share") == pytest.approx(1.0)
    assert row.value("cart", "latency_p50") == pytest.approx(50, rel=0.02)
    assert row.value("cart", "latency_p99") == pytest.approx(1000, rel=0.02)


def test_too_few_events_leave_ratios_unjudged() -> None:
    agg = WindowAggregator(WindowConfig(seconds=10, allowed_lateness=0, min_events=5))
    add(agg, [ev(1.0), ev(2.0, level=17), ev(15.0)])
    (row,) = agg.close_ready()
    assert row.value("cart", "rate") == pytest.approx(2 / 9)  # the stream began at 1.0 s
    assert math.isnan(row.value("cart", "error_ratio"))
    assert math.isnan(row.value("cart", "latency_p99"))


def test_a_silent_service_reports_zero_rate_windows() -> None:
    agg = WindowAggregator(WindowConfig(seconds=10, allowed_lateness=0, min_events=1,
                                        silence_after=3))
    add(agg, [ev(1.0, "cart"), ev(1.0, "db")] + [ev(t, "db") for t in (11.0, 21.0, 31.0, 41.0,
                                                                        51.0)])
    rows = agg.close_ready()
    cart = [r.value("cart", "rate") for r in rows if "cart" in r.services]
    # The stream began at 1.0 s (its first window covered 9 s); cart is tracked for three
    # silent windows, then let go.
    assert cart == [pytest.approx(1 / 9), 0.0, 0.0, 0.0]


def test_a_timestamp_far_in_the_future_is_dead_lettered_not_trusted() -> None:
    pipe = Pipeline(VigilConfig())
    now = 1795435200.0
    lines = [line(ts=now + i, service="a", msg="x") for i in range(20)]
    lines.append(line(ts=now + 86400 * 365, service="a", msg="from a broken clock"))
    out = pipe.process(lines, "f.jsonl")
    assert [(d.reason, d.source) for d in out.dead] == [("clock_skew", "f.jsonl:21")]
    # The stream goes on: later events are still folded, not "too late".
    out = pipe.process([line(ts=now + 30, service="a", msg="y")])
    assert out.dead == [] and pipe.stats.events == 21


def test_a_gap_in_the_data_is_not_mistaken_for_clock_skew() -> None:
    pipe = Pipeline(VigilConfig())
    now = 1795435200.0
    pipe.process([line(ts=now + i, service="a", msg="x") for i in range(10)])
    # Eleven events agree on a time a day later: more than the stream's ten, so it moved.
    out = pipe.process([line(ts=now + 86400 + i, service="a", msg="x") for i in range(11)])
    assert out.dead == []


def test_a_jump_ahead_shared_by_many_events_in_a_batch_is_a_gap_not_skew() -> None:
    pipe = Pipeline(VigilConfig())
    now = 1795435200.0
    lines = [line(ts=now + i, service="a", msg="x") for i in range(200)]
    lines += [line(ts=now + 86400 + i, service="a", msg="x") for i in range(60)]
    assert pipe.process(lines).dead == []


def test_services_past_the_cap_share_one_series() -> None:
    agg = WindowAggregator(WindowConfig(seconds=10, allowed_lateness=0, min_events=1,
                                        max_services=4))
    add(agg, [ev(1.0, f"svc{i}") for i in range(10)] + [ev(11.0, "svc0")])
    (row,) = agg.close_ready()
    assert row.services == ["svc0", "svc1", "svc2", OTHER_SERVICES]
    assert row.counts.tolist() == [1, 1, 1, 7]
    assert agg.services.overflow == 7
