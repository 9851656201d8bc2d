"""CountTail: calibrated tails of counts (Poisson and over-dispersed), bursts, the count gate
(count-like, and predicted better than by the normal), robustness to incidents, state round
trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from models import EwmaZScore, Judge, tail_score
from models.base import FloatArray
from models.counts import CountTail


def _run(model: CountTail | EwmaZScore, x: np.ndarray) -> tuple[FloatArray, FloatArray]:
    """Feed x (steps, series) one step at a time; the up and down tail p of every value after
    the first 200 steps (the baseline settled), flattened."""
    ids = np.arange(x.shape[1])
    up, down = [], []
    for t, row in enumerate(x):
        s = model.score_learn(ids, row.astype(np.float64))
        if t >= 200:
            up.append(1.0 - tail_score(s.z, "up", s.dof))
            down.append(1.0 - tail_score(s.z, "down", s.dof))
    return np.concatenate(up), np.concatenate(down)


def _attainable(dist: stats.rv_discrete, t: float, side: str) -> float:
    """The share of values whose exact tail (P(X >= x) up, P(X <= x) down) is below t: what a
    calibrated count tail reaches (below t itself, a discrete tail jumps over t)."""
    xs = np.arange(0, int(dist.ppf(1 - 1e-12)) + 2)
    tail = dist.sf(xs - 1) if side == "up" else dist.cdf(xs)
    return float(dist.pmf(xs)[tail < t].sum())


@pytest.mark.parametrize("mean", [3.0, 30.0])
def test_poisson_tails_are_calibrated(mean: float) -> None:
    rng = np.random.default_rng(1)
    x = rng.poisson(mean, size=(1200, 200))
    up, down = _run(CountTail(alpha=0.001), x)
    dist = stats.poisson(mean)
    for t in (0.01, 0.1):  # (0.05 would be at an atom: P(X = 0) = 0.0498 at a mean of 3)
        for side, p in (("up", up), ("down", down)):
            got = float((p < t).mean())
            assert got <= t, (side, t, got)  # a valid p-value: never more alarms than t
            # and not much fewer than exact tails would give (the learnt mean is uncertain, so
            # a value whose exact tail is at an atom just below t may land just above it)
            want = _attainable(dist, t / 1.3, side)
            assert got >= 0.8 * want, (side, t, got, want)
    if mean == 30.0:  # counts large enough that the tail is nearly continuous: about uniform
        assert 0.006 < float((up < 0.01).mean()) < 0.012
        assert 0.006 < float((down < 0.01).mean()) < 0.012


def test_overdispersed_counts_are_not_over_alarmed() -> None:
    rng = np.random.default_rng(2)
    x = rng.negative_binomial(2, 2.0 / 12.0, size=(1200, 200))  # mean 10, variance 60
    up, down = _run(CountTail(alpha=0.001), x)
    gauss_up, _ = _run(EwmaZScore(alpha=0.001, clip_z=np.inf), x)
    # the normal z ignores the skew: several times more alarms than its nominal 0.1%
    assert float((gauss_up < 0.001).mean()) > 0.004
    # as a Poisson of the same mean would: the dispersion is learnt
    assert float((up < 0.001).mean()) < 0.0013
    assert 0.008 < float((up < 0.01).mean()) <= 0.011
    assert float((down < 0.01).mean()) <= 0.012


def test_a_burst_at_a_low_mean_has_a_tiny_p() -> None:
    rng = np.random.default_rng(3)
    m = CountTail()
    for v in rng.poisson(3.0, size=2000):
        m.score_learn(np.array([0]), np.array([float(v)]))
    s = m.score_learn(np.array([0]), np.array([40.0]))
    exact = stats.poisson.sf(39, s.mean[0])
    assert exact < 1e-25
    assert stats.norm.sf(s.z[0]) == pytest.approx(exact, rel=0.5)  # z carries the count tail
    assert 2.8 < s.mean[0] < 3.2 and s.std[0] == pytest.approx(np.sqrt(s.mean[0]), rel=0.05)
    # a few counts off the mean are ordinary
    s = m.score_learn(np.array([0]), np.array([5.0]))
    assert 0.1 < float(1.0 - tail_score(s.z, "up", s.dof)[0]) < 0.3


def test_an_incident_does_not_widen_the_baseline_at_once() -> None:
    rng = np.random.default_rng(4)
    m = CountTail()
    for v in rng.poisson(3.0, size=2000):
        m.score_learn(np.array([0]), np.array([float(v)]))
    zs = [float(m.score_learn(np.array([0]), np.array([40.0])).z[0]) for _ in range(20)]
    assert min(zs) > 8  # the twentieth step of the incident still alarms
    s = m.score_learn(np.array([0]), np.array([3.0]))
    assert s.mean[0] < 3.5 and s.std[0] < 2.0


def test_a_series_of_zeros_has_a_small_rate() -> None:
    m = CountTail()
    for _ in range(1000):
        s = m.score_learn(np.array([0]), np.array([0.0]))
    assert float(np.abs(s.z[0])) < 1  # another zero is not news
    s = m.score_learn(np.array([0]), np.array([1.0]))
    p = float(1.0 - tail_score(s.z, "up", s.dof)[0])
    assert 1e-4 < p < 1e-3  # one event after a thousand zeros: about 0.5 / 1000
    s = m.score_learn(np.array([0]), np.array([20.0]))
    assert np.isfinite(s.z[0]) and s.z[0] > 8


def test_only_count_series_are_explained() -> None:
    m = CountTail(warmup=12)
    ids = np.arange(4)
    for t in range(30):
        # counts, halves, negatives, a constant (which the normal predicts exactly)
        x = np.array([t % 4, t % 4 + 0.5, (t % 4) - 2.0, 7.0])
        if t == 5:
            assert m.explains(ids).tolist() == [False, False, False, False]  # warming up
        s = m.score_learn(ids, x)
    assert m.explains(ids).tolist() == [True, False, False, False]
    assert s.z[1] == 0.0 and s.z[2] == 0.0  # not counts: no verdict
    m.score_learn(np.array([0]), np.array([2.25]))  # one value that is not a count turns it off
    assert m.explains(np.array([0, 9])).tolist() == [False, False]
    m.forget(np.array([0]))
    assert m.explains(np.array([0])).tolist() == [False]
    for t in range(13):
        m.score_learn(np.array([0]), np.array([float(t % 3)]))
    assert m.explains(np.array([0])).tolist() == [True]


def _gate_after(x: np.ndarray, **kw: float) -> tuple[list[bool], FloatArray]:
    """Feed x (steps, series); the gate and its log-likelihood average at the end."""
    m = CountTail(alpha=0.001, **kw)
    ids = np.arange(x.shape[1])
    for row in x:
        m.score_learn(ids, row.astype(np.float64))
    return m.explains(ids).tolist(), m._llr[ids]


def test_the_gate_opens_only_where_counts_beat_the_normal() -> None:
    rng = np.random.default_rng(7)
    steps = 2000
    x = np.stack([
        rng.normal(60.0, 3.0, steps).round(),  # integer speeds: variance 9, far below the mean
        rng.normal(300.0, 8.0, steps).round(),  # integer durations, the same
        rng.negative_binomial(2.0, 0.1, steps),  # over-dispersed counts: mean 18, variance 180
        rng.negative_binomial(20.0 / 9.0, 0.1, steps),  # mean 20, variance 200
        rng.poisson(2.0, steps),  # low counts: discrete and skewed
        rng.poisson(0.05, steps),  # rare events
    ], axis=1)
    gate, llr = _gate_after(x)
    assert gate == [False, False, True, True, True, True], llr
    assert llr[0] < -0.3 and llr[1] < -0.3  # clearly worse than the normal, not a tie
    assert llr[2] > 0.1 and llr[3] > 0.1 and llr[4] > 0.02
    # a margin asks for more: large Poisson counts (the normal as good) stay closed
    gate, llr = _gate_after(np.stack([rng.poisson(200.0, steps), x[:, 3]], axis=1), margin=0.02)
    assert gate == [False, True], llr


def test_the_gate_is_decided_early_and_an_incident_does_not_open_it() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(60.0, 3.0, (300, 1)).round()
    gate, _ = _gate_after(x)
    assert gate == [False]  # a few hundred values decide it
    m = CountTail(alpha=0.001)
    for v in x[:, 0]:
        m.score_learn(np.array([0]), np.array([v]))
    for _ in range(100):  # the road closes: a speed of 0 for 100 steps (outliers to both models)
        m.score_learn(np.array([0]), np.array([0.0]))
    assert m.explains(np.array([0])).tolist() == [False]
    x = rng.negative_binomial(20.0 / 9.0, 0.1, (300, 1))
    gate, _ = _gate_after(x)
    assert gate == [True]


def test_a_judge_pays_nothing_for_it_on_series_that_are_not_counts() -> None:
    rng = np.random.default_rng(5)
    alone = Judge([EwmaZScore(alpha=0.01)], calibrate=False)
    both = Judge([EwmaZScore(alpha=0.01), CountTail(alpha=0.01)], calibrate=False)
    for _ in range(300):
        x = rng.normal(50.0, 3.0, 2)
        a = alone.score_learn(np.arange(2), x)
        b = both.score_learn(np.arange(2), x)
        np.testing.assert_array_equal(a.p, b.p)


def test_state_round_trip() -> None:
    rng = np.random.default_rng(6)
    a = CountTail(alpha=0.01, warmup=5, clip=4.0)
    ids = np.arange(3)
    def step() -> FloatArray:  # low counts, over-dispersed counts (mean 18), not counts
        return np.array([rng.poisson(1.0), rng.negative_binomial(2.0, 0.1), 0.5], dtype=np.float64)

    for _ in range(100):
        a.score_learn(ids, step())
    state = json.loads(json.dumps(a.state_dict(), allow_nan=False))
    b = CountTail(alpha=0.01, warmup=5, clip=4.0)
    b.load_state(state)
    assert b.explains(ids).tolist() == a.explains(ids).tolist() == [True, True, False]
    for _ in range(20):
        x = step()
        sa, sb = a.score_learn(ids, x), b.score_learn(ids, x)
        np.testing.assert_array_equal(sa.z, sb.z)
        np.testing.assert_array_equal(sa.std, sb.std)
        assert a.explains(ids).tolist() == b.explains(ids).tolist()
    with pytest.raises(ValueError, match="another configuration"):
        CountTail(alpha=0.01, warmup=5, clip=5.0).load_state(state)
    with pytest.raises(ValueError, match="another configuration"):
        CountTail(alpha=0.01, warmup=5, clip=4.0, margin=0.1).load_state(state)
    with pytest.raises(ValueError, match="true and false"):
        b.load_state({**state, "counts": [2] * len(state["counts"])})
