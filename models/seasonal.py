"""Seasonal z-score: expected values per hour of the week (falling back to the hour of the day, then
the overall level, while a bucket is young), all learned online."""

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
    as_times,
    check_params,
    check_state,
    effective_floor,
    everywhere,
    forget_rows,
    grow,
    load_rows,
    nonnegative,
)

_HOURS, _WEEK = 24, 24 * 7
_MIN_COUNT = 3  # values a bucket needs before its mean is trusted


class SeasonalZScore:
    """z = (x - expected for this hour of the week) / residual spread, per series.

    Good at: series with a daily and weekly shape (traffic, request rates, business metrics),
    where a plain EWMA z-score alarms at every daily peak and misses a night-time surge that is
    small in absolute terms. Bad at: series without such a shape (it only adds noise to learn), at
    other periods (e.g. 7-minute batch jobs), and its first days, when the offsets are still
    forming (it falls back to the hour of the day, then to the overall level). Times are read in
    UTC. Memory: about 3 KiB a series (168 weekly and 24 daily buckets, each a mean and a count).

    Parameters
    ----------
    alpha: weight of a new value in the overall level and in the residual spread.
    season_alpha: weight of a new value in the mean of its hour-of-week and hour-of-day buckets
        (a plain running mean until a bucket has 1/season_alpha values).
    clip_z: values beyond this many spreads are clipped before learning and leave the spread
        alone, as in `EwmaZScore`.
    warmup: values a series must have seen before its scores count (`Scored.seen`).

    Examples
    --------
    >>> import numpy as np
    >>> m = SeasonalZScore()
    >>> hours = np.arange(24 * 21)  # three weeks, hourly
    >>> daily = 100 + 50 * np.sin(2 * np.pi * hours / 24)
    >>> rng = np.random.default_rng(0)
    >>> for h, v in zip(hours, daily + rng.normal(0, 2, len(hours))):
    ...     s = m.score_learn(np.array([0]), np.array([v]), ts=np.array([h * 3600.0]))
    >>> peak = 100 + 50 * np.sin(2 * np.pi * 6 / 24)  # the usual 06:00 peak
    >>> calm = m.score_learn(np.array([0]), np.array([peak]), ts=np.array([(24 * 21 + 6) * 3600.0]))
    >>> surge = m.score_learn(np.array([0]), np.array([120.0]), ts=np.array([(24 * 21 + 18) * 3600.0]))
    >>> bool(abs(calm.z[0]) < 3), bool(surge.z[0] > 5)  # 18:00 is the daily trough (~50)
    (True, True)
    """

    name = "seasonal"
    needs_ts = True

    def __init__(self, alpha: float = 0.05, season_alpha: float = 0.1, clip_z: float = 3.0,
                 warmup: int = 12) -> None:
        self.alpha = alpha
        self.season_alpha = season_alpha
        self.clip_z = clip_z
        self.warmup = warmup
        self._level = np.zeros(0, dtype=np.float64)
        self._var = np.zeros(0, dtype=np.float64)
        self._week = np.zeros((0, _WEEK), dtype=np.float64)
        self._week_n = np.zeros((0, _WEEK), dtype=np.int64)
        self._day = np.zeros((0, _HOURS), dtype=np.float64)
        self._day_n = np.zeros((0, _HOURS), dtype=np.int64)
        self._n = np.zeros(0, dtype=np.int64)

    def score_learn(
        self,
        series: IntArray,
        values: FloatArray,
        floor: FloatArray | None = None,
        rel_floor: FloatArray | None = None,
        ts: FloatArray | None = None,
    ) -> Scored:
        """Score then learn one time step; `ts` (epoch seconds, one per value) is required."""
        series, x = as_step(series, values, floor, rel_floor)
        t = as_times(ts, x, "SeasonalZScore")
        if len(series):
            top = int(series.max()) + 1
            for name, fill in (("_level", 0.0), ("_var", 0.0), ("_week", 0.0), ("_week_n", 0),
                               ("_day", 0.0), ("_day_n", 0), ("_n", 0)):
                setattr(self, name, grow(getattr(self, name), top, fill))
        hour = (np.floor(t / 3600.0) % _HOURS).astype(np.int64)
        days = np.floor(t / 86400.0).astype(np.int64)
        how = ((days + 3) % 7) * _HOURS + hour  # hour of the week, Monday 00:00 = 0
        n = self._n[series]
        level, var = self._level[series], self._var[series]
        wk, wk_n = self._week[series, how], self._week_n[series, how]
        dy, dy_n = self._day[series, hour], self._day_n[series, hour]
        expected = np.where(wk_n >= _MIN_COUNT, wk, np.where(dy_n >= _MIN_COUNT, dy, level))
        fl = effective_floor(expected, floor, rel_floor)
        std = np.sqrt(var + fl * fl)
        resid = x - expected
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where((std > 0) & (n > 0), resid / std, 0.0)
        # Learn, with outliers clipped and kept out of the spread (as EwmaZScore does).
        outlier = (n >= self.warmup) & (std > 0) & (np.abs(resid) > self.clip_z * std)
        xc = np.where(outlier, expected + np.clip(resid, -self.clip_z * std, self.clip_z * std), x)
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        self._level[series] = level + a * (xc - level)
        bw = np.maximum(self.season_alpha, 1.0 / (wk_n + 1.0))
        self._week[series, how] = wk + bw * (xc - wk)
        self._week_n[series, how] = wk_n + 1
        bd = np.maximum(self.season_alpha, 1.0 / (dy_n + 1.0))
        self._day[series, hour] = dy + bd * (xc - dy)
        self._day_n[series, hour] = dy_n + 1
        r = xc - expected
        new_var = np.where(n > 0, (1.0 - a) * (var + a * r * r), 0.0)
        self._var[series] = np.where(outlier, var, new_var)
        self._n[series] = n + 1
        dof = np.minimum(n, (2.0 - self.alpha) / self.alpha).astype(np.float64)
        return Scored(z=z, mean=expected, std=std, seen=n, dof=dof)

    _ARRAYS = ("_level", "_var", "_week", "_week_n", "_day", "_day_n", "_n")

    def explains(self, series: IntArray) -> BoolArray:
        """No gate: the profile's verdict counts for every series."""
        return everywhere(series)

    def forget(self, series: IntArray) -> None:
        """Start these series afresh (their ids may be reused)."""
        forget_rows(self, self._ARRAYS, series)

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against)."""
        return {"alpha": self.alpha, "season_alpha": self.season_alpha,
                "clip_z": None if math.isinf(self.clip_z) else self.clip_z,  # strict JSON
                "warmup": self.warmup}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"model": self.name, "params": self.params()}
        for name in self._ARRAYS:
            state[name.lstrip("_")] = getattr(self, name).tolist()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        check_params(check_state(state, self.name), self.params())
        rows = load_rows(state, {name.lstrip("_"): (getattr(self, name).dtype,
                                                     getattr(self, name).shape[1:])
                                 for name in self._ARRAYS})
        nonnegative(rows, "var", "week_n", "day_n", "n")
        for name in self._ARRAYS:
            setattr(self, name, rows[name.lstrip("_")])

    def nbytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in self._ARRAYS))
