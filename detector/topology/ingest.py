"""Stage A, ingest: one task per `logs` partition (keyed by request id, so it holds whole
requests and a sample of every service).

It runs the front of `Pipeline.process` on columnar batches (decode, templates, window folding,
event flags, request correlation) and, instead of judging windows, emits what the later stages
merge: window partials per (service, window), the verdicts of the anomalous requests that
closed, the call edges its normal requests showed, and its watermark (the newest event time it
folded in). Nothing here is scored or opens an incident.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detector.config import VigilConfig
from detector.correlation.flags import EventFlagger
from detector.correlation.requests import ClosedRequests, RequestCorrelator
from detector.correlation.verdicts import block_chains, judge_requests, normal_edges
from detector.decode.batch import BatchDecoder
from detector.decode.deadletter import DeadLetter
from detector.events import EventBatch
from detector.pipeline import fold_requests, unfolded_letters
from detector.services import ServiceIndex
from detector.templates.miner import TemplateMiner
from detector.topology.verdicts import edge_records, verdict_record
from detector.windows.aggregate import WindowAggregator
from detector.windows.partials import WindowPartial


@dataclass(slots=True)
class IngestOutcome:
    """What one batch of one ingest task produced."""

    events: EventBatch
    dead: list[DeadLetter] = field(default_factory=list)
    partials: list[WindowPartial] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # `verdict_record`s
    edges: list[list[Any]] = field(default_factory=list)  # `edge_records` of normal requests
    watermark: float = float("-inf")  # newest event time folded in so far
    folded: int = 0  # events folded into windows (not dead-lettered)


class IngestStage:
    """Stage A for one partition.

    >>> from detector.config import VigilConfig
    >>> a = IngestStage(VigilConfig())
    >>> out = a.process([b'{"ts": 3, "service": "cart", "msg": "ok"}', b'{oops'])
    >>> [(p.window, p.service, p.count) for p in out.partials], out.watermark, len(out.dead)
    ([(0, 'cart', 1)], 3.0, 1)
    """

    def __init__(self, cfg: VigilConfig) -> None:
        self.cfg = cfg
        self.decoder = BatchDecoder(cfg.parsing)
        self.miner = TemplateMiner(cfg.templates)
        self.services = ServiceIndex(cfg.window.max_services)
        self.windows = WindowAggregator(cfg.window, services=self.services)
        corr = cfg.correlation
        self.flagger = EventFlagger(corr) if corr.enabled else None
        self.correlator = RequestCorrelator(corr) if corr.enabled else None
        self._now = float("-inf")
        self.events = 0  # folded in so far
        self.seconds = 0.0

    def process(self, lines: Sequence[bytes], source: str = "-",
                positions: Sequence[int] | None = None) -> IngestOutcome:
        t0 = time.perf_counter()
        res = self.decoder.decode(lines, source, positions)
        batch, dead = res.batch, res.dead
        mined = self.miner.mine(batch.message, batch.ts, self.cfg.window.seconds)
        batch.template_id = mined.template_id
        verdict = self.windows.add(batch, mined)
        unfolded = verdict != 0
        if unfolded.any():
            dead = dead + unfolded_letters(self.cfg.window, lines, source, positions,
                                           res.line_index[unfolded], verdict[unfolded])
        out = IngestOutcome(events=batch, dead=dead)
        if self.correlator is not None and len(batch):
            self._correlate(batch, mined, ~unfolded, out)
        out.folded = len(batch) - int(unfolded.sum())
        self.events += out.folded
        self._take(out)
        self.seconds += time.perf_counter() - t0
        return out

    def finish(self) -> IngestOutcome:
        """End of input: every open request is judged; what is left goes out."""
        out = IngestOutcome(events=EventBatch.empty())
        if self.correlator is not None:
            self._observe(self.correlator.close_all(), out)
        self._take(out)
        return out

    # ---- internals ----------------------------------------------------------------------
    def _take(self, out: IngestOutcome) -> None:
        out.partials = self.windows.take_partials()
        out.watermark = self.windows.max_ts

    def _correlate(self, batch: EventBatch, mined: Any, ok: np.ndarray, out: IngestOutcome
                   ) -> None:
        """As `Pipeline._correlate`: flag, add accepted events to requests, judge closed ones."""
        assert self.flagger is not None and self.correlator is not None
        newest = fold_requests(batch, mined, ok, self.services, self.flagger, self.correlator)
        self._now = max(self._now, newest)
        closed = self.correlator.close_due(self._now) + self.correlator.take_evicted()
        self._observe(closed, out)

    def _observe(self, closed: ClosedRequests, out: IngestOutcome) -> None:
        names = self.services.names
        chains = block_chains(closed)
        out.verdicts.extend(verdict_record(v, names, self.miner.text)
                            for v in judge_requests(closed, chains))
        edges = normal_edges(closed, chains)
        out.edges.extend(edge_records(dict(edges), names))
