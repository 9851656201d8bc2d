"""Stage C, incidents: one active owner for the fleet (standbys wait in the consumer group).

One incident tracker and one root-cause ranker see every request verdict and every scored
window, so a fault opens one incident, keyed by its root cause, with the deterministic id a
single process gives it (`incident_id(service, first anomalous window)`). Scored windows from
several merge tasks are held until every task has closed past them (`Watermarks` over the merge
tasks), then judged in window order, as `Pipeline` judges them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from detector.config import VigilConfig
from detector.events import Anomaly, Incident
from detector.incidents.rootcause import RootCauseRanker
from detector.incidents.tracker import IncidentTracker
from detector.services import ServiceIndex
from detector.topology.merge import ScoredWindow, Watermarks
from detector.topology.verdicts import RecordError, TemplateTexts, edges_from, from_record


class IncidentStage:
    """Stage C.

    >>> from detector.config import VigilConfig
    >>> from detector.events import Anomaly
    >>> c = IncidentStage(VigilConfig(), sources=["scored/0"])
    >>> a = Anomaly("cart", "error_ratio", 0.0, 10.0, 0.4, 0.01, 0.01, 0.99999, "ewma", "x", 50)
    >>> c.add_scored("scored/0", [ScoredWindow(0.0, 10.0, [a])], closed_through=10.0)
    >>> [(i.id, i.status) for i in c.advance()]
    [('inc-cart-4216ae70022d', 'open')]
    """

    def __init__(self, cfg: VigilConfig, sources: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        corr = cfg.correlation
        self.services = ServiceIndex(cfg.window.max_services)
        self.texts = TemplateTexts()
        self.ranker = (RootCauseRanker(corr, self.services, self.texts.text)
                       if corr.enabled else None)
        self.tracker = IncidentTracker(cfg.incidents, self.ranker)
        self.marks = Watermarks(cfg.topology, sources, clock)
        # window start -> merge task -> its anomalies of that window (a task's window sent
        # again replaces what it sent: at-least-once upstream, one copy here)
        self._held: dict[float, tuple[float, dict[str, list[Anomaly]]]] = {}
        self.judged_through = -math.inf  # the start of the last window judged
        self.refused = 0  # verdict or edge records that were not ones

    def observe(self, verdicts: list[dict[str, Any]], edges: list[list[Any]]) -> list[Incident]:
        """Request verdicts and call edges from ingest tasks."""
        if self.ranker is None:
            return []
        found = []
        for rec in verdicts:
            try:
                found.append(from_record(rec, self.services, self.texts))
            except RecordError:
                self.refused += 1
        try:
            self.ranker.edges.update(edges_from(edges, self.services))
        except RecordError:
            self.refused += 1
        self.ranker.observe(found)
        return self.tracker.refresh()

    def add_scored(self, source: str, windows: list[ScoredWindow], closed_through: float
                   ) -> None:
        """Windows a merge task closed, and the event time it has closed every window below."""
        for w in windows:
            if w.start <= self.judged_through:
                continue  # judged already: a copy sent again after a restart
            self._held.setdefault(w.start, (w.end, {}))[1][source] = list(w.anomalies)
        if math.isfinite(closed_through):
            self.marks.update(source, closed_through)

    def advance(self) -> list[Incident]:
        """Judge the held windows every merge task has closed past, oldest first."""
        return self._judge(self.marks.effective())

    def add_anomalies(self, anomalies: list[Anomaly]) -> list[Incident]:
        """Anomalies found outside the log windows (metric series), as `Pipeline.add_anomalies`."""
        out: list[Incident] = []
        if anomalies:
            out.extend(self.tracker.advance(min(a.window_start for a in anomalies)))
            out.extend(self.tracker.add(anomalies))
        return out

    def finish(self) -> list[Incident]:
        """End of input: every held window is judged, then the open incidents' latest state."""
        out = self._judge(math.inf)
        return out + self.tracker.snapshot_open()

    def _judge(self, through: float) -> list[Incident]:
        out: list[Incident] = []
        for start in sorted(s for s, (end, _) in self._held.items() if end <= through):
            _, by_task = self._held.pop(start)
            if self.ranker is not None:
                self.ranker.prune(start - self.cfg.correlation.horizon_seconds)
            out.extend(self.tracker.advance(start))
            out.extend(self.tracker.add([a for t in sorted(by_task) for a in by_task[t]]))
            self.judged_through = max(self.judged_through, start)
        return out

    def held(self) -> list[tuple[str, ScoredWindow]]:
        """The windows waiting for every merge task, by task (for a snapshot)."""
        return [(t, ScoredWindow(start, end, a)) for start, (end, by) in sorted(self._held.items())
                for t, a in sorted(by.items())]
