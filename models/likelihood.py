"""Anomaly likelihood: how unusual a series' recent raw scores are, judged against its own history.

In the spirit of Numenta's anomaly likelihood (Ahmad et al., Neurocomputing 2017): a short moving
average of raw scores is compared with the mean and spread of that average over a long history,
and the Gaussian upper tail becomes a probability; the log form spreads its top end out.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

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

_LOG_EPS = math.log(1e-10)


class AnomalyLikelihood:
    """Turns raw anomaly scores (any scale) into a calibrated tail probability per series.

    Good at: making one threshold work across very different series, since each is judged
    against its own score history; damping detectors that are noisy on some series. Bad at: the
    first `learning` steps of a series (it says 0 until it has a history), and series whose raw
    scores are themselves constant (no spread to judge against; `min_std` bounds it).

    Parameters
    ----------
    short: steps in the moving average of raw scores (smooths single-step noise).
    history: steps of averaged scores kept to estimate their usual mean and spread.
    learning: steps before the likelihood is reported (0 before).
    min_std: smallest spread of the averaged scores that counts.
    log_scale: report the log likelihood, 1 - log(1 - p) / log(1e-10), so that 0.9999 and
        0.999999 are told apart (Numenta's choice for NAB).
    repeat_red, repeat_yellow: when set, a likelihood at or above `repeat_red` right after
        another one is lowered to `repeat_yellow`: one episode, one alarm (Numenta's filter;
        their defaults are 0.99999 and 0.999).

    Memory: `history + short` floats per series.

    Examples
    --------
    >>> import numpy as np
    >>> lik = AnomalyLikelihood(short=5, history=200, learning=50)
    >>> rng = np.random.default_rng(1)
    >>> for _ in range(200):
    ...     _ = lik.score_learn(np.array([0]), rng.uniform(0, 0.2, 1))
    >>> quiet = lik.score_learn(np.array([0]), np.array([0.1]))
    >>> loud = [lik.score_learn(np.array([0]), np.array([1.0])) for _ in range(5)][-1]
    >>> bool(quiet[0] < 0.5), bool(loud[0] > 0.9)
    (True, True)
    """

    name = "likelihood"

    def __init__(self, short: int = 10, history: int = 2000, learning: int = 300,
                 min_std: float = 0.0005, log_scale: bool = True,
                 repeat_red: float | None = None, repeat_yellow: float = 0.999) -> None:
        self.short = short
        self.history = history
        self.learning = learning
        self.min_std = min_std
        self.log_scale = log_scale
        self.repeat_red = repeat_red
        self.repeat_yellow = repeat_yellow
        self._red = np.zeros(0, dtype=bool)
        self._recent = np.zeros((0, short), dtype=np.float64)
        self._hist = np.zeros((0, history), dtype=np.float64)
        self._sum = np.zeros(0, dtype=np.float64)
        self._sumsq = np.zeros(0, dtype=np.float64)
        self._n = np.zeros(0, dtype=np.int64)

    def score_learn(self, series: IntArray, raw: FloatArray) -> FloatArray:
        """Likelihood of each series' latest raw score (before it joins the history)."""
        series, x = as_step(series, raw)
        if len(series):
            top = int(series.max()) + 1
            self._recent = grow(self._recent, top, 0.0)
            self._hist = grow(self._hist, top, 0.0)
            self._sum = grow(self._sum, top, 0.0)
            self._sumsq = grow(self._sumsq, top, 0.0)
            self._n = grow(self._n, top, 0)
            self._red = grow(self._red, top, False)
        n = self._n[series]
        self._recent[series, n % self.short] = x
        filled = np.minimum(n + 1, self.short)
        avg = self._recent[series].sum(axis=1) / filled
        # The history holds earlier averages: judge this one against them, then add it.
        h = np.minimum(n, self.history)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(h > 0, self._sum[series] / np.maximum(h, 1), 0.0)
            var = np.where(h > 1, self._sumsq[series] / np.maximum(h, 1) - mean * mean, 0.0)
        std = np.maximum(np.sqrt(np.maximum(var, 0.0)), self.min_std)
        tail = 0.5 * special.erfc((avg - mean) / (std * math.sqrt(2.0)))  # P(Z >= z)
        likelihood = 1.0 - tail
        if self.repeat_red is not None:
            # Numenta's filter: only a sharp rise stays red; a red that follows a red is
            # reported as yellow, so one episode raises one alarm, not dozens.
            red = likelihood >= self.repeat_red
            was_red = self._red[series]
            self._red[series] = red
            likelihood = np.where(red & was_red, np.minimum(likelihood, self.repeat_yellow),
                                  likelihood)
        if self.log_scale:
            likelihood = np.log(np.maximum(1.0000000001 - likelihood, 1e-300)) / _LOG_EPS
            likelihood = np.clip(likelihood, 0.0, 1.0)
        out: FloatArray = np.where(n >= self.learning, likelihood, 0.0)
        slot = n % self.history
        old = np.where(n >= self.history, self._hist[series, slot], 0.0)
        self._hist[series, slot] = avg
        self._sum[series] += avg - old
        self._sumsq[series] += avg * avg - old * old
        self._n[series] = n + 1
        return out

    _ARRAYS = ("_red", "_recent", "_hist", "_sum", "_sumsq", "_n")

    def forget(self, series: IntArray) -> None:
        """Start these series afresh (their ids may be reused)."""
        forget_rows(self, self._ARRAYS, series)

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against)."""
        return {"short": self.short, "history": self.history, "learning": self.learning,
                "min_std": self.min_std, "log_scale": self.log_scale,
                "repeat_red": self.repeat_red, "repeat_yellow": self.repeat_yellow}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "params": self.params(),
            "recent": self._recent.tolist(), "hist": self._hist.tolist(),
            "sum": self._sum.tolist(), "sumsq": self._sumsq.tolist(), "n": self._n.tolist(),
            "red": self._red.tolist(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        check_params(check_state(state, self.name), self.params())
        rows = load_rows(state, {"recent": (np.float64, (self.short,)),
                                 "hist": (np.float64, (self.history,)), "sum": (np.float64, ()),
                                 "sumsq": (np.float64, ()), "n": (np.int64, ())})
        nonnegative(rows, "n")
        # Checkpoints written before the repeat filter's state was kept: no series was red.
        red = (load_rows(state, {"red": (np.bool_, ())})["red"] if "red" in state
               else np.zeros(len(rows["n"]), dtype=bool))
        if len(red) != len(rows["n"]):
            raise ValueError(f"'red' holds {len(red)} series, the other arrays {len(rows['n'])}")
        self._recent, self._hist = rows["recent"], rows["hist"]
        self._sum, self._sumsq, self._n = rows["sum"], rows["sumsq"], rows["n"]
        self._red = red

    def nbytes(self) -> int:
        return int(sum(getattr(self, a).nbytes for a in self._ARRAYS))
