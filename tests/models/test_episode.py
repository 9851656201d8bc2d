"""EpisodeRule: one alarm per episode, counted in each series' own steps; the offline
`quiet_fires` (what `vigil eval nab` sweeps with) says exactly what the online rule does."""

from __future__ import annotations

import numpy as np
import pytest

from models import EpisodeRule
from models.episode import quiet_fires
from tests.models.streams import roundtrip


def test_a_burst_that_goes_on_and_escalates_pages_once() -> None:
    rule = EpisodeRule(quiet=5)
    scores = [0.9, 0.95, 0.99, 0.999, 0.2, 0.1, 0.9, 0.1]
    fired = [bool(rule.fire(np.array([0]), np.array([s]), 0.8)[0]) for s in scores]
    assert fired == [True, False, False, False, False, False, True, False]


def test_the_quiet_period_is_counted_in_each_series_own_steps() -> None:
    rule = EpisodeRule(quiet=2)
    assert rule.fire(np.array([0, 1]), np.array([0.9, 0.9]), 0.5).tolist() == [True, True]
    for _ in range(5):  # only series 0 advances
        rule.fire(np.array([0]), np.array([0.0]), 0.5)
    assert rule.fire(np.array([0, 1]), np.array([0.9, 0.9]), 0.5).tolist() == [True, False]


def test_online_and_offline_rules_agree() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.0, 1.0, (3000, 4)) ** 8  # sparse, bursty crossings
    for quiet in (0, 1, 7, 100):
        for tau in (0.2, 0.5, 0.9):
            rule = EpisodeRule(quiet=quiet)
            online = np.vstack([rule.fire(np.arange(4), scores[t], tau) for t in range(len(scores))])
            for i in range(4):
                assert np.flatnonzero(online[:, i]).tolist() == quiet_fires(scores[:, i], tau, quiet).tolist()


def test_forget_lets_a_reused_id_alarm_at_once() -> None:
    rule = EpisodeRule(quiet=50)
    rule.fire(np.array([3]), np.array([0.9]), 0.5)
    assert not rule.fire(np.array([3]), np.array([0.9]), 0.5)[0]
    rule.forget(np.array([3]))
    assert rule.fire(np.array([3]), np.array([0.9]), 0.5)[0]


def test_checkpoint_gives_identical_alarms() -> None:
    roundtrip(lambda: EpisodeRule(quiet=7),
              lambda r, t: r.fire(np.arange(3), np.random.default_rng(t).uniform(0, 1, 3), 0.7))


def test_a_corrupt_checkpoint_is_refused() -> None:
    state = EpisodeRule(quiet=3).state_dict()
    state.update(step=[2], last=[5])
    with pytest.raises(ValueError, match="before its 'step'"):
        EpisodeRule(quiet=3).load_state(state)
    with pytest.raises(ValueError, match=">= 0"):
        EpisodeRule(quiet=-1)
