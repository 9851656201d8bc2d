"""One alarm per episode: after a series alarms, it stays quiet for a number of its own steps."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import (
    BoolArray,
    FloatArray,
    IntArray,
    as_step,
    check_params,
    check_state,
    forget_rows,
    grow,
    load_rows,
)

_NEVER = -(2**62)  # "no alarm yet": far enough back for any quiet period


class EpisodeRule:
    """A score at or above the threshold alarms unless the same series alarmed less than
    `quiet` of its own steps ago; the steps in between are one episode and stay silent.

    A burst that goes on, or comes back and escalates, is still the incident that was paged: a
    rule that lets a higher score through (`AlarmDedup`, beat the last 50) pages again and
    again on a bursty series. The quiet period is counted in the series' own steps (calls in
    which it takes part), so it is sized to its sampling interval: 100 steps are 8 h 20 min of
    5-minute samples and 4 days of hourly ones. Every score is still learned by the models; this
    rule only decides which crossings are reported.

    Good at: one page per episode whatever the episode does, on every kind of series. Bad at: a
    second, unrelated anomaly of the same series inside the quiet period (it is not reported;
    an incident that is still open covers it in practice).

    `quiet_fires` is the same rule over one series' whole score history (what `vigil eval nab`
    sweeps thresholds with); a test holds the two equal. Memory: one step count and one alarm
    step (16 bytes) per series.

    Examples
    --------
    >>> import numpy as np
    >>> rule = EpisodeRule(quiet=3)
    >>> [bool(rule.fire(np.array([0]), np.array([s]), 0.5)[0]) for s in (0.9, 0.9, 0.99, 0.1, 0.7)]
    [True, False, False, False, True]
    >>> quiet_fires(np.array([0.9, 0.9, 0.99, 0.1, 0.7]), 0.5, 3).tolist()
    [0, 4]
    """

    name = "episode"

    def __init__(self, quiet: int = 100) -> None:
        if quiet < 0:
            raise ValueError(f"quiet must be >= 0 steps, got {quiet}")
        self.quiet = int(quiet)
        self._step = np.zeros(0, dtype=np.int64)  # steps of the series so far
        self._last = np.zeros(0, dtype=np.int64)  # its step of the last alarm

    def fire(self, series: IntArray, scores: FloatArray, threshold: float | FloatArray) -> BoolArray:
        """Which of one time step's scores alarm (`series` ids unique, scores finite)."""
        series, scores = as_step(series, scores)
        if len(series):
            top = int(series.max()) + 1
            self._step = grow(self._step, top, 0)
            self._last = grow(self._last, top, _NEVER)
        step = self._step[series]
        fire = (scores >= threshold) & (step - self._last[series] > self.quiet)
        self._last[series[fire]] = step[fire]
        self._step[series] = step + 1
        out: BoolArray = fire
        return out

    def forget(self, series: IntArray) -> None:
        """Start these series afresh (their ids may be reused)."""
        forget_rows(self, ("_step", "_last"), series, {"_last": _NEVER})

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against)."""
        return {"quiet": self.quiet}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.name, "params": self.params(), "step": self._step.tolist(),
                "last": self._last.tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        check_params(check_state(state, self.name), self.params())
        rows = load_rows(state, {"step": (np.int64, ()), "last": (np.int64, ())})
        if len(rows["step"]) and ((rows["step"] < 0).any() or (rows["last"] >= rows["step"]).any()):
            raise ValueError("checkpoint 'step' must be >= 0 and each 'last' before its 'step'")
        self._step, self._last = rows["step"], rows["last"]

    def nbytes(self) -> int:
        return int(self._step.nbytes + self._last.nbytes)


def quiet_fires(scores: FloatArray, threshold: float, quiet: int) -> IntArray:
    """The steps of one series that alarm under `EpisodeRule(quiet)` at `threshold`.

    >>> quiet_fires(np.array([0.6, 0.1, 0.7, 0.8, 0.1, 0.9]), 0.5, 2).tolist()
    [0, 3]
    """
    idx = np.flatnonzero(np.asarray(scores, dtype=np.float64) >= threshold)
    if quiet <= 0 or len(idx) == 0:
        return idx.astype(np.int64)
    keep = [int(idx[0])]
    # Greedy in time: each alarm silences the next `quiet` steps. Only crossings are visited,
    # so the cost is the number of crossings, not the series' length.
    for t in idx[1:].tolist():
        if t - keep[-1] > quiet:
            keep.append(t)
    return np.array(keep, dtype=np.int64)
