"""One live service process: serves `GET /api/<operation>`, calls its downstreams over real HTTP
with the trace context, and writes one JSON log line per request it handles; `/metrics`,
`/healthz` and `POST /admin/throttle` beside. Version v2 fails, over capacity it sheds load with
503s, a throttle refuses with 429s, `--crash-after` makes it die. It binds loopback only and must
not import the pipeline.

    python -m detector.simulate.live.service --name cart --port 8081 --log logs/cart.log \
        --version v1 --calls payments=http://127.0.0.1:8082,db=http://127.0.0.1:8083
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from detector.simulate.live.logline import LogWriter
from detector.simulate.live.throttle import TokenBucket
from detector.simulate.live.topology import BAD_VERSIONS, DEFAULT_CAPACITY, DEFAULT_OWN_MS, OWN_MS, ROUTES

CALL_TIMEOUT_S = 1.0  # a caller gives up on a downstream after this long
BAD_DEPLOY_FAILURE_RATE = 0.6
CRASH_EXIT_CODE = 3
OVERLOAD_DELAY_S = 0.1  # what a request over capacity waits before its 503
STATS_WINDOW_S = 10.0  # GET /stats counts the requests of the last this many seconds
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_OPERATION = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_LOOPBACK = ("127.0.0.1", "::1")


class Server(ThreadingHTTPServer):
    """A threading HTTP server with a listen backlog that survives a burst of five times the load
    (the standard library's 5 refuses connections the moment a few arrive together)."""

    daemon_threads = True
    request_queue_size = 256


@dataclass(slots=True)
class Options:
    name: str
    port: int
    log: Path
    version: str = "v1"
    calls: dict[str, str] = field(default_factory=dict)
    capacity: int = DEFAULT_CAPACITY
    seed: int = 0
    throttle: float | None = None
    crash_after: float | None = None


def parse_calls(text: str) -> dict[str, str]:
    """`a=http://127.0.0.1:1,b=http://127.0.0.1:2` as a mapping (an empty text is none).

    >>> parse_calls("db=http://127.0.0.1:9000")
    {'db': 'http://127.0.0.1:9000'}
    """
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = part.partition("=")
        if not sep or not name or not url.startswith("http://"):
            raise ValueError(f"--calls entry {part!r} must read NAME=http://HOST:PORT")
        out[name] = url.rstrip("/")
    return out


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m detector.simulate.live.service",
                                description="one service of the live demo fleet")
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", type=Path, required=True, help="JSON-lines log file (appended)")
    p.add_argument("--version", default="v1", help="v2 is the bad deploy")
    p.add_argument("--calls", default="", help="downstreams as NAME=URL,NAME=URL")
    p.add_argument("--capacity", type=int, default=DEFAULT_CAPACITY,
                   help="requests in flight before it degrades and sheds load with 503")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--throttle", type=float, default=None, help="rate limit in requests/s")
    p.add_argument("--crash-after", type=float, default=None,
                   help="log FATAL and exit non-zero this many seconds after start")
    a = p.parse_args(argv)
    try:
        calls = parse_calls(a.calls)
    except ValueError as exc:
        p.error(str(exc))
    return Options(name=a.name, port=a.port, log=a.log, version=a.version, calls=calls,
                   capacity=max(1, a.capacity), seed=a.seed,
                   throttle=a.throttle if a.throttle and a.throttle > 0 else None,
                   crash_after=a.crash_after)


def trace_context(headers: Mapping[str, str]) -> tuple[str | None, str]:
    """(trace id, parent span id) from a W3C `traceparent`, else `x-request-id` (and
    `x-parent-span-id`); (None, "") when the request starts a trace. Header names in lower case.

    >>> trace_context({"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"})
    ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb')
    >>> trace_context({"x-request-id": "req-7"})
    ('req-7', '')
    """
    m = _TRACEPARENT.match((headers.get("traceparent") or "").strip().lower())
    if m and m.group(1) != "0" * 32:
        return m.group(1), m.group(2)
    rid = (headers.get("x-request-id") or "").strip()[:128]
    if rid:
        return rid, (headers.get("x-parent-span-id") or "").strip()[:64]
    return None, ""


