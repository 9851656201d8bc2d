"""The one judge every scorer uses: members' z-scores to tail p-values by direction, calibrated
against each series' own history, combined over the members that take part in a row."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import special

from models.base import (
    DIRECTIONS,
    BoolArray,
    Direction,
    FloatArray,
    IntArray,
    Scored,
    SeriesDetector,
    Stateful,
    as_ids,
    as_step,
    as_times,
    check_params,
    check_state,
    state_part,
    tail_score,
)
from models.calibrate import TailCalibrator

Combine = Literal["bonferroni", "fisher"]
Arithmetic = Literal["p", "score"]
Directions = Direction | Sequence[str] | npt.NDArray[np.str_]

_EPS = 1e-300


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
    m = np.clip(np.vstack(ps), _EPS, 1.0)
    on = np.ones(m.shape, dtype=bool) if active is None else np.vstack(active).astype(bool)
    if on.shape != m.shape:
        raise ValueError("active must match the p-values' shapes")
    m = np.where(on, m, 1.0)
    k = on.sum(axis=0)
    if method == "bonferroni":
        out: FloatArray = np.minimum(1.0, np.maximum(k, 1) * m.min(axis=0))
        return out
    if method == "fisher":
        # chi2's survival function as scipy.stats computes it, without importing scipy.stats
        # (63 MiB resident)
        sf = special.chdtrc(2 * np.maximum(k, 1), -2.0 * np.log(m).sum(axis=0))
        return np.asarray(np.where(k > 0, sf, 1.0), dtype=np.float64)
    raise ValueError(f"unknown method {method!r}; choose from bonferroni, fisher")


@dataclass(slots=True)
class Verdict:
    """What a `Judge` says of each row of one time step."""

    p: FloatArray  # combined p-value (1 = nothing unusual)
    score: FloatArray  # 1 - p, computed as the judge's `combine_in` says: compare it to a threshold
    ready: BoolArray  # the first member (the level model) is past warm-up: the row may alarm
    speaker: IntArray  # index of the member that spoke: the smallest p among the active ones
    mean: FloatArray  # the speaker's baseline centre, for the explanation
    std: FloatArray  # the speaker's baseline spread
    scored: list[Scored]  # every member's own answer, in member order


class Judge:
    """Scores each row with every member, maps z to a tail probability by direction (Student t
    with the member's `dof`), calibrates each member's tail against the series' own history
    (`TailCalibrator`, fed only once the series is past `warmup`), and combines the p-values of
    the members that take part in the row.

    A member takes part where it `explains` the series (`PeriodicZScore` only where its period
    beats a flat level) and, unless `unready_counts`, where it is past warm-up. The row is
    `ready` when the first member (the level model) is past warm-up; the member that spoke is
    the one with the smallest p among those taking part (the first on ties), and its baseline is
    the one an explanation shows.

    Good at: one decision rule for every caller (windows of log features, Prometheus series,
    NAB files), so a change of the rule changes them all; members that differ in kind (a level,
    a period, a profile) with no weights to tune: Bonferroni fires when any member is sure and
    stays valid whatever their dependence. Bad at: cost (the sum of its members plus a
    calibrator each: 602 bytes a series a member), and it is only as early as its fastest member.

    Two options keep each caller's arithmetic as it was before the judge existed, bit for bit,
    so that moving to the judge changed no incident:

    - `combine_in="score"` (`WindowScorer`): each member's tail is kept as a score s = 1 - p
      (calibrated as 1 - cal(1 - s)) and Bonferroni is k * min(1 - s) over the members taking
      part, the verdict 1 - min(that, 1). Going through 1 - (1 - p) rounds a small p to a
      multiple of 2^-53 (1.1e-16), so p-values below that become 0 and tie (the first member
      then speaks), and verdicts move by an ulp, enough to flip one at a threshold now and then.
      "p" (the default: `MetricScorer`, `Ensemble`) keeps p-values as they are (floored at
      1e-300) and combines them with `combine_pvalues`. Both agree on every verdict above 0.5
      to a few ulps; only "p" supports "fisher".
    - `unready_counts=True` (`Ensemble`, whose figures `vigil eval nab` reports): a member still
      warming up takes part with p = 1, so it counts in the Bonferroni factor k. With the
      default (the detector's scorers) it abstains until it is past warm-up.

    Either way a member past warm-up but not calibrated yet passes its model p through
    (`TailCalibrator.min_history`), and a member still warming up has p = 1.

    Parameters
    ----------
    members: scalar-series detectors (`SeriesDetector`); the first is the level model.
    direction: which deviations are anomalous ("up", "down", "both"), unless a call says per row.
    method: "bonferroni" or "fisher" (see `combine_pvalues`).
    calibrate: calibrate each member's tail against the series' own history.
    warmup: values a series needs before a member's verdict counts.
    calibration_history, calibration_k: `TailCalibrator`'s `min_history` and `k`.
    unready_counts, combine_in: see above.

    Examples
    --------
    >>> import numpy as np
    >>> from models import EwmaZScore, PeriodicZScore
    >>> judge = Judge([EwmaZScore(alpha=0.05), PeriodicZScore(period=24.0, buckets=24)])
    >>> rng = np.random.default_rng(0)
    >>> for t in range(408):  # 17 "days" of two series; series 1 has a sharp daily shape
    ...     x = np.array([rng.normal(50.0, 1.0), (100.0 if t % 24 < 12 else 10.0) + rng.normal()])
    ...     v = judge.score_learn(np.array([0, 1]), x, ts=np.full(2, float(t)))
    >>> judge.members[1].explains(np.array([0, 1])).tolist()  # the period helps series 1 only
    [False, True]
    >>> v = judge.score_learn(np.array([0, 1]), np.array([50.0, 10.0]), ts=np.full(2, 408.0))
    >>> v.ready.tolist(), [judge.members[i].name for i in v.speaker]
    ([True, True], ['ewma', 'periodic'])
    >>> bool(v.score[0] < 0.99), bool(v.score[1] > 0.99999)  # 10 at the busy hour: news
    (True, True)
    >>> round(float(v.mean[1]))  # the periodic baseline: yesterday at this time
    101
    """

    name = "judge"

    def __init__(self, members: Sequence[SeriesDetector], direction: Direction = "both",
                 method: Combine = "bonferroni", calibrate: bool = True, warmup: int = 12,
                 calibration_history: int = 100, calibration_k: int = 25,
                 unready_counts: bool = False, combine_in: Arithmetic = "p") -> None:
        if not members:
            raise ValueError("a judge needs at least one member")
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; choose from up, down, both")
        if method not in ("bonferroni", "fisher"):
            raise ValueError(f"unknown method {method!r}; choose from bonferroni, fisher")
        if combine_in not in ("p", "score") or (combine_in == "score" and method != "bonferroni"):
            raise ValueError("combine_in is 'p' or 'score'; 'score' combines with bonferroni only")
        self.members = list(members)
        self.direction: Direction = direction
        self.method: Combine = method
        self.calibrate = calibrate
        self.warmup = warmup
        self.calibration_history = calibration_history
        self.calibration_k = calibration_k
        self.unready_counts = unready_counts
        self.combine_in: Arithmetic = combine_in
        self.calibrators = ([TailCalibrator(min_history=calibration_history, k=calibration_k)
                             for _ in self.members] if calibrate else [])

    @property
    def needs_ts(self) -> bool:
        """True when a member reads the time of each value: `score_learn` then needs `ts`."""
        return any(m.needs_ts for m in self.members)

    def score_learn(self, series: IntArray, values: FloatArray, floor: FloatArray | None = None,
                    rel_floor: FloatArray | None = None, ts: FloatArray | None = None,
                    direction: Directions | None = None) -> Verdict:
        """The verdict on one time step, then every member (and calibrator) learns it.

        `direction` overrides the judge's for this call: one for all rows, or one per row (a
        window's features differ: error ratio "up", rate "both"). Input is checked before any
        member learns, so a refused call changes nothing.
        """
        ids, x = as_step(series, values, floor, rel_floor)
        if self.needs_ts:
            first = next(m for m in self.members if m.needs_ts)
            if ts is None:
                raise ValueError(f"member {first.name!r} needs ts= (epoch s), the time of each value")
            as_times(ts, x, type(first).__name__)
        dirs = self._directions(direction, len(ids))
        scored, ps, active = [], [], []
        for i, member in enumerate(self.members):
            gate = member.explains(ids)  # judged before this value is learned
            s = member.score_learn(ids, x, floor, rel_floor, ts=ts)
            ready = s.seen >= self.warmup
            cal = self.calibrators[i] if self.calibrators else None
            ps.append(self._pvalue(s, dirs, ids, ready, cal))
            active.append(gate & (ready | self.unready_counts))
            scored.append(s)
        if self.combine_in == "score":
            score, p, speaker = _combine_scores(ps, active)
        else:
            p = combine_pvalues(ps, self.method, active=active)
            score = 1.0 - p
            speaker = np.argmin(np.where(np.vstack(active), np.vstack(ps), np.inf), axis=0)
        rows = np.arange(len(ids))
        return Verdict(p=p, score=score, ready=scored[0].seen >= self.warmup,
                       speaker=speaker.astype(np.int64),
                       mean=np.vstack([s.mean for s in scored])[speaker, rows],
                       std=np.vstack([s.std for s in scored])[speaker, rows], scored=scored)

    def _pvalue(self, s: Scored, dirs: Direction | npt.NDArray[np.str_], ids: IntArray,
                ready: BoolArray, cal: TailCalibrator | None) -> FloatArray:
        """One member's p-values (or, with combine_in "score", its scores 1 - p) for the rows."""
        tail = _tails(s, dirs)
        if self.combine_in == "score":
            if cal is not None and ready.any():
                tail[ready] = 1.0 - cal.calibrate(ids[ready], 1.0 - tail[ready])
            return np.where(ready, tail, 0.0)
        p = np.where(ready, np.clip(1.0 - tail, _EPS, 1.0), 1.0)
        if cal is not None and ready.any():
            p[ready] = cal.calibrate(ids[ready], p[ready])
        return p

    def _directions(self, direction: Directions | None, n: int) -> Direction | npt.NDArray[np.str_]:
        if direction is None:
            return self.direction
        if isinstance(direction, str):
            if direction not in DIRECTIONS:
                raise ValueError(f"unknown direction {direction!r}; choose from up, down, both")
            return direction
        d = np.asarray(direction, dtype=np.str_)
        if d.shape != (n,) or not np.isin(d, DIRECTIONS).all():
            raise ValueError("direction per row must be one of up, down, both for each value")
        return d

    def forget(self, series: IntArray) -> None:
        """Start these series afresh in every member and calibrator (their ids may be reused)."""
        ids = as_ids(series)
        parts: list[Stateful] = [*self.members, *self.calibrators]
        for part in parts:
            part.forget(ids)

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against), members' names
        included (each member checks its own parameters)."""
        return {"members": [m.name for m in self.members], "direction": self.direction,
                "method": self.method, "calibrate": self.calibrate, "warmup": self.warmup,
                "calibration_history": self.calibration_history,
                "calibration_k": self.calibration_k, "unready_counts": self.unready_counts,
                "combine_in": self.combine_in}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.name, "params": self.params(),
                "members": [m.state_dict() for m in self.members],
                "calibrators": [c.state_dict() for c in self.calibrators]}

    def load_state(self, state: dict[str, Any]) -> None:
        """Load every member's and calibrator's state; a refused state leaves the judge as it was."""
        check_params(check_state(state, self.name), self.params())
        members, calibrators = state_part(state, "members"), state_part(state, "calibrators")
        parts: list[Stateful] = [*self.members, *self.calibrators]
        if not isinstance(members, list) or not isinstance(calibrators, list) or (
                len(members), len(calibrators)) != (len(self.members), len(self.calibrators)):
            raise ValueError(f"checkpoint does not hold this judge's {len(self.members)} members "
                             f"and {len(self.calibrators)} calibrators")
        for part, st in zip(copy.deepcopy(parts), [*members, *calibrators], strict=True):
            part.load_state(st)  # on copies first: all or nothing
        for part, st in zip(parts, [*members, *calibrators], strict=True):
            part.load_state(st)

    def nbytes(self) -> int:
        return sum(m.nbytes() for m in self.members) + sum(c.nbytes() for c in self.calibrators)


def _tails(s: Scored, dirs: Direction | npt.NDArray[np.str_]) -> FloatArray:
    """tail_score of each row by its direction (one for all rows, or one per row)."""
    if isinstance(dirs, str):
        return tail_score(s.z, dirs, s.dof)
    out = np.empty(len(s.z))
    for d in DIRECTIONS:
        m = dirs == d
        if m.any():
            out[m] = tail_score(s.z[m], d, s.dof[m])
    return out


def _combine_scores(scores: list[FloatArray], active: list[BoolArray]
                    ) -> tuple[FloatArray, FloatArray, IntArray]:
    """Bonferroni on scores s = 1 - p: (1 - min(k * min(1 - s), 1), that p, speaker)."""
    s, on = np.vstack(scores), np.vstack(active)
    k = on.sum(axis=0)
    least = np.where(on, 1.0 - s, np.inf).min(axis=0)
    p = np.minimum(np.where(k > 0, k * np.where(k > 0, least, 1.0), 1.0), 1.0)
    speaker = np.argmax(np.where(on, s, -np.inf), axis=0)
    return 1.0 - p, p, speaker
