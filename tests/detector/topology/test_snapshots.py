"""Every stage's snapshot, loaded into fresh stages mid-run, continues exactly as the stages
that were never stopped: the same windows, anomalies and incidents (takeover is warm)."""

from __future__ import annotations

import orjson
import pytest

from detector.config import VigilConfig
from detector.simulate.runs import simulated_lines
from detector.topology import snapshots
from detector.topology.inprocess import Topology, partition_of


def run(t: Topology, lines: list[bytes], bs: int) -> list[tuple[str, str, int]]:
    out = []
    for i in range(0, len(lines), bs):
        parts: list[list[bytes]] = [[] for _ in t.ingest]
        for line in lines[i:i + bs]:
            parts[partition_of(line, len(t.ingest))].append(line)
        res = t.process(parts)
        out += [(i.id, i.status, i.revision) for i in res.incidents]
        out += [(a.service, a.feature, int(a.window_start)) for a in res.anomalies]  # type: ignore[misc]
    return out


def restored(t: Topology, cfg: VigilConfig) -> Topology:
    """A topology whose every stage is loaded from `t`'s snapshots, through strict JSON."""
    fresh = Topology(cfg, partitions=len(t.ingest))

    def through_json(state: dict[str, object]) -> dict[str, object]:
        out: dict[str, object] = orjson.loads(orjson.dumps(state))
        return out
    for a, b in zip(t.ingest, fresh.ingest, strict=True):
        snapshots.load_ingest(b, through_json(snapshots.ingest_state(a)))
    snapshots.load_merge(fresh.merge, through_json(snapshots.merge_state(t.merge)))
    snapshots.load_incidents(fresh.incidents, through_json(snapshots.incidents_state(t.incidents)))
    return fresh


@pytest.mark.parametrize("scenario,cut", [("error_burst", 0.75), ("hang", 0.7)])
def test_a_restored_topology_continues_as_the_one_never_stopped(scenario: str, cut: float) -> None:
    cfg = VigilConfig(batch_size=2048)
    lines, _ = simulated_lines(60_000, seed=5, scenario=scenario)
    k = int(len(lines) * cut) // 2048 * 2048
    whole = Topology(cfg, partitions=3)
    head = run(whole, lines[:k], 2048)
    tail = run(whole, lines[k:], 2048)
    again = Topology(cfg, partitions=3)
    assert run(again, lines[:k], 2048) == head
    assert any(x[1] == "open" for x in head)  # the incident is open when the owner changes
    taken = restored(again, cfg)
    assert run(taken, lines[k:], 2048) == tail


def test_a_snapshot_of_another_stage_or_version_is_refused() -> None:
    t = Topology(VigilConfig(), partitions=1)
    with pytest.raises(snapshots.SnapshotError):
        snapshots.load_merge(t.merge, snapshots.ingest_state(t.ingest[0]))
    with pytest.raises(snapshots.SnapshotError):
        snapshots.load_incidents(t.incidents, {**snapshots.incidents_state(t.incidents),
                                               "version": 99})
    with pytest.raises(snapshots.SnapshotError):
        snapshots.load_ingest(t.ingest[0], {**snapshots.ingest_state(t.ingest[0]),
                                            "templates": "garbage"})
