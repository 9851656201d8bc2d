"""No line crashes the decoder: a seeded generator of every class of bad input, mixed with good lines
in batches of every size, through the whole pipeline. Each line ends as an event or a dead letter
that holds its exact bytes."""

from __future__ import annotations

import base64
import random

import msgspec
import orjson
import pytest

from detector.config import VigilConfig
from detector.decode.deadletter import REASONS
from detector.pipeline import Pipeline

T0 = 1795435200.0  # 2026-11-23T12:00:00Z


def _good(r: random.Random, t: float) -> dict[str, object]:
    return {"ts": round(t, 3), "service": r.choice(["cart", "pay", "auth"]),
            "level": r.choice(["info", "warn", "error"]), "msg": f"did {r.randint(0, 99)} things",
            "request_id": f"r{r.randint(0, 500)}", "latency_ms": r.uniform(1, 50),
            "status": r.choice([200, 200, 500])}


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def _bad(r: random.Random, t: float) -> bytes:
    """One line of a random class of trouble (some of them are, in fact, fine)."""
    g = _good(r, t)
    text = orjson.dumps(g)
    kind = r.randrange(22)
    if kind == 0:
        return bytes(r.randrange(256) for _ in range(r.randrange(1, 200)))
    if kind == 1:
        return text[: r.randrange(1, len(text))]
    if kind == 2:
        return text.replace(b'"ts":' + orjson.dumps(g["ts"]), b'"ts":' + r.choice(
            [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"]))
    if kind == 3:
        field = r.choice(["ts", "service", "level", "latency_ms", "status", "msg", "request_id"])
        g[field] = r.choice([True, None, {}, [], {"a": 1}, [1, 2], "", -5, 3.5, "x" * 50,
                             10**30, -(10**30)])
        return msgspec.json.encode(g)
    if kind == 4:
        return b"\xef\xbb\xbf" + text
    if kind == 5:
        return text + b"\r\n"
    if kind == 6:
        return b'{"ts": %d, "service": "big", "msg": "%s"}' % (int(t), b"x" * (2 << 20))
    if kind == 7:
        return text[:-1] + b', "service": 42, "service": "dup"}'
    if kind == 8:
        return text + text
    if kind == 9:  # invalid UTF-8 inside a string
        at = text.index(b'"msg":"') + 8
        return text[:at] + r.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88"]) + text[at:]
    if kind == 10:
        return text[:-1] + b', "x": ' + _deep(r.choice([500, 1500, 5000])) + b"}"
    if kind == 11:
        return text[:-1] + b', "msg": ' + _deep(r.choice([300, 2000])) + b"}"
    if kind == 12:
        big = str(r.choice([2**64, 10**30, -(2**70)])).encode()
        field = r.choice([b"status", b"latency_ms", b"ts", b"level", b"host", b"x"])
        return text[:-1] + b', "' + field + b'": ' + big + b"}"
    if kind == 13:
        return text.replace(b'"msg":"', b'"msg":"\\ud800 lone ' if r.random() < 0.5 else
                            b'"msg":"\\udc00 lone ')
    if kind == 14:
        return r.choice([b"", b"   ", b"\t", b"null", b"[]", b'"text"', b"42", b"true"])
    if kind == 15:
        g["ts"] = r.choice([0, 1, -1, 32503680000, 1e15, 1e300, "0001-01-01T00:00:00+14:00",
                            "9999-12-31T23:59:59-12:00", "2026-13-45T99:99:99Z", "yesterday"])
        return msgspec.json.encode(g)
    if kind == 16:
        return text.replace(b'"msg":"', b'"msg":"\x00nul ')
    if kind == 17:
        return text[:-1] + b', "msg": {"nested": [1, 2, {"k": ' + str(10**40).encode() + b"}]}}"
    if kind == 18:
        return text.replace(b":", b": \n", 1)  # a raw newline inside a record
    if kind == 19:
        return text.replace(b'"msg":"', b'"msg":"\\ud83d\\ude00 paired ')  # valid: an emoji
    if kind == 20:
        return orjson.dumps({"resource": {"attributes": [{"key": "service.name", "value": {
            "stringValue": r.choice(["cart", 5, None, ""])}}]}, "timeUnixNano": str(int(t * 1e9)),
            "body": {"stringValue": "otlp"}})
    return text


def _stream(seed: int, n: int, bad_share: float) -> list[bytes]:
    r = random.Random(seed)
    return [_bad(r, T0 + i * 0.01) if r.random() < bad_share else orjson.dumps(_good(r, T0 + i * 0.01))
            for i in range(n)]


def _check(lines: list[bytes], sizes: list[int], seed: int) -> Pipeline:
    pipe = Pipeline(VigilConfig())
    dead: list[dict[str, object]] = []
    r = random.Random(seed)
    i = 0
    while i < len(lines):
        k = r.choice(sizes)
        out = pipe.process(lines[i:i + k], "fuzz", range(i + 1, i + 1 + len(lines[i:i + k])))
        dead += [d.to_dict() for d in out.dead]
        i += k
    dead += [d.to_dict() for d in pipe.finish().dead]
    st = pipe.stats
    assert st.lines == len(lines)
    assert st.events + st.dead.total == len(lines), (st.events, dict(st.dead.counts))
    assert set(st.dead.counts) == set(REASONS)
    seen: set[int] = set()
    for rec in dead:
        pos = int(str(rec["source"]).rsplit(":", 1)[1])
        assert pos not in seen, f"line {pos} dead-lettered twice"
        seen.add(pos)
        raw = str(rec["raw"]).encode() if "raw" in rec else base64.b64decode(str(rec["raw_b64"]))
        assert raw == lines[pos - 1], f"line {pos}: the dead letter does not hold its bytes"
        assert rec["reason"] in REASONS and rec["detail"]
    assert st.dead.counts["decoder_error"] == 0  # every class above has a reason of its own
    return pipe


@pytest.mark.parametrize("sizes", [[1], [7, 64, 65], [4096, 1000, 300]])
def test_every_class_of_bad_line_is_a_dead_letter_and_the_batch_goes_on(sizes: list[int]) -> None:
    lines = _stream(seed=len(sizes), n=6000, bad_share=0.3)
    pipe = _check(lines, sizes, seed=1)
    assert pipe.stats.events > 3000  # the good lines (and the harmless odd ones) are events
    counts = pipe.stats.dead.counts
    for reason in ("undecodable", "not_object", "wrong_type", "oversize", "missing_field"):
        assert counts[reason] > 0, reason


@pytest.mark.slow
def test_a_hundred_thousand_fuzzed_lines() -> None:
    lines = _stream(seed=7, n=100_000, bad_share=0.1)
    _check(lines, [1, 3, 64, 500, 8192, 32768], seed=2)
