"""Count tail: the tail probability of an event count under a negative binomial (Poisson when not
over-dispersed) whose mean and variance are EWMAs of the series, vectorised over series."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from models.base import (
    BoolArray,
    FloatArray,
    IntArray,
    Scored,
    as_step,
    check_params,
    check_state,
    effective_floor,
    forget_rows,
    grow,
    load_rows,
    nonnegative,
)

_DOF = 1e6  # the Judge's Student t with this many dof is the normal: it maps z back to our p
_CENTRE = 1.0  # standard deviations around the mean where the normal z stands in
_TINY = 1e-300  # smallest tail probability turned into a z (ndtri(1e-300) = -37.0)
_GAIN_CAP = 10.0  # nats: no one value (a count the normal calls impossible) decides the gate


class CountTail:
    """Tail probability of a count (events per interval) under a negative binomial fitted by the
    method of moments to an EWMA mean and variance of the series, as a signed normal quantile z.

    Up: z = -ndtri(P(X >= x)); down: z = ndtri(P(X <= x)) (whichever tail is below 0.5; z = 0
    when neither is, as at the mode of a low count), with `dof` 1e6 so `tail_score` (and a
    `Judge`) maps z back to that tail probability. The predictive
    distribution has mean m + 0.5 / n_eff (so a series of zeros still has a small rate: one event
    after n zeros has a tail of about 0.5 / n) and variance max(v, m) * (1 + 1 / n_eff) + floor^2,
    n_eff being the values behind the EWMA (min(n, (2 - alpha) / alpha)): the variance of the
    learnt mean is added, and a series whose variance is at most its mean (not over-dispersed) is
    Poisson with an uncertain rate (a negative binomial of r = m * n_eff, Poisson as n_eff grows).
    `Scored.mean` and `std` are that mean and the square root of that variance.

    `explains(series)` is True only where (a) every value seen so far is a non-negative integer,
    (b) more than `warmup` of them, and (c) the count model has predicted them better than the
    normal the other members assume: the gate keeps an EWMA (weight alpha; a running mean at
    first) of log P_NB(x) - log P_N(x - 1/2 < Y < x + 1/2), the log-likelihood of each value under
    this negative binomial against a normal of the same EWMA mean and variance (plus floor^2)
    given the value's unit bin, both taken before x is learned, over the values after warm-up that
    are not outliers (below), each capped at +/- 10 nats; it is open while that average exceeds
    `margin`. So integer series that are not counts (speeds, durations: spread below the mean)
    and large Poisson-like counts (where the normal is as good) close, and skewed, bursty or low
    counts open. Elsewhere it abstains and a `Judge` ignores it: such a series pays no Bonferroni
    factor for it. A value that is not a count is scored z = 0 and turns the series off until it
    is forgotten.

    A value whose count tail is beyond `clip` normal sigmas (|z| > clip: a tail below 2.9e-7 with
    the default 5; after warm-up) is clipped to mean +/- clip * std before it moves the mean and
    leaves the variance alone (as `EwmaZScore`'s `clip_z`), so an incident does not at once widen
    the distribution it is judged against. The test is on the tail, not on standard deviations:
    an over-dispersed series' ordinary bursts are many standard deviations up, and dropping them
    from the variance would narrow it.

    Good at: series of counts (requests, errors, tweets per interval), low ones above all, where a
    normal z is wrong twice: it ignores the skew (an over-dispersed series' ordinary bursts are
    many sigmas up, and a count of 0 is never far down), and a series of zeros has no variance at
    all. One pass, O(1) memory per series (33 bytes: mean, variance, count, a count-like flag, the
    gate's average). Bad at: anything not counts (it abstains), seasonal counts (the baseline is a
    flat level: the day's peak is a tail event, as for `EwmaZScore`, and the daily swing, taken
    for dispersion, may open the gate), and integer series that are not counts yet are skewed as
    counts are (bytes, travel times): the gate cannot tell them apart. The tail of a discrete
    value is conservative: at a mean of 3, p < 0.01 is reached only by P(X >= 9) = 0.4% of
    Poisson values, not 1%.

    Parameters
    ----------
    alpha: weight of each new value (0 < alpha <= 1); the baseline remembers about 1/alpha steps.
    warmup: values a series needs before its verdict counts (`explains`); during warm-up the
        moments are plain running averages and nothing is clipped.
    clip: values whose |z| exceeds it are clipped to mean +/- clip * std before they are learned
        (np.inf: none are).
    margin: log-likelihood gain per value (nats) over the normal the gate needs to open.

    Examples
    --------
    >>> import numpy as np
    >>> m = CountTail(alpha=0.01)
    >>> rng = np.random.default_rng(0)
    >>> for v in rng.poisson(3.0, size=500):
    ...     _ = m.score_learn(np.array([0]), np.array([float(v)]))
    >>> bool(m.explains(np.array([0]))[0])
    True
    >>> s = m.score_learn(np.array([0]), np.array([40.0]))  # a burst of 40 at a mean of 3
    >>> round(float(s.mean[0])), bool(s.z[0] > 10)  # P(X >= 40) ~ 1e-32
    (3, True)
    >>> for v in rng.normal(60.0, 3.0, size=500).round():  # integers less spread than counts
    ...     _ = m.score_learn(np.array([1]), np.array([v]))
    >>> bool(m.explains(np.array([1]))[0])  # the normal predicts them better: not explained
    False
    >>> _ = m.score_learn(np.array([0]), np.array([2.5]))  # not a count: the series is not explained
    >>> bool(m.explains(np.array([0]))[0])
    False
    """

    name = "counts"
    needs_ts = False

    def __init__(self, alpha: float = 0.001, warmup: int = 12, clip: float = 5.0,
                 margin: float = 0.0) -> None:
        if not 0 < alpha <= 1 or warmup < 0 or not clip > 0 or not math.isfinite(margin):
            raise ValueError("need 0 < alpha <= 1, warmup >= 0, clip > 0, a finite margin")
        self.alpha = alpha
        self.warmup = warmup
        self.clip = clip
        self.margin = margin
        self._mean = np.zeros(0, dtype=np.float64)
        self._var = np.zeros(0, dtype=np.float64)
        self._n = np.zeros(0, dtype=np.int64)
        self._counts = np.ones(0, dtype=np.bool_)  # every value seen so far is a count
        self._llr = np.zeros(0, dtype=np.float64)  # EWMA of log NB pmf - log normal bin prob

    _ARRAYS = ("_mean", "_var", "_n", "_counts", "_llr")

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
        if len(series):
            top = int(series.max()) + 1
            for name in self._ARRAYS:
                setattr(self, name, grow(getattr(self, name), top, name == "_counts"))
        mean, var, n = self._mean[series], self._var[series], self._n[series]
        is_count = (x >= 0) & (x == np.floor(x))
        n_eff = np.maximum(np.minimum(n, (2.0 - self.alpha) / self.alpha), 1.0)
        mu = np.maximum(mean, 0.0) + 0.5 / n_eff
        fl = effective_floor(mean, floor, rel_floor)
        v = np.maximum(var, mu) * (1.0 + 1.0 / n_eff) + fl * fl  # > mu: a negative binomial
        std = np.sqrt(v)
        scored = self._counts[series] & is_count & (n > 0)
        z = np.zeros(len(x))
        gain = np.zeros(len(x))
        if scored.any():
            z[scored] = _count_z(x[scored], mu[scored], v[scored])
            # what the count model gains over the normal the other members assume (same mean and
            # spread, learnt-mean uncertainty alike) on this value, before it is learnt
            vn = var[scored] * (1.0 + 1.0 / n_eff[scored]) + fl[scored] ** 2
            gain[scored] = np.clip(_nb_logpmf(x[scored], mu[scored], v[scored])
                                   - _normal_logbin(x[scored], mean[scored], vn),
                                   -_GAIN_CAP, _GAIN_CAP)
        # Learn: running moments while warming up, clipped EWMA after. An outlier (a count tail
        # beyond `clip` normal sigmas: skewed counts have ordinary values many std up) moves the
        # mean by at most alpha * clip * std and leaves the variance alone, so an incident does
        # not become the new normal at once; a lasting shift is still absorbed.
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        lim = self.clip * std
        far = np.where(scored, np.abs(z) > self.clip, np.abs(x - mean) > lim)
        outlier = (n >= self.warmup) & far
        xc = np.where(outlier, np.clip(x, mean - lim, mean + lim), x)
        diff = xc - mean
        self._mean[series] = mean + a * diff
        new_var = np.where(n > 0, (1.0 - a) * (var + a * diff * diff), 0.0)
        self._var[series] = np.where(outlier, var, new_var)
        # The gate's evidence: an EWMA (a running mean at first) of the gain over the values after
        # warm-up that are not outliers (an incident says nothing of the ordinary shape).
        ev = scored & (n >= self.warmup) & ~outlier
        ag = np.maximum(self.alpha, 1.0 / np.maximum(n - self.warmup + 1.0, 1.0))
        llr = self._llr[series]
        self._llr[series] = np.where(ev, llr + ag * (gain - llr), llr)
        self._n[series] = n + 1
        self._counts[series] &= is_count
        return Scored(z=z, mean=np.where(n > 0, mu, 0.0), std=np.where(n > 0, std, 0.0), seen=n,
                      dof=np.full(len(x), _DOF))

    def explains(self, series: IntArray) -> BoolArray:
        """True where every value of the series so far is a count, it has more than `warmup` of
        them and the count model has predicted them better than the normal (by `margin`)."""
        s = np.asarray(series, dtype=np.int64)
        ok = (s >= 0) & (s < len(self._n))
        out = np.zeros(len(s), dtype=bool)
        i = s[ok]
        out[ok] = self._counts[i] & (self._n[i] > self.warmup) & (self._llr[i] > self.margin)
        return out

    def forget(self, series: IntArray) -> None:
        """Start these series afresh (their ids may be reused)."""
        forget_rows(self, self._ARRAYS, series, {"_counts": 1.0})

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against)."""
        # strict JSON has no Infinity: no clipping is written as null
        return {"alpha": self.alpha, "warmup": self.warmup,
                "clip": None if math.isinf(self.clip) else self.clip, "margin": self.margin}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"model": self.name, "params": self.params()}
        for name in self._ARRAYS:
            state[name.lstrip("_")] = getattr(self, name).tolist()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        check_params(check_state(state, self.name), self.params())
        rows = load_rows(state, {"mean": (np.float64, ()), "var": (np.float64, ()),
                                 "n": (np.int64, ()), "counts": (np.int64, ()),
                                 "llr": (np.float64, ())})
        nonnegative(rows, "var", "n")  # the mean of a series that is not counts may be < 0
        if len(rows["counts"]) and not np.isin(rows["counts"], (0, 1)).all():
            raise ValueError("checkpoint 'counts' holds values other than true and false")
        self._mean, self._var, self._n = rows["mean"], rows["var"], rows["n"]
        self._counts = rows["counts"].astype(np.bool_)
        self._llr = rows["llr"]

    def nbytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in self._ARRAYS))


