"""check_vectors, through both vector detectors: non-finite values, wrong shapes and repeated
ids are refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from models import HalfSpaceTreesDetector, IsolationForestDetector


@pytest.mark.parametrize("make", [
    lambda: IsolationForestDetector(n_features=2), lambda: HalfSpaceTreesDetector(n_features=2)],
    ids=["iforest", "hstrees"])
def test_vector_detectors_refuse_bad_input(make: Callable[[], Any]) -> None:
    d = make()
    with pytest.raises(ValueError, match="finite"):
        d.score_learn(np.array([0]), np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="finite"):
        d.score_learn(np.array([0]), np.array([[np.inf, 1.0]]))
    with pytest.raises(ValueError, match="expected series"):
        d.score_learn(np.array([0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="unique"):
        d.score_learn(np.array([0, 0]), np.ones((2, 2)))
