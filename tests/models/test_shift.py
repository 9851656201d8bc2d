"""ShiftZScore: a lasting change of the recent mean alarms where no single value does; noise,
autocorrelated wander and a lone spike do not; checkpoints."""

from __future__ import annotations

import numpy as np
import pytest

from models import EwmaZScore, ShiftZScore
from tests.models.streams import roundtrip


def _run(m: ShiftZScore | EwmaZScore, values: np.ndarray) -> np.ndarray:
    return np.array([m.score_learn(np.array([0]), np.array([v])).z[0] for v in values])


def test_a_small_lasting_shift_alarms_where_the_point_baseline_does_not() -> None:
    rng = np.random.default_rng(1)
    calm, shifted = rng.normal(0.0, 1.0, 3000), rng.normal(2.0, 1.0, 60)
    shift, level = ShiftZScore(), EwmaZScore(alpha=0.001, clip_z=np.inf)
    _run(shift, calm)
    _run(level, calm)
    assert _run(shift, shifted).max() > 6.0  # the recent mean is ~8 of its spreads away
    assert np.abs(_run(level, shifted)).max() < 5.5  # no single value is far out


def test_noise_and_a_lone_spike_stay_quiet() -> None:
    rng = np.random.default_rng(2)
    m = ShiftZScore()
    z = _run(m, rng.normal(0.0, 1.0, 5000))
    assert np.abs(z[1000:]).max() < 5.0
    assert _run(m, np.array([8.0]))[0] < 4.0  # diluted: a spike is the point baseline's job


def test_the_spread_is_measured_so_an_autocorrelated_series_is_not_over_alarmed() -> None:
    rng = np.random.default_rng(3)
    x = np.zeros(6000)
    for t in range(1, len(x)):  # AR(1) with phi 0.95: its recent mean wanders far by nature
        x[t] = 0.95 * x[t - 1] + rng.normal()
    z = _run(ShiftZScore(), x)
    assert np.mean(np.abs(z[2000:]) > 4.0) < 0.002


def test_a_lasting_incident_does_not_widen_the_spread_that_judges_it() -> None:
    rng = np.random.default_rng(4)
    clipped, unclipped = ShiftZScore(alpha=0.01), ShiftZScore(alpha=0.01, clip_z=np.inf)
    calm, incident = rng.normal(0.0, 1.0, 2000), rng.normal(6.0, 1.0, 200)
    _run(clipped, calm)
    _run(unclipped, calm)
    assert _run(clipped, incident)[-1] > _run(unclipped, incident)[-1]


def test_checkpoint_gives_identical_scores() -> None:
    roundtrip(lambda: ShiftZScore(alpha=0.05),
              lambda m, t: m.score_learn(np.arange(3), np.random.default_rng(t).normal(0, 1, 3)).z)


def test_bad_parameters_are_refused() -> None:
    for kw in ({"alpha": 0.0}, {"short": 1.5}, {"clip_z": 0.0}, {"warmup": -1}):
        with pytest.raises(ValueError):
            ShiftZScore(**kw)  # type: ignore[arg-type]
