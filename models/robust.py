"""Robust z-score: median and MAD over each series' last `window` values, vectorised over series."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from models.base import FloatArray, IntArray, Scored, as_step, effective_floor, grow, load_rows

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
    ) -> Scored:
        series, x = as_step(series, values)
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

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "params": {"window": self.window, "warmup": self.warmup},
            "buf": np.nan_to_num(self._buf, nan=np.inf).tolist(),  # JSON has no NaN
            "n": self._n.tolist(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("model") != self.name:
            raise ValueError(f"checkpoint is for model {state.get('model')!r}, not {self.name!r}")
        rows = load_rows(state, {"buf": (np.float64, (self.window,)), "n": (np.int64, ())})
        buf = rows["buf"]
        buf[np.isinf(buf)] = np.nan
        self._buf, self._n = buf, rows["n"]

    def nbytes(self) -> int:
        return int(self._buf.nbytes + self._n.nbytes)
