"""`vigil demo` end to end on real processes: a bad deploy into the local fleet is detected, its
root cause named, rolled back through the control API and verified from Vigil's own signal;
with --dry-run the same decision is only audited. Nothing is left running. (The timings are
the demo's figures, printed and written to summary.json, not asserted here: a shared machine.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from detector.runtime.demo import run_demo

pytestmark = pytest.mark.slow


def live_fleet_processes() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if b"detector.simulate.live" in cmd and int(d.name) != os.getpid():
                pids.append(int(d.name))
    return pids


def test_a_bad_deploy_is_rolled_back_and_verified(tmp_path: Path) -> None:
    lines: list[str] = []
    s = run_demo(tmp_path / "demo", "bad_deploy", warmup_s=24, timeout_s=70, say=lines.append)
    assert json.loads((tmp_path / "demo" / "summary.json").read_text()) == s
    assert s["incident_root_cause"] == "cart" == s["fault_service"]
    assert s["action"] == "rollback cart" and s["actions_total"] == 1
    assert s["verified"] and s["fault_to_recovery_s"] is not None
    assert s["fault_to_incident_s"] <= s["fault_to_action_s"] <= s["fault_to_recovery_s"]
    assert s["incidents_before_fault"] == 0 and s["engine_errors"] == 0
    # The rollback really happened: the fleet's own record of cart says so.
    events = [json.loads(x) for x in (tmp_path / "demo" / "fleet" / "fleet-events.jsonl").open()]
    assert any(e["event"] == "rollback" and e["target"] == "cart" for e in events)
    assert any("Vigil ran rollback cart" in line for line in lines)
    assert live_fleet_processes() == []


def test_dry_run_decides_the_same_and_acts_on_nothing(tmp_path: Path) -> None:
    s = run_demo(tmp_path / "demo", "bad_deploy", dry_run=True, warmup_s=24, timeout_s=30,
                 say=lambda _: None)
    assert s["action"] == "rollback cart" and s["dry_run"]
    events = [json.loads(x) for x in (tmp_path / "demo" / "fleet" / "fleet-events.jsonl").open()]
    assert not any(e["event"] == "rollback" for e in events)
    assert live_fleet_processes() == []
