"""Replay (one `Pipeline`) against the topology (ingest tasks, merge, incidents) on every
simulator scenario: the same incident ids and root causes, so the same AC@1."""

from __future__ import annotations

import numpy as np
import pytest

from detector.config import VigilConfig
from detector.events import Anomaly
from detector.pipeline import Pipeline
from detector.runtime.replay import replay_lines
from detector.simulate.runs import simulated_lines
from detector.simulate.scenarios import SCENARIOS
from detector.topology.inprocess import Topology, partition_of
from detector.windows.aggregate import WindowRows

RUNS = {sc: simulated_lines(60_000, seed=5, scenario=sc)[0] for sc in SCENARIOS}


def top(root_cause: list[dict[str, object]]) -> object:
    return root_cause[0]["service"] if root_cause else None


def ac_at_1(found: dict[str, list[tuple[str, object]]]) -> float:
    faulted = [sc for sc in SCENARIOS if SCENARIOS[sc][1]]
    return sum(bool(found[sc]) and found[sc][0][1] == SCENARIOS[sc][1] for sc in faulted) / len(faulted)


def test_four_partitions_give_replays_incident_ids_root_causes_and_ac_at_1() -> None:
    cfg = VigilConfig()
    want = {sc: [(i["id"], top(i["root_cause"])) for i in replay_lines(lines, cfg)]
            for sc, lines in RUNS.items()}
    got = {sc: [(i.id, top(i.root_cause)) for i in Topology(cfg, partitions=4).run(lines)]
           for sc, lines in RUNS.items()}
    assert got == want
    assert sum(map(len, want.values())) >= 10  # every fault opened its incident
    assert ac_at_1(got) == ac_at_1(want) >= 0.8


def test_the_partitions_each_hold_a_share_of_the_requests() -> None:
    counts = np.bincount([partition_of(x, 4) for x in RUNS["error_burst"]], minlength=4)
    assert counts.min() > 0.2 * counts.sum()


@pytest.mark.parametrize("scenario", ["error_burst", "hang", "network_delay"])
def test_one_partition_closes_and_scores_exactly_the_windows_a_pipeline_does(scenario: str) -> None:
    cfg = VigilConfig(batch_size=2048)
    lines = RUNS[scenario]
    pipe = Pipeline(cfg)
    rows, anomalies = [], []
    for i in range(0, len(lines), 2048):
        out = pipe.process(lines[i:i + 2048])
        rows += out.windows
        anomalies += out.anomalies
    out = pipe.finish()
    rows, anomalies = rows + out.windows, anomalies + out.anomalies
    topo = Topology(cfg, partitions=1)
    got_rows: list[WindowRows] = []
    got: list[Anomaly] = []
    for i in range(0, len(lines), 2048):
        res = topo.process([lines[i:i + 2048]])
        got_rows += res.windows
        got += res.anomalies
    res = topo.finish()
    got_rows, got = got_rows + res.windows, got + res.anomalies

    def table(rs: list[WindowRows]) -> list[tuple[float, dict[str, int]]]:
        return [(r.start, dict(zip(r.services, r.counts.tolist(), strict=True))) for r in rs]
    assert table(got_rows) == table(rows)
    assert [a.to_dict() for a in got] == [a.to_dict() for a in anomalies]
    assert [i.id for i in Topology(cfg, partitions=1).run(lines)] == [
        i["id"] for i in replay_lines(lines, cfg)]
