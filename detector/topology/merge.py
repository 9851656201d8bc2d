"""Stage B, merge and score: one task per partition of the partials topic (keyed by service, so
each service's partials meet in one task).

It sums the partials of every ingest source into the same window state one process would hold,
so each (service, feature) series has exactly the one baseline a single process would give it,
and closes a window once the slowest source's watermark has passed it (`Watermarks`: a source
that says it is idle, caught up with nothing pending, stops holding back; a slow or dead one
once the fastest passed the window `topology.max_wait_s` ago). Each closed window is scored as
`Pipeline` scores it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from detector.config import TopologyConfig, VigilConfig
from detector.events import Anomaly
from detector.scoring.windows import WindowScorer
from detector.windows.aggregate import WindowAggregator, WindowRows
from detector.windows.partials import WindowPartial


class Watermarks:
    """Each source's newest event time, and which sources said they are idle.

    >>> t = [0.0]
    >>> m = Watermarks(TopologyConfig(idle_seconds=30, max_wait_s=100), ["a", "b"],
    ...                clock=lambda: t[0])
    >>> m.update("a", 50.0); m.effective()  # b has said nothing yet: windows wait for it
    -inf
    >>> m.update("b", 20.0); m.effective()
    20.0
    >>> m.say_idle("b"); m.update("a", 60.0); m.effective()  # b caught up when a was at 50
    50.0
    >>> t[0] = 40.0; m.effective()  # b's word expired: it holds windows back from its own mark
    20.0
    """

    def __init__(self, cfg: TopologyConfig, sources: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.expected: set[str] = set(sources)
        self.marks: dict[str, float] = {}
        # source -> (when it last said it is idle, the newest mark of any source then)
        self.idle: dict[str, tuple[float, float]] = {}
        self._tops: deque[tuple[float, float]] = deque()  # (wall time, newest mark then)

    def expect(self, sources: Iterable[str]) -> None:
        """Sources that exist (a `logs` partition each), heard from or not."""
        self.expected |= set(sources)

    def update(self, source: str, watermark: float) -> None:
        self.marks[source] = max(self.marks.get(source, -math.inf), watermark)
        self.idle.pop(source, None)
        now = self.clock()
        top = self.newest()
        if not self._tops or (top > self._tops[-1][1] and now - self._tops[-1][0] >= 1.0):
            self._tops.append((now, top))
        elif top > self._tops[-1][1]:
            self._tops[-1] = (self._tops[-1][0], top)

    def say_idle(self, source: str) -> None:
        """`source` has read everything there is and holds nothing back. Windows need not wait
        for it up to the newest event time any source had reached when it said so: what comes
        to its partition later is newer than that, as a log's partitions move together. It
        repeats it while idle; a source that goes silent without saying so (its task died)
        holds windows back from there, up to `max_wait_s`, while its partition moves."""
        self.idle[source] = (self.clock(), self.newest())

    def newest(self) -> float:
        return max(self.marks.values(), default=-math.inf)

    def load_state(self, state: dict[str, Any]) -> None:
        """Marks and expected sources of a snapshot (every source live until it says idle)."""
        self.marks = {str(k): float(v) for k, v in state["marks"].items()}
        self.expected = {str(s) for s in state["expected"]}

    def effective(self) -> float:
        """The event time every source has passed, an idle one counted as far as the newest
        source was when it said so (what windows close against), or what the fastest had
        passed `max_wait_s` ago, whichever is later."""
        now = self.clock()
        live = []
        for s in self.expected | set(self.marks):
            mark = self.marks.get(s, -math.inf)
            said = self.idle.get(s)
            if said is not None and now - said[0] < self.cfg.idle_seconds:
                mark = max(mark, said[1])
            live.append(mark)
        waited = -math.inf
        while self._tops and now - self._tops[0][0] >= self.cfg.max_wait_s:
            waited = max(waited, self._tops.popleft()[1])
        if math.isfinite(waited):
            self._tops.appendleft((now - self.cfg.max_wait_s, waited))  # still the floor
        if not live:
            return self.newest()
        return max(min(live), waited)

@dataclass(slots=True)
class ScoredWindow:
    """One closed window of the services one merge task owns, with its anomalies."""

    start: float
    end: float
    anomalies: list[Anomaly] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # events per service with any

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end,
                "anomalies": [a.to_dict() for a in self.anomalies], "counts": self.counts}


@dataclass(slots=True)
class MergeOutcome:
    rows: list[WindowRows] = field(default_factory=list)
    scored: list[ScoredWindow] = field(default_factory=list)


class MergeStage:
    """Stage B for the services of one partials partition (or all of them).

    >>> from detector.config import VigilConfig
    >>> b = MergeStage(VigilConfig(), sources=["logs/0"])
    >>> p = WindowPartial(0, "cart", 60, 0.0, 0.0, 0.0, 0.5, 9.5, {})
    >>> b.add("logs/0", [p], watermark=9.5); b.close_ready().rows
    []
    >>> b.add("logs/0", [], watermark=16.0)  # past the window and its allowed lateness
    >>> [(r.start, r.services, r.counts.tolist()) for r in b.close_ready().rows]
    [(0.0, ['cart'], [60])]
    """

    def __init__(self, cfg: VigilConfig, sources: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.windows = WindowAggregator(cfg.window)
        self.scorer = WindowScorer(cfg.scoring)
        self.marks = Watermarks(cfg.topology, sources, clock)
        self.late_events = 0  # in partials of windows that had closed (a source past max lag)
        self.partials = 0

    def add(self, source: str, partials: list[WindowPartial], watermark: float) -> None:
        """One source's partials, then its watermark (in that order: a watermark says the
        source has sent everything before it)."""
        self.late_events += self.windows.merge(partials)
        self.partials += len(partials)
        if math.isfinite(watermark):
            self.marks.update(source, watermark)

    def close_ready(self) -> MergeOutcome:
        self.windows.advance(self.marks.effective())
        return self._score(self.windows.close_ready())

    def closed_through(self) -> float:
        """The event time below which this task has closed every window, after `close_ready`
        (a task that owns no service with events yet has closed what the watermark passed)."""
        w = self.cfg.window
        eff = self.windows.max_ts - w.allowed_lateness
        done = math.floor(eff / w.seconds) * w.seconds if math.isfinite(eff) else -math.inf
        return max(self.windows.closed_through(), done)

    def finish(self) -> MergeOutcome:
        """End of input: every open window closes, the last one cut at the newest event."""
        self.windows.advance(self.marks.newest())
        return self._score(self.windows.close_all())

    def _score(self, rows: list[WindowRows]) -> MergeOutcome:
        out = MergeOutcome(rows=rows)
        for r in rows:
            counts = {s: c for s, c in zip(r.services, r.counts.tolist(), strict=True) if c}
            out.scored.append(ScoredWindow(r.start, r.end, self.scorer.score(r), counts))
        return out
