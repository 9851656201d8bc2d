"""Reading a capture: spans and logs told apart per record, OTLP/JSON exports expanded, metrics
CSV in long format, bad records counted and never fatal."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from detector.config import VigilConfig
from detector.pipeline import Pipeline
from detector.rca.capture import read_capture, read_metrics_csv


def _otlp_export(n: int) -> bytes:
    spans = [{"traceId": f"t{i}", "spanId": f"s{i}", "parentSpanId": "", "name": "GET /cart",
              "kind": 2, "startTimeUnixNano": str(1795435200_000_000_000 + i * 10**9),
              "endTimeUnixNano": str(1795435200_000_000_000 + i * 10**9 + 25_000_000),
              "status": {"code": 2 if i == 0 else 1}} for i in range(n)]
    return orjson.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cart"}},
                                    {"key": "k8s.pod.name", "value": {"stringValue": "cart-1"}}]},
        "scopeSpans": [{"scope": {"name": "x"}, "spans": spans}]}]})


def test_spans_and_logs_are_told_apart_per_record_and_join_by_trace(tmp_path: Path) -> None:
    f = tmp_path / "mixed.jsonl.gz"
    with gzip.open(f, "wb") as gz:
        gz.write(b"\n".join([
            orjson.dumps({"ts": "2026-11-23T12:00:00.100Z", "service": "web", "trace_id": "t1",
                          "span_id": "a", "parent_span_id": "", "name": "GET /",
                          "duration_ms": 12.5, "status_code": "ERROR"}),
            orjson.dumps({"ts": "2026-11-23T12:00:00.105Z", "service": "web", "trace_id": "t1",
                          "span_id": "a", "level": "ERROR", "message": "upstream failed"}),
            b'{"broken json',
            b"\xff\xfe not utf-8",
        ]) + b"\n")
    cap = read_capture([f], VigilConfig())
    assert cap.spans.select("service", "trace", "span", "name", "dur_ms", "error").rows() == [
        ("web", "t1", "a", "GET /", 12.5, True)]
    assert cap.logs.select("service", "trace", "span", "level").rows() == [("web", "t1", "a", 17)]
    assert cap.dead_letters == 2 and sum(cap.dead_reasons.values()) == 2


def test_an_otlp_json_export_is_one_record_per_span(tmp_path: Path) -> None:
    f = tmp_path / "export.jsonl"
    f.write_bytes(_otlp_export(3) + b"\n")
    cap = read_capture([f], VigilConfig())
    assert cap.spans.height == 3
    assert cap.spans["dur_ms"].to_list() == [25.0, 25.0, 25.0]
    assert cap.spans["error"].to_list() == [True, False, False]
    assert cap.spans["kind"].to_list() == ["SERVER"] * 3
    assert set(cap.spans["pod"].to_list()) == {"cart-1"}


def test_the_stream_decodes_an_otlp_export_like_one_line_per_span() -> None:
    pipe = Pipeline(VigilConfig())
    out = pipe.process([_otlp_export(4), b'{"resourceSpans": [oops'], "otlp")
    assert len(out.events) == 4 and pipe.stats.lines == 2
    assert [d.reason for d in out.dead] == ["undecodable"]
    assert out.events.status.tolist() == [500, 200, 200, 200]


def test_metrics_csv_in_long_format_counts_the_rows_it_drops(tmp_path: Path) -> None:
    f = tmp_path / "m.csv"
    f.write_text("timestamp,service,pod,metric,value\n"
                 "2026-11-23T12:00:00Z,cart,cart-1,cpu,0.5\n"
                 "1795435260,cart,cart-1,cpu,0.7\n"
                 "2026-11-23T12:02:00Z,cart,,cpu,not-a-number\n"
                 "garbage,cart,cart-1,cpu,1\n"
                 "2026-11-23T12:03:00Z,,cart-1,cpu,1\n")
    df, dropped = read_metrics_csv(f)
    assert df.select("t", "service", "value").rows() == [(1795435200.0, "cart", 0.5),
                                                         (1795435260.0, "cart", 0.7)]
    assert dropped == 3


def test_span_status_objects_and_level_words_in_text_count_as_errors(tmp_path: Path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_bytes(b"\n".join([
        orjson.dumps({"ts": 1795435200, "service": "pay", "trace_id": "t", "span_id": "a",
                      "duration_ms": 3, "status": {"code": 2, "message": "boom"}}),
        orjson.dumps({"ts": 1795435200, "service": "pay", "trace_id": "t", "span_id": "b",
                      "duration_ms": 3, "status": {"code": "STATUS_CODE_OK"}}),
        orjson.dumps({"ts": 1795435200, "service": "pay", "trace_id": "t", "span_id": "c",
                      "duration_ms": 3, "status": {"code": 9}}),
        orjson.dumps({"ts": 1795435200, "service": "pay", "trace_id": "t",
                      "message": "java.lang.IllegalStateException: card store closed"}),
    ]) + b"\n")
    cap = read_capture([f], VigilConfig())
    assert cap.spans["error"].to_list() == [True, False]
    assert cap.dead_reasons == {"wrong_type": 1}
    assert cap.logs["level"].to_list() == [17]
