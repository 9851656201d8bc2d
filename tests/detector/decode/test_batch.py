"""Decoding: every input shape, every timestamp form, and every dead-letter reason."""

from __future__ import annotations

import math

import orjson
import pytest

from detector.config import ParsingConfig
from detector.decode.batch import BatchDecoder
from detector.decode.deadletter import DeadLetter
from detector.decode.rows import RowDecoder
from detector.events import LEVEL_ERROR, LEVEL_INFO, LEVEL_WARN, LogEvent
from detector.simulate.fleet import Fleet, render
from tests.support import line

T0 = 1795435200.0  # 2026-11-23T12:00:00Z


def decode_one(raw: bytes, cfg: ParsingConfig | None = None) -> LogEvent:
    res = BatchDecoder(cfg or ParsingConfig()).decode([raw])
    assert not res.dead, res.dead
    (event,) = list(res.batch.events())
    return event


def test_plain_shape_with_common_names() -> None:
    ev = decode_one(line(ts="2026-11-23T12:00:00Z", service="cart", level="ERROR", msg="boom",
                         request_id="r1", span_id="s1", parent_id="p1", latency_ms=12.5,
                         status=503))
    assert ev == LogEvent(ts=T0, service="cart", level=LEVEL_ERROR, message="boom",
                          request_id="r1", span_id="s1", parent_id="p1", latency_ms=12.5,
                          status=503)


@pytest.mark.parametrize(
    "fields",
    [
        {"timestamp": T0, "service": "cart", "message": "m", "requestId": "r1",
         "duration_ms": 3, "status_code": 200},
        {"time": T0 * 1000, "service": "cart", "message": "m", "trace_id": "r1",
         "duration_ms": 3, "status_code": 200},
    ],
)
def test_plain_shape_aliases(fields: dict[str, object]) -> None:
    ev = decode_one(orjson.dumps(fields))
    assert (ev.ts, ev.service, ev.message, ev.request_id, ev.latency_ms, ev.status) == (
        T0, "cart", "m", "r1", 3.0, 200)


def test_opentelemetry_log_record() -> None:
    raw = line(
        timeUnixNano=str(int(T0 * 1e9)), observedTimeUnixNano=str(int(T0 * 1e9) + 5),
        severityText="WARN", severityNumber=13, body={"stringValue": "disk almost full"},
        traceId="5b8efff798038103d269b633813fc60c", spanId="eee19b7ec3c1b174",
        parentSpanId="eee19b7ec3c1b173",
        resource={"attributes": [{"key": "service.name", "value": {"stringValue": "payments"}}]},
        attributes=[{"key": "latency_ms", "value": {"doubleValue": 7.5}},
                    {"key": "http.status_code", "value": {"intValue": "502"}}],
    )
    ev = decode_one(raw)
    assert (ev.ts, ev.service, ev.level, ev.message) == (T0, "payments", LEVEL_WARN,
                                                           "disk almost full")
    assert (ev.request_id, ev.span_id, ev.parent_id) == (
        "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "eee19b7ec3c1b173")
    assert (ev.latency_ms, ev.status) == (7.5, 502)


def test_opentelemetry_flattened_resource_and_severity_number() -> None:
    ev = decode_one(line(timeUnixNano=int(T0 * 1e9), severityNumber=17, body="x",
                         resource={"service.name": "db"}))
    assert (ev.ts, ev.service, ev.level) == (T0, "db", LEVEL_ERROR)


def test_ecs_nested() -> None:
    ev = decode_one(line(**{"@timestamp": "2026-11-23T12:00:00.000Z", "log": {"level": "info"},
                            "service": {"name": "gateway"}, "message": "GET /",
                            "trace": {"id": "t1"}, "span": {"id": "s1"},
                            "event": {"duration_ms": 4.0},
                            "http": {"response": {"status_code": 200}}}))
    assert (ev.ts, ev.service, ev.level, ev.message, ev.request_id, ev.span_id,
            ev.latency_ms, ev.status) == (T0, "gateway", LEVEL_INFO, "GET /", "t1", "s1", 4.0, 200)


def test_ecs_flat_dotted_keys() -> None:
    ev = decode_one(line(**{"@timestamp": "2026-11-23T12:00:00Z", "log.level": "error",
                            "service.name": "gateway", "message": "x", "trace.id": "t1"}))
    assert (ev.service, ev.level, ev.request_id) == ("gateway", LEVEL_ERROR, "t1")


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-23T12:00:00Z", "2026-11-23T12:00:00.000000000Z", "2026-11-23T13:00:00+01:00",
        "2026-11-23T12:00:00", "2026-11-23 12:00:00", T0, T0 * 1e3, T0 * 1e6, T0 * 1e9,
        int(T0), int(T0 * 1e3), str(int(T0 * 1e9)), "1795435200.000",
    ],
)
def test_timestamp_forms(value: object) -> None:
    assert decode_one(line(ts=value, service="a", msg="m")).ts == pytest.approx(T0, abs=1e-3)


