"""A small microservice fleet that writes realistic JSON logs, with labeled faults injected.

gateway fronts three routes: /catalog (catalog -> db), /cart (cart) and /checkout (checkout ->
cart, payments -> db). Every hop logs with the request's trace id, its own span id and its parent's;
latencies are log-normal and add up along the chain; errors propagate upstream as 502/503/504,
and a caller names the callee that failed it (`callee`); a crashed or hung service logs nothing
for the calls it drops. Traffic follows a slow sinusoid; background noise (4xx, declines,
retries, health checks, GC pauses, rare config reloads) is always on. Deterministic for a seed.
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
# Lines per request measured on this fleet (background included); sizes a run from --events.
_EVENTS_PER_REQUEST = 3.2


@dataclass(slots=True)
class Fault:
    kind: str  # error_burst | latency_regression | crash_loop | hang | new_exception | traffic_spike
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
        period: float = 1800.0,
    ) -> None:
        self.faults = faults
        self.rng = random.Random(seed)
        self.rate = rate
        self.start = start
        self.period = period
        self._pid = 4000 + seed % 1000
        self._down_until: dict[str, float] = {}

    # ---- public -------------------------------------------------------------------------
    def records(self, n_events: int) -> list[tuple[float, dict[str, Any]]]:
        """About `n_events` records (exactly n), in delivery order (slightly out of event order)."""
        out: list[tuple[float, dict[str, Any]]] = []
        rng = self.rng
        t = self.start
        next_bg = t
        deployed: set[int] = set()
        while len(out) < n_events:
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
        if path == "/cart" and rng.random() < 0.02:
            item = rng.randint(1, 99999)
            out.append((t + own / 1e3, self._log(
                t + own / 1e3, "gateway", "warn", f"{method} {path}/{item} -> 404 in {own:.0f} ms",
                trace, root, None, own, 404)))
            return
        end, status, _ = self._span(target, t + own / 2e3, trace, root, out)
        total = (end - t) * 1e3 + own / 2
        level = "error" if status >= 500 else "info"
        client = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        msg = (f"{method} {path} -> {status} in {total:.0f} ms" if status < 500
               else f"{method} {path} -> {status}: upstream {target} failed")
        extra = {"callee": target} if status >= 500 else {}
        out.append((t + total / 1e3, self._log(
            t + total / 1e3, "gateway", level, msg, trace, root, None, total, status, client=client,
            **extra)))

    def _span(
        self, svc: str, t: float, trace: str, parent: str, out: list[tuple[float, dict[str, Any]]]
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
            c_end, c_status, c_kind = self._span(child, now, trace, span, out)
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
        extra = {"callee": failed} if failed is not None else {}
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
