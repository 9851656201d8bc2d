"""A small microservice fleet that writes realistic JSON logs, with labeled faults injected.

gateway fronts three routes: /catalog (catalog -> db), /cart (cart) and /checkout (checkout ->
cart, payments -> db). Every hop logs with the request's trace id, its own span id and its parent's;
latencies are log-normal and add up along the chain; errors propagate upstream as 502/503/504,
and a caller names the callee that failed it (`callee`); a crashed or hung service logs nothing
for the calls it drops. Traffic follows a slow sinusoid; background noise (4xx, declines,
retries, health checks, GC pauses, rare config reloads) is always on. Deterministic for a seed.

Besides the strong faults, four weak ones as real microservice benchmarks inject them (Online
Boutique / Nezha): `weak_latency` (+100-300 ms on one service's own time), `cpu_contention` (its
own time x3-5, more jitter), `code_exception` (one operation raises on 3-8 % of its calls) and
`network_delay` (+100-300 ms on the wire into one service: its callers wait, its own time does
not change). Their strength is drawn once per fault from the seed, on an rng of its own
(`Fleet.params`), so a run without them draws the fleet's rng exactly as before.

`annotate=True` also keeps what tracing data needs and logs do not carry: each call's operation
and start (`_op`, `_start`, `_client` on the callee's record) and the caller's CLIENT spans
(`Fleet.client_spans`, with 1-3 ms network time each way drawn on another rng of their own).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

SERVICES = ("gateway", "catalog", "cart", "checkout", "payments", "db")
START_EPOCH = 1795392000.0  # 2026-11-23T00:00:00Z
_ROUTES = (("GET", "/catalog", 0.40, "catalog"), ("GET", "/cart", 0.35, "cart"),
           ("POST", "/checkout", 0.25, "checkout"))
_MEDIAN_MS = {"gateway": 2.0, "catalog": 8.0, "cart": 5.0, "checkout": 15.0, "payments": 40.0,
              "db": 3.0}
_TIMEOUT_S = 1.0  # callers give up on a hung service after this long
# What an unhandled exception looks like in each service's language (Go, C#, Node, Java).
_EXCEPTIONS = {
    "catalog": "panic: runtime error: invalid memory address or nil pointer dereference",
    "cart": "System.InvalidOperationException: Sequence contains no elements",
    "checkout": "panic: runtime error: index out of range [3] with length 3",
    "payments": "TypeError: Cannot read properties of undefined (reading 'units')",
    "db": "org.postgresql.util.PSQLException: ERROR: deadlock detected",
}
# The operations each service serves (a code_exception breaks one of them).
OPERATIONS = {
    "catalog": ("GetProduct", "ListProducts"), "cart": ("GetCart", "EmptyCart"),
    "checkout": ("PlaceOrder",), "payments": ("Charge",), "db": ("SelectProduct", "InsertCharge"),
}


def operation(svc: str, caller: str, trace: str) -> str:
    """The operation a call from `caller` runs on `svc` (no rng draw: the trace id's last digit
    picks catalog's page kind).

    >>> operation("db", "payments", "0" * 32), operation("catalog", "gateway", "0" * 31 + "1")
    ('InsertCharge', 'ListProducts')
    """
    if svc == "catalog":
        return OPERATIONS["catalog"][int(trace[-1], 16) & 1]
    if svc == "cart":
        return "GetCart" if caller == "gateway" else "EmptyCart"
    if svc == "db":
        return "SelectProduct" if caller == "catalog" else "InsertCharge"
    return OPERATIONS.get(svc, ("Handle",))[0]


def fault_params(fault: Fault, seed: int, index: int = 0) -> dict[str, Any]:
    """How strong a weak fault is, drawn once from the seed on an rng of its own ({} for the
    strong kinds, whose strength is fixed).

    >>> p = fault_params(Fault("weak_latency", "cart", 0.0, 60.0), seed=1)
    >>> 100.0 <= p["extra_ms"] <= 300.0, p == fault_params(Fault("weak_latency", "cart", 0.0, 60.0), 1)
    (True, True)
    """
    r = random.Random(f"{seed}/{index}/{fault.kind}/{fault.service}")
    if fault.kind == "weak_latency":
        return {"extra_ms": round(r.uniform(100.0, 300.0), 1)}
    if fault.kind == "cpu_contention":
        return {"factor": round(r.uniform(3.0, 5.0), 2), "jitter": 0.3}
    if fault.kind == "code_exception":
        op = r.choice(OPERATIONS.get(fault.service, ("Handle",)))
        exc = _EXCEPTIONS.get(fault.service, "RuntimeError: unexpected state")
        return {"operation": op, "rate": round(r.uniform(0.03, 0.08), 3),
                "message": f"unhandled exception in {fault.service}/{op}: {exc}"}
    if fault.kind == "network_delay":
        return {"delay_ms": round(r.uniform(100.0, 300.0), 1)}
    return {}
# Lines per request measured on this fleet (background included); sizes a run from --events.
_EVENTS_PER_REQUEST = 3.2


@dataclass(slots=True)
class Fault:
    kind: str  # error_burst | latency_regression | crash_loop | hang | new_exception | traffic_spike
    #          | weak_latency | cpu_contention | code_exception | network_delay
    service: str  # the root cause
    start: float
    end: float
    propagates_to: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Truth:
    scenario: str
    seed: int
    events: int
    start: float
    end: float
    faults: list[Fault]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Truth:
        faults = [Fault(**f) for f in d["faults"]]
        return cls(**{**d, "faults": faults})


class Fleet:
    """Generates (emit_time, record) pairs; `records` sorts them the way a log shipper delivers."""

    def __init__(
        self, faults: list[Fault], seed: int = 0, rate: float = 50.0, start: float = START_EPOCH,
        period: float = 1800.0, annotate: bool = False,
    ) -> None:
        self.faults = faults
        self.rng = random.Random(seed)
        self.rate = rate
        self.start = start
        self.period = period
        self.annotate = annotate
        self.params = [fault_params(f, seed, i) for i, f in enumerate(faults)]
        self.client_spans: list[dict[str, Any]] = []  # with annotate: the callers' CLIENT spans
        self._kinds = {f.kind for f in faults}
        self._net_rng = random.Random(f"network/{seed}")  # drawn only with annotate
        self._pid = 4000 + seed % 1000
        self._down_until: dict[str, float] = {}

    # ---- public -------------------------------------------------------------------------
    def records(self, n_events: int, until: float = math.inf) -> list[tuple[float, dict[str, Any]]]:
        """About `n_events` records (exactly n), in delivery order (slightly out of event order);
        `until` stops starting requests at that time instead (a capture of a fixed length)."""
        out: list[tuple[float, dict[str, Any]]] = []
        rng = self.rng
        t = self.start
        next_bg = t
        deployed: set[int] = set()
        while len(out) < n_events and t < until:
            t += rng.expovariate(self._rate_at(t))
            while next_bg <= t:
                self._background(next_bg, out)
                next_bg += 1.0
            for i, f in enumerate(self.faults):
                if f.kind == "latency_regression" and i not in deployed and t >= f.start:
                    deployed.add(i)
                    out.append((f.start, self._log(
                        f.start, f.service, "info", f"deploy started version v2.4.{i + 1} by ci-bot",
                        event="deploy", version=f"v2.4.{i + 1}")))
            self._crash_transitions(t, out)
            self._request(t, out)
        del out[n_events:]
        # A shipper delivers with a small random delay, so event order is mildly shuffled.
        keyed = [(ts + rng.random() * 0.3, rec) for ts, rec in out]
        keyed.sort(key=lambda x: x[0])
        return keyed

    # ---- traffic ------------------------------------------------------------------------
    def _rate_at(self, t: float) -> float:
        r = self.rate * (1.0 + 0.3 * math.sin(2 * math.pi * (t - self.start) / self.period))
        for f in self._active(t, "traffic_spike"):
            del f
            r *= 4.0
        return r

    def _active(self, t: float, kind: str, service: str | None = None) -> list[Fault]:
        return [f for f in self.faults
                if f.kind == kind and f.start <= t < f.end and (service is None or f.service == service)]

    def _strength(self, t: float, kind: str, service: str) -> list[dict[str, Any]]:
        """The params of the weak faults of `kind` striking `service` at `t`."""
        if kind not in self._kinds:
            return []
        return [p for f, p in zip(self.faults, self.params, strict=True)
                if f.kind == kind and f.service == service and f.start <= t < f.end]

    def _request(self, t: float, out: list[tuple[float, dict[str, Any]]]) -> None:
        rng = self.rng
        u = rng.random()
        acc = 0.0
        method, path, target = _ROUTES[-1][0], _ROUTES[-1][1], _ROUTES[-1][3]
        for m, p, share, svc in _ROUTES:
            acc += share
            if u < acc:
                method, path, target = m, p, svc
                break
        trace = f"{rng.getrandbits(128):032x}"
        root = f"{rng.getrandbits(64):016x}"
        own = self._latency("gateway", t)
        notes = {"_op": f"{method} {path}", "_start": t} if self.annotate else {}
        if path == "/cart" and rng.random() < 0.02:
            item = rng.randint(1, 99999)
            out.append((t + own / 1e3, self._log(
                t + own / 1e3, "gateway", "warn", f"{method} {path}/{item} -> 404 in {own:.0f} ms",
                trace, root, None, own, 404, **notes)))
            return
        end, status, _ = self._call("gateway", root, target, t + own / 2e3, trace, out)
        total = (end - t) * 1e3 + own / 2
        level = "error" if status >= 500 else "info"
        client = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        msg = (f"{method} {path} -> {status} in {total:.0f} ms" if status < 500
               else f"{method} {path} -> {status}: upstream {target} failed")
        extra = {"callee": target} if status >= 500 else {}
        out.append((t + total / 1e3, self._log(
            t + total / 1e3, "gateway", level, msg, trace, root, None, total, status, client=client,
            **extra, **notes)))

    def _call(
        self, caller: str, caller_span: str, svc: str, t: float, trace: str,
        out: list[tuple[float, dict[str, Any]]],
    ) -> tuple[float, int, str]:
        """`caller` calls `svc` at `t` over the network: half the wire time each way (none unless
        annotating or a network_delay strikes `svc`); with annotate, the CLIENT span is kept."""
        net = self._net_rng.uniform(1.0, 3.0) if self.annotate else 0.0
        for p in self._strength(t, "network_delay", svc):
            net += p["delay_ms"]
        op = operation(svc, caller, trace)
        client = f"{self._net_rng.getrandbits(64):016x}" if self.annotate else None
        end, status, kind = self._span(svc, t + net / 2e3, trace, caller_span, out, op, client)
        end += net / 2e3
        if client is not None:
            self.client_spans.append({
                "ts": t, "service": caller, "trace": trace, "span": client, "parent": caller_span,
                "name": f"{svc}/{op}", "duration_ms": (end - t) * 1e3, "status": status})
        return end, status, kind

    def _span(
        self, svc: str, t: float, trace: str, parent: str, out: list[tuple[float, dict[str, Any]]],
        op: str = "", client: str | None = None,
    ) -> tuple[float, int, str]:
        """Run one service's span; returns (end time, status, message kind)."""
        rng = self.rng
        if self._is_down(svc, t):
            return t + 0.001, 503, "refused"
        if self._active(t, "hang", svc):  # accepts the call, never answers, logs nothing
            return t + _TIMEOUT_S, 504, "timeout"
        span = f"{rng.getrandbits(64):016x}"
        own = self._latency(svc, t)
        now = t + own / 2e3
        status = 200
        msg: str | None = None
        failed: str | None = None
        for child in self._children(svc):
            c_end, c_status, c_kind = self._call(svc, span, child, now, trace, out)
            now = c_end
            if c_status >= 500 and status < 500:
                status, failed = 502, child
                msg = f"call to {child} failed with {c_status}"
                if c_kind == "refused":
                    status, msg = 503, f"connection refused to {child}:8080"
                elif c_kind == "timeout":
                    status, msg = 504, f"timeout calling {child} after {_TIMEOUT_S * 1e3:.0f} ms"
        now += own / 2e3
        lat = (now - t) * 1e3
        level = "info"
        if status >= 500:
            level = "error"
        elif self._active(t, "error_burst", svc) and rng.random() < 0.6:
            status, level = 500, "error"
            msg = f"charge failed: provider error code 503 after {own:.0f} ms" if svc == "payments" \
                else f"{svc} internal error: dependency timeout after {own:.0f} ms"
        elif self._active(t, "new_exception", svc) and rng.random() < 0.35:
            status, level = 500, "error"
            msg = f"NullPointerException in ProductSerializer.render at line {212}"
        elif raised := [p for p in self._strength(t, "code_exception", svc)
                        if p["operation"] == op and rng.random() < p["rate"]]:
            status, level, msg = 500, "error", raised[0]["message"]
        elif svc == "payments" and rng.random() < 0.01:
            status, level = 402, "warn"
            msg = f"charge declined for card ending {rng.randint(1000, 9999)}: insufficient funds"
        elif svc == "db" and rng.random() < 0.005:
            level = "warn"
            out.append((now, self._log(now, svc, "warn",
                                       f"retrying query after timeout attempt {rng.randint(2, 3)}",
                                       trace, span, parent)))
        if msg is None:
            msg = self._ok_message(svc, lat)
        extra: dict[str, Any] = {"callee": failed} if failed is not None else {}
        if self.annotate:
            extra |= {"_op": op, "_start": t, "_client": client}
        out.append((now, self._log(now, svc, level, msg, trace, span, parent, lat, status, **extra)))
        return now, status, "error" if status >= 500 else "ok"

    def _children(self, svc: str) -> list[str]:
        if svc == "checkout":
            return ["cart", "payments"]
        if svc == "payments":
            return ["db"]
        if svc == "catalog" and self.rng.random() < 0.3:
            return ["db"]
        return []

    def _ok_message(self, svc: str, lat: float) -> str:
        rng = self.rng
        if svc == "catalog":
            if rng.random() < 0.1:
                return f"cache miss for product {rng.randint(1, 50000)}"
            return f"served product page {rng.randint(1, 50000)} in {lat:.0f} ms"
        if svc == "cart":
            return f"cart {rng.getrandbits(128):032x} has {rng.randint(0, 12)} items"
        if svc == "checkout":
            return f"order {rng.getrandbits(64):016x} created for user {rng.randint(1, 10**6)}"
        if svc == "payments":
            return (f"charged card ending {rng.randint(1000, 9999)} amount "
                    f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d} EUR")
        return f"query SELECT orders rows={rng.randint(0, 200)} took {lat:.1f} ms"

    def _latency(self, svc: str, t: float) -> float:
        lat = _MEDIAN_MS[svc] * math.exp(self.rng.gauss(0.0, 0.35))
        if self._active(t, "latency_regression", svc):
            lat *= 6.0
        for p in self._strength(t, "cpu_contention", svc):
            lat *= p["factor"] * math.exp(self.rng.gauss(0.0, p["jitter"]))
        for p in self._strength(t, "weak_latency", svc):
            lat += p["extra_ms"]
        return lat

    # ---- crash loops and background -------------------------------------------------------
    def _is_down(self, svc: str, t: float) -> bool:
        for f in self._active(t, "crash_loop", svc):
            # 25 s cycles: down for 18 s, then up for 7 s before the next crash.
            return (t - f.start) % 25.0 < 18.0
        return False

    def _crash_transitions(self, t: float, out: list[tuple[float, dict[str, Any]]]) -> None:
        for f in self.faults:
            if f.kind != "crash_loop" or not f.start <= t < f.end + 25.0:
                continue
            cycle = math.floor((t - f.start) / 25.0)
            up_at = f.start + cycle * 25.0 + 18.0
            if t >= up_at and self._down_until.get(f.service, -1.0) < up_at:
                self._down_until[f.service] = up_at
                self._pid += 1
                out.append((up_at, self._log(
                    up_at, f.service, "info",
                    f"service starting version v1.9.2 pid {self._pid} after exit code 137")))

    def _background(self, t: float, out: list[tuple[float, dict[str, Any]]]) -> None:
        rng = self.rng
        for svc in SERVICES:
            if self._is_down(svc, t):
                continue
            ts = t + rng.random()
            if rng.random() < 0.5:
                out.append((ts, self._log(ts, svc, "debug", "health check ok")))
            if rng.random() < 0.05:
                out.append((ts, self._log(ts, svc, "info", f"gc pause {rng.randint(1, 40)} ms")))
            if rng.random() < 0.0005:
                out.append((ts, self._log(
                    ts, svc, "info", f"config reloaded from /etc/{svc}/config.yaml")))

    @staticmethod
    def _log(
        ts: float, svc: str, level: str, msg: str, trace: str | None = None,
        span: str | None = None, parent: str | None = None, lat: float | None = None,
        status: int | None = None, **extra: Any,
    ) -> dict[str, Any]:
        rec: dict[str, Any] = {"ts": ts, "service": svc, "level": level, "msg": msg}
        if trace is not None:
            rec["request_id"] = trace
        if span is not None:
            rec["span_id"] = span
        if parent is not None:
            rec["parent_id"] = parent
        if lat is not None:
            rec["latency_ms"] = round(lat, 2)
        if status is not None:
            rec["status"] = status
        rec.update(extra)
        return rec


# ---- output shapes ----------------------------------------------------------------------------
def rfc3339(ts: float) -> str:
    """'2026-11-23T00:00:00.000Z' for epoch seconds (milliseconds, UTC).

    >>> rfc3339(1795392000.25)
    '2026-11-23T00:00:00.250Z'
    """
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def render(rec: dict[str, Any], shape: str) -> bytes:
    """One record as a JSON line in the plain, ECS or OpenTelemetry shape."""
    if shape == "plain":
        return orjson.dumps({**rec, "ts": rfc3339(rec["ts"])})
    if shape == "ecs":
        out: dict[str, Any] = {
            "@timestamp": rfc3339(rec["ts"]), "log.level": rec["level"],
            "service": {"name": rec["service"]}, "message": rec["msg"],
        }
        if "request_id" in rec:
            out["trace"] = {"id": rec["request_id"]}
            out["span"] = {"id": rec.get("span_id")}
        if "latency_ms" in rec:
            out["event"] = {"duration_ms": rec["latency_ms"]}
        if "status" in rec:
            out["http"] = {"response": {"status_code": rec["status"]}}
        return orjson.dumps(out)
    if shape == "otel":
        attrs = [{"key": "latency_ms", "value": {"doubleValue": rec["latency_ms"]}}] \
            if "latency_ms" in rec else []
        if "status" in rec:
            attrs.append({"key": "http.status_code", "value": {"intValue": str(rec["status"])}})
        otel: dict[str, Any] = {
            "timeUnixNano": str(int(rec["ts"] * 1e9)),
            "severityText": rec["level"].upper(),
            "body": {"stringValue": rec["msg"]},
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": rec["service"]}}]},
            "attributes": attrs,
        }
        if "request_id" in rec:
            otel["traceId"] = rec["request_id"]
            otel["spanId"] = rec.get("span_id")
            if rec.get("parent_id"):
                otel["parentSpanId"] = rec["parent_id"]
        return orjson.dumps(otel)
    raise ValueError(f"unknown shape {shape!r}; use plain, ecs or otel")
