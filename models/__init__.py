"""Online anomaly detectors that learn and score numpy batches; usable alone from a notebook.

Floor 1 of Vigil: imports numpy, scipy, scikit-learn and river, never `detector` or `remediation`.
The protocols are in `models.base`, the one judge every scorer uses in `models.judge`, and the
check suite every detector passes in `models.checks`.

The two detectors built on scikit-learn and river are imported when first named
(`models.IsolationForestDetector`): those libraries hold about 150 MiB resident, and the
default metric detector uses neither, so a consumer that does not ask for them does not pay.

>>> import models
>>> models.IsolationForestDetector.__module__
'models.iforest'
"""

import importlib
from typing import TYPE_CHECKING, Any

from models.base import Scored, SeriesDetector, Stateful, VectorDetector, tail_score
from models.calibrate import TailCalibrator, soft_surprise, surprise
from models.counts import CountTail
from models.dedup import AlarmDedup
from models.default import default_episodes, default_judge, default_members
from models.ensemble import Ensemble
from models.episode import EpisodeRule
from models.ewma import EwmaZScore
from models.judge import Judge, Verdict, combine_pvalues
from models.likelihood import AnomalyLikelihood
from models.periodic import PeriodicZScore
from models.robust import RobustZScore
from models.seasonal import SeasonalZScore
from models.shift import ShiftZScore
from models.subsequence import SubsequenceKnn

if TYPE_CHECKING:
    from models.hstrees import HalfSpaceTreesDetector
    from models.iforest import IsolationForestDetector

_LAZY = {"HalfSpaceTreesDetector": "models.hstrees", "IsolationForestDetector": "models.iforest"}


def __getattr__(name: str) -> Any:
    """The detectors built on scikit-learn and river, imported when first asked for."""
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


__all__ = [
    "AlarmDedup",
    "AnomalyLikelihood",
    "CountTail",
    "Ensemble",
    "EpisodeRule",
    "EwmaZScore",
    "HalfSpaceTreesDetector",
    "IsolationForestDetector",
    "Judge",
    "PeriodicZScore",
    "RobustZScore",
    "Scored",
    "SeasonalZScore",
    "SeriesDetector",
    "ShiftZScore",
    "Stateful",
    "SubsequenceKnn",
    "TailCalibrator",
    "VectorDetector",
    "Verdict",
    "combine_pvalues",
    "default_episodes",
    "default_judge",
    "default_members",
    "soft_surprise",
    "surprise",
    "tail_score",
]
