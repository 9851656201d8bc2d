"""Online anomaly detectors that learn and score numpy batches; usable alone from a notebook.

Floor 1 of Vigil: imports numpy (and later scikit-learn, river), never `detector` or `remediation`.
"""

from models.base import Scored, SeriesDetector, tail_score
from models.calibrate import TailCalibrator, surprise
from models.dedup import AlarmDedup
from models.ensemble import Ensemble, combine_pvalues
from models.ewma import EwmaZScore
from models.hstrees import HalfSpaceTreesDetector
from models.iforest import IsolationForestDetector
from models.likelihood import AnomalyLikelihood
from models.periodic import PeriodicZScore
from models.robust import RobustZScore
from models.seasonal import SeasonalZScore

__all__ = [
    "AlarmDedup",
    "AnomalyLikelihood",
    "Ensemble",
    "EwmaZScore",
    "HalfSpaceTreesDetector",
    "IsolationForestDetector",
    "PeriodicZScore",
    "RobustZScore",
    "Scored",
    "SeasonalZScore",
    "SeriesDetector",
    "TailCalibrator",
    "combine_pvalues",
    "surprise",
    "tail_score",
]