def _count_z(x: FloatArray, mu: FloatArray, v: FloatArray) -> FloatArray:
    """Signed normal quantile of the tail of counts `x` under a negative binomial of mean `mu` and
    variance `v` > `mu`: -ndtri(P(X >= x)) where that tail is below 0.5, ndtri(P(X <= x)) where
    that one is, else 0; so each direction's tail_score gives that tail when it is below 0.5. Both
    tails are regularised incomplete beta functions, so neither is 1 minus a rounded 1."""
    sd = np.sqrt(v)
    # Within _CENTRE standard deviations of the mean a tail is about 0.16 or more (a few
    # hundredths at the least, for very skewed counts), where no alarm and no calibrated extreme
    # depends on its exact value: the normal z stands in there (never past +/- _CENTRE), and the
    # incomplete beta functions (nearly all of this member's cost) run on the rest only.
    z: FloatArray = np.clip((x - mu) / sd, -_CENTRE, _CENTRE)
    far = np.flatnonzero(np.abs(x - mu) >= _CENTRE * sd)
    if len(far):
        z[far] = _tail_z(x[far], mu[far], v[far])
    return z


def _tail_z(x: FloatArray, mu: FloatArray, v: FloatArray) -> FloatArray:
    """The exact signed quantile of `_count_z` (see there), for every row."""
    p = mu / v  # success probability; r successes: mean r (1 - p) / p, variance mean / p
    r = mu * mu / (v - mu)
    # The tails of a discrete value overlap (they sum to 1 + P(X = x)), so at most one is below
    # 0.5: each row computes the tail on its side of the mean first, and the other only where
    # the first is not below 0.5 (near the mode). At the mode of a low count both may be near 1,
    # and 0 is then the only z whose tails are both >= 0.5.
    up, down = np.ones(len(x)), np.ones(len(x))
    first_up = x >= mu
    i = np.flatnonzero(first_up & (x >= 1))
    up[i] = special.betaincc(r[i], x[i], p[i])  # P(X >= x)
    i = np.flatnonzero(~first_up | (up >= 0.5))
    down[i] = special.betainc(r[i], x[i] + 1.0, p[i])  # P(X <= x)
    i = np.flatnonzero(~first_up & (down >= 0.5) & (x >= 1))
    up[i] = special.betaincc(r[i], x[i], p[i])
    z: FloatArray = np.where(up < 0.5, -special.ndtri(np.maximum(up, _TINY)),
                             np.where(down < 0.5, special.ndtri(np.maximum(down, _TINY)), 0.0))
    return z


