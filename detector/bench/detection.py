"""`vigil bench detection`: every simulator scenario over several seeds, judged against its ground truth."""

from __future__ import annotations

from collections.abc import Iterable

from detector.config import VigilConfig
from detector.eval.detection import Verdict, judge
from detector.runtime.replay import replay_lines
from detector.simulate.runs import simulated_lines
from detector.simulate.scenarios import SCENARIOS


def bench_detection(
    cfg: VigilConfig, events: int, seeds: Iterable[int], scenarios: Iterable[str] | None = None,
) -> list[Verdict]:
    """Run each scenario for each seed and judge the incidents against the ground truth."""
    verdicts = []
    for scenario in scenarios or SCENARIOS:
        for seed in seeds:
            lines, truth = simulated_lines(events, seed=seed, scenario=scenario)
            incidents = replay_lines(lines, cfg)
            verdicts.append(judge(truth, incidents, cfg.window.seconds, cfg.incidents.gap_seconds))
    return verdicts