def test_fractional_rfc3339_keeps_microseconds() -> None:
    ev = decode_one(line(ts="2026-11-23T12:00:00.123456789Z", service="a", msg="m"))
    assert ev.ts == pytest.approx(T0 + 0.123456, abs=2e-6)


@pytest.mark.parametrize("shape", ["plain", "ecs", "otel"])
def test_batch_and_per_line_decoders_agree(shape: str) -> None:
    recs = Fleet([], seed=4).records(3000)
    lines = [render(r, shape) for _, r in recs]
    batch = BatchDecoder(ParsingConfig()).decode(lines).batch
    rows, errors, _ = RowDecoder(ParsingConfig()).decode(lines)
    assert not errors
    a, b = list(batch.events()), list(rows.events())
    assert len(a) == len(b) == 3000
    for x, y in zip(a, b, strict=True):
        assert x.ts == pytest.approx(y.ts, abs=1e-6)
        assert (x.service, x.level, x.message, x.request_id, x.span_id, x.status) == (
            y.service, y.level, y.message, y.request_id, y.span_id, y.status)
        assert (x.latency_ms is None and y.latency_ms is None) or x.latency_ms == y.latency_ms


def test_plain_batches_take_the_columnar_path() -> None:
    lines = [render(r, "plain") for _, r in Fleet([], seed=1).records(5000)]
    dec = BatchDecoder(ParsingConfig())
    dec.decode(lines)
    assert dec.stats.columnar_lines == 5000 and dec.stats.row_lines == 0


# ---- dead letters ---------------------------------------------------------------------------
def reasons(letters: list[DeadLetter]) -> list[str]:
    return [d.reason for d in letters]


@pytest.mark.parametrize(
    ("raw", "reason", "words"),
    [
        (b'{"ts": 1, "service": "a", "msg": "x"', "undecodable", "not valid JSON"),
        (b"\xff\xfe garbage", "undecodable", "not valid UTF-8 (byte 0xff at offset 0)"),
        (b"", "undecodable", "not valid JSON"),
        (b'["ts", 1]', "not_object", "must be a JSON object, got an array"),
        (b'"just a string"', "not_object", "got a string"),
        (b"42", "not_object", "got a number"),
        (b'{"service": "a", "msg": "x"}', "missing_field", "'timestamp' is missing"),
        (b'{"ts": 1795435200, "msg": "x"}', "missing_field", "'service' is missing"),
        (b'{"ts": 1795435200, "service": "", "msg": "x"}', "missing_field", "'service'"),
        (b'{"ts": 1795435200, "service": "a", "status": "abc"}', "wrong_type", "status"),
        (b'{"ts": 1795435200, "service": "a", "latency_ms": "9"}', "wrong_type", "latency_ms"),
        (b'{"ts": 1795435200, "service": "a", "latency_ms": -3}', "wrong_type", "non-negative"),
        (b'{"ts": "yesterday", "service": "a"}', "wrong_type", "timestamp"),
        (b'{"ts": 1795435200, "service": ["a"]}', "wrong_type", "service"),
        (b'{"ts": 1795435200, "service": "a", "level": 99}', "wrong_type", "level"),
        (b'{"ts": true, "service": "a"}', "wrong_type", "timestamp"),
    ],
)
def test_bad_records_become_dead_letters_with_a_reason(raw: bytes, reason: str, words: str) -> None:
    good = line(ts=T0, service="ok", msg="fine")
    # In a large batch, so the columnar path meets the bad line and must corner it.
    lines = [good] * 200 + [raw] + [good] * 200
    res = BatchDecoder(ParsingConfig()).decode(lines, source="app.jsonl")
    assert len(res.batch) == 400
    (dead,) = res.dead
    assert dead.reason == reason
    assert words in dead.detail
    assert dead.source == "app.jsonl:201"
    assert dead.raw == raw


