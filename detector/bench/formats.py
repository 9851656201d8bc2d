"""`vigil bench formats`: decode lines/s of each `parsing.format` (JSON for the ratio, logfmt, every
regex preset) on the same generated events rendered in each layout, about 200 bytes a line."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from detector.config import ParsingConfig
from detector.decode.batch import BatchDecoder

_SERVICES = ("checkout", "payments", "inventory", "frontend", "shipping", "auth")
_LEVELS = ("INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG")
_WORDS = ("request", "served", "cache", "miss", "upstream", "timeout", "retry", "user", "order",
          "accepted", "queue", "depth", "connection", "reset", "by", "peer", "block", "replica")
_T0 = 1795435200.0  # 2026-11-23T12:00:00Z


@dataclass(slots=True)
class FormatFigures:
    name: str  # json, logfmt, or a preset's name
    lines: int
    bytes_per_line: float
    lines_per_s: float  # best of the runs
    events: int  # lines that decoded to events (the rest are dead letters: should be 0)

    @property
    def mb_per_s(self) -> float:
        return self.lines_per_s * self.bytes_per_line / 1e6


@dataclass(slots=True)
class _Event:
    ts: float
    service: str
    level: str
    message: str
    request_id: str
    latency_ms: float
    status: int


def _events(n: int, seed: int) -> list[_Event]:
    r = random.Random(seed)
    out = []
    for i in range(n):
        words = " ".join(r.choices(_WORDS, k=r.randint(12, 16)))
        out.append(_Event(_T0 + i * 0.001, r.choice(_SERVICES), r.choice(_LEVELS),
                          f"{words} id={r.randrange(10**6)}", f"{r.getrandbits(64):016x}",
                          round(r.expovariate(1 / 40), 3), r.choice((200, 200, 200, 404, 503))))
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _render() -> dict[str, Callable[[_Event], bytes]]:
    def json(e: _Event) -> bytes:
        return orjson.dumps({"ts": _iso(e.ts), "service": e.service, "level": e.level,
                             "msg": e.message, "request_id": e.request_id,
                             "latency_ms": e.latency_ms, "status": e.status})

    def logfmt(e: _Event) -> bytes:
        return (f'ts={_iso(e.ts)} service={e.service} level={e.level} msg="{e.message}" '
                f"request_id={e.request_id} latency_ms={e.latency_ms} status={e.status}").encode()

    def rfc5424(e: _Event) -> bytes:
        pri = 8 + (3 if e.level == "ERROR" else 6)
        return (f"<{pri}>1 {_iso(e.ts)} host-{e.request_id[:2]} {e.service} 4711 - - "
                f"{e.message} request={e.request_id}").encode()

    def rfc3164(e: _Event) -> bytes:
        stamp = datetime.fromtimestamp(e.ts, UTC).strftime("%b %d %H:%M:%S")
        return (f"<14>{stamp} host-{e.request_id[:2]} {e.service}[4711]: {e.level} "
                f"{e.message} request={e.request_id}").encode()

    def nginx(e: _Event) -> bytes:
        stamp = datetime.fromtimestamp(e.ts, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
        return (f'10.1.{e.status % 7}.{e.request_id[:2]} - - [{stamp}] "GET /api/{e.service}/'
                f'{e.request_id} HTTP/1.1" {e.status} {int(e.latency_ms * 37)} '
                f'"https://shop.example/" "Mozilla/5.0 (X11; Linux x86_64)" '
                f"{e.latency_ms / 1000:.3f}").encode()

    def hdfs(e: _Event) -> bytes:
        stamp = datetime.fromtimestamp(e.ts, UTC).strftime("%y%m%d %H%M%S")
        return (f"{stamp} 143 {e.level} dfs.{e.service}: {e.message} blk_-{e.request_id} "
                "src: /10.250.19.102:54106").encode()

    def bgl(e: _Event) -> bytes:
        d = datetime.fromtimestamp(e.ts, UTC)
        node = f"R02-M1-N0-C:J{e.status % 17:02d}-U11"
        return (f"- {int(e.ts)} {d:%Y.%m.%d} {node} {d:%Y-%m-%d-%H.%M.%S.%f} {node} RAS "
                f"{e.service.upper()} {e.level} {e.message}").encode()

    return {"json": json, "logfmt": logfmt, "syslog-rfc5424": rfc5424,
            "syslog-rfc3164": rfc3164, "nginx-combined": nginx, "hdfs": hdfs, "bgl": bgl}


def format_config(name: str) -> ParsingConfig:
    """The parsing configuration that reads the lines `bench_formats` renders as `name`."""
    if name in ("json", "logfmt"):
        return ParsingConfig.model_validate({"format": name})
    return ParsingConfig.model_validate({"format": "regex", "preset": name})


def format_lines(n: int, seed: int = 0) -> dict[str, list[bytes]]:
    """The same `n` events rendered in every layout `bench_formats` measures."""
    events = _events(n, seed)
    return {name: [render(e) for e in events] for name, render in _render().items()}


def bench_formats(n: int, batch_size: int, runs: int = 3,
                  names: list[str] | None = None) -> list[FormatFigures]:
    """Lines/s of `BatchDecoder.decode` per format, best of `runs`, batches of `batch_size`."""
    figures = []
    for name, lines in format_lines(n).items():
        if names is not None and name not in names:
            continue
        dec = BatchDecoder(format_config(name))
        best = float("inf")
        events = 0
        for _ in range(runs):
            t0 = time.perf_counter()
            events = 0
            for i in range(0, n, batch_size):
                events += len(dec.decode(lines[i:i + batch_size], "bench").batch)
            best = min(best, time.perf_counter() - t0)
        size = sum(map(len, lines)) / n
        figures.append(FormatFigures(name, n, size, n / best, events))
    return figures
