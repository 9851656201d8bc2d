"""Which event times are a broken clock, judged against the stream's own watermark and history.

One wrong clock must not move a stream's event time: an event a year ahead would close every
open window (and make every real event after it too late), one from 1970 at the start would make
the windows walk fifty years. So an event far from the stream is not trusted on its own:

- ahead of this machine's clock by more than `window.max_ahead_of_clock_seconds`: never (the
  future has not happened; a day of slack for a wrong host clock);
- more than `window.max_future_seconds` ahead of the stream's watermark (the newest event time
  accepted so far, event by event), or more than `window.max_past_seconds` behind it: skewed,
  unless the stream has really moved there. It has when enough events agree: a run of
  consecutive skewed events within `max_future_seconds` of each other, as long as the number of
  events the stream accepted in its last `max_future_seconds` (at most `window.jump_confirm`).
  So a busy stream needs `jump_confirm` agreeing events, a sparse one (a job that logs every few
  hours) or one that started on a bogus event follows the next event at once. Live, an event
  about now by this machine's clock moves a stream that was behind it (an idle partition
  resuming). A stream only moves forward: events behind it by more than `max_past_seconds` stay
  skewed (the windows they belong to are closed).

The verdicts are the same whatever the batch size: a batch is judged event by event, vectorised
over stretches that are clean (the usual case), in Python only at skewed events, so a batch of
any shape costs linear time.
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
_FIRST_STRETCH = 16  # events judged at once after a skewed one; doubles while clean


class ClockGuard:
    """Per-stream judge of event times; `judge` returns, per event, OK or why it is skewed.

    >>> from detector.config import WindowConfig
    >>> g = ClockGuard(WindowConfig(), wall=lambda: 1795435200.0)
    >>> t = 1795435200.0 - 3600
    >>> [int(v) for v in g.judge(t + np.arange(100.0))]  == [0] * 100
    True
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
        self.jumps = 0  # times the stream moved to where a run of skewed events agreed
        self._recent = np.zeros(0)  # the last jump_confirm accepted event times
        self._run = 0  # consecutive skewed events that agree with each other, so far
        self._run_center = math.nan

    @property
    def support(self) -> int:
        """Events the stream accepted in its last `max_future_seconds` (at most jump_confirm)."""
        return int((self._recent >= self.watermark - self.cfg.max_future_seconds).sum())

    def judge(self, ts: npt.NDArray[np.float64]) -> npt.NDArray[np.int8]:
        """OK / AHEAD / BEHIND / AHEAD_OF_CLOCK per event, in order; the accepted ones move
        the watermark."""
        n = len(ts)
        out = np.zeros(n, dtype=np.int8)
        if n == 0:
            return out
        cfg = self.cfg
        now = self.wall()
        out[ts > now + cfg.max_ahead_of_clock_seconds] = AHEAD_OF_CLOCK
        members: list[int] = []  # this batch's events of the current run
        i, stretch = 0, _FIRST_STRETCH
        while i < n:
            j = min(n, i + stretch)
            seg, free = ts[i:j], out[i:j] == OK
            # The watermark before each event, were every free event before it accepted.
            before = np.maximum.accumulate(np.where(free, seg, -np.inf))
            prev = np.maximum(np.concatenate(([-np.inf], before[:-1])), self.watermark)
            known = np.isfinite(prev)
            bad = free & known & ((seg > prev + cfg.max_future_seconds)
                                  | (seg < prev - cfg.max_past_seconds))
            k = int(np.argmax(bad)) if bad.any() else j - i
            if free[:k].any():
                self._accept(seg[:k][free[:k]])
                members = []
            if k == j - i:
                i, stretch = j, min(2 * stretch, 1 << 16)
                continue
            at = i + k
            out[at] = self._one(ts, at, now, members, out)
            i, stretch = at + 1, _FIRST_STRETCH
        return out

    def state_dict(self) -> dict[str, Any]:
        wm = self.watermark
        return {"watermark": wm if math.isfinite(wm) else None, "recent": self._recent.tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Plain data from `state_dict`; anything else raises ValueError or TypeError."""
        wm = state["watermark"]
        recent = np.asarray(state["recent"], dtype=np.float64)
        if wm is not None and not (isinstance(wm, int | float) and math.isfinite(wm)):
            raise ValueError(f"clock watermark {wm!r} is not a finite number")
        if recent.ndim != 1 or not np.isfinite(recent).all() or (
                len(recent) and (wm is None or recent.max() > wm)):
            raise ValueError("clock history is not a list of times up to the watermark")
        self.watermark = -math.inf if wm is None else float(wm)
        self._recent = recent[-self.cfg.jump_confirm:]

    # ---- internals ----------------------------------------------------------------------
    def _one(self, ts: npt.NDArray[np.float64], at: int, now: float, members: list[int],
             out: npt.NDArray[np.int8]) -> int:
        """The verdict of one event that is far from the watermark; a run long enough moves
        the stream (and the run's earlier events in this batch are accepted with it)."""
        cfg = self.cfg
        t, wm = float(ts[at]), self.watermark
        if t < wm:
            return BEHIND
        if now - wm > cfg.max_future_seconds and abs(t - now) <= cfg.max_future_seconds:
            self._jump(ts, [at], out)  # about now by this machine's clock: a stream resumed
            members.clear()
            return OK
        if self._run > 0 and abs(t - self._run_center) <= cfg.max_future_seconds:
            self._run += 1
        else:
            self._run, self._run_center = 1, t
            members.clear()
        members.append(at)
        if self._run >= max(1, min(self.support, cfg.jump_confirm)):
            self._jump(ts, members, out)
            members.clear()
            return OK
        return AHEAD

    def _jump(self, ts: npt.NDArray[np.float64], members: list[int],
              out: npt.NDArray[np.int8]) -> None:
        out[members] = OK
        times = ts[members]
        self.watermark = float(times.max())
        self._recent = times[-self.cfg.jump_confirm:].copy()
        self.jumps += 1
        self._end_run()

    def _end_run(self) -> None:
        self._run, self._run_center = 0, math.nan

    def _accept(self, times: npt.NDArray[np.float64]) -> None:
        self.watermark = max(self.watermark, float(times.max()))
        k = self.cfg.jump_confirm
        self._recent = np.concatenate((self._recent, times[-k:]))[-k:]
        self._end_run()
