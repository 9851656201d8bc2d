"""Judge: the one decision rule of every scorer. Its two arithmetics are, bit for bit, the ones
WindowScorer and MetricScorer used before it existed; per-row directions, gates, warm-up,
refused input and checkpoints."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from models import (
    Ensemble,
    EwmaZScore,
    Judge,
    PeriodicZScore,
    RobustZScore,
    Scored,
    SeasonalZScore,
    TailCalibrator,
    combine_pvalues,
    tail_score,
)
from models.base import Direction

DAY = 24  # a "day" of 24 one-second steps


def stream(days: int, n: int, seed: int) -> np.ndarray:
    """n series with a sharp daily shape, noise, and spikes and dips now and then."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * DAY)
    x = np.where((t % DAY < 12)[:, None], 100.0, 20.0) + rng.normal(0.0, 2.0, (len(t), n))
    x[rng.random(x.shape) < 0.02] *= rng.choice([0.2, 3.0, 8.0])
    return x


def members() -> list[EwmaZScore | PeriodicZScore]:
    return [EwmaZScore(alpha=0.02), PeriodicZScore(period=float(DAY), buckets=DAY, alpha=0.01)]


def old_window_scorer(x: np.ndarray, dirs: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """WindowScorer.score's arithmetic before the judge (level + periodic, calibrated)."""
    level, periodic = members()
    cal, pcal = TailCalibrator(min_history=50, k=5), TailCalibrator(min_history=50, k=5)
    ids = np.arange(x.shape[1])

    def tails(s: Scored, calibrator: TailCalibrator) -> np.ndarray:
        scores = np.empty(len(s.z))
        for d in ("up", "down", "both"):
            m = dirs == d
            if m.any():
                scores[m] = tail_score(s.z[m], d, s.dof[m])
        ready = s.seen >= 12
        if ready.any():
            scores[ready] = 1.0 - calibrator.calibrate(ids[ready], 1.0 - scores[ready])
        return scores

    out, speakers = [], []
    for t, row in enumerate(x):
        s = level.score_learn(ids, row)
        scores = tails(s, cal)
        ready = s.seen >= 12
        active = periodic.explains(ids)
        sp = periodic.score_learn(ids, row, ts=np.full(len(ids), float(t)))
        pscores = tails(sp, pcal)
        active &= sp.seen >= 12
        p = np.where(active, 2.0 * np.minimum(1.0 - scores, 1.0 - pscores), 1.0 - scores)
        use_periodic = active & (pscores > scores)
        out.append(np.where(ready, 1.0 - np.minimum(p, 1.0), np.nan))
        speakers.append(np.where(ready, use_periodic.astype(np.int64), -1))
    return out, speakers


def old_metric_scorer(x: np.ndarray, direction: Direction) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """MetricScorer._step's arithmetic before the judge (level + periodic, calibrated)."""
    level, periodic = members()
    cal, pcal = TailCalibrator(min_history=50, k=5), TailCalibrator(min_history=50, k=5)
    ids = np.arange(x.shape[1])

    def pvalue(z: np.ndarray, dof: np.ndarray, ready: np.ndarray, c: TailCalibrator) -> np.ndarray:
        p = np.clip(1.0 - tail_score(z, direction, dof), 1e-300, 1.0)
        if ready.any():
            p[ready] = c.calibrate(ids[ready], p[ready])
        return np.where(ready, p, 1.0)

    out, speakers = [], []
    for t, row in enumerate(x):
        s = level.score_learn(ids, row)
        ready = s.seen >= 12
        p = pvalue(s.z, s.dof, ready, cal)
        active = periodic.explains(ids)
        sp = periodic.score_learn(ids, row, ts=np.full(len(ids), float(t)))
        pp = pvalue(sp.z, sp.dof, sp.seen >= 12, pcal)
        active &= sp.seen >= 12
        use = active & (pp < p)
        p = combine_pvalues([p, pp], active=[np.ones(len(p), dtype=bool), active])
        out.append(np.where(ready, 1.0 - p, np.nan))
        speakers.append(np.where(ready, use.astype(np.int64), -1))
    return out, speakers


def run(judge: Judge, x: np.ndarray, direction: Any = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    ids = np.arange(x.shape[1])
    out, speakers = [], []
    for t, row in enumerate(x):
        v = judge.score_learn(ids, row, ts=np.full(len(ids), float(t)), direction=direction)
        out.append(np.where(v.ready, v.score, np.nan))
        speakers.append(np.where(v.ready, v.speaker, -1))
    return out, speakers


def test_score_arithmetic_is_the_window_scorers_from_before_the_judge() -> None:
    x = stream(12, 6, seed=1)
    dirs = np.array(["up", "down", "both", "up", "both", "down"])
    want = old_window_scorer(x, dirs)
    got = run(Judge(members(), calibration_history=50, calibration_k=5, combine_in="score"), x, dirs)
    np.testing.assert_array_equal(np.concatenate(got[0]), np.concatenate(want[0]))
    np.testing.assert_array_equal(np.concatenate(got[1]), np.concatenate(want[1]))
    assert (np.concatenate(got[1]) == 1).any(), "the periodic member never spoke"


@pytest.mark.parametrize("direction", ["up", "down", "both"])
def test_p_arithmetic_is_the_metric_scorers_from_before_the_judge(direction: Direction) -> None:
    x = stream(12, 6, seed=2)
    want = old_metric_scorer(x, direction)
    got = run(Judge(members(), direction=direction, calibration_history=50, calibration_k=5), x)
    np.testing.assert_array_equal(np.concatenate(got[0]), np.concatenate(want[0]))
    np.testing.assert_array_equal(np.concatenate(got[1]), np.concatenate(want[1]))


def test_the_two_arithmetics_agree_on_every_verdict_that_could_alarm() -> None:
    x = stream(12, 6, seed=3)
    a = np.concatenate(run(Judge(members(), calibration_history=50, calibration_k=5), x)[0])
    b = np.concatenate(run(Judge(members(), calibration_history=50, calibration_k=5,
                                 combine_in="score"), x)[0])
    high = np.nan_to_num(np.maximum(a, b)) > 0.5
    assert high.sum() > 50
    assert np.abs(a[high] - b[high]).max() <= 4 * np.finfo(float).eps


def test_ensemble_is_a_judge_whose_unready_members_count() -> None:
    x = stream(6, 3, seed=4)
    ens = Ensemble(members())
    judge = Judge(members(), unready_counts=True)
    ids = np.arange(3)
    for t, row in enumerate(x):
        ts = np.full(3, float(t))
        np.testing.assert_array_equal(ens.score_learn(ids, row, ts=ts), judge.score_learn(ids, row, ts=ts).p)


def test_per_row_direction_judges_each_row_by_its_own() -> None:
    judge = Judge([EwmaZScore(alpha=0.1)], calibrate=False)
    rng = np.random.default_rng(5)
    for _ in range(100):
        judge.score_learn(np.arange(3), rng.normal(10.0, 1.0, 3), direction=["up", "down", "both"])
    v = judge.score_learn(np.arange(3), np.full(3, 20.0), direction=np.array(["up", "down", "both"]))
    assert v.score[0] > 0.9999 and v.score[1] < 0.01 and v.score[2] > 0.9999


def test_a_gated_member_takes_part_only_where_it_explains_the_series() -> None:
    """On series without a daily shape the period never explains: the verdict is the level's
    alone, exactly, with no Bonferroni factor."""
    x = np.random.default_rng(6).normal(50.0, 5.0, (10 * DAY, 4))
    both, alone = Judge(members()), Judge(members()[:1])
    ids = np.arange(4)
    for t, row in enumerate(x):
        ts = np.full(4, float(t))
        v, w = both.score_learn(ids, row, ts=ts), alone.score_learn(ids, row, ts=ts)
        np.testing.assert_array_equal(v.p, w.p)
        assert (v.speaker == 0).all()


def test_a_member_still_warming_up_abstains_unless_unready_counts() -> None:
    """After a gap of a period the periodic member has no lag (unready) though it explains the
    series: it abstains by default, and doubles the level's p-value with `unready_counts`."""
    x = stream(10, 1, seed=7)[:, 0]
    judges = {c: Judge(members(), calibrate=False, unready_counts=c) for c in (False, True)}
    for t, v in enumerate(x):
        for j in judges.values():
            j.score_learn(np.array([0]), np.array([v]), ts=np.array([float(t)]))
    t = len(x) + 2 * DAY  # two periods later: yesterday's slot is empty
    got = {c: j.score_learn(np.array([0]), np.array([60.0]), ts=np.array([float(t)]))
           for c, j in judges.items()}
    assert judges[False].members[1].explains(np.array([0]))[0]
    assert got[False].scored[1].seen[0] == 0
    assert got[True].p[0] == pytest.approx(min(1.0, 2.0 * got[False].p[0]))
    assert (got[False].speaker == 0).all()


def test_ready_follows_the_first_member() -> None:
    judge = Judge([EwmaZScore(), RobustZScore()], warmup=5)
    ready = [bool(judge.score_learn(np.array([0]), np.array([1.0 + t % 2])).ready[0]) for t in range(7)]
    assert ready == [False] * 5 + [True] * 2


def test_refused_input_changes_nothing() -> None:
    judge = Judge(members())
    for t in range(30):
        judge.score_learn(np.array([0]), np.array([10.0 + t % 3]), ts=np.array([float(t)]))
    before = json.dumps(judge.state_dict())
    one = np.array([1.0])
    for bad in ({"ts": None}, {"ts": np.array([np.nan])}, {"ts": one, "direction": "sideways"},
                {"ts": one, "direction": ["up", "up"]}, {"ts": one, "floor": np.array([-1.0])}):
        with pytest.raises(ValueError):
            judge.score_learn(np.array([0]), np.array([10.0]), **bad)
    assert json.dumps(judge.state_dict()) == before


def test_a_checkpoint_of_other_members_is_refused_and_a_bad_one_leaves_the_judge_as_it_was() -> None:
    judge = Judge([EwmaZScore(), RobustZScore()])
    for t in range(30):
        judge.score_learn(np.arange(2), np.array([1.0, 2.0]) + t % 3)
    before = judge.state_dict()
    with pytest.raises(ValueError, match="another configuration"):
        judge.load_state(Judge([EwmaZScore(), SeasonalZScore()]).state_dict())
    broken = json.loads(json.dumps(before))
    broken["members"][0]["mean"] = [0.0] * len(broken["members"][0]["mean"])  # loads
    broken["members"][1]["n"] = "many"  # does not
    with pytest.raises(ValueError):
        judge.load_state(broken)
    assert judge.state_dict() == before


def test_refuses_a_configuration_it_cannot_honour() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        Judge([])
    with pytest.raises(ValueError, match="bonferroni only"):
        Judge([EwmaZScore()], method="fisher", combine_in="score")
    with pytest.raises(ValueError, match="unknown direction"):
        Judge([EwmaZScore()], direction="sideways")  # type: ignore[arg-type]
