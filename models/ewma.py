"""EWMA z-score: an exponentially weighted mean and variance per series, vectorised over series."""

from __future__ import annotations

import math
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


class EwmaZScore:
    """Exponentially weighted moving mean/variance per series; z = (x - mean) / std.

    Good at: smooth series whose normal level drifts slowly (rates, ratios, latency quantiles);
    one pass, O(1) memory per series (24 bytes), thousands of series per call. Bad at: series with
    strong seasonality (the baseline lags the cycle), and heavy-tailed noise, whose outliers inflate
    the variance; `RobustZScore` is the better choice there. Values beyond `clip_z` standard
    deviations are clipped before learning and do not widen the variance, so an incident does not
    become the new normal at once, while a lasting level shift is still absorbed: the mean creeps
    by alpha * clip_z standard deviations a step (with the defaults, a 10-sigma shift stops
    alarming after about 100 steps).

    Parameters
    ----------
    alpha: weight of each new value (0 < alpha <= 1); the baseline remembers about 1/alpha steps.
    clip_z: values are clipped to mean +/- clip_z * std before they are learned.
    warmup: values a series must have seen before its scores count (`Scored.seen`); during warm-up
        the mean is the plain running average, so it starts fast and unbiased.

    Examples
    --------
    >>> import numpy as np
    >>> m = EwmaZScore(alpha=0.1)
    >>> rng = np.random.default_rng(0)
    >>> for v in rng.normal(100.0, 5.0, size=200):
    ...     _ = m.score_learn(np.array([0]), np.array([v]))
    >>> s = m.score_learn(np.array([0]), np.array([160.0]))
    >>> abs(float(s.mean[0]) - 100.0) < 2, bool(s.z[0] > 8)
    (True, True)
    """

    name = "ewma"
    needs_ts = False

    def __init__(self, alpha: float = 0.05, clip_z: float = 3.0, warmup: int = 12) -> None:
        self.alpha = alpha
        self.clip_z = clip_z
        self.warmup = warmup
        self._mean = np.zeros(0, dtype=np.float64)
        self._var = np.zeros(0, dtype=np.float64)
        self._n = np.zeros(0, dtype=np.int64)

    def score_learn(
        self,
        series: IntArray,
        values: FloatArray,
        floor: FloatArray | None = None,
        rel_floor: FloatArray | None = None,
        ts: FloatArray | None = None,
    ) -> Scored:
        """Score then learn one time step (`ts` is not read: the level has no time of day)."""
        series, x = as_step(series, values, floor, rel_floor)
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if len(series):
            top = int(series.max()) + 1
            self._mean = grow(self._mean, top, 0.0)
            self._var = grow(self._var, top, 0.0)
            self._n = grow(self._n, top, 0)
        mean, var, n = self._mean[series], self._var[series], self._n[series]
        fl = effective_floor(mean, floor, rel_floor)
        std = np.sqrt(var + fl * fl)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(std > 0, (x - mean) / std, 0.0)
        z = np.where(n > 0, z, 0.0)
        # Learn: running average while warming up, clipped EWMA after. An outlier moves the mean
        # by at most alpha * clip_z * std and leaves the variance alone: were it to widen the
        # variance, a lasting incident would talk the baseline out of alarming within minutes.
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        warm = n >= self.warmup
        lim = self.clip_z * std if np.isfinite(self.clip_z) else np.full_like(std, np.inf)
        outlier = warm & (std > 0) & (np.abs(x - mean) > lim)
        xc = np.where(outlier, np.clip(x, mean - lim, mean + lim), x)
        diff = xc - mean
        self._mean[series] = mean + a * diff
        new_var = np.where(n > 0, (1.0 - a) * (var + a * diff * diff), 0.0)
        self._var[series] = np.where(outlier, var, new_var)
        self._n[series] = n + 1
        # An EWMA of weight alpha averages about (2 - alpha) / alpha values.
        dof = np.minimum(n, (2.0 - self.alpha) / self.alpha).astype(np.float64)
        return Scored(z=z, mean=mean, std=std, seen=n, dof=dof)

    def explains(self, series: IntArray) -> BoolArray:
        """No gate: the level's verdict counts for every series."""
        return everywhere(series)

    def forget(self, series: IntArray) -> None:
        """Start these series afresh (their ids may be reused)."""
        forget_rows(self, ("_mean", "_var", "_n"), series)

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against)."""
        # strict JSON has no Infinity: no clipping is written as null
        return {"alpha": self.alpha, "clip_z": None if math.isinf(self.clip_z) else self.clip_z,
                "warmup": self.warmup}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "params": self.params(),
            "mean": self._mean.tolist(),
            "var": self._var.tolist(),
            "n": self._n.tolist(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        check_params(check_state(state, self.name), self.params())
        rows = load_rows(state, {"mean": (np.float64, ()), "var": (np.float64, ()),
                                 "n": (np.int64, ())})
        nonnegative(rows, "var", "n")
        self._mean, self._var, self._n = rows["mean"], rows["var"], rows["n"]

    def nbytes(self) -> int:
        return int(self._mean.nbytes + self._var.nbytes + self._n.nbytes)
