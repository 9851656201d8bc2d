"""The detector's scorers on the models' judge: WindowScorer names the periodic baseline of a
contextual break.

These test `detector/scoring/` (floor 3) from the models' side; they belong in
tests/detector/scoring/ once that directory exists."""

from __future__ import annotations

import numpy as np

from detector.config import ScoringConfig
from detector.scoring.windows import WindowScorer
from detector.windows.aggregate import FEATURES, WindowRows
from tests.models.test_periodic import DAY, STEP, daily


def test_window_scorer_names_the_periodic_baseline_for_a_contextual_break() -> None:
    """Pipeline level: a service busy by day that stays quiet one morning is an anomaly whose
    explanation compares it with the same time yesterday."""
    scorer = WindowScorer(ScoringConfig(alpha=0.001, clip_z=1e9))
    x = daily(6, seed=6)
    day5 = 5 * DAY
    x[day5 + 96:] = 20.0
    rate = FEATURES.index("rate")
    found = []
    for t, v in enumerate(x[: day5 + 100]):
        vals = np.full((1, len(FEATURES)), np.nan)
        vals[0, rate] = v
        rows = WindowRows(start=STEP * t, end=STEP * (t + 1), services=["api"],
                          counts=np.array([100]), values=vals)
        found += [(t, a) for a in scorer.score(rows)]
    # The very first busy morning is news to any baseline; after that, only the quiet morning.
    late = [(t, a) for t, a in found if t >= DAY]
    assert late, "the quiet morning was not flagged"
    assert all(t >= day5 + 96 for t, _ in late), [t for t, _ in late]
    assert late[0][1].model == "periodic" and late[0][1].feature == "rate"
    assert late[0][1].baseline_mean > 90.0  # yesterday's busy level, not the flat mean
