"""The default metric detector: its members, its memory and cost bounds, and that every member
says what it saw."""

from __future__ import annotations

import numpy as np

from models import default_judge, default_members
from models.default import MEMBERS, WEEK

_KIB = 1024


def test_the_members_are_the_documented_ones() -> None:
    assert tuple(m.name for m in default_members()) == MEMBERS


def test_state_per_series_stays_within_64_kib_however_long_the_series() -> None:
    judge = default_judge(3600.0)  # hourly: the weekly member's lag and calibrator are in use
    rng = np.random.default_rng(0)
    ids = np.arange(50)
    sizes = []
    for t in range(900):
        judge.score_learn(ids, rng.normal(10.0, 1.0, len(ids)), ts=np.full(len(ids), 3600.0 * t))
        if t in (400, 899):
            sizes.append(judge.nbytes() / len(ids))
    assert sizes[0] == sizes[1]  # bounded: nothing grows with the series' length
    assert sizes[1] <= 64 * _KIB


def test_a_weekly_shape_is_judged_against_last_week_once_two_weeks_are_seen() -> None:
    step = 3600.0
    judge = default_judge(step)
    weekly = next(m for m in judge.members if m.name == "weekly")
    rng = np.random.default_rng(1)
    # weekdays busy by day, weekends flat: the daily lag is wrong on Mondays and Saturdays
    def value(t: int) -> float:
        hour, day = t % 24, (t // 24) % 7
        return (100.0 if day < 5 and 8 <= hour < 18 else 10.0) + rng.normal()
    for t in range(int(3 * WEEK / step)):
        judge.score_learn(np.array([0]), np.array([value(t)]), ts=np.array([step * t]))
    assert weekly.explains(np.array([0]))[0]
    t = int(3 * WEEK / step) + 12  # a Monday at noon that stays flat, like a Sunday
    v = judge.score_learn(np.array([0]), np.array([10.0]), ts=np.array([step * t]))
    assert v.p[0] < 1e-6


def test_the_verdict_names_the_member_that_saw_it() -> None:
    judge = default_judge(60.0)
    rng = np.random.default_rng(2)
    for t in range(400):
        judge.score_learn(np.array([0]), rng.normal(5.0, 1.0, 1), ts=np.array([60.0 * t]))
    v = judge.score_learn(np.array([0]), np.array([30.0]), ts=np.array([60.0 * 400]))
    assert judge.members[int(v.speaker[0])].name == "ewma"
    assert len(v.scored) == len(MEMBERS)  # every member's own answer is there to show
