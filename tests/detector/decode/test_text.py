"""Raw-text decoding (`parsing.format` logfmt and regex): every preset on real-looking lines,
logfmt quoting, the mapping of groups and keys onto fields, and every bad line a dead letter."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import orjson
import pytest

from detector.config import ConfigError, ParsingConfig, PresetName, VigilConfig, load_config
from detector.decode.batch import BatchDecoder, DecodeResult
from detector.decode.layouts import PRESETS
from detector.decode.logfmt import parse_logfmt
from detector.decode.text import TextDecoder
from detector.events import LEVEL_ERROR, LEVEL_FATAL, LEVEL_INFO, LEVEL_WARN, LogEvent
from detector.runtime.replay import replay
from tests.support import line

T0 = 1795435200.0  # 2026-11-23T12:00:00Z


def parsing(**kw: Any) -> ParsingConfig:
    return ParsingConfig.model_validate(kw)


def decode(lines: list[bytes], **kw: Any) -> DecodeResult:
    return BatchDecoder(parsing(**kw)).decode(lines, "t.log")


def events(lines: list[bytes], **kw: Any) -> list[LogEvent]:
    res = decode(lines, **kw)
    assert not res.dead, [(d.reason, d.detail) for d in res.dead]
    return list(res.batch.events())


def reasons(lines: list[bytes], **kw: Any) -> list[tuple[str, str]]:
    return [(d.reason, d.source) for d in decode(lines, **kw).dead]


# ---- presets ----------------------------------------------------------------------------------
def test_every_config_preset_name_has_a_layout() -> None:
    assert set(get_args(PresetName)) == set(PRESETS)


def test_hdfs_lines_from_loghub_decode_with_component_as_service(loghub: Path) -> None:
    lines = (loghub / "HDFS" / "HDFS_head2000.log").read_bytes().splitlines()
    evs = events(lines, format="regex", preset="hdfs")
    assert len(evs) == 2000
    first = evs[0]
    assert (first.ts, first.service, first.level) == (1226262918.0, "dfs.DataNode$DataXceiver",
                                                       LEVEL_INFO)
    assert first.message.startswith("Receiving block blk_-1608999687919862906 src:")


def test_bgl_lines_from_loghub_decode_labeled_and_unlabeled_alike(loghub: Path) -> None:
    labeled = (loghub / "BGL" / "BGL_2k.log").read_bytes().splitlines()
    unlabeled = (loghub / "BGL" / "BGL_2k.unlabeled.log").read_bytes().splitlines()
    a = events(labeled, format="regex", preset="bgl")
    b = events(unlabeled, format="regex", preset="bgl")
    assert len(a) == len(b) == 2000
    assert [(e.ts, e.service, e.level, e.message) for e in a] == [
        (e.ts, e.service, e.level, e.message) for e in b]
    assert (a[0].ts, a[0].service, a[0].message) == (
        1117838570.0, "KERNEL", "instruction cache parity error corrected")
    assert any(e.level == LEVEL_FATAL for e in a)


def test_syslog_rfc5424_maps_app_name_severity_and_host() -> None:
    ev, ev2 = events([
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' "
        b"failed for lonvick on /dev/pts/8",
        b'<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - [exampleSDID@32473 '
        b'iut="3" eventSource="Application"] It\'s time to make the do-nuts.',
    ], format="regex", preset="syslog-rfc5424")
    assert (ev.service, ev.level, ev.message, ev.attrs) == (
        "su", LEVEL_FATAL, "'su root' failed for lonvick on /dev/pts/8",
        {"host": "mymachine.example.com"})
    assert ev.ts == pytest.approx(1065910455.003)
    assert (ev2.service, ev2.level, ev2.message) == ("myproc", 10, "It's time to make the do-nuts.")
    assert ev2.ts == pytest.approx(1061727255.000003)


def test_syslog_rfc3164_assumes_the_configured_year() -> None:
    ev, ev2 = events([b"<11>Oct 11 22:14:15 mymachine su: 'su root' failed",
                      b"Jun  1 03:04:05 web1 sshd[1234]: Accepted publickey for bob"],
                     format="regex", preset="syslog-rfc3164", year=2005)
    assert (ev.ts, ev.service, ev.level, ev.attrs) == (1129068855.0, "su", LEVEL_ERROR,
                                                       {"host": "mymachine"})
    assert (ev2.ts, ev2.service, ev2.message) == (1117595045.0, "sshd",
                                                  "Accepted publickey for bob")


def test_syslog_rfc3164_without_a_year_takes_last_year_for_a_date_ahead_of_the_clock() -> None:
    dec = TextDecoder(parsing(format="regex", preset="syslog-rfc3164"),
                      clock=lambda: 1767225600.0)  # 2026-01-01T00:00:00Z
    batch, bad, _ = dec.decode([b"Dec 31 23:59:00 h cron: tick", b"Jan  1 00:00:00 h cron: tock"])
    assert not bad
    assert batch.ts.tolist() == [1767225540.0, 1767225600.0]  # 2025-12-31, 2026-01-01


def test_nginx_combined_maps_request_status_and_request_time() -> None:
    ev, ev2 = events([
        b'127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 '
        b'"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"',
        b'10.0.0.2 - - [10/Oct/2000:20:55:37 +0000] "POST /api/pay HTTP/1.1" 502 0 "-" '
        b'"curl/8.0" 0.512',
    ], format="regex", preset="nginx-combined")
    assert (ev.ts, ev.service, ev.message, ev.status, ev.latency_ms, ev.attrs) == (
        971211336.0, "nginx", "GET /apache_pb.gif HTTP/1.0", 200, None, {"host": "127.0.0.1"})
    assert (ev2.ts, ev2.status, ev2.latency_ms) == (971211337.0, 502, 512.0)


def test_nginx_service_is_the_configured_default_service() -> None:
    (ev,) = events([b'10.0.0.2 - - [10/Oct/2000:20:55:37 +0000] "GET / HTTP/1.1" 200 10'],
                   format="regex", preset="nginx-combined", default_service="shop-edge")
    assert ev.service == "shop-edge"


# ---- your own pattern ---------------------------------------------------------------------------
def test_a_pattern_with_field_named_groups_just_works() -> None:
    (ev,) = events([b"2026-11-23T12:00:00Z cart WARN slow checkout took=840"],
                   format="regex", pattern=r"(?P<timestamp>\S+) (?P<service>\S+) (?P<level>\S+) "
                   r"(?P<message>.*?) took=(?P<latency_ms>\d+)")
    assert (ev.ts, ev.service, ev.level, ev.message, ev.latency_ms) == (
        T0, "cart", LEVEL_WARN, "slow checkout", 840.0)


def test_pattern_groups_map_through_the_field_mapping() -> None:
    cfg = parsing(format="regex", pattern=r"(?P<when>\S+) \[(?P<app>\w+)\] (?P<text>.*)",
                  fields={"timestamp": ["when"], "service": ["app"], "message": ["text"]})
    (ev,) = events([b"1795435200 [cart] boom"], **cfg.model_dump())
    assert (ev.ts, ev.service, ev.message) == (T0, "cart", "boom")


def test_a_timestamp_format_reads_log4j_times() -> None:
    (ev,) = events([b"2026-11-23 12:00:00,250 cart payment declined"], format="regex",
                   pattern=r"(?P<timestamp>\S+ \S+) (?P<service>\S+) (?P<message>.*)",
                   timestamp_format="%Y-%m-%d %H:%M:%S,%3f")
    assert ev.ts == T0 + 0.25


def test_a_line_that_does_not_match_is_a_no_match_dead_letter() -> None:
    res = decode([b"081109 203518 143 INFO dfs.DataNode: ok", b"garbage", b"\xff\xfe bytes"],
                 format="regex", preset="hdfs")
    assert len(res.batch) == 1
    assert [(d.reason, d.source) for d in res.dead] == [("no_match", "t.log:2"),
                                                        ("undecodable", "t.log:3")]
    assert res.dead[0].detail == "the line does not match the hdfs layout"
    assert res.dead[1].detail.startswith("not valid UTF-8 (byte 0xff at offset 0)")
    assert res.dead[0].raw == b"garbage"


def test_a_timestamp_that_does_not_read_is_a_bad_timestamp_dead_letter() -> None:
    res = decode([b"Feb 30 01:00:00 h x: impossible date", b"Mar  1 01:00:00 h x: fine"],
                 format="regex", preset="syslog-rfc3164", year=2026)
    assert [(d.reason, d.source) for d in res.dead] == [("bad_timestamp", "t.log:1")]
    assert "'Feb 30 01:00:00'" in res.dead[0].detail
    assert res.line_index.tolist() == [1]


def test_a_missing_service_is_a_missing_field_without_a_default_service() -> None:
    assert reasons([b"1795435200 boom"], format="regex",
                   pattern=r"(?P<timestamp>\d+) (?P<message>.*)") == [("missing_field", "t.log:1")]
    (ev,) = events([b"1795435200 boom"], format="regex",
                   pattern=r"(?P<timestamp>\d+) (?P<message>.*)", default_service="batch")
    assert ev.service == "batch"


# ---- logfmt ------------------------------------------------------------------------------------
def test_logfmt_maps_keys_like_json_keys() -> None:
    (ev,) = events([b'ts=2026-11-23T12:00:00Z service=cart level=error msg="payment declined" '
                    b"request_id=r1 duration_ms=12.5 status=503 host=h1"], format="logfmt")
    assert ev == LogEvent(ts=T0, service="cart", level=LEVEL_ERROR, message="payment declined",
                          request_id="r1", latency_ms=12.5, status=503, attrs={"host": "h1"})


def test_logfmt_quotes_and_escapes() -> None:
    assert parse_logfmt(r'msg="say \"hi\"\n\ttwice" path="C:\\tmp" empty="" bare= flag k=v') == {
        "msg": 'say "hi"\n\ttwice', "path": "C:\\tmp", "empty": "", "bare": "", "k": "v"}
    (ev,) = events([rb'ts=1795435200 service=cart msg="a \"quoted\" word = not a key"'],
                   format="logfmt")
    assert ev.message == 'a "quoted" word = not a key'


@pytest.mark.parametrize("raw", [b"just words, no pairs", b'ts=1795435200 service=x msg="open'])
def test_a_line_that_is_not_logfmt_is_a_no_match_dead_letter(raw: bytes) -> None:
    assert reasons([raw], format="logfmt") == [("no_match", "t.log:1")]


def test_logfmt_bad_values_name_the_field() -> None:
    res = decode([b"ts=yesterday service=x msg=m", b"ts=1795435200 service=x latency_ms=fast",
                  b"ts=1795435200 service=x status=teapot"], format="logfmt")
    assert [d.reason for d in res.dead] == ["bad_timestamp", "wrong_type", "wrong_type"]
    assert "latency_ms" in res.dead[1].detail and "status" in res.dead[2].detail


# ---- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize("kw, fragment", [
    ({"format": "regex"}, "needs one of parsing.pattern"),
    ({"format": "regex", "pattern": "(unclosed"}, "not a valid regex"),
    ({"format": "regex", "pattern": r"\S+ .*"}, "no named groups"),
    ({"preset": "hdfs"}, "need parsing.format: regex"),
])
def test_a_parsing_config_that_cannot_work_is_refused(kw: dict[str, str], fragment: str,
                                                      tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(orjson.dumps({"parsing": kw}).decode())
    with pytest.raises(ConfigError, match=fragment):
        load_config(path)


def test_json_stays_the_default_and_decodes_as_before() -> None:
    assert ParsingConfig().format == "json"
    dec = BatchDecoder(ParsingConfig())
    lines = [line(ts=T0 + i, service="cart", level="info", msg=f"m {i}") for i in range(200)]
    res = dec.decode([*lines, b"081109 203518 143 INFO dfs.DataNode: raw"])
    assert len(res.batch) == 200 and dec.stats.columnar_lines > 0
    assert [d.reason for d in res.dead] == ["undecodable"] and dec.stats.text_lines == 0


# ---- through vigil replay ----------------------------------------------------------------------
def test_replay_of_hdfs_head2000_makes_events_and_no_undecodable_letters(loghub: Path,
                                                                         tmp_path: Path) -> None:
    cfg = VigilConfig(parsing=parsing(format="regex", preset="hdfs"))
    result = replay([loghub / "HDFS" / "HDFS_head2000.log"], cfg, tmp_path / "out")
    assert (result.stats.lines, result.stats.events, result.stats.dead.total) == (2000, 2000, 0)
    assert (tmp_path / "out" / "dead_letter.jsonl").read_bytes() == b""


@pytest.mark.parametrize("kw", [{"format": "logfmt"}, {"format": "regex", "preset": "hdfs"},
                                {"format": "regex", "preset": "nginx-combined"},
                                {"format": "regex", "preset": "syslog-rfc3164"}])
def test_every_line_of_random_text_is_an_event_or_a_dead_letter(kw: dict[str, str]) -> None:
    import random

    r = random.Random(19)
    pieces = [b"081109 203518 143 INFO dfs.X: m", b"ts=1795435200 service=a msg=", b'"', b"\\",
              b"=", b" ", b"\xff", b"\xef\xbb\xbf", b"-", b"Oct 11 22:14:15 h s: ", b"[", b"]",
              b'1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1', b"status=x",
              b"latency_ms=-1", b"\r", b"\t", b"99999999999999999999"]
    lines = [b"".join(r.choices(pieces, k=r.randint(1, 6))) for _ in range(5000)]
    res = decode(lines, **kw)
    assert len(res.batch) + len(res.dead) == len(lines)
    assert sorted([*res.line_index.tolist(), *[(d.position or 0) - 1 for d in res.dead]]) == list(
        range(len(lines)))


def test_the_batch_logfmt_split_reads_lines_as_the_one_line_parser_does() -> None:
    msgs = ['plain', 'a "quoted" word', "tab\\there", 'ends with \\\\', "k=v inside", "", "ü ∑ 😀"]
    lines = [f'ts=1795435200 service=s{i} msg="{m.replace(chr(34), chr(92) + chr(34))}" '
             f"service=last{i}".encode() for i, m in enumerate(msgs)]
    evs = events(lines, format="logfmt")
    assert [(e.message, e.service) for e in evs] == [
        (parse_logfmt(x.decode())["msg"], parse_logfmt(x.decode())["service"]) for x in lines]
    assert evs[2].message == "tab\there" and evs[3].message == "ends with \\"


def test_bench_formats_renders_lines_every_format_reads() -> None:
    from detector.bench.formats import bench_formats

    figures = bench_formats(3000, 1024, runs=1)
    assert {f.name for f in figures} == {"json", "logfmt", *PRESETS}
    assert all(f.events == f.lines == 3000 and f.lines_per_s > 0 for f in figures)
