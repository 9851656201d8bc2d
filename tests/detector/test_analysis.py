"""`analyze`: the notebook's entry point runs the pipeline `vigil replay` runs and returns its
stages as DataFrames; every kind of source (path, lines, DataFrame), a baseline, sampling, and
raw text through a preset."""

from __future__ import annotations

from pathlib import Path

import orjson
import polars as pl
import pytest

from detector import VigilConfig, analyze, replay_lines
from detector.simulate.runs import simulated_lines

LINES, TRUTH = simulated_lines(60_000, seed=3, scenario="error_burst")


def test_lines_give_every_table_and_the_same_incidents_as_a_replay() -> None:
    a = analyze(LINES)
    assert a.events_seen == len(a.events) == 60_000
    assert a.incidents["root_cause"].to_list() == [TRUTH.faults[0].service]
    assert a.incidents["id"].to_list() == [i["id"] for i in replay_lines(LINES, VigilConfig())]
    assert set(a.anomalies["feature"]) == {"error_ratio"} and len(a.anomalies) == 12
    assert a.anomalies["explanation"].str.contains("vs baseline").all()
    ranking = a.incidents["ranking"].str.json_decode()[0]
    assert ranking[0]["service"] == TRUTH.faults[0].service and "evidence" in ranking[0]
    assert {"service", "error_ratio", "latency_p99", "events"} <= set(a.windows.columns)
    assert a.windows.filter(pl.col("service") == "payments")["error_ratio"].max() > 0.1
    assert a.templates["count"].sum() == 60_000 and a.templates["first_seen"].min() > 0
    assert "incidents 1" in repr(a)


def test_a_file_with_a_broken_line_dead_letters_it_with_where(tmp_path: Path) -> None:
    path = tmp_path / "app.jsonl"
    path.write_bytes(b"\n".join([*LINES[:3000], b'{"ts": oops', *LINES[3000:6000]]) + b"\n")
    a = analyze(path)
    assert a.events_seen == 6000
    assert a.dead_letters.select("reason", "source").rows() == [("undecodable", f"{path}:3001")]


def test_a_dataframe_of_records_reads_as_its_lines_do() -> None:
    rows = [orjson.loads(line) for line in LINES[:20_000]]
    frame = pl.DataFrame(rows, infer_schema_length=None)
    a, b = analyze(frame), analyze(LINES[:20_000])
    assert a.events_seen == b.events_seen == 20_000
    assert a.windows.equals(b.windows) and a.anomalies.equals(b.anomalies)


def test_a_pandas_frame_reads_as_its_lines_do_and_every_table_converts_back() -> None:
    """pandas holds a missing value as NaN and an integer column with gaps as floats: neither
    may turn an event into a dead letter (all 19,582 of 20,000 did: `status` 200.0)."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame([orjson.loads(line) for line in LINES])
    assert frame["status"].dtype == "float64" and frame["request_id"].isna().any()
    a, b = analyze(frame), analyze(LINES)
    assert len(a.dead_letters) == 0 and a.events_seen == 60_000
    assert a.windows.equals(b.windows) and a.anomalies.equals(b.anomalies)
    assert a.incidents["root_cause"].to_list() == [TRUTH.faults[0].service]
    tables = a.to_pandas()
    assert set(tables) == set(a.tables) and all(isinstance(t, pd.DataFrame) for t in tables.values())
    assert len(tables["incidents"]) == 1 and tables["events"]["service"].notna().all()


def test_a_baseline_is_learned_not_reported() -> None:
    a = analyze(LINES[30_000:], baseline=LINES[:30_000])
    assert a.events_seen == 30_000 and a.stats.events == 30_000
    assert a.incidents["root_cause"].to_list() == [TRUTH.faults[0].service]
    full = analyze(LINES)  # the baseline's windows and anomalies are not reported
    assert 0 < len(a.windows) < len(full.windows) and len(a.anomalies) <= len(full.anomalies)


def test_events_are_sampled_to_a_bound() -> None:
    a = analyze(LINES, max_events=1000)
    assert 500 < len(a.events) <= 1000 and a.events_seen == 60_000
    assert a.events["service"].n_unique() > 3


def test_a_raw_hdfs_log_through_its_preset(loghub: Path) -> None:
    log = loghub / "HDFS" / "HDFS_head2000.log"
    a = analyze(log, VigilConfig.model_validate({"parsing": {"format": "regex", "preset": "hdfs"}}))
    assert a.events_seen == 2000 and len(a.dead_letters) == 0
    assert len(a.templates) > 5 and a.events["service"].n_unique() > 1


def test_anything_else_is_refused() -> None:
    with pytest.raises(TypeError, match="a path, a list of lines or a DataFrame"):
        analyze(42)


def test_nothing_but_bad_lines_gives_empty_tables_of_the_usual_types() -> None:
    a = analyze([b"not json", b'{"ts": 1}'])
    assert a.events_seen == 0 and len(a.dead_letters) == 2
    assert a.events.schema["service"] == pl.String and a.events.schema["ts"] == pl.Float64
    assert len(a.incidents) == len(a.anomalies) == 0


def test_the_anomalous_requests_and_the_call_graph_are_kept() -> None:
    a = analyze(LINES)
    root = TRUTH.faults[0].service
    assert len(a.requests) > 100 and (a.requests["root"] == root).mean() > 0.95  # type: ignore[operator]
    edges = set(a.call_graph.select("caller", "callee").rows())
    assert {("gateway", "checkout"), ("checkout", root)} <= edges
    assert a.call_graph["calls"].min() > 0  # type: ignore[operator]
    via = a.requests.filter(pl.col("root") == root)["edges"].explode()
    assert f"checkout -> {root}" in via.to_list()
    assert a.incidents["root_cause_at_open"].to_list() == [root]
    assert a.incident_log[0]["status"] == "open"  # every update, the opening first
    assert a.incident_log[-1]["status"] == a.incidents["status"][0]  # ... the last state last


def test_requests_are_bounded_like_the_events() -> None:
    a = analyze(LINES, max_events=50)
    assert len(a.requests) == 50 and a.events_seen == 60_000
