"""Online anomaly detectors that learn and score numpy batches; usable alone from a notebook.

Floor 1 of Vigil: imports numpy (and later scikit-learn, river), never `detector` or `remediation`.
"""

from models.base import Scored, SeriesDetector, tail_score
from models.ewma import EwmaZScore
from models.likelihood import AnomalyLikelihood
from models.robust import RobustZScore
from models.seasonal import SeasonalZScore

__all__ = [
    "AnomalyLikelihood",
    "EwmaZScore",
    "RobustZScore",
    "Scored",
    "SeasonalZScore",
    "SeriesDetector",
    "tail_score",
]
