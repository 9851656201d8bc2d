"""One alarm per episode: a score is reported only when it beats the series' recent scores."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import (
    FloatArray,
    IntArray,
    as_step,
    check_params,
    check_state,
    forget_rows,
    grow,
    load_rows,
)


class AlarmDedup:
    """Reports a score only if it is higher than every score of the same series in the last
    `rest` steps; otherwise reports 0.

    An anomaly seldom lasts one step: a level shift or a noisy spell crosses any threshold many
    times in a row, and every crossing after the first is a repeat page. This filter keeps the
    first crossing of every threshold at once (no threshold is built in) and later ones only if
    the episode escalates. Good at: cutting repeat alarms by an order of magnitude. Bad at: two
    distinct anomalies of equal strength less than `rest` steps apart (the second is hidden).

    Memory: `rest` floats per series.

    Examples
    --------
    >>> import numpy as np
    >>> d = AlarmDedup(rest=3)
    >>> [float(d.filter(np.array([0]), np.array([s]))[0]) for s in (0.1, 0.9, 0.8, 0.95, 0.2, 0.1, 0.1, 0.3)]
    [0.1, 0.9, 0.0, 0.95, 0.0, 0.0, 0.0, 0.3]
    """

    name = "dedup"

    def __init__(self, rest: int = 50) -> None:
        if rest < 0:
            raise ValueError(f"rest must be >= 0, got {rest}")
        self.rest = rest
        self._recent = np.zeros((0, max(rest, 1)), dtype=np.float64)
        self._pos = np.zeros(0, dtype=np.int64)

    def filter(self, series: IntArray, scores: FloatArray) -> FloatArray:
        """Deduplicated scores for one time step (`series` ids unique, scores finite and >= 0)."""
        series, scores = as_step(series, scores)
        if len(scores) and scores.min() < 0:
            raise ValueError("scores must be >= 0 (higher = more anomalous)")
        if self.rest == 0 or not len(series):
            return scores.copy()
        top = int(series.max()) + 1
        self._recent = grow(self._recent, top, -np.inf)
        self._pos = grow(self._pos, top, 0)
        prev = self._recent[series].max(axis=1)
        out = np.where(scores > prev, scores, 0.0)
        self._recent[series, self._pos[series]] = scores
        self._pos[series] = (self._pos[series] + 1) % self.rest
        return out

    def forget(self, series: IntArray) -> None:
        """Start these series afresh (their ids may be reused)."""
        forget_rows(self, ("_recent", "_pos"), series, {"_recent": -np.inf})

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against)."""
        return {"rest": self.rest}

    def state_dict(self) -> dict[str, Any]:
        # Strict JSON has no -Infinity: a slot never written is -1, below every score (>= 0).
        return {"model": self.name, "params": self.params(),
                "recent": np.where(np.isfinite(self._recent), self._recent, -1.0).tolist(),
                "pos": self._pos.tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        check_params(check_state(state, self.name), self.params())
        rows = load_rows(state, {"recent": (np.float64, (max(self.rest, 1),)),
                                 "pos": (np.int64, ())})
        if len(rows["pos"]) and (rows["pos"].min() < 0 or rows["pos"].max() >= max(self.rest, 1)):
            raise ValueError(f"checkpoint 'pos' outside 0..{max(self.rest, 1) - 1}")
        self._recent = np.where(rows["recent"] < 0, -np.inf, rows["recent"])
        self._pos = rows["pos"]

    def nbytes(self) -> int:
        return int(self._recent.nbytes + self._pos.nbytes)
