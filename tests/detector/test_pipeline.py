"""End to end on the simulator: faults become incidents on the right service, fast; calm runs
stay quiet."""

from __future__ import annotations

import pytest

from detector.config import VigilConfig
from detector.eval.detection import judge
from detector.runtime.replay import replay_lines
from detector.simulate.runs import simulated_lines
from tests.support import run_pipeline

CFG = VigilConfig()
WINDOW = CFG.window.seconds


def verdict(scenario: str, events: int, seed: int = 0, shape: str = "plain"):  # type: ignore[no-untyped-def]
    lines, truth = simulated_lines(events, seed=seed, scenario=scenario, shape=shape)
    incidents = replay_lines(lines, CFG)
    return judge(truth, incidents, WINDOW, CFG.incidents.gap_seconds)


def test_error_burst_opens_an_incident_on_payments_within_two_windows() -> None:
    v = verdict("error_burst", 150_000, seed=11)
    assert v.detected, v.incidents
    assert v.delay_seconds is not None and v.delay_seconds <= 2 * WINDOW
    assert v.false_incidents == 0, v.incidents


@pytest.mark.parametrize("scenario", ["latency_regression", "crash_loop", "new_exception",
                                      "traffic_spike"])
def test_each_fault_is_found_on_its_root_service(scenario: str) -> None:
    v = verdict(scenario, 100_000, seed=5)
    assert v.detected, v.incidents
    assert v.delay_seconds is not None and v.delay_seconds <= 2 * WINDOW
    assert v.false_incidents == 0, v.incidents


@pytest.mark.parametrize("shape", ["ecs", "otel"])
def test_detection_does_not_depend_on_the_input_shape(shape: str) -> None:
    v = verdict("error_burst", 60_000, seed=2, shape=shape)
    assert v.detected and v.false_incidents == 0, v.incidents


def test_a_fault_free_run_of_200k_events_opens_no_incident() -> None:
    lines, _ = simulated_lines(200_000, seed=21, scenario="none")
    pipe = run_pipeline(lines, CFG)
    assert pipe.stats.events == 200_000
    assert pipe.stats.incidents_opened == 0
