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
       for k in ("error_burst", "latency_regression", "crash_loop", "hang", "new_exception")},
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
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    duration = events / (rate * _EVENTS_PER_REQUEST)
    kind, root, upstream = SCENARIOS[scenario]
    if not kind:
        return [], duration
    if service is not None and service != root:
        if service not in ROOTS[kind]:
            raise ValueError(f"a {kind} fault can strike {', '.join(ROOTS[kind])}, not {service!r}")
        root, upstream = service, upstream_of(service)
    start = START_EPOCH + round(0.6 * duration) + 3.7  # mid-window, as faults are
    length = max(60.0, 0.15 * duration)
    return [Fault(kind, root, start, start + length, list(upstream))], duration


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
