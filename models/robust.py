"""Robust z-score: median and MAD over each series' last `window` values, vectorised over series."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from models.base import (
    BoolArray,
    FloatArray,
    IntArray,
    Scored,
    as_step,
    check_params,
    check_state,
    effective_floor,
    everywhere,
    forget_rows,
    grow,
    load_rows,
    nonnegative,
)

_MAD_TO_STD = 1.4826  # MAD of a normal distribution times this is its standard deviation


class RobustZScore:
    """Median / MAD baseline over a ring buffer of the last `window` values per series.

    Good at: heavy-tailed or spiky series, where a few outliers would inflate an EWMA variance;
    the baseline ignores up to half its window being anomalous. Bad at: series that are constant
    most of the time (MAD 0: rely on `floor`), and slow drifts, which it follows only as fast as the
    window turns over. Memory is `window` floats per series; each call sorts windows (O(window)).

    Examples
    --------
    >>> import numpy as np
    >>> m = RobustZScore(window=32)
    >>> vals = [10.0, 11.0, 9.0, 10.0, 500.0, 10.0, 11.0, 9.0, 10.0, 10.0] * 4
    >>> for v in vals:
    ...     _ = m.score_learn(np.array([3]), np.array([v]))
    >>> s = m.score_learn(np.array([3]), np.array([14.0]))  # MAD is 0: most values are 10
    >>> float(s.mean[0]), float(s.z[0])
    (10.0, 0.0)
    >>> s = m.score_learn(np.array([3]), np.array([14.0]), floor=np.array([1.0]))
    >>> round(float(s.z[0]), 1)
    3.2
    """

    name = "robust"
    needs_ts = False

    def __init__(self, window: int = 64, warmup: int = 12) -> None:
        self.window = window
        self.warmup = warmup
        self._buf = np.full((0, window), np.nan, dtype=np.float64)
        self._n = np.zeros(0, dtype=np.int64)

    def score_learn(
        self,
        series: IntArray,
        values: FloatArray,
        floor: FloatArray | None = None,
        rel_floor: FloatArray | None = None,
        ts: FloatArray | None = None,
    ) -> Scored:
        """Score then learn one time step (`ts` is not read)."""
        series, x = as_step(series, values, floor, rel_floor)
        if len(series):
            top = int(series.max()) + 1
            self._buf = grow(self._buf, top, np.nan)
            self._n = grow(self._n, top, 0)
        n = self._n[series]
        rows = self._buf[series]
        with np.errstate(all="ignore"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows of new series
                med = np.nanmedian(rows, axis=1) if len(rows) else np.zeros(0)
                mad = np.nanmedian(np.abs(rows - med[:, None]), axis=1) if len(rows) else med
            med = np.nan_to_num(med, nan=0.0)
            fl = effective_floor(med, floor, rel_floor)
            std = np.sqrt((_MAD_TO_STD * np.nan_to_num(mad, nan=0.0)) ** 2 + fl * fl)
            z = np.where((std > 0) & (n > 0), (x - med) / std, 0.0)
        self._buf[series, n % self.window] = x
        self._n[series] = n + 1
        # The MAD is about 37% as efficient as the standard deviation on normal data, so its
        # spread is as uncertain as a standard deviation from 0.37 as many values.
        dof = 0.37 * np.minimum(n, self.window).astype(np.float64)
        return Scored(z=z, mean=med, std=std, seen=n, dof=dof)

    def explains(self, series: IntArray) -> BoolArray:
        """No gate: the median's verdict counts for every series."""
        return everywhere(series)

    def forget(self, series: IntArray) -> None:
        """Start these series afresh (their ids may be reused)."""
        forget_rows(self, ("_buf", "_n"), series, {"_buf": np.nan})

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against)."""
        return {"window": self.window, "warmup": self.warmup}

    def state_dict(self) -> dict[str, Any]:
        # Strict JSON has no NaN: an empty slot is written as 0. Slots fill in order, so the
        # empty ones are those at or past `n` in a ring not yet full; `load_state` restores them.
        return {
            "model": self.name,
            "params": self.params(),
            "buf": np.nan_to_num(self._buf, nan=0.0).tolist(),
            "n": self._n.tolist(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        check_params(check_state(state, self.name), self.params())
        rows = load_rows({**state, "buf": _infinity_as_empty(state.get("buf"))},
                         {"buf": (np.float64, (self.window,)), "n": (np.int64, ())})
        nonnegative(rows, "n")
        buf = rows["buf"]
        buf[np.arange(self.window)[None, :] >= rows["n"][:, None]] = np.nan
        self._buf, self._n = buf, rows["n"]

    def nbytes(self) -> int:
        return int(self._buf.nbytes + self._n.nbytes)


def _infinity_as_empty(buf: Any) -> Any:
    """Checkpoints written before strict JSON marked empty slots Infinity: read them as empty."""
    try:
        arr = np.asarray(buf, dtype=np.float64)
    except (TypeError, ValueError):
        return buf  # load_rows says what is wrong with it
    return np.where(np.isposinf(arr), 0.0, arr)
