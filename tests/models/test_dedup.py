"""AlarmDedup: first and escalating alarms of an episode pass, repeats are held; checkpoints and
bad input."""

from __future__ import annotations

import numpy as np
import pytest

from models import AlarmDedup
from tests.models.streams import roundtrip


def test_dedup_keeps_first_and_escalating_alarms_only() -> None:
    d = AlarmDedup(rest=5)
    got = [float(d.filter(np.array([0, 1]), np.array([s, 0.1]))[0]) for s in (0.6, 0.6, 0.7, 0.2, 0.6)]
    assert got == [0.6, 0.0, 0.7, 0.0, 0.0]


def test_checkpoint_gives_identical_scores() -> None:
    roundtrip(lambda: AlarmDedup(rest=7),
              lambda d, t: d.filter(np.arange(3), np.random.default_rng(t).uniform(0, 1, 3)))


def test_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="one length"):
        AlarmDedup().filter(np.array([0]), np.array([0.5, 0.5]))


def test_scores_are_finite_and_non_negative() -> None:
    # a slot never written is stored as -1 in a checkpoint: a negative score would not survive it
    for bad in (-0.5, np.nan, np.inf):
        with pytest.raises(ValueError):
            AlarmDedup().filter(np.array([0]), np.array([bad]))


def test_forget_lets_a_reused_id_alarm_at_once() -> None:
    d = AlarmDedup(rest=5)
    d.filter(np.array([3]), np.array([0.9]))
    assert d.filter(np.array([3]), np.array([0.8]))[0] == 0.0
    d.forget(np.array([3]))
    assert d.filter(np.array([3]), np.array([0.8]))[0] == 0.8
