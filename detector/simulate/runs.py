"""Simulated runs for tests, benchmarks, evaluations and notebooks: a fleet's lines in memory with
their ground truth, or written to a file by a child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from detector.simulate.fleet import _EVENTS_PER_REQUEST, START_EPOCH, Fault, Fleet, Truth, render
from detector.simulate.scenarios import SCENARIOS, plan, upstream_of


def simulated_lines(events: int, seed: int = 0, scenario: str = "none", shape: str = "plain",
                    service: str | None = None) -> tuple[list[bytes], Truth]:
    """`events` JSON lines from the simulator, kept in memory, with their ground truth
    (`service`: strike another root-cause service than the scenario's own)."""
    faults, _ = plan(scenario, events, service=service)
    recs = Fleet(faults, seed=seed).records(events)
    lines = [render(r, shape) for _, r in recs]
    ts = [r["ts"] for _, r in recs]
    truth = Truth(scenario, seed, len(lines), min(ts), max(ts), faults)
    return lines, truth


def simulated_history(minutes: float, faults: list[tuple[str, str | None, float, float]],
                      seed: int = 0, rate: float = 50.0) -> tuple[list[bytes], Truth]:
    """A longer run with several faults: `(scenario, service or None, start, end)`, in minutes
    from the start (each mid-window, as `plan` places them), for `minutes` of traffic at `rate`
    requests a second.

    >>> lines, truth = simulated_history(5, [("error_burst", None, 2, 3), ("crash_loop", "cart", 4, 5)])
    >>> [(f.kind, f.service, f.start - truth.start > 100) for f in truth.faults]
    [('error_burst', 'payments', True), ('crash_loop', 'cart', True)]
    """
    planned = []
    for scenario, service, start, end in faults:
        if scenario not in SCENARIOS or not SCENARIOS[scenario][0]:
            raise ValueError(f"unknown scenario {scenario!r}; choose from "
                             f"{', '.join(k for k, v in SCENARIOS.items() if v[0])}")
        kind, root, up = SCENARIOS[scenario]
        where = service or root
        planned.append(Fault(kind, where, START_EPOCH + 60 * start + 3.7, START_EPOCH + 60 * end + 3.7,
                             list(up) if where == root else upstream_of(where)))
    recs = Fleet(planned, seed=seed, rate=rate).records(int(minutes * 60 * rate * _EVENTS_PER_REQUEST))
    lines = [render(r, "plain") for _, r in recs]
    ts = [r["ts"] for _, r in recs]
    return lines, Truth("history", seed, len(lines), min(ts), max(ts), planned)


def simulate_to_file(path: Path, events: int, seed: int = 7) -> None:
    """Generate in a child process, so its memory does not count in this one's peak RSS."""
    subprocess.run(
        [sys.executable, "-m", "detector", "simulate", "--scenario", "none", "--events",
         str(events), "--seed", str(seed), "--out", str(path)],
        check=True, stdout=subprocess.DEVNULL,
    )
