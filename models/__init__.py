"""Online anomaly detectors that learn and score numpy batches; usable alone from a notebook.

Floor 1 of Vigil: imports numpy, scipy, scikit-learn and river, never `detector` or `remediation`.
The protocols are in `models.base`, the one judge every scorer uses in `models.judge`, and the
check suite every detector passes in `models.checks`.
"""

from models.base import Scored, SeriesDetector, Stateful, VectorDetector, tail_score
from models.calibrate import TailCalibrator, soft_surprise, surprise
from models.counts import CountTail
from models.dedup import AlarmDedup
from models.default import default_episodes, default_judge, default_members
from models.ensemble import Ensemble
from models.episode import EpisodeRule
from models.ewma import EwmaZScore
from models.hstrees import HalfSpaceTreesDetector
from models.iforest import IsolationForestDetector
from models.judge import Judge, Verdict, combine_pvalues
from models.likelihood import AnomalyLikelihood
from models.periodic import PeriodicZScore
from models.robust import RobustZScore
from models.seasonal import SeasonalZScore
from models.shift import ShiftZScore
from models.subsequence import SubsequenceKnn

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
