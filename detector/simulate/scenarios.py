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
    "new_exception": ("new_exception", "catalog", ["gateway"]),
    "traffic_spike": ("traffic_spike", "gateway", ["catalog", "cart", "checkout", "payments", "db"]),
    "none": ("", "", []),
}


def plan(scenario: str, events: int, rate: float = 50.0) -> tuple[list[Fault], float]:
    """Faults for `scenario` sized to a run of `events`, and the run's expected duration (s).

    The fault starts at 60% of the run and lasts 15% of it (at least 60 s), so the baselines have
    most of the run to warm up and the end shows recovery.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    duration = events / (rate * _EVENTS_PER_REQUEST)
    kind, service, upstream = SCENARIOS[scenario]
    if not kind:
        return [], duration
    start = START_EPOCH + round(0.6 * duration) + 3.7  # mid-window, as faults are
    length = max(60.0, 0.15 * duration)
    return [Fault(kind, service, start, start + length, list(upstream))], duration


def write_run(
    out: Path | str, scenario: str, events: int, seed: int = 0, shape: str = "plain",
    rate: float = 50.0,
) -> Truth:
    """Write `events` log lines to `out` (.gz compresses) and the ground truth to OUT.truth.json."""
    faults, _ = plan(scenario, events, rate)
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