class _Metrics:
    """The service's Prometheus series; labels are bounded (service, operation, code)."""

    def __init__(self, opts: Options) -> None:
        self.registry = reg = CollectorRegistry()
        ProcessCollector(registry=reg)
        self.requests = Counter("demo_requests", "Requests handled, by operation and status code",
                                ["service", "operation", "code"], registry=reg)
        self.errors = Counter("demo_request_errors", "Requests answered with a status of 500 or more",
                              ["service", "operation"], registry=reg)
        self.latency = Histogram(
            "demo_request_duration_seconds", "Time to answer a request", ["service", "operation"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=reg)
        self.in_flight = Gauge("demo_in_flight_requests", "Requests being handled now", ["service"],
                               registry=reg).labels(opts.name)
        self.throttle = Gauge("demo_throttle_rps", "The rate limit in requests/s (0: none)",
                              ["service"], registry=reg).labels(opts.name)
        Info("demo_service_version", "The version this process runs", registry=reg).info(
            {"service": opts.name, "version": opts.version, "pid": str(os.getpid())})


class Service:
    """The request logic of one service; `Server` and `_handler` put it on the network."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.pid = os.getpid()
        self.pod = f"{opts.name}-{self.pid}"
        self.log = LogWriter(opts.log)
        self.metrics = _Metrics(opts)
        # Behaviour draws follow the seed; ids do not, so a restarted process never reuses a trace id.
        self._rng = random.Random(f"{opts.seed}/{opts.name}")
        self._ids = random.Random()
        self._bucket: TokenBucket | None = None
        self.set_throttle(opts.throttle)
        self._in_flight = 0
        self._lock = threading.Lock()
        # (time, a server error?) of recent requests, for GET /stats (bounded)
        self._recent: collections.deque[tuple[float, bool]] = collections.deque(maxlen=50_000)
        # Loopback calls must not go through an http_proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        routes = ROUTES.get(opts.name)
        self._routes = None if routes is None else {
            op: tuple((svc, dop) for svc, dop in calls if svc in opts.calls)
            for op, calls in routes.items()}

    # ---- state ------------------------------------------------------------------------------
    @property
    def throttle_rps(self) -> float | None:
        return None if self._bucket is None else self._bucket.rps

    def set_throttle(self, rps: float | None) -> None:
        """Limit the service to `rps` requests/s (None or 0: no limit)."""
        self._bucket = TokenBucket(rps) if rps else None
        self.metrics.throttle.set(rps or 0.0)

    def event(self, level: str, msg: str, event: str) -> None:
        """A log line that is about the process, not a request."""
        self.log.write({"ts": time.time(), "service": self.opts.name, "level": level, "msg": msg,
                        "event": event, "version": self.opts.version, "pid": self.pid,
                        "pod": self.pod})

    @contextlib.contextmanager
    def _counted(self) -> Iterator[int]:
        with self._lock:
            self._in_flight += 1
            n = self._in_flight
        self.metrics.in_flight.inc()
        try:
            yield n
        finally:
            with self._lock:
                self._in_flight -= 1
            self.metrics.in_flight.dec()

    # ---- requests ---------------------------------------------------------------------------
    def handle(self, op: str, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """Serve `GET /api/<op>`: (status, JSON body), after logging the request's line."""
        start, t0 = time.time(), time.perf_counter()
        trace, parent = trace_context(headers)
        if trace is None:
            trace = f"{self._ids.getrandbits(128):032x}"
        span = f"{self._ids.getrandbits(64):016x}"
        callee: str | None = None
        route = self._route(op)
        if route is None:
            status, level, msg = 404, "warn", f"no operation {op[:64]!r} on {self.opts.name}"
            op = "unknown"  # keeps the metric labels a bounded set
        elif self._bucket is not None and not self._bucket.allow():
            status, level = 429, "warn"
            msg = f"throttled: over the limit of {self._bucket.rps:g} requests/s"
        else:
            with self._counted() as n:
                cap = self.opts.capacity
                if n > cap:
                    # Queued behind the others, then it gives up: latency jumps about tenfold.
                    # Long enough that five times the load stays overloaded (200 rps x 0.1 s
                    # keeps 20 in flight), short enough that a throttle to the usual rate
                    # recovers (40 rps x 0.1 s is 4, under the capacity).
                    time.sleep(OVERLOAD_DELAY_S * min(1.3, math.exp(self._rng.gauss(0.0, 0.15))))
                    status, level = 503, "error"
                    msg = (f"ServiceUnavailable: overloaded, {n} requests in flight over "
                           f"capacity {cap}")
                else:
                    status, level, msg, callee = self._work(op, route, trace, span)
        ms = (time.perf_counter() - t0) * 1e3
        if not msg:
            msg = f"GET /api/{op} -> {status} in {ms:.0f} ms"
        rec: dict[str, Any] = {
            "ts": start, "service": self.opts.name, "level": level, "msg": msg, "trace_id": trace,
            "span_id": span, "parent_span_id": parent, "duration_ms": round(ms, 3),
            "status": status, "operation": op, "name": f"GET /api/{op}", "kind": "SERVER",
            "version": self.opts.version, "pod": self.pod,
        }
        if callee is not None:
            rec["callee"] = callee
        self.log.write(rec)
        m = self.metrics
        m.requests.labels(self.opts.name, op, str(status)).inc()
        m.latency.labels(self.opts.name, op).observe(ms / 1e3)
        if status >= 500:
            m.errors.labels(self.opts.name, op).inc()
        with self._lock:
            self._recent.append((start, status >= 500))
        return status, {"service": self.opts.name, "operation": op, "status": status,
                        "trace_id": trace, "span_id": span}

    def stats(self, window_s: float = STATS_WINDOW_S) -> dict[str, Any]:
        """Requests and server errors (5xx; a 429 of the throttle is not one) of the last
        `window_s` seconds: what a remediation step's HTTP check reads."""
        since = time.time() - window_s
        with self._lock:
            while self._recent and self._recent[0][0] < since:
                self._recent.popleft()
            n = len(self._recent)
            errors = sum(1 for _, e in self._recent if e)
        return {"service": self.opts.name, "window_s": window_s, "requests": n,
                "server_errors": errors, "error_ratio": round(errors / n, 4) if n else 0.0}

    def _route(self, op: str) -> tuple[tuple[str, str], ...] | None:
        if not _OPERATION.match(op):
            return None
        if self._routes is None:  # a service outside the topology passes the operation on
            return tuple((svc, op) for svc in self.opts.calls)
        return self._routes.get(op)

    def _work(
        self, op: str, route: tuple[tuple[str, str], ...], trace: str, span: str
    ) -> tuple[int, str, str, str | None]:
        """The service's own work and its downstream calls: (status, level, message, callee)."""
        own = OWN_MS.get(self.opts.name, DEFAULT_OWN_MS) * math.exp(self._rng.gauss(0.0, 0.3))
        time.sleep(own / 2e3)
        if self.opts.version in BAD_VERSIONS and self._rng.random() < BAD_DEPLOY_FAILURE_RATE:
            return 500, "error", f"KeyError: 'currency' in handle_{op}", None
        for svc, dop in route:
            code, kind = self._call(svc, dop, trace, span)
            if kind == "refused":
                return 503, "error", (f"ConnectionRefusedError: call to {svc} refused at "
                                      f"{self.opts.calls[svc]}"), svc
            if kind == "timeout":
                return 504, "error", (f"TimeoutError: call to {svc} timed out after "
                                      f"{CALL_TIMEOUT_S * 1e3:.0f} ms"), svc
            if code >= 500:
                return 502, "error", f"UpstreamError: {svc} answered {code} to {dop}", svc
            if code == 429:
                return 429, "warn", f"throttled downstream: {svc} refused {dop} with 429", svc
        time.sleep(own / 2e3)
        return 200, "info", "", None

    def _call(self, svc: str, op: str, trace: str, span: str) -> tuple[int, str]:
        """GET a downstream's operation with the trace context: (status, ok|refused|timeout)."""
        headers = {"x-request-id": trace, "x-parent-span-id": span}
        if re.fullmatch(r"[0-9a-f]{32}", trace):
            headers["traceparent"] = f"00-{trace}-{span}-01"
        req = urllib.request.Request(f"{self.opts.calls[svc]}/api/{op}", headers=headers)
        try:
            with self._opener.open(req, timeout=CALL_TIMEOUT_S) as resp:
                resp.read()
                return int(resp.status), "ok"
        except urllib.error.HTTPError as exc:
            exc.read()
            return int(exc.code), "ok"
        except urllib.error.URLError as exc:
            timed_out = isinstance(exc.reason, TimeoutError | socket.timeout)
            return (504, "timeout") if timed_out else (503, "refused")
        except TimeoutError:
            return 504, "timeout"
        except OSError:  # reset, broken pipe, a bad status line: the callee went away mid-call
            return 503, "refused"


def _handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"vigil-demo-{service.opts.name}"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the service logs its own JSON lines; stderr stays quiet

        def _reply(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: dict[str, Any]) -> None:
            self._reply(code, json.dumps(obj).encode())

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path.startswith("/api/"):
                headers = {k.lower(): v for k, v in self.headers.items()}
                code, body = service.handle(path[len("/api/"):], headers)
                self._json(code, body)
            elif path == "/metrics":
                self._reply(200, generate_latest(service.metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/stats":
                self._json(200, service.stats())
            elif path == "/healthz":
                self._json(200, {"status": "ok", "service": service.opts.name,
                                 "version": service.opts.version, "pid": service.pid,
                                 "throttle_rps": service.throttle_rps})
            else:
                self._json(404, {"error": f"no route {path}; try /api/<operation>, /metrics, "
                                          "/stats, /healthz"})

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/admin/throttle":
                return self._json(404, {"error": "the only POST is /admin/throttle"})
            if self.client_address[0] not in _LOOPBACK:
                return self._json(403, {"error": "the admin API answers loopback only"})
            n = int(self.headers.get("Content-Length") or 0)
            try:
                rps = json.loads(self.rfile.read(n) or b"{}").get("rps")
            except (ValueError, AttributeError):
                return self._json(400, {"error": 'send a JSON object {"rps": N} (null or 0: none)'})
            if rps is not None and (isinstance(rps, bool) or not isinstance(rps, int | float)
                                    or rps < 0):
                return self._json(400, {"error": f"'rps' must be a non-negative number, got {rps!r}"})
            service.set_throttle(float(rps) if rps else None)
            service.event("warn" if rps else "info",
                          f"rate limit set to {rps:g} requests/s" if rps else "rate limit removed",
                          "throttle")
            self._json(200, {"service": service.opts.name, "throttle_rps": service.throttle_rps})

    return Handler


def _watch_parent(service: Service, parent: int) -> None:
    """Exit when the supervisor is gone (re-parented), so a killed supervisor leaves no service."""
    while os.getppid() == parent:
        time.sleep(1.0)
    service.event("warn", "supervisor gone, stopping", "stop")
    os._exit(0)


def _crash(service: Service, after: float) -> None:
    service.event("fatal", f"panic: unrecoverable state after {after:g} s (crash_loop fault), "
                  f"exiting with code {CRASH_EXIT_CODE}", "crash")
    os._exit(CRASH_EXIT_CODE)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    # The *_created series would double the scrape for nothing here.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    service = Service(opts)
    server = Server(("127.0.0.1", opts.port), _handler(service))

    def stop(signum: int, frame: object) -> None:
        service.event("info", f"stopping on {signal.Signals(signum).name}", "stop")
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=_watch_parent, args=(service, os.getppid()), daemon=True).start()
    if opts.crash_after is not None:
        timer = threading.Timer(opts.crash_after, _crash, (service, opts.crash_after))
        timer.daemon = True
        timer.start()
    service.event("info", f"starting {opts.name} version {opts.version} pid {service.pid} on "
                  f"127.0.0.1:{opts.port}", "start")
    server.serve_forever(poll_interval=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
