"""Ensembles: several detectors' calibrated p-values combined into one."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy import stats

from models.base import BoolArray, Direction, FloatArray, IntArray, SeriesDetector, tail_score
from models.calibrate import TailCalibrator

Combine = Literal["bonferroni", "fisher"]


def combine_pvalues(ps: list[FloatArray], method: Combine = "bonferroni",
                    active: list[BoolArray] | None = None) -> FloatArray:
    """One p-value per row from k members' p-values (with `active`, only the members active in
    a row count there; a row with none is 1).

    "bonferroni" (min p times k) fires when any member is sure, and stays valid whatever the
    members' dependence; "fisher" (-2 sum log p, chi-square with 2k dof) rewards members that
    agree, but assumes independence, so correlated members over-alarm.

    >>> combine_pvalues([np.array([0.01, 0.5]), np.array([0.5, 0.5])]).tolist()
    [0.02, 1.0]
    >>> [round(float(p), 4) for p in combine_pvalues([np.array([0.01]), np.array([0.01])], "fisher")]
    [0.001]
    """
    if not ps:
        raise ValueError("no member p-values to combine")
    m = np.clip(np.vstack(ps), 1e-300, 1.0)
    on = np.ones(m.shape, dtype=bool) if active is None else np.vstack(active).astype(bool)
    if on.shape != m.shape:
        raise ValueError("active must match the p-values' shapes")
    m = np.where(on, m, 1.0)
    k = on.sum(axis=0)
    if method == "bonferroni":
        out: FloatArray = np.minimum(1.0, np.maximum(k, 1) * m.min(axis=0))
        return out
    if method == "fisher":
        sf = stats.chi2.sf(-2.0 * np.log(m).sum(axis=0), 2 * np.maximum(k, 1))
        return np.asarray(np.where(k > 0, sf, 1.0), dtype=np.float64)
    raise ValueError(f"unknown method {method!r}; choose from bonferroni, fisher")


class Ensemble:
    """Scalar-series detectors run side by side; each member's tail probability is calibrated
    against its own history (`TailCalibrator`), and the p-values are combined.

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

    def __init__(self, members: list[SeriesDetector], direction: Direction = "both",
                 method: Combine = "bonferroni", calibrate: bool = True, warmup: int = 12,
                 calibration_k: int = 25) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = members
        self.direction: Direction = direction
        self.method: Combine = method
        self.warmup = warmup
        self.calibrators = [TailCalibrator(k=calibration_k) for _ in members] if calibrate else []

    def score_learn(self, series: IntArray, values: FloatArray, floor: FloatArray | None = None,
                    rel_floor: FloatArray | None = None, ts: FloatArray | None = None) -> FloatArray:
        """Combined p-values (1 = nothing unusual) of one time step, then every member learns.

        Members that need times (`needs_ts`) get `ts`. A member with an `explains(series)` test
        (`PeriodicZScore`) takes part only where it passes: elsewhere it neither votes nor counts
        in the Bonferroni factor.
        """
        ids = np.asarray(series)
        ps, active = [], []
        for i, m in enumerate(self.members):
            on = np.ones(len(ids), dtype=bool)
            if hasattr(m, "explains"):
                on = m.explains(ids)  # judged before this value is learned
            if getattr(m, "needs_ts", False):
                if ts is None:
                    raise ValueError(f"ensemble member {m.name!r} needs ts= (epoch s)")
                s = m.score_learn(series, values, floor, rel_floor, ts=ts)  # type: ignore[call-arg]
            else:
                s = m.score_learn(series, values, floor, rel_floor)
            p = np.clip(1.0 - tail_score(s.z, self.direction, s.dof), 1e-300, 1.0)
            ready = s.seen >= self.warmup
            p = np.where(ready, p, 1.0)
            if self.calibrators and ready.any():
                p[ready] = self.calibrators[i].calibrate(ids[ready], p[ready])
            ps.append(p)
            active.append(on)
        return combine_pvalues(ps, self.method, active=active)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.name, "members": [m.state_dict() for m in self.members],
                "calibrators": [c.state_dict() for c in self.calibrators]}

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("model") != self.name or len(state["members"]) != len(self.members):
            raise ValueError("checkpoint does not match this ensemble's members")
        for m, st in zip(self.members, state["members"], strict=True):
            m.load_state(st)
        for c, st in zip(self.calibrators, state["calibrators"], strict=True):
            c.load_state(st)

    def nbytes(self) -> int:
        return sum(m.nbytes() for m in self.members) + sum(c.nbytes() for c in self.calibrators)
