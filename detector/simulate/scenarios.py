"""Named scenarios: which fault, where, and when, for a run of a given size; and writing a run out."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson

from detector.simulate.fleet import _EVENTS_PER_REQUEST, START_EPOCH, Fault, Fleet, Truth, render

SCENARIOS: dict[str, tuple[str, str, list[str]]] = {
    # name: (fault kind, root-cause service, services the fault shows up in upstream)
    "error_burst": ("error_burst", "payments", ["checkout", "gateway"]),
    "latency_regression": ("latency_regression", "checkout", ["gateway"]),
    "crash_loop": ("crash_loop", "cart", ["checkout", "gateway"]),
    "hang": ("hang", "db", ["payments", "checkout", "catalog", "gateway"]),
    "new_exception": ("new_exception", "catalog", ["gateway"]),
    "traffic_spike": ("traffic_spike", "gateway", ["catalog", "cart", "checkout", "payments", "db"]),
    "none": ("", "", []),
    # weak faults, as microservice benchmarks inject them (strength drawn per fault: fleet.py)
    "weak_latency": ("weak_latency", "cart", ["checkout", "gateway"]),
    "cpu_contention": ("cpu_contention", "catalog", ["gateway"]),
    "code_exception": ("code_exception", "payments", ["checkout", "gateway"]),
    "network_delay": ("network_delay", "db", ["catalog", "payments", "checkout", "gateway"]),
}

# Who calls whom in the simulated fleet (catalog calls db on some requests).
CALLS: dict[str, list[str]] = {
    "gateway": ["catalog", "cart", "checkout"], "checkout": ["cart", "payments"],
    "payments": ["db"], "catalog": ["db"], "cart": [], "db": [],
}
# Services each fault kind may strike, for seeded root-cause cases (a traffic spike enters at
# the gateway; every other kind can hit any service behind it).
ROOTS: dict[str, tuple[str, ...]] = {
    "traffic_spike": ("gateway",),
    **{k: ("catalog", "cart", "checkout", "payments", "db")
       for k in ("error_burst", "latency_regression", "crash_loop", "hang", "new_exception",
                 "weak_latency", "cpu_contention", "code_exception", "network_delay")},
}


def upstream_of(service: str) -> list[str]:
    """Every service that calls `service`, directly or not, nearest first.

    >>> upstream_of("db")
    ['catalog', 'payments', 'checkout', 'gateway']
    """
    out: list[str] = []
    frontier = [service]
    while frontier:
        nxt = sorted({a for a, callees in CALLS.items() for b in frontier if b in callees} - set(out))
        out.extend(nxt)
        frontier = nxt
    return out


def plan(scenario: str, events: int, rate: float = 50.0, service: str | None = None
         ) -> tuple[list[Fault], float]:
    """Faults for `scenario` sized to a run of `events`, and the run's expected duration (s).

    The fault starts at 60% of the run and lasts 15% of it (at least 60 s), so the baselines have
    most of the run to warm up and the end shows recovery. `service` moves the fault to another
    root-cause service (one of `ROOTS[kind]`); it then shows up in that service's callers.
    """
    duration = events / (rate * _EVENTS_PER_REQUEST)
    start = START_EPOCH + round(0.6 * duration) + 3.7  # mid-window, as faults are
    length = max(60.0, 0.15 * duration)
    return _faults(scenario, service, start, start + length), duration


def short_capture(scenario: str, service: str | None = None, start: float = START_EPOCH,
                  before: float = 60.0, after: float = 120.0) -> tuple[list[Fault], float]:
    """Faults for a capture as short as real RCA datasets keep: `before` seconds of normal traffic
    from `start`, then the fault until the capture ends `after` seconds later; and its duration.

    >>> faults, duration = short_capture("code_exception", service="cart")
    >>> (faults[0].kind, faults[0].service, faults[0].start - START_EPOCH, duration)
    ('code_exception', 'cart', 60.0, 180.0)
    """
    return _faults(scenario, service, start + before, start + before + after), before + after


def _faults(scenario: str, service: str | None, start: float, end: float) -> list[Fault]:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    kind, root, upstream = SCENARIOS[scenario]
    if not kind:
        return []
    if service is not None and service != root:
        if service not in ROOTS[kind]:
            raise ValueError(f"a {kind} fault can strike {', '.join(ROOTS[kind])}, not {service!r}")
        root, upstream = service, upstream_of(service)
    return [Fault(kind, root, start, end, list(upstream))]


def write_run(
    out: Path | str, scenario: str, events: int, seed: int = 0, shape: str = "plain",
    rate: float = 50.0, service: str | None = None,
) -> Truth:
    """Write `events` log lines to `out` (.gz compresses) and the ground truth to OUT.truth.json."""
    faults, _ = plan(scenario, events, rate, service)
    recs = Fleet(faults, seed=seed, rate=rate).records(events)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(render(r, shape) + b"\n" for _, r in recs)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as gz:
            gz.write(data)
    else:
        path.write_bytes(data)
    ts = [r["ts"] for _, r in recs]
    truth = Truth(scenario=scenario, seed=seed, events=len(recs), start=min(ts), end=max(ts),
                  faults=faults)
    truth_path(path).write_bytes(orjson.dumps(truth.to_dict(), option=orjson.OPT_INDENT_2))
    return truth


def truth_path(path: Path) -> Path:
    return path.with_name(path.name + ".truth.json")
