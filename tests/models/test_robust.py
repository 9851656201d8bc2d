"""RobustZScore: checkpoints are strict JSON (a ring not yet full is restored as such, and the
Infinity markers of older checkpoints still load), and `forget` starts a series afresh."""

from __future__ import annotations

import json

import numpy as np

from models import RobustZScore


def feed(m: RobustZScore, values: list[float], series: int = 0) -> list[float]:
    return [float(m.score_learn(np.array([series]), np.array([v]), floor=np.array([0.1])).z[0])
            for v in values]


def test_a_ring_not_yet_full_round_trips_through_strict_json() -> None:
    m = RobustZScore(window=8)
    feed(m, [10.0, 12.0, 11.0])
    clone = RobustZScore(window=8)
    clone.load_state(json.loads(json.dumps(m.state_dict(), allow_nan=False)))
    # the median of the three values seen, not of three values and five empty slots read as 0
    assert feed(clone, [11.0, 30.0]) == feed(m, [11.0, 30.0])
    assert float(clone.score_learn(np.array([0]), np.array([11.0])).mean[0]) == 11.0


def test_an_older_checkpoint_with_infinity_for_empty_slots_still_loads() -> None:
    m = RobustZScore(window=8)
    feed(m, [10.0, 12.0, 11.0])
    old = m.state_dict()
    old["buf"] = [[v if i < 3 else float("inf") for i, v in enumerate(row)] for row in old["buf"]]
    del old["params"]  # written before parameters were stored
    clone = RobustZScore(window=8)
    clone.load_state(old)
    assert feed(clone, [11.0, 30.0]) == feed(m, [11.0, 30.0])


def test_forget_starts_a_series_afresh() -> None:
    m = RobustZScore(window=8)
    feed(m, [100.0] * 20, series=1)
    m.forget(np.array([1]))
    s = m.score_learn(np.array([1]), np.array([5.0]))
    assert s.seen[0] == 0 and s.z[0] == 0.0
