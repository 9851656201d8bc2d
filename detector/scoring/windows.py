"""Judges closed windows: one baseline per (service, feature) series, scores in [0, 1], anomalies.

The statistics live in `models/` (the one `Judge`); this module picks the models, applies each
feature's direction and noise floor, keeps the (service, feature) -> series id index, and writes
the explanation a person reads.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from detector.config import ScoringConfig
from detector.events import Anomaly
from detector.windows.aggregate import FEATURES, WindowRows
from models import (
    CountTail,
    EwmaZScore,
    Judge,
    PeriodicZScore,
    RobustZScore,
    SeriesDetector,
    ShiftZScore,
    SubsequenceKnn,
    TailCalibrator,
)
from models.base import state_part
from models.default import SHIFT_SHORT, WEEK, buckets

_LABELS = {
    "rate": ("rate", "/s"),
    "error_ratio": ("error ratio", ""),
    "latency_p50": ("p50 latency", " ms"),
    "latency_p95": ("p95 latency", " ms"),
    "latency_p99": ("p99 latency", " ms"),
    "new_template_share": ("new-template share", ""),
    "rare_template_share": ("rare-template share", ""),
}


def make_model(cfg: ScoringConfig) -> SeriesDetector:
    if cfg.model == "robust":
        return RobustZScore(window=cfg.robust_window, warmup=cfg.warmup)
    return EwmaZScore(alpha=cfg.alpha, clip_z=cfg.clip_z, warmup=cfg.warmup)


def explain(feature: str, value: float, mean: float, std: float) -> str:
    """'error ratio 0.31 vs baseline 0.004 ± 0.002'.

    >>> explain("latency_p99", 840.0, 120.0, 30.0)
    'p99 latency 840 ms vs baseline 120 ± 30 ms'
    """
    label, unit = _LABELS.get(feature, (feature, ""))
    return f"{label} {format_value(value)}{unit} vs baseline {format_value(mean)} ± {format_value(std)}{unit}"


def format_value(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a >= 10:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.1f}"
    if a == 0:
        return "0"
    return f"{v:.2g}" if a < 0.01 else f"{v:.2f}"


class WindowScorer:
    """Scores every (service, feature) of each closed window, then learns it.

    Two judges per series: the level model (`make_model`) and, where it explains the series
    better than a flat level, `PeriodicZScore` (the value one period earlier). Each judge's tail
    is calibrated against its own history; the verdict is the Bonferroni minimum of the judges
    that take part, and the explanation names the baseline of the judge that spoke. All of it is
    one `models.Judge` (in its "score" arithmetic, which this scorer has always used).
    """

    def __init__(self, cfg: ScoringConfig) -> None:
        self.cfg = cfg
        self.judge = make_judge(cfg)
        self._series: dict[tuple[str, str], int] = {}
        rules = [cfg.features.get(f) for f in FEATURES]
        self._enabled = np.array([r is not None and r.enabled for r in rules])
        self._abs = np.array([0.0 if r is None else r.abs_floor for r in rules])
        self._rel = np.array([0.0 if r is None else r.rel_floor for r in rules])
        self._dirs = np.array([("up" if r is None else r.direction) for r in rules])

    @property
    def model(self) -> SeriesDetector:
        """The level model (the judge's first member)."""
        return self.judge.members[0]

    @property
    def periodic(self) -> PeriodicZScore | None:
        """The one-period-earlier model, when `scoring.periodic` is on."""
        m = self.judge.members[1] if len(self.judge.members) > 1 else None
        return m if isinstance(m, PeriodicZScore) and m.name == "periodic" else None

    @property
    def calibrator(self) -> TailCalibrator | None:
        return self.judge.calibrators[0] if self.judge.calibrators else None

    @property
    def periodic_calibrator(self) -> TailCalibrator | None:
        return self.judge.calibrators[1] if self.periodic is not None and self.judge.calibrators else None

    @property
    def series_count(self) -> int:
        return len(self._series)

    def state_nbytes(self) -> int:
        """Bytes of the baselines and of the (service, feature) -> series index."""
        index = sys.getsizeof(self._series) + sum(
            sys.getsizeof(k) + sys.getsizeof(k[0]) for k in self._series
        )
        return self.judge.nbytes() + index

    def score(self, rows: WindowRows) -> list[Anomaly]:
        """Anomalies of one closed window (any number of services)."""
        vals = rows.values
        r_idx, f_idx = np.nonzero(~np.isnan(vals) & self._enabled[None, :])
        if len(r_idx) == 0:
            return []
        ids = np.array(
            [self._series_id(rows.services[r], FEATURES[f]) for r, f in zip(r_idx, f_idx, strict=True)],
            dtype=np.int64,
        )
        x = vals[r_idx, f_idx]
        v = self.judge.score_learn(ids, x, self._abs[f_idx], self._rel[f_idx],
                                   ts=np.full(len(x), rows.start), direction=self._dirs[f_idx])
        names = [m.name for m in self.judge.members]
        hits = np.nonzero((v.score >= self.cfg.threshold) & v.ready)[0]
        out = []
        for k in hits:
            feat = FEATURES[f_idx[k]]
            mean, std = float(v.mean[k]), float(v.std[k])
            out.append(Anomaly(
                service=rows.services[r_idx[k]], feature=feat, window_start=rows.start,
                window_end=rows.end, value=float(x[k]), baseline_mean=mean, baseline_std=std,
                score=float(v.score[k]), model=names[v.speaker[k]],
                explanation=explain(feat, float(x[k]), mean, std),
                events=int(rows.counts[r_idx[k]]),
            ))
        return out

    def _others(self) -> dict[str, tuple[SeriesDetector, TailCalibrator | None]]:
        """The members beyond the level and periodic ones (`scoring.members`), by name, each
        with its calibrator."""
        first = 2 if self.periodic is not None else 1
        cals = self.judge.calibrators
        return {m.name: (m, cals[first + i] if cals else None)
                for i, m in enumerate(self.judge.members[first:])}

    def state_dict(self) -> dict[str, Any]:
        """The index and every model's state as plain JSON data (what a checkpoint keeps under
        "scorer"): the level and periodic parts as checkpoints have always held them, and the
        other members under "others"."""
        parts = {name: (part.state_dict() if (part := getattr(self, name)) is not None else None)
                 for name in ("periodic", "calibrator", "periodic_calibrator")}
        others = {name: {"member": m.state_dict(),
                         "calibrator": cal.state_dict() if cal is not None else None}
                  for name, (m, cal) in self._others().items()}
        return {"series": [[svc, feat, sid] for (svc, feat), sid in self._series.items()],
                "model": self.model.state_dict(), **parts, "others": others}

    def load_state(self, state: dict[str, Any]) -> None:
        """Load `state_dict` output written with the same scoring configuration.

        A state that cannot be trusted (ids not 0..n-1 each once, a (service, feature) twice,
        wrong types, a model of another configuration) raises ValueError and leaves the scorer
        as it was. An optional part the state lacks (null, or a member absent from "others", as
        in checkpoints written before those members existed) starts cold; a part this
        configuration does not use (periodic off) is ignored.
        """
        if not isinstance(state, dict):
            raise ValueError(f"a scorer state is an object, not {type(state).__name__}")
        series = _series_index(state_part(state, "series"))
        fresh = WindowScorer(self.cfg)
        fresh.model.load_state(state_part(state, "model"))
        for name in ("periodic", "calibrator", "periodic_calibrator"):
            part, st = getattr(fresh, name), state.get(name)
            if part is not None and st is not None:
                part.load_state(st)
        others = state.get("others") or {}
        if not isinstance(others, dict):
            raise ValueError(f"scorer 'others' is {type(others).__name__}, not an object")
        for name, (member, cal) in fresh._others().items():
            st = others.get(name)
            if st is None:
                continue
            if not isinstance(st, dict):
                raise ValueError(f"scorer member {name!r} is {type(st).__name__}, not an object")
            member.load_state(state_part(st, "member"))
            if cal is not None and st.get("calibrator") is not None:
                cal.load_state(st["calibrator"])
        self.judge, self._series = fresh.judge, series

    def _series_id(self, service: str, feature: str) -> int:
        key = (service, feature)
        sid = self._series.get(key)
        if sid is None:
            sid = self._series[key] = len(self._series)
        return sid


def make_judge(cfg: ScoringConfig) -> Judge:
    """The level model, with `cfg.periodic` the periodic one, and `cfg.members` (the default
    metric detector's others: a week earlier, a level shift, the shape), each calibrated.

    "score" arithmetic and unready members abstaining: this scorer's verdicts as they always
    were (see `Judge`).
    """
    members = [make_model(cfg)]
    slow = min(cfg.alpha, 0.01)  # the baselines a period or a shift is judged against
    if cfg.periodic:
        members.append(PeriodicZScore(period=cfg.period_seconds, buckets=cfg.period_buckets,
                                      alpha=slow, warmup=cfg.warmup))
    step = cfg.period_seconds / cfg.period_buckets
    for name in dict.fromkeys(cfg.members):  # the default detector's other members, in order
        if name == "weekly":
            members.append(PeriodicZScore(period=WEEK, buckets=buckets(WEEK, step, 336),
                                          alpha=slow, warmup=cfg.warmup, name="weekly"))
        elif name == "shift":
            members.append(ShiftZScore(alpha=slow, short=SHIFT_SHORT, warmup=cfg.warmup))
        elif name == "counts":
            members.append(CountTail(alpha=slow, warmup=cfg.warmup))
        else:
            members.append(SubsequenceKnn(warmup=cfg.warmup))
    return Judge(members, warmup=cfg.warmup, calibrate=cfg.calibrate,
                 calibration_history=cfg.calibration_history, calibration_k=cfg.calibration_k,
                 combine_in="score")


def _series_index(rows: Any) -> dict[tuple[str, str], int]:
    """[[service, feature, id], ...] as the index, checked: ids 0..n-1 each once, no
    (service, feature) twice.

    >>> _series_index([["api", "rate", 1], ["api", "error_ratio", 0]])
    {('api', 'rate'): 1, ('api', 'error_ratio'): 0}
    >>> _series_index([["api", "rate", 0], ["api", "rate", 1]])
    Traceback (most recent call last):
    ...
    ValueError: scorer series: ('api', 'rate') appears twice
    """
    if not isinstance(rows, list):
        raise ValueError(f"scorer series is {type(rows).__name__}, not a list")
    out: dict[tuple[str, str], int] = {}
    for row in rows:
        if not (isinstance(row, list | tuple) and len(row) == 3 and isinstance(row[0], str)
                and isinstance(row[1], str) and isinstance(row[2], int)
                and not isinstance(row[2], bool)):
            raise ValueError(f"scorer series entry {str(row)[:80]} is not [service, feature, id]")
        key = (row[0], row[1])
        if key in out:
            raise ValueError(f"scorer series: {key} appears twice")
        out[key] = row[2]
    ids = sorted(out.values())
    if ids != list(range(len(ids))):
        raise ValueError("scorer series ids are not 0..n-1, each once")
    return out
