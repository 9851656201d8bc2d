"""Which event times are a broken clock, judged against the stream's own watermark and history.

One wrong clock must not move a stream's event time: an event a year ahead would close every
open window (and make every real event after it too late), one from 1970 at the start would make
the windows walk fifty years. So an event far from the stream is not trusted on its own:

- ahead of this machine's clock by more than `window.max_ahead_of_clock_seconds`: never (the
  future has not happened; a day of slack for a wrong host clock);
- more than `window.max_future_seconds` ahead of the stream's watermark (the newest event time
  accepted), or more than `window.max_past_seconds` behind it: skewed, unless the stream has
  really moved there. It has when enough events agree: a run of consecutive skewed events
  within `max_future_seconds` of each other, longer than the run of events the stream had
  accepted since it last moved (at most `window.jump_confirm`), so a stream that started on a
  bogus event follows the real ones at once while a long-running stream needs `jump_confirm`;
  or, live, when the event is about now by this machine's clock and the stream was behind it
  (an idle partition resuming). A stream only moves forward: events behind it by more than
  `max_past_seconds` stay skewed (the windows they belong to are closed).

At the very start, with nothing accepted yet, the reference is the batch's median.
Cost: vectorised per batch; Python work only per skewed event, and at most `_MAX_JUMPS` moves
are taken in one batch, so a batch crafted to jump on every event costs linear time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.config import WindowConfig

OK, AHEAD, BEHIND, AHEAD_OF_CLOCK = 0, 1, 2, 3  # what `ClockGuard.judge` says of each event
_MAX_JUMPS = 8  # moves taken in one batch; beyond them the rest of a batch is judged as it is


class ClockGuard:
    """Per-stream judge of event times; `judge` returns, per event, OK or why it is skewed.

    >>> from detector.config import WindowConfig
    >>> g = ClockGuard(WindowConfig(), wall=lambda: 1795435200.0)
    >>> t = 1795435200.0 - 3600
    >>> [int(v) for v in g.judge(np.array([t, t + 1]))]
    [0, 0]
    >>> [int(v) for v in g.judge(np.array([t + 7 * 86400]))]  # a week ahead, alone
    [3]
    >>> [int(v) for v in g.judge(np.array([t + 7200]))]  # two hours ahead of the stream
    [1]
    >>> [int(v) for v in g.judge(np.array([1.0]))]  # 1970
    [2]
    """

    def __init__(self, cfg: WindowConfig, wall: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.wall = wall
        self.watermark = -math.inf  # newest accepted event time
        self.support = 0  # events accepted since the stream last moved (capped)
        self.jumps = 0  # times the stream moved to where a run of skewed events agreed
        self._run = 0  # consecutive skewed events that agree with each other, so far
        self._run_center = math.nan

    def judge(self, ts: npt.NDArray[np.float64]) -> npt.NDArray[np.int8]:
        """OK / AHEAD / BEHIND / AHEAD_OF_CLOCK per event; the state learns the accepted ones."""
        n = len(ts)
        out = np.zeros(n, dtype=np.int8)
        if n == 0:
            return out
        cfg = self.cfg
        now = self.wall()
        out[ts > now + cfg.max_ahead_of_clock_seconds] = AHEAD_OF_CLOCK
        lo, jumps = 0, 0
        while lo < n:
            part = ts[lo:]
            free = out[lo:] != AHEAD_OF_CLOCK
            if not free.any():
                self._end_run()
                break
            ref = self.watermark
            if not math.isfinite(ref):
                ref = float(np.median(part[free]))
            verdict = out[lo:]
            verdict[free] = OK
            verdict[free & (part > ref + cfg.max_future_seconds)] = AHEAD
            verdict[free & (part < ref - cfg.max_past_seconds)] = BEHIND
            jump = self._find_jump(part, verdict, now, ref) if jumps < _MAX_JUMPS else None
            if jump is None:
                self._learn(part, verdict)
                break
            start, at = jump  # the run that agrees starts at `start`; the stream moves at `at`
            verdict[start:at + 1] = OK
            self._learn(part[:at + 1], verdict[:at + 1])
            self.watermark = float(part[start:at + 1].max())
            self.support = at + 1 - start
            self.jumps += 1
            self._end_run()
            lo += at + 1
            jumps += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        wm = self.watermark
        return {"watermark": wm if math.isfinite(wm) else None, "support": self.support}

    def load_state(self, state: dict[str, Any]) -> None:
        """Plain data from `state_dict`; anything else raises ValueError or TypeError."""
        wm, support = state["watermark"], state["support"]
        if wm is not None and not (isinstance(wm, int | float) and math.isfinite(wm)):
            raise ValueError(f"clock watermark {wm!r} is not a finite number")
        if not isinstance(support, int) or support < 0:
            raise ValueError(f"clock support {support!r} is not a count")
        self.watermark = -math.inf if wm is None else float(wm)
        self.support = min(support, self.cfg.jump_confirm)

    # ---- internals ----------------------------------------------------------------------
    def _find_jump(self, ts: npt.NDArray[np.float64], verdict: npt.NDArray[np.int8], now: float,
                   ref: float) -> tuple[int, int] | None:
        """(start, at) of the first run of AHEAD events long enough to move the stream."""
        ahead = np.flatnonzero(verdict == AHEAD)
        if not len(ahead):
            return None
        cfg = self.cfg
        need = min(self.support + 1, cfg.jump_confirm)
        live = now - ref > cfg.max_future_seconds  # the stream is behind this machine's clock
        run, center = self._run, self._run_center
        start, prev = int(ahead[0]), -1
        if np.any(verdict[:start] == OK):  # accepted events came first: an earlier run ends
            run = 0
        for i in ahead.tolist():
            t = float(ts[i])
            if live and abs(t - now) <= cfg.max_future_seconds:
                return i, i  # about now by this machine's clock: an idle stream resumed
            agrees = run > 0 and abs(t - center) <= cfg.max_future_seconds
            if prev >= 0 and i != prev + 1 and np.any(verdict[prev + 1:i] == OK):
                agrees = False  # the stream spoke in between: not a run
            if agrees:
                run += 1
            else:
                run, center, start = 1, t, i
            prev = i
            if run >= need:
                return start, i
        self._run, self._run_center = run, center
        if int(ahead[-1]) < len(ts) - 1 and np.any(verdict[int(ahead[-1]) + 1:] == OK):
            self._end_run()
        return None

    def _end_run(self) -> None:
        self._run, self._run_center = 0, math.nan

    def _learn(self, ts: npt.NDArray[np.float64], verdict: npt.NDArray[np.int8]) -> None:
        ok = verdict == OK
        k = int(ok.sum())
        if k:
            self.watermark = max(self.watermark, float(ts[ok].max()))
            self.support = min(self.support + k, self.cfg.jump_confirm)
