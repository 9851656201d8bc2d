"""`vigil bench analyze`: the notebook's `analyze` against `vigil replay` on the same file, in
one run (alternating, best of each), so the ratio holds on a noisy machine."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(slots=True)
class AnalyzeFigures:
    events: int
    replay_s: float
    analyze_s: float

    @property
    def ratio(self) -> float:
        """analyze time / replay time (the target: at most 1.2)."""
        return self.analyze_s / self.replay_s


def bench_analyze(events: int = 1_000_000, rounds: int = 2, seed: int = 7) -> AnalyzeFigures:
    """Simulate `events` JSON lines to a file, then time `replay` (writing its outputs) and
    `analyze` (keeping them as DataFrames) over it, alternately, `rounds` times each."""
    from detector.analysis import analyze
    from detector.config import VigilConfig
    from detector.runtime.replay import replay
    from detector.simulate.runs import simulate_to_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        simulate_to_file(path, events, seed=seed)
        best = {"replay": float("inf"), "analyze": float("inf")}
        for _ in range(rounds):
            t0 = time.perf_counter()
            replay([path], VigilConfig(), Path(tmp) / "out")
            best["replay"] = min(best["replay"], time.perf_counter() - t0)
            t0 = time.perf_counter()
            analyze(path)
            best["analyze"] = min(best["analyze"], time.perf_counter() - t0)
    return AnalyzeFigures(events, best["replay"], best["analyze"])