def test_oversize_records_are_dead_lettered_before_parsing() -> None:
    cfg = ParsingConfig(max_record_bytes=100)
    big = line(ts=T0, service="a", msg="x" * 200)
    res = BatchDecoder(cfg).decode([line(ts=T0, service="a", msg="ok"), big])
    assert reasons(res.dead) == ["oversize"]
    assert "cap is 100" in res.dead[0].detail and res.dead[0].raw == big
    assert len(res.batch) == 1


def test_huge_message_inside_the_cap_is_truncated_not_rejected() -> None:
    cfg = ParsingConfig(max_message_chars=50)
    ev = decode_one(line(ts=T0, service="a", msg="y" * 10_000), cfg)
    assert ev.message == "y" * 50


def test_structured_message_is_kept_as_json_text() -> None:
    ev = decode_one(line(ts=T0, service="a", msg={"op": "charge", "ok": False}))
    assert orjson.loads(ev.message) == {"op": "charge", "ok": False}


def test_positions_name_the_offset_of_each_dead_letter() -> None:
    res = BatchDecoder(ParsingConfig()).decode([b"{", line(ts=T0, service="a"), b"]"],
                                               source="logs/0", positions=[100, 101, 102])
    assert [d.source for d in res.dead] == ["logs/0:100", "logs/0:102"]
    assert res.line_index.tolist() == [1]


def test_dead_letter_record_round_trips_bytes_that_are_not_utf8() -> None:
    d = DeadLetter("undecodable", "x", "f:1", b"\xff\x00abc")
    assert DeadLetter.from_dict(orjson.loads(orjson.dumps(d.to_dict()))) == d


def test_many_bad_lines_in_one_batch_are_all_accounted_for() -> None:
    good = line(ts=T0, service="ok", msg="fine")
    lines = [good if i % 97 else b"{broken" for i in range(5000)]
    res = BatchDecoder(ParsingConfig()).decode(lines)
    assert len(res.batch) + len(res.dead) == 5000
    assert set(reasons(res.dead)) == {"undecodable"}
    assert not math.isnan(float(res.batch.ts.sum()))


@pytest.mark.parametrize(("level", "code"), [("warning", LEVEL_WARN), (" Error ", LEVEL_ERROR),
                                             ("17", LEVEL_ERROR), (9, LEVEL_INFO), ("chatty", 0)])
def test_levels_read_the_same_on_both_paths(level: object, code: int) -> None:
    lines = [line(ts=T0, service="a", level=level, msg="m")] * 100
    batch = BatchDecoder(ParsingConfig()).decode(lines).batch
    rows, errors, _ = RowDecoder(ParsingConfig()).decode(lines)
    assert not errors
    assert set(batch.level.tolist()) == set(rows.level.tolist()) == {code}


def test_level_texts_learnt_by_the_query_read_as_the_per_line_decoder_reads_them() -> None:
    """The columnar query maps the level texts it has met; new ones, more than it keeps, and a
    boolean after many good batches are each still read (or refused) as line by line."""
    from detector.decode import columns

    dec = BatchDecoder(ParsingConfig())
    texts = [f"custom{i}" for i in range(columns._MAX_LEVEL_TEXTS + 40)]
    for start in range(0, len(texts), 60):  # batches of new texts, then mixed with known ones
        chunk = [*texts[start:start + 60], "warn", None, "ERROR", *texts[:5]]
        lines = [line(ts=T0, service="a", msg="m", **({"level": t} if t else {}))
                 for t in chunk for _ in range(2)]
        batch = dec.decode(lines).batch
        rows, errors, _ = RowDecoder(ParsingConfig()).decode(lines)
        assert not errors
        assert batch.level.tolist() == rows.level.tolist()
    assert dec.stats.row_lines == 0
    bad = [line(ts=T0, service="a", level="warn", msg="m")] * 99 + [
        line(ts=T0, service="a", level=True, msg="m")]
    res = dec.decode(bad)
    assert len(res.batch) == 99 and reasons(res.dead) == ["wrong_type"]


