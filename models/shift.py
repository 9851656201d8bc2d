"""Level shift: how far the recent mean has moved from the long baseline, against how far it
usually wanders (a change of behaviour, not a single far value)."""

from __future__ import annotations

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


class ShiftZScore:
    """z of the recent mean (an EWMA of weight `short`, about 2 / short steps) against the long
    baseline (an EWMA of weight `alpha`), over the spread that gap has had in the series' own
    history (an EWMA of its square), per series.

    A point baseline (`EwmaZScore`) asks whether one value is far from normal; this asks whether
    the last few values, together, have moved: a slow drift, a step of one or two standard
    deviations that lasts, a load that settles at another level. The spread is measured, not
    derived from an independence assumption, so a series whose values are strongly autocorrelated
    (its short mean wanders far by nature) is not over-alarmed; the floors add to it as they do to
    the other members' spreads.

    Good at: lasting changes too small for any single value to stand out (a drift, a shift of a
    fraction of the noise's range), seen a few steps after they start. Bad at: a lone spike
    (diluted by the short mean: the point baseline's job), and its first steps (the gap's spread
    needs history; `seen` counts it). Memory per series: four floats and a count (40 bytes).

    Parameters
    ----------
    alpha: weight of a new value in the long baseline and in the gap's spread.
    short: weight of a new value in the recent mean.
    warmup: values a series must have seen before its scores count.
    clip_z: past warm-up, the gap's spread learns gaps clipped to clip_z of its spreads.

    Examples
    --------
    >>> import numpy as np
    >>> m = ShiftZScore(alpha=0.001, short=0.1)
    >>> rng = np.random.default_rng(0)
    >>> z = [m.score_learn(np.array([0]), np.array([v])).z[0] for v in rng.normal(0, 1, 2000)]
    >>> bool(max(np.abs(z[500:])) < 4.5)  # noise: the recent mean wanders as it always has
    True
    >>> z = [m.score_learn(np.array([0]), np.array([v])).z[0] for v in rng.normal(2.0, 1, 40)]
    >>> bool(max(z) > 5.0)  # a lasting shift of 2 sigma: no single value stands out, the mean does
    True
    """

    name = "shift"
    needs_ts = False

    def __init__(self, alpha: float = 0.001, short: float = 0.1, warmup: int = 12,
                 clip_z: float = 5.0) -> None:
        if not 0 < alpha <= 1 or not 0 < short <= 1 or warmup < 0 or not clip_z > 0:
            raise ValueError("need 0 < alpha <= 1, 0 < short <= 1, warmup >= 0 and clip_z > 0")
        self.alpha, self.short, self.warmup, self.clip_z = alpha, short, warmup, clip_z
        self._mean = np.zeros(0, dtype=np.float64)  # long baseline
        self._var = np.zeros(0, dtype=np.float64)  # variance of values around it
        self._recent = np.zeros(0, dtype=np.float64)  # the recent mean
        self._gap_ms = np.zeros(0, dtype=np.float64)  # mean square of recent - long
        self._n = np.zeros(0, dtype=np.int64)

    _ROWS = ("_mean", "_var", "_recent", "_gap_ms", "_n")

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
            for name in self._ROWS:
                setattr(self, name, grow(getattr(self, name), top, 0))
        mean, var, n = self._mean[series], self._var[series], self._n[series]
        gap_ms = self._gap_ms[series]
        fl = effective_floor(mean, floor, rel_floor)
        recent = np.where(n > 0, self._recent[series] + self.short * (x - self._recent[series]), x)
        gap = recent - mean
        # A floor on the values is a floor on the recent mean's spread too, scaled as an
        # independent noise of that size would be.
        std = np.sqrt(gap_ms + fl * fl * self.short / (2.0 - self.short))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where((n > 0) & (std > 0), gap / std, 0.0)
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        d = x - mean
        self._mean[series] = mean + a * d
        self._var[series] = np.where(n > 0, (1.0 - a) * (var + a * d * d), 0.0)
        # The gap's spread learns a shift clipped to clip_z spreads (past warm-up): a lasting
        # shift keeps alarming while the long baseline catches up, instead of widening the
        # spread that judges it.
        clip = (n >= self.warmup) & (std > 0) & np.isfinite(self.clip_z)
        lim = np.where(clip, self.clip_z * np.where(clip, std, 1.0), np.inf)
        g = np.clip(gap, -lim, lim)
        self._gap_ms[series] = np.where(n > 0, (1.0 - a) * gap_ms + a * g * g, 0.0)
        self._recent[series] = recent
        self._n[series] = n + 1
        dof = np.minimum(n, (2.0 - self.alpha) / self.alpha).astype(np.float64)
        return Scored(z=z, mean=mean, std=std, seen=n, dof=dof)

    def explains(self, series: IntArray) -> BoolArray:
        """No gate: its verdict counts for every series."""
        return everywhere(series)

    def forget(self, series: IntArray) -> None:
        """Start these series afresh (their ids may be reused)."""
        forget_rows(self, self._ROWS, series)

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against)."""
        return {"alpha": self.alpha, "short": self.short, "warmup": self.warmup,
                "clip_z": None if np.isinf(self.clip_z) else self.clip_z}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.name, "params": self.params(),
                **{name[1:]: getattr(self, name).tolist() for name in self._ROWS}}

    def load_state(self, state: dict[str, Any]) -> None:
        check_params(check_state(state, self.name), self.params())
        rows = load_rows(state, {"mean": (np.float64, ()), "var": (np.float64, ()),
                                 "recent": (np.float64, ()), "gap_ms": (np.float64, ()),
                                 "n": (np.int64, ())})
        nonnegative(rows, "var", "gap_ms", "n")
        for name in self._ROWS:
            setattr(self, name, rows[name[1:]])

    def nbytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in self._ROWS))
