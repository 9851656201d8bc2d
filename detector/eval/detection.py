"""Compares a run's incidents with the simulator's ground truth: detection, delay, false alarms."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from detector.simulate.fleet import Truth


@dataclass(slots=True)
class Verdict:
    scenario: str
    events: int
    detected: bool  # an incident opened on the root-cause service during the fault
    onset_windows: int | None  # first anomalous window index minus the onset window index
    delay_seconds: float | None  # detected_at (window end) minus fault start, event time
    false_incidents: int
    root_cause: str
    incidents: list[str] = field(default_factory=list)

    @property
    def false_per_100k(self) -> float:
        return 1e5 * self.false_incidents / max(self.events, 1)


def judge(truth: Truth, incidents: list[dict[str, Any]], window: float, gap: float) -> Verdict:
    """An incident is true when it opens, during a fault (from one window before its start to `gap`
    after its end), on the root cause or a service the fault propagates to; otherwise false."""
    fault = truth.faults[0] if truth.faults else None
    false = 0
    detected, onset, delay = False, None, None
    for inc in sorted(incidents, key=lambda i: i["opened_at"]):
        if fault is None:
            false += 1
            continue
        in_time = fault.start - window <= inc["opened_at"] <= fault.end + gap
        related = inc["service"] == fault.service or inc["service"] in fault.propagates_to
        if not (in_time and related):
            false += 1
        elif inc["service"] == fault.service and not detected:
            detected = True
            onset = math.floor(inc["opened_at"] / window) - math.floor(fault.start / window)
            delay = inc["detected_at"] - fault.start
    return Verdict(
        scenario=truth.scenario, events=truth.events, detected=detected, onset_windows=onset,
        delay_seconds=delay, false_incidents=false, root_cause=fault.service if fault else "",
        incidents=[f"{i['service']}@{i['opened_at'] - truth.start:.0f}s" for i in incidents],
    )


def root_cause_rank(truth: Truth, incidents: list[dict[str, Any]], window: float, gap: float
                    ) -> tuple[int | None, dict[str, Any] | None]:
    """Where the true root cause stands (1 = first) in the `root_cause` ranking of the incident
    that covers the fault: the earliest one opened during the fault (from one window before it
    to `gap` after it) that involves the root cause or a service it propagates to. (None, None)
    when no incident covers it; (None, incident) when its ranking misses the root cause."""
    fault = truth.faults[0]
    related = {fault.service, *fault.propagates_to}
    for inc in sorted(incidents, key=lambda i: i["opened_at"]):
        if not fault.start - window <= inc["opened_at"] <= fault.end + gap:
            continue
        names = [c["service"] for c in inc.get("root_cause") or []]
        involved = {inc["service"], *inc.get("services", {}), *names}
        if not involved & related:
            continue
        if not names:
            names = [inc["service"]]
        return (names.index(fault.service) + 1 if fault.service in names else None), inc
    return None, None