@pytest.mark.parametrize("odd", [
    {"@timestamp": "2026-11-23T12:00:05Z", "service": "b", "msg": "late key"},
    {"ts": T0 + 1, "time": "2020-01-01T00:00:00Z", "service": "c", "msg": "both"},
    {"ts": T0 + 2, "service": "d", "message": "no msg key"},
])
def test_keys_left_unread_below_a_dense_field_are_read_when_a_record_needs_them(
        odd: dict[str, object]) -> None:
    """After batches where every record has `ts` and `msg`, the query stops reading the unseen
    keys ranked below them (`time`, `@timestamp`, `message`...). A record that then carries
    only `@timestamp`, or its message only under `message`, is still read as the per-line
    decoder reads it, on the columnar path; one with both `ts` and `time` keeps `ts`."""
    dec = BatchDecoder(ParsingConfig())
    plain = [line(ts=T0 + i, service="a", msg=f"m {i}") for i in range(200)]
    dec.decode(plain)
    dec.decode(plain)
    assert {"timestamp", "message"} <= dec._columnar._dense
    lines = [*plain[:100], line(**odd), *plain[100:]]
    got = dec.decode(lines)
    rows, errors, _ = RowDecoder(ParsingConfig()).decode(lines)
    assert not errors and not got.dead
    assert got.batch.ts.tolist() == rows.ts.tolist()
    assert got.batch.message.to_list() == rows.message.to_list()
    assert dec.stats.row_lines == 0
    # trusted again only after twice as many batches with the key everywhere
    for _ in range(4):
        dec.decode(plain)
    assert {"timestamp", "message"} <= dec._columnar._dense


def test_a_source_that_often_lacks_a_fields_first_key_costs_few_second_reads() -> None:
    """A field's first key missing from every third batch: each failed assumption doubles the
    batches before the next, so of 64 batches only a handful are read twice."""
    from detector.decode import columns

    dec = BatchDecoder(ParsingConfig())
    reads = 0
    real = columns.ColumnarDecoder._columns_and_checks

    def counted(self: columns.ColumnarDecoder, *a: object) -> object:
        nonlocal reads
        reads += 1
        return real(self, *a)  # type: ignore[arg-type]

    plain = [line(ts=T0 + i, service="a", msg=f"m {i}") for i in range(100)]
    holed = [*plain[:50], line(time=T0, service="a", msg="no ts"), *plain[50:]]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(columns.ColumnarDecoder, "_columns_and_checks", counted)
        for i in range(64):
            got = dec.decode(holed if i % 3 == 2 else plain)
            assert not got.dead
    assert dec.stats.row_lines == 0
    assert 64 < reads <= 64 + 8, reads


def test_ecs_logging_output_stays_on_the_columnar_path() -> None:
    """ecs-logging libraries write `log.level` flat beside a `log` object (logger, origin); the
    object holds nothing Vigil needs, so the batch need not leave the fast path."""
    lines = [line(**{"@timestamp": "2026-11-23T12:00:00.000Z", "log.level": "info",
                     "message": f"request {i} done", "service.name": "billing",
                     "log": {"logger": "app", "origin": {"function": "handle"}},
                     "ecs": {"version": "1.6.0"}}) for i in range(500)]
    dec = BatchDecoder(ParsingConfig())
    res = dec.decode(lines)
    assert len(res.batch) == 500 and not res.dead
    assert dec.stats.columnar_lines == 500
    assert set(res.batch.service.to_list()) == {"billing"}


