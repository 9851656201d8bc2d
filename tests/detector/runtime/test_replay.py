"""`vigil replay` on every simulator scenario finds the same incidents as before the redesign of
the tree (tests/data/replay_incidents.json, written by the code of the landed main): a refactor
that changes what Vigil finds fails here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from detector.config import VigilConfig
from detector.runtime.replay import replay
from detector.simulate.scenarios import SCENARIOS, write_run
from tests.support import DATA

GOLDEN = json.loads((DATA / "replay_incidents.json").read_text())
KEYS = ("id", "service", "status", "opened_at", "resolved_at", "anomaly_count", "features",
        "services")


def summary(incident: dict[str, Any]) -> dict[str, Any]:
    return {k: incident[k] for k in KEYS} | {"root_cause": [c["service"] for c in
                                                           incident["root_cause"]]}


def test_every_pinned_scenario_is_still_simulated() -> None:
    assert set(GOLDEN) <= set(SCENARIOS)  # scenarios added since are pinned by their own tests


@pytest.mark.parametrize("scenario", sorted(GOLDEN))
def test_replay_finds_what_it_found_before(scenario: str, tmp_path: Path) -> None:
    path = tmp_path / f"{scenario}.jsonl"
    write_run(path, scenario, 60_000, seed=3)
    res = replay([path], VigilConfig(), tmp_path / "out")
    want = GOLDEN[scenario]
    assert (res.stats.events, res.stats.anomalies, res.stats.dead.total) == (
        want["events"], want["anomalies"], want["dead_letters"])
    assert [summary(i) for i in res.incidents] == want["incidents"]
