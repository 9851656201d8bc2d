"""A∘B∘C in one process over P ingest partitions: what `vigil consume --role all` runs per
process, and what tests hold against `Pipeline` (one partition is the same computation)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from detector.config import VigilConfig
from detector.events import Anomaly, Incident
from detector.topology.incidents import IncidentStage
from detector.topology.ingest import IngestOutcome, IngestStage
from detector.topology.merge import MergeOutcome, MergeStage
from detector.windows.aggregate import WindowRows


def partition_of(line: bytes, partitions: int) -> int:
    """The partition a producer keying by request id would send `line` to (crc32 of the id;
    lines without one by their own bytes)."""
    try:
        rec = orjson.loads(line)
        rid = rec.get("request_id") or rec.get("trace_id") or rec.get("trace") \
            if isinstance(rec, dict) else None
    except orjson.JSONDecodeError:
        rid = None
    key = str(rid).encode() if rid is not None else bytes(line)
    return zlib.crc32(key) % partitions


@dataclass
class TopologyOutcome:
    incidents: list[Incident] = field(default_factory=list)
    windows: list[WindowRows] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)


class Topology:
    """P ingest tasks, one merge task, one incidents task, wired by calls instead of topics.

    >>> from detector.simulate.runs import simulated_lines
    >>> lines, _ = simulated_lines(30_000, seed=3, scenario="error_burst")
    >>> [(i.id, i.root_cause[0]["service"]) for i in Topology(VigilConfig(), partitions=4).run(lines)]
    [('inc-payments-d9ed6c05a5f5', 'payments')]
    """

    def __init__(self, cfg: VigilConfig, partitions: int = 4) -> None:
        self.cfg = cfg
        self.names = [f"logs/{p}" for p in range(partitions)]
        self.ingest = [IngestStage(cfg) for _ in range(partitions)]
        self.merge = MergeStage(cfg, sources=self.names)
        self.incidents = IncidentStage(cfg, sources=["merge"])

    def process(self, parts: Sequence[Sequence[bytes]]) -> TopologyOutcome:
        """One batch per partition (empty ones allowed), through A, then B, then C."""
        outs = [a.process(lines, source=name) if lines else None
                for a, name, lines in zip(self.ingest, self.names, parts, strict=True)]
        return self._route([o for o in outs if o is not None], outs)

    def finish(self) -> TopologyOutcome:
        outs = [a.finish() for a in self.ingest]
        res = self._route(outs, outs, final=True)
        res.incidents.extend(self.incidents.finish())
        return res

    def run(self, lines: Sequence[bytes]) -> list[Incident]:
        """The latest state of every incident, in order of opening (`replay_lines`' contract)."""
        latest: dict[str, Incident] = {}
        p = len(self.ingest)
        bs = self.cfg.batch_size
        for i in range(0, len(lines), bs):
            parts: list[list[bytes]] = [[] for _ in range(p)]
            for line in lines[i:i + bs]:
                parts[partition_of(line, p)].append(line)
            for inc in self.process(parts).incidents:
                latest[inc.id] = inc
        for inc in self.finish().incidents:
            latest[inc.id] = inc
        return list(latest.values())

    def _route(self, done: list[IngestOutcome], outs: Sequence[IngestOutcome | None],
               final: bool = False) -> TopologyOutcome:
        res = TopologyOutcome()
        for name, o in zip(self.names, outs, strict=True):
            if o is not None:
                self.merge.add(name, o.partials, o.watermark)
        for o in done:
            res.incidents.extend(self.incidents.observe(o.verdicts, o.edges))
        closed: MergeOutcome = self.merge.finish() if final else self.merge.close_ready()
        res.windows.extend(closed.rows)
        res.anomalies.extend(a for w in closed.scored for a in w.anomalies)
        through = float("inf") if final else self.merge.closed_through()
        self.incidents.add_scored("merge", closed.scored, through)
        res.incidents.extend(self.incidents.advance())
        return res