def test_fields_inside_objects_are_read_as_structs_on_the_columnar_path() -> None:
    lines = [line(**{"@timestamp": "2026-11-23T12:00:00Z", "message": "m",
                     "service": {"name": "billing"}, "log": {"level": "error"},
                     "http": {"response": {"status_code": 503}}})] * 500
    dec = BatchDecoder(ParsingConfig())
    res = dec.decode(lines)
    assert dec.stats.columnar_lines == 500
    assert set(res.batch.service.to_list()) == {"billing"}
    assert set(res.batch.level.tolist()) == {LEVEL_ERROR}
    assert set(res.batch.status.tolist()) == {503}


def test_a_source_that_mixes_flat_and_nested_values_is_still_read_right() -> None:
    flat = line(ts=T0, service="cart", msg="a")
    nested = line(ts=T0, service={"name": "db"}, msg="b")
    lines = [flat, nested] * 300
    res = BatchDecoder(ParsingConfig()).decode(lines)
    assert res.dead == []
    assert res.batch.service.to_list() == ["cart", "db"] * 300


def test_otlp_key_value_lists_go_to_the_per_line_decoder() -> None:
    """polars reads lists of structs slower than msgspec decodes the lines, so they go there."""
    raw = line(timeUnixNano=str(int(T0 * 1e9)), body={"stringValue": "m"},
               resource={"attributes": [
                   {"key": "host.name", "value": {"stringValue": "h1"}},
                   {"key": "service.name", "value": {"stringValue": "payments"}}]},
               attributes=[{"key": "latency_ms", "value": {"doubleValue": 7.5}},
                           {"key": "http.status_code", "value": {"intValue": "502"}}])
    dec = BatchDecoder(ParsingConfig())
    res = dec.decode([raw] * 300)
    assert dec.stats.row_lines == 300
    (ev,) = set((e.service, e.message, e.latency_ms, e.status) for e in res.batch.events())
    assert ev == ("payments", "m", 7.5, 502)


def test_attrs_keep_scalar_extra_keys_on_both_paths() -> None:
    lines = [line(ts=T0, service="a", msg="m", event="deploy", version=3, host={"name": "h"})]
    lines = lines * 200
    batch = BatchDecoder(ParsingConfig()).decode(lines).batch
    rows, _, _ = RowDecoder(ParsingConfig()).decode(lines)
    assert batch.attrs[0] == rows.attrs[0] == {"event": "deploy", "version": "3"}


def test_per_event_attrs_built_from_columns_are_the_per_line_decoders() -> None:
    lines = [line(ts=T0 + i, service="a", msg="m", **({"callee": "db"} if i % 3 else {}),
                  **({"pod": f"p{i}"} if i % 2 else {"pod": None}),
                  **({"kind": ["x"]} if i % 5 == 0 else {"kind": "server"}))
             for i in range(300)]
    res = BatchDecoder(ParsingConfig()).decode(lines)
    assert res.batch.attr_columns  # the columnar path, which builds no dict per event up front
    rows, _, _ = RowDecoder(ParsingConfig()).decode(lines)
    assert list(res.batch.attrs) == list(rows.attrs)
    assert [e.attrs for e in res.batch.events()] == [a or {} for a in rows.attrs]
    assert res.batch.attrs == rows.attrs and len(res.batch.attrs) == 300


def test_a_bad_line_in_a_nested_shape_batch_costs_only_itself() -> None:
    nested = line(ts=T0, service={"name": "db"}, msg="b")
    lines = [nested] * 600 + [b"{broken"] + [nested] * 600
    dec = BatchDecoder(ParsingConfig())
    res = dec.decode(lines)
    assert [d.reason for d in res.dead] == ["undecodable"] and len(res.batch) == 1200
    assert dec.stats.columnar_lines >= 1000


def test_a_source_that_moves_from_nested_to_flat_values_returns_to_flat_reading() -> None:
    dec = BatchDecoder(ParsingConfig())
    dec.decode([line(ts=T0, service={"name": "db"}, msg="b")] * 500)
    flat = [line(ts=T0, service="cart", msg="a")] * 500
    res = dec.decode(flat)
    assert set(res.batch.service.to_list()) == {"cart"}
    before = dec.stats.columnar_lines
    dec.decode(flat)
    assert dec.stats.columnar_lines == before + 500
