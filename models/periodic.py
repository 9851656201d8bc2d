"""Periodic z-score: how far a value is from the value one period (a day) earlier, judged against
the usual size of that difference, and whether the period explains the series at all."""

from __future__ import annotations

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
    forget_rows,
    grow,
    load_rows,
    nonnegative,
    state_part,
)
from models.ewma import EwmaZScore

_EMPTY = -(2**31)  # period number of a slot never written (int32)


class PeriodicZScore:
    """z of the residual x(t) - x(t - period), per series, with a test of whether it helps.

    The prediction is the series' own value one period ago (seasonal naive), read from a ring of
    `buckets` phase slots per period (two banks: the last period and the current one), so any
    sampling interval and irregular sampling work; a slot empty in the last period gives no
    prediction and no score (`seen` stays 0 for that value). The residuals' spread is an EWMA
    (`EwmaZScore` on the residuals, unclipped).

    `explains(series)` says whether the period model currently beats a flat level: the residuals'
    mean square is below `gate` times the series' own variance around its EWMA level, after one
    full period of residuals. A `Judge` (so `Ensemble` and the detector's scorers) listens to it
    only then, so a series without a daily shape pays nothing for it, while one with a shape is
    judged against yesterday.

    Good at: contextual anomalies in series with a sharp daily shape: a day whose peak is missing,
    lower or flat, a surge at night that is normal by day. Bad at: its first period (no
    prediction), shapes that drift in phase (the residual of a shifted square wave is large), and
    noisy series, where the residual of two noisy values is noisier than either (the gate then
    turns it off). Memory: 2 x `buckets` slots of a value and a period number (8 bytes) per
    series: 4.6 KiB with the default 288 (5-minute slots of a day), 768 bytes with 48.

    Parameters
    ----------
    period: seconds in one period (a day).
    buckets: phase slots per period; the lag is read at this resolution.
    alpha: weight of a new value in the residual spread and in the gate's two mean squares.
    gate: the period model is used when its mean square residual is below gate x the variance
        around the level.
    warmup: residuals a series must have before its scores count.
    name: what the member is called in verdicts and checkpoints ("weekly" for a week's period).

    Examples
    --------
    >>> import numpy as np
    >>> m = PeriodicZScore(period=24.0, buckets=24)  # a "day" of 24 one-second steps
    >>> rng = np.random.default_rng(0)
    >>> shape = np.where(np.arange(24) % 24 < 12, 100.0, 10.0)  # square wave
    >>> for t in range(24 * 30):
    ...     v = shape[t % 24] + rng.normal()
    ...     s = m.score_learn(np.array([0]), np.array([v]), ts=np.array([float(t)]))
    >>> bool(m.explains(np.array([0]))[0])
    True
    >>> t = 24 * 30  # the day's high phase, but the value stays low
    >>> s = m.score_learn(np.array([0]), np.array([10.0]), ts=np.array([float(t)]))
    >>> bool(s.z[0] < -20)
    True
    """

    name = "periodic"
    needs_ts = True

    def __init__(self, period: float = 86_400.0, buckets: int = 288, alpha: float = 0.001,
                 gate: float = 0.5, warmup: int = 12, name: str = "periodic") -> None:
        if period <= 0 or buckets < 1 or not 0 < alpha <= 1 or gate <= 0:
            raise ValueError("need period > 0, buckets >= 1, 0 < alpha <= 1, gate > 0")
        self.name = name  # "weekly" for a second instance a week long: what explanations say
        self.period = period
        self.buckets = buckets
        self.alpha = alpha
        self.gate = gate
        self.warmup = warmup
        self.residuals = EwmaZScore(alpha=alpha, clip_z=np.inf, warmup=warmup)
        # float32 values (the lag's 7 significant digits are plenty next to the residual spread)
        # and int32 period numbers: 8 bytes a slot.
        self._value = np.zeros((0, 2, buckets), dtype=np.float32)
        self._cycle = np.full((0, 2, buckets), _EMPTY, dtype=np.int32)  # period number of the value
        self._level = np.zeros(0, dtype=np.float64)
        self._level_ms = np.zeros(0, dtype=np.float64)  # mean square around the level
        self._resid_ms = np.zeros(0, dtype=np.float64)  # mean square of the residual
        self._n = np.zeros(0, dtype=np.int64)  # values seen
        self._n_resid = np.zeros(0, dtype=np.int64)  # residuals seen

    _ARRAYS = ("_value", "_cycle", "_level", "_level_ms", "_resid_ms", "_n", "_n_resid")

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
        t = as_times(ts, x, "PeriodicZScore")
        n_rows = len(series)
        out = Scored(z=np.zeros(n_rows), mean=x.copy(), std=np.zeros(n_rows),
                     seen=np.zeros(n_rows, dtype=np.int64), dof=np.ones(n_rows))
        if not n_rows:
            return out
        top = int(series.max()) + 1
        for name in self._ARRAYS:
            setattr(self, name, grow(getattr(self, name), top, _EMPTY if name == "_cycle" else 0))
        cycle = np.floor(t / self.period).astype(np.int64)
        slot = np.minimum((np.mod(t, self.period) / self.period * self.buckets).astype(np.int64),
                          self.buckets - 1)
        bank = cycle % 2
        prev_value = self._value[series, 1 - bank, slot].astype(np.float64)
        has_lag = self._cycle[series, 1 - bank, slot] == (cycle - 1)
        resid = x - prev_value
        if has_lag.any():
            idx = np.flatnonzero(has_lag)
            fl = None if floor is None else np.asarray(floor, dtype=np.float64)[idx]
            rf = None if rel_floor is None else np.asarray(rel_floor, dtype=np.float64)[idx]
            s = self.residuals.score_learn(series[idx], resid[idx], floor=fl, rel_floor=rf)
            out.z[idx], out.std[idx], out.seen[idx], out.dof[idx] = s.z, s.std, s.seen, s.dof
            out.mean[idx] = prev_value[idx] + s.mean
        # Learn: the gate's mean squares, then today's value into its slot.
        n, level = self._n[series], self._level[series]
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        dev = np.where(n > 0, x - level, 0.0)
        self._level_ms[series] = np.where(n > 0, (1 - a) * self._level_ms[series] + a * dev * dev, 0.0)
        self._level[series] = level + a * (x - level)
        self._n[series] = n + 1
        nr = self._n_resid[series]
        ar = np.maximum(self.alpha, 1.0 / (nr + 1.0))
        self._resid_ms[series] = np.where(
            has_lag, (1 - ar) * self._resid_ms[series] + ar * resid * resid, self._resid_ms[series])
        self._n_resid[series] = nr + has_lag
        self._value[series, bank, slot] = x
        self._cycle[series, bank, slot] = cycle.astype(np.int32)
        return out

    def forget(self, series: IntArray) -> None:
        """Start these series afresh (their ids may be reused)."""
        forget_rows(self, self._ARRAYS, series, {"_cycle": _EMPTY})
        self.residuals.forget(series)

    def explains(self, series: IntArray) -> BoolArray:
        """True where the period model beats a flat level for the series (see the class doc)."""
        s = np.asarray(series, dtype=np.int64)
        ok = (s >= 0) & (s < len(self._n))
        out = np.zeros(len(s), dtype=bool)
        i = s[ok]
        out[ok] = (self._n_resid[i] >= self.buckets) & (self._resid_ms[i] < self.gate * self._level_ms[i])
        return out

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against)."""
        return {"period": self.period, "buckets": self.buckets, "alpha": self.alpha,
                "gate": self.gate, "warmup": self.warmup}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model": self.name,
            "params": self.params(),
            "residuals": self.residuals.state_dict(),
        }
        for name in self._ARRAYS:
            state[name.lstrip("_")] = getattr(self, name).tolist()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        check_params(check_state(state, self.name), self.params())
        rows = load_rows(state, {name.lstrip("_"): (getattr(self, name).dtype,
                                                     getattr(self, name).shape[1:])
                                 for name in self._ARRAYS})
        nonnegative(rows, "level_ms", "resid_ms", "n", "n_resid")
        residuals = EwmaZScore(alpha=self.alpha, clip_z=np.inf, warmup=self.warmup)
        residuals.load_state(state_part(state, "residuals"))
        self.residuals = residuals
        for name in self._ARRAYS:
            setattr(self, name, rows[name.lstrip("_")])

    def nbytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in self._ARRAYS) + self.residuals.nbytes())
