"""Empirical calibration of p-values: does a series' own history agree with the model's tail?"""

from __future__ import annotations

import math
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
    nonnegative,
)

_MAX_COUNT = np.iinfo(np.uint16).max - 1
_EPS = 1e-300


class TailCalibrator:
    """Corrects each series' p-values by how often values that extreme really occurred before.

    A detector's p-value assumes a distribution (normal z, Student t, ...); real series break it:
    heavy tails make every z-score model over-alarm on some series and not on others, so one
    threshold cannot serve them all. This calibrator keeps, per series, a histogram of past
    surprises s = -log10(p) (all history, bounded memory) and reports the conformal p-value
    `(1 + #past at least as surprising) / (n + 1)`. No contamination rate is assumed: the
    history is whatever came, anomalies included.

    Beyond the last `k` most surprising values the conformal estimate runs out of data (it can
    never go below 1/(n+1)); there the model's own p is kept, scaled by the inflation measured
    at the k-th most extreme level (how many times more often than promised such values came),
    so a far larger deviation still ranks above the largest one seen. Until a series has
    `min_history` values its p-values pass through unchanged.

    Good at: one threshold across series of different noise shapes; turning any score with a
    rough tail probability into one that its history vouches for. Bad at: short series (it
    needs `min_history` steps to say anything), a series whose history is mostly incident, and
    tails much heavier than the model's beyond the k-th extreme, where the constant inflation
    under-corrects (Student t with 2 dof through a normal z-score: a third of the alarms stay).

    Memory: `bins` 2-byte counters per series (602 bytes with the defaults). When a bin of a
    series would pass 65,535, that series' counts are halved: beyond a few hundred thousand
    values the history fades slowly instead of overflowing.

    Examples
    --------
    >>> import numpy as np
    >>> cal = TailCalibrator(min_history=50)
    >>> rng = np.random.default_rng(0)
    >>> for p in rng.uniform(0.0, 1.0, 500):   # well calibrated: p-values stay about the same
    ...     _ = cal.calibrate(np.array([0]), np.array([p]))
    >>> round(float(cal.calibrate(np.array([0]), np.array([0.1]))[0]), 1)
    0.1
    >>> for p in rng.uniform(0.0, 0.01, 500):  # a model that over-alarms is corrected
    ...     _ = cal.calibrate(np.array([1]), np.array([p]))
    >>> bool(cal.calibrate(np.array([1]), np.array([0.001]))[0] > 0.05)
    True
    """

    name = "tail-calibrator"

    def __init__(self, min_history: int = 100, k: int = 5, step: float = 0.1,
                 max_surprise: float = 30.0) -> None:
        if min_history < 1 or k < 1 or step <= 0 or max_surprise <= 0:
            raise ValueError("min_history, k, step and max_surprise must be positive")
        self.min_history = min_history
        self.k = k
        self.step = step
        self.max_surprise = max_surprise
        self.bins = math.ceil(max_surprise / step) + 1
        self._hist = np.zeros((0, self.bins), dtype=np.uint16)
        self._n = np.zeros(0, dtype=np.int64)

    def _bin(self, s: FloatArray) -> IntArray:
        return np.minimum((s / self.step).astype(np.int64), self.bins - 1)

    def calibrate(self, series: IntArray, p: FloatArray) -> FloatArray:
        """Calibrated p-values for one time step (`series` ids unique), then learn the inputs."""
        series, p = as_step(series, p)
        p = np.clip(p, _EPS, 1.0)
        if len(series):
            top = int(series.max()) + 1
            self._hist = grow(self._hist, top, 0)
            self._n = grow(self._n, top, 0)
        s = -np.log10(p)
        b = self._bin(s)
        hist = self._hist[series]
        n = self._n[series]
        # At least as surprising: every bin above, and half of the own bin (position unknown).
        # Forward int32 prefix sums (a reversed or int64 cumsum is ten times slower here):
        # prefix[:, j] = count in bins <= j, so the count in bins > j is total - prefix[:, j].
        prefix = np.cumsum(hist, axis=1, dtype=np.int32)
        total = prefix[:, -1].astype(np.int64)
        rows = np.arange(len(series))
        own = hist[rows, b].astype(np.int64)
        above = total - prefix[rows, b]
        count = above + 0.5 * own
        conformal = (1.0 + count) / (n + 1.0)
        # Inflation at the k-th most surprising level seen: how much more often than promised.
        # That level is the highest bin j with at least k values in bins >= j, i.e. the number
        # of prefix sums <= total - k (0 when there are fewer than k values).
        kth_bin = np.where(total >= self.k,
                           (prefix <= (total - self.k)[:, None]).sum(axis=1), 0)
        promised = np.power(10.0, -(kth_bin * self.step))
        inflation = np.maximum(1.0, (self.k / (n + 1.0)) / promised)
        extrapolated = np.minimum(conformal, p * inflation)
        out = np.where(count >= self.k, conformal, extrapolated)
        out = np.where(n >= self.min_history, out, p)
        full = self._hist[series, b] >= _MAX_COUNT
        if full.any():  # halve a series' counts before a bin overflows: slow forgetting
            rows_full = series[full]
            self._hist[rows_full] //= 2
            self._n[rows_full] = self._hist[rows_full].sum(axis=1)
            n = self._n[series]
        np.add.at(self._hist, (series, b), 1)
        self._n[series] = n + 1
        return np.clip(out, _EPS, 1.0)

    def forget(self, series: IntArray) -> None:
        """Start these series afresh (their ids may be reused)."""
        forget_rows(self, ("_hist", "_n"), series)

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against)."""
        return {"min_history": self.min_history, "k": self.k, "step": self.step,
                "max_surprise": self.max_surprise}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "params": self.params(),
            "hist": self._hist.tolist(),
            "n": self._n.tolist(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        check_params(check_state(state, self.name), self.params())
        rows = load_rows(state, {"hist": (np.int64, (self.bins,)), "n": (np.int64, ())})
        nonnegative(rows, "hist", "n")
        self._hist = np.clip(rows["hist"], 0, _MAX_COUNT).astype(np.uint16)
        self._n = rows["n"]

    def nbytes(self) -> int:
        return int(self._hist.nbytes + self._n.nbytes)


def surprise(p: FloatArray, decades: float = 10.0) -> FloatArray:
    """p-values as scores in [0, 1]: -log10(p) / decades, so 1e-5 maps to 0.5 with the default.

    >>> surprise(np.array([1.0, 1e-5, 1e-20])).tolist()
    [0.0, 0.5, 1.0]
    """
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0)
    out: FloatArray = np.clip(-np.log10(p) / decades, 0.0, 1.0)
    return out + 0.0  # no negative zero


def soft_surprise(p: FloatArray, decades: float = 10.0) -> FloatArray:
    """p-values as scores in [0, 1) that never saturate: s / (s + decades) with s = -log10(p),
    so 1e-10 maps to 0.5 with the default and every smaller p still ranks higher (down to the
    1e-300 floor), where `surprise` would tie them all at 1.

    >>> [round(float(v), 4) for v in soft_surprise(np.array([1.0, 1e-10, 1e-20, 1e-40]))]
    [0.0, 0.5, 0.6667, 0.8]
    """
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0)
    s = -np.log10(p)
    out: FloatArray = s / (s + decades)
    return out + 0.0  # no negative zero
