"""Ensembles: several detectors' calibrated p-values combined into one (a `Judge` that answers
p-values)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.base import Direction, FloatArray, IntArray, SeriesDetector, check_state
from models.calibrate import TailCalibrator
from models.judge import Combine, Judge, combine_pvalues

__all__ = ["Combine", "Ensemble", "combine_pvalues"]


class Ensemble:
    """Scalar-series detectors run side by side; each member's tail probability is calibrated
    against its own history (`TailCalibrator`), and the p-values are combined: a `Judge` whose
    answer is the combined p-value alone.

    A member still warming up takes part with p = 1 (it counts in the Bonferroni factor), as it
    always has here; the detector's scorers use a `Judge` whose unready members abstain.

    Good at: series whose anomalies differ in kind (a spike for an EWMA, a seasonal break for a
    seasonal baseline), with no weights to tune. Bad at: cost (the sum of its members), and it
    is only as early as its fastest member.

    Examples
    --------
    >>> import numpy as np
    >>> from models import EwmaZScore, RobustZScore
    >>> ens = Ensemble([EwmaZScore(alpha=0.05), RobustZScore(window=64)])
    >>> rng = np.random.default_rng(2)
    >>> for v in rng.normal(0.0, 1.0, 300):
    ...     _ = ens.score_learn(np.array([0]), np.array([v]))
    >>> p = ens.score_learn(np.array([0]), np.array([9.0]))
    >>> bool(p[0] < 1e-4)
    True
    """

    name = "ensemble"

    def __init__(self, members: Sequence[SeriesDetector], direction: Direction = "both",
                 method: Combine = "bonferroni", calibrate: bool = True, warmup: int = 12,
                 calibration_k: int = 25) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.judge = Judge(members, direction=direction, method=method, calibrate=calibrate,
                           warmup=warmup, calibration_k=calibration_k, unready_counts=True)

    @property
    def members(self) -> list[SeriesDetector]:
        return self.judge.members

    @property
    def calibrators(self) -> list[TailCalibrator]:
        return self.judge.calibrators

    @property
    def needs_ts(self) -> bool:
        return self.judge.needs_ts

    def score_learn(self, series: IntArray, values: FloatArray, floor: FloatArray | None = None,
                    rel_floor: FloatArray | None = None, ts: FloatArray | None = None) -> FloatArray:
        """Combined p-values (1 = nothing unusual) of one time step, then every member learns.

        Members that need times (`needs_ts`) get `ts`. A member with a gate (`explains`, as
        `PeriodicZScore`) takes part only where it passes: elsewhere it neither votes nor counts
        in the Bonferroni factor.
        """
        return self.judge.score_learn(series, values, floor, rel_floor, ts=ts).p

    def forget(self, series: IntArray) -> None:
        """Start these series afresh in every member and calibrator (their ids may be reused)."""
        self.judge.forget(series)

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against)."""
        return self.judge.params()

    def state_dict(self) -> dict[str, Any]:
        return {**self.judge.state_dict(), "model": self.name}

    def load_state(self, state: dict[str, Any]) -> None:
        check_state(state, self.name)
        self.judge.load_state({**state, "model": self.judge.name})

    def nbytes(self) -> int:
        return self.judge.nbytes()
