"""The stream names the root cause `vigil rca` names on the same data, and keeps bounded state."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from detector.config import RcaConfig, VigilConfig
from detector.events import EventBatch, LogEvent
from detector.rca.analyze import analyze
from detector.rca.buffer import CaptureBuffer
from detector.rca.capture import read_capture
from detector.runtime.replay import replay_lines
from detector.simulate.captures import render_capture
from detector.simulate.scenarios import short_capture


def test_replay_ranks_an_incident_as_rca_ranks_the_capture(tmp_path: Path) -> None:
    # Long enough before the fault for the window baselines to warm up (12 windows of 10 s).
    faults, duration = short_capture("weak_latency", "payments", before=240.0, after=120.0)
    spans, logs = render_capture(faults, duration, seed=3)
    lines = sorted(spans.splitlines() + logs.splitlines(), key=lambda b: orjson.loads(b)["ts"])
    incidents = replay_lines(lines, VigilConfig())
    traced = [i for i in incidents if i["root_cause"] and "network" in i["root_cause"][0]
              ["evidence"] and i["opened_at"] >= faults[0].start - 10]
    assert traced, "no incident ranked from spans"
    stream_top = traced[-1]["root_cause"][0]["service"]
    f = tmp_path / "capture.jsonl.gz"
    f.write_bytes(gzip.compress(b"\n".join(lines)))
    rca = analyze(read_capture([f], VigilConfig()), onset=traced[-1]["opened_at"])
    assert stream_top == rca.top == "payments"


def test_the_kept_records_are_bounded_in_count_and_the_excess_is_counted() -> None:
    buf = CaptureBuffer(RcaConfig(max_records=1000, keep_seconds=1e9))
    for k in range(30):
        buf.add(EventBatch.from_events([
            LogEvent(float(k * 100 + i), "a", 9, "", request_id=f"t{i}", span_id=f"s{i}",
                     latency_ms=1.0) for i in range(100)]))
    assert len(buf) <= 1000 and buf.dropped == 3000 - len(buf)
    assert buf.capture().spans.height == len(buf)
