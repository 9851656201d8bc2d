"""Simulated runs for tests, benchmarks, evaluations and notebooks: a fleet's lines in memory with
their ground truth, or written to a file by a child process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from detector.simulate.fleet import Fleet, Truth, render
from detector.simulate.scenarios import plan


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


def simulate_to_file(path: Path, events: int, seed: int = 7) -> None:
    """Generate in a child process, so its memory does not count in this one's peak RSS."""
    subprocess.run(
        [sys.executable, "-m", "detector", "simulate", "--scenario", "none", "--events",
         str(events), "--seed", str(seed), "--out", str(path)],
        check=True, stdout=subprocess.DEVNULL,
    )