def _nb_logpmf(x: FloatArray, mu: FloatArray, v: FloatArray) -> FloatArray:
    """log P(X = x) for counts `x` under a negative binomial of mean `mu` > 0 and variance
    `v` > `mu` (r = mu^2 / (v - mu), p = mu / v): -log(x + r) - log B(r, x + 1) + r log p
    + x log(1 - p), with log p as -log1p((v - mu) / mu), exact near the Poisson limit."""
    d = v - mu
    r = mu * mu / d
    out: FloatArray = (-np.log(x + r) - special.betaln(r, x + 1.0) - r * np.log1p(d / mu)
                       + x * np.log(d / v))
    return out


def _normal_logbin(x: FloatArray, mean: FloatArray, var: FloatArray) -> FloatArray:
    """log P(x - 1/2 < Y < x + 1/2) for Y normal of `mean` and `var` >= 0: the normal's
    probability of a count (its unit bin; at most 1, -inf where a zero variance misses it),
    computed on the side of the mean where both ends' tails are small, so a far bin keeps its
    digits."""
    s = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(s > 0, (x - 0.5 - mean) / s, np.where(x - 0.5 >= mean, np.inf, -np.inf))
        hi = np.where(s > 0, (x + 0.5 - mean) / s, np.where(x + 0.5 > mean, np.inf, -np.inf))
        right = lo > 0  # the bin is right of the mean: reflect it to the left
        lo, hi = np.where(right, -hi, lo), np.where(right, -lo, hi)
        top = special.log_ndtr(hi)
        out: FloatArray = top + np.log1p(-np.exp(special.log_ndtr(lo) - top))
    return np.where(np.isnan(out), -np.inf, out)
