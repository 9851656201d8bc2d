"""The detection path from raw JSON lines to anomalies and incidents, one batch at a time.

decode -> templates -> windows -> score -> incidents, with request correlation beside the
windows: events flagged anomalous, gathered per request, each closed anomalous request judged
(root cause and propagators), and that evidence keys incidents by root cause. Sources (files,
Kafka) feed `process`, which returns what came out; the runtime that called it hands that to its
sinks. Nothing here reads files, writes outputs or talks to a broker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detector.config import VigilConfig, WindowConfig
from detector.correlation.chains import RequestVerdict
from detector.correlation.flags import EventFlagger
from detector.correlation.requests import ClosedRequests, RequestCorrelator, id_hash
from detector.correlation.verdicts import block_chains, judge_requests, normal_edges
from detector.decode.batch import BatchDecoder, DecodeResult
from detector.decode.deadletter import DeadLetter, DeadLetterCounter
from detector.events import Anomaly, EventBatch, Incident
from detector.incidents.rootcause import RootCauseRanker
from detector.incidents.tracker import IncidentTracker
from detector.rca.analyze import analyze
from detector.rca.buffer import CaptureBuffer
from detector.scoring.windows import WindowScorer
from detector.services import ServiceIndex
from detector.templates.miner import TemplateMiner
from detector.windows.aggregate import (
    LATE,
    SKEWED_AHEAD,
    SKEWED_BEHIND,
    SKEWED_CLOCK,
    WindowAggregator,
    WindowRows,
)


@dataclass(slots=True)
class BatchOutcome:
    """What one call of `Pipeline.process` (or `finish`, `add_anomalies`) produced."""

    events: EventBatch
    dead: list[DeadLetter] = field(default_factory=list)
    windows: list[WindowRows] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    verdicts: list[RequestVerdict] = field(default_factory=list)  # anomalous requests judged


@dataclass
class PipelineStats:
    lines: int = 0
    events: int = 0
    batches: int = 0
    windows_closed: int = 0
    anomalies: int = 0
    incidents_opened: int = 0
    incidents_resolved: int = 0
    seconds: float = 0.0
    dead: DeadLetterCounter = field(default_factory=DeadLetterCounter)
    correlation: dict[str, int] = field(default_factory=dict)
    gaps: int = 0  # silences of the whole stream skipped as gaps in the input
    clock_jumps: int = 0  # times the stream's event time moved where many events agreed
    capped: dict[str, int] = field(default_factory=dict)  # what a bound on state turned away
    rca_runs: int = 0  # span analyses of incidents (detector.rca)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines, "events": self.events, "batches": self.batches,
            "windows_closed": self.windows_closed, "anomalies": self.anomalies,
            "incidents_opened": self.incidents_opened,
            "incidents_resolved": self.incidents_resolved, "seconds": round(self.seconds, 3),
            "dead_letters": dict(self.dead.counts), "dead_letters_total": self.dead.total,
            "correlation": dict(self.correlation), "gaps": self.gaps,
            "clock_jumps": self.clock_jumps, "capped": dict(self.capped),
            "rca_runs": self.rca_runs,
        }


STAGES = ("decode", "templates", "windows", "capture", "scoring", "correlation", "incidents")


@dataclass
class StageSeconds:
    """Wall seconds each stage of `Pipeline.process` took so far (`vigil bench pipeline`'s
    breakdown): decode, templates, windows (folding, lateness, closing), capture (the recent
    spans and logs kept for root cause, `rca.enabled`), scoring (the closed windows' models),
    correlation (flags, requests, their judgement and the ranker), incidents
    (the tracker). Sinks are the caller's (`Outputs`), timed there.

    >>> t = StageSeconds(decode=0.75)
    >>> t.as_dict()["decode"], sum(t.as_dict().values())
    (0.75, 0.75)
    """

    decode: float = 0.0
    templates: float = 0.0
    windows: float = 0.0
    capture: float = 0.0
    scoring: float = 0.0
    correlation: float = 0.0
    incidents: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {s: getattr(self, s) for s in STAGES}


@dataclass(slots=True)
class _Traced:
    at: float  # event time of the last analysis
    runs: int
    ranking: list[dict[str, Any]] | None


class Pipeline:
    """Owns the detection state; feed it batches of lines, then call `finish` at end of input.

    >>> from detector.config import VigilConfig, WindowConfig
    >>> p = Pipeline(VigilConfig())
    >>> out = p.process([b'{"ts": 0, "service": "cart", "msg": "ok"}', b'{oops'])
    >>> len(out.events), [d.reason for d in out.dead], p.stats.dead.counts["undecodable"]
    (1, ['undecodable'], 1)
    """

    def __init__(self, cfg: VigilConfig) -> None:
        self.cfg = cfg
        self.decoder = BatchDecoder(cfg.parsing)
        self.miner = TemplateMiner(cfg.templates)
        self.scorer = WindowScorer(cfg.scoring)
        self.services = ServiceIndex(cfg.window.max_services)  # the one registry of names
        self.windows = WindowAggregator(cfg.window, services=self.services)
        corr = cfg.correlation
        self.flagger = EventFlagger(corr) if corr.enabled else None
        self.correlator = RequestCorrelator(corr) if corr.enabled else None
        self.ranker = RootCauseRanker(corr, self.services, self.miner.text) if corr.enabled else None
        self.recent = CaptureBuffer(cfg.rca) if cfg.rca.enabled else None
        self._traced: dict[str, _Traced] = {}
        self.tracker = IncidentTracker(cfg.incidents, self.ranker,
                                       self._trace_root_cause if self.recent is not None else None)
        self._now = float("-inf")
        self.stats = PipelineStats()
        self.stage_seconds = StageSeconds()

    def decode(self, lines: Sequence[bytes], source: str = "-",
               positions: Sequence[int] | None = None) -> DecodeResult:
        """The first stage alone: `lines` decoded (events and dead letters), for `process(...,
        decoded=)`. It touches only the decoder, so it may run on another thread while the
        previous batch goes through the rest (`detector.runtime.ahead`), one batch at a time
        and in order."""
        t0 = time.perf_counter()
        res = self.decoder.decode(lines, source, positions)
        self.stage_seconds.decode += time.perf_counter() - t0
        return res

    def process(
        self, lines: Sequence[bytes], source: str = "-", positions: Sequence[int] | None = None,
        decoded: DecodeResult | None = None,
    ) -> BatchOutcome:
        """One batch through every stage; `decoded`: what `decode` made of these `lines`
        (decoded ahead: its time is then not in `stats.seconds`, which the caller adds what it
        waited for), else they are decoded here."""
        clock = time.perf_counter
        took = self.stage_seconds
        t0 = clock()
        n_lines = len(lines)
        res = decoded if decoded is not None else self.decode(lines, source, positions)
        batch = res.batch
        dead = res.dead
        t1 = clock()
        mined = self.miner.mine(batch.message, batch.ts, self.cfg.window.seconds)
        batch.template_id = mined.template_id
        t2 = clock()
        took.templates += t2 - t1
        verdict = self.windows.add(batch, mined)
        if self.recent is not None:
            t4 = clock()
            self.recent.add(batch)
            kept = clock() - t4  # counted as capture, not in the windows' span around it
            took.capture += kept
            took.windows -= kept
        unfolded = verdict != 0
        if unfolded.any():
            dead = dead + unfolded_letters(self.cfg.window, lines, source, positions,
                                           res.line_index[unfolded], verdict[unfolded])
        out = BatchOutcome(events=batch, dead=dead)
        took.windows += clock() - t2
        if self.correlator is not None and len(batch):
            self._correlate(batch, mined, ~unfolded, out)
        t3 = clock()
        ready = self.windows.close_ready()
        took.windows += clock() - t3
        self._judge(ready, out)
        self._emit(out)
        self.stats.lines += n_lines
        self.stats.events += len(batch) - int(unfolded.sum())
        self.stats.batches += 1
        self.stats.seconds += clock() - t0
        return out

    def add_anomalies(self, anomalies: list[Anomaly]) -> BatchOutcome:
        """Fold anomalies found outside the log windows (metric series) into the incidents: an
        anomaly of a service joins that service's open incident, or the incident its request
        evidence or call graph points to, and counts in the root-cause ranking like a window
        anomaly. Not thread-safe: call it from the thread that calls `process`."""
        out = BatchOutcome(events=EventBatch.empty())
        if anomalies:
            out.incidents.extend(self.tracker.advance(min(a.window_start for a in anomalies)))
            out.anomalies.extend(anomalies)
            out.incidents.extend(self.tracker.add(anomalies))
        self._emit(out)
        return out

    def finish(self) -> BatchOutcome:
        """Close every open window (end of input) and write the open incidents' latest state."""
        out = BatchOutcome(events=EventBatch.empty())
        if self.correlator is not None:
            self._observe(self.correlator.close_all(), out)
        self._judge(self.windows.close_all(), out)
        out.incidents.extend(self.tracker.snapshot_open())
        self._emit(out)
        return out

    def capped(self) -> dict[str, int]:
        """What each bound on state turned away so far (an input that tries to exhaust memory
        shows here): events of services past the cap, templates evicted, requests evicted."""
        out = {"events_of_services_over_cap": self.services.overflow,
               "templates_evicted": self.miner.evictions}
        if self.correlator is not None:
            out["requests_evicted"] = self.correlator.stats.evicted_requests
        if self.recent is not None:
            out["rca_records_dropped"] = self.recent.dropped
        return out

    # ---- internals ----------------------------------------------------------------------
    def _trace_root_cause(self, inc: Incident) -> list[dict[str, Any]] | None:
        """The analysis `vigil rca` runs (onset found as the change point), on the kept spans
        and logs from `rca.lookback_seconds` before `inc` opened, re-run every
        `rca.refresh_seconds` of event time while it is open; None while there are too few
        spans since it opened to judge. (Fixing the onset at the incident's first anomalous
        window instead agreed with `vigil rca` in 12 of the 18 Online Boutique cases the stream
        opened an incident on; the change point in 15.)"""
        assert self.recent is not None
        rc = self.cfg.rca
        now = self.recent.latest
        seen = self._traced.get(inc.id)
        if seen is not None and (now - seen.at < rc.refresh_seconds or seen.runs >= rc.max_runs
                                 or inc.status != "open"):
            return seen.ranking
        cap = self.recent.capture(since=inc.opened_at - rc.lookback_seconds)
        after = int((cap.spans["t"] >= inc.opened_at).sum()) if cap.spans.height else 0
        ranking = None
        if after >= rc.min_spans:
            res = analyze(cap)
            ranking = res.ranking if res.top is not None else None
            self.stats.rca_runs += 1
        if len(self._traced) > 4 * max(len(self.tracker.open), 64):
            live = {i.id for i in self.tracker.open.values()}
            self._traced = {k: v for k, v in self._traced.items() if k in live}
        self._traced[inc.id] = _Traced(now, (seen.runs if seen else 0) + 1, ranking)
        return ranking

    def _correlate(self, batch: EventBatch, mined: Any, ok: np.ndarray, out: BatchOutcome) -> None:
        """Flag events, add the accepted ones to their requests, judge the requests that closed."""
        assert self.flagger is not None and self.correlator is not None
        t0 = time.perf_counter()
        newest = fold_requests(batch, mined, ok, self.services, self.flagger, self.correlator)
        self._now = max(self._now, newest)
        closed = self.correlator.close_due(self._now) + self.correlator.take_evicted()
        before = self.stage_seconds.incidents
        self._observe(closed, out)
        # the tracker's share of _observe is the incidents stage's, not correlation's
        self.stage_seconds.correlation += (time.perf_counter() - t0
                                           - (self.stage_seconds.incidents - before))

    def _observe(self, closed: ClosedRequests, out: BatchOutcome) -> None:
        assert self.ranker is not None and self.correlator is not None
        chains = block_chains(closed)
        verdicts = judge_requests(closed, chains)
        self.ranker.learn_edges(normal_edges(closed, chains))
        self.ranker.observe(verdicts)
        out.verdicts.extend(verdicts)
        t0 = time.perf_counter()
        out.incidents.extend(self.tracker.refresh())
        self.stage_seconds.incidents += time.perf_counter() - t0
        self.stats.correlation = self.correlator.stats.as_dict()

    def _judge(self, rows: list[WindowRows], out: BatchOutcome) -> None:
        clock, took = time.perf_counter, self.stage_seconds
        for r in rows:
            t0 = clock()
            if self.ranker is not None:
                self.ranker.prune(r.start - self.cfg.correlation.horizon_seconds)
            out.incidents.extend(self.tracker.advance(r.start))
            t1 = clock()
            found = self.scorer.score(r)
            t2 = clock()
            out.anomalies.extend(found)
            out.incidents.extend(self.tracker.add(found))
            took.scoring += t2 - t1
            took.incidents += (t1 - t0) + (clock() - t2)
        out.windows.extend(rows)

    def _emit(self, out: BatchOutcome) -> None:
        """Count what an outcome holds."""
        st = self.stats
        st.windows_closed += len(out.windows)
        st.anomalies += len(out.anomalies)
        st.incidents_opened = self.tracker.opened  # not snapshots: one incident has many
        st.incidents_resolved = self.tracker.resolved
        st.gaps, st.clock_jumps = self.windows.gaps, self.windows.guard.jumps
        st.capped = self.capped()
        st.dead.add(out.dead)


def unfolded_letters(
    w: WindowConfig,
    lines: Sequence[bytes],
    source: str,
    positions: Sequence[int] | None,
    idx: np.ndarray[Any, np.dtype[np.int64]],
    verdict: np.ndarray[Any, np.dtype[np.int8]],
) -> list[DeadLetter]:
    """Dead letters of the events the window aggregator did not fold in (`verdict`: its codes)."""
    why = {
        LATE: ("too_late", "event time is behind a window that already closed (allowed "
               f"lateness {w.allowed_lateness:g}s; window.allowed_lateness)"),
        SKEWED_AHEAD: ("clock_skew", f"event time is more than {w.max_future_seconds:g}s ahead "
                       "of the stream and too few events agree; a wrong clock? "
                       "(window.max_future_seconds, window.jump_confirm)"),
        SKEWED_BEHIND: ("clock_skew", f"event time is more than {w.max_past_seconds:g}s behind "
                        "the stream; a wrong clock? (window.max_past_seconds)"),
        SKEWED_CLOCK: ("clock_skew", f"event time is more than {w.max_ahead_of_clock_seconds:g}s "
                       "ahead of this machine's clock; a wrong clock? "
                       "(window.max_ahead_of_clock_seconds)"),
    }
    out = []
    for i, v in zip(idx.tolist(), verdict.tolist(), strict=True):
        reason, detail = why[v]
        pos = i + 1 if positions is None else positions[i]
        out.append(DeadLetter(reason, detail, f"{source}:{pos}", bytes(lines[i]), position=pos))
    return out


def fold_requests(batch: EventBatch, mined: Any, ok: np.ndarray, services: ServiceIndex,
                  flagger: EventFlagger, correlator: RequestCorrelator) -> float:
    """Flag a batch's events and add those folded into windows (`ok`) to their requests (the
    pipeline's and an ingest task's one way of doing it); returns the newest event time added
    (-inf for none)."""
    svc = services.ids(batch.service)
    flags = flagger.flag(batch, mined, svc)
    callee = services.ids(batch.attr_column("callee"))
    caller = services.ids(batch.attr_column("caller"))
    idx = np.flatnonzero(ok)
    rid = batch.request_id if len(idx) == len(batch) else batch.request_id.gather(idx)
    correlator.add(
        rid, ts=batch.ts[idx], service=svc[idx], flags=flags[idx],
        span=id_hash(batch.span_id)[idx], parent=id_hash(batch.parent_id)[idx],
        callee=callee[idx], caller=caller[idx], template=batch.template_id[idx],
        latency=batch.latency_ms[idx], status=batch.status[idx],
    )
    return float(batch.ts[idx].max()) if len(idx) else float("-inf")
