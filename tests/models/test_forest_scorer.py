"""ForestScorer scores exactly as scikit-learn's IsolationForest.score_samples (negated)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from models.forest_scorer import ForestScorer


@pytest.mark.parametrize("max_features", [1.0, 0.5])
def test_forest_scorer_equals_scikit_learn(max_features: float) -> None:
    rng = np.random.default_rng(3)
    train = rng.standard_t(3, size=(2_000, 6))
    forest = IsolationForest(n_estimators=60, max_features=max_features, random_state=1).fit(train)
    rows = np.concatenate([rng.standard_t(3, size=(500, 6)), 20 * rng.normal(size=(20, 6))])
    np.testing.assert_allclose(ForestScorer(forest).score(rows), -forest.score_samples(rows),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="rows must be"):
        ForestScorer(forest).score(rows[:, :5])
