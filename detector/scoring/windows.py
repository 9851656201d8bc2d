"""Judges closed windows: one baseline per (service, feature) series, scores in [0, 1], anomalies.

The statistics live in `models/`; this module picks the model, applies each feature's direction
and noise floor, and writes the explanation a person reads.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from detector.config import ScoringConfig
from detector.events import Anomaly
from detector.windows.aggregate import FEATURES, WindowRows
from models import (
    EwmaZScore,
    PeriodicZScore,
    RobustZScore,
    Scored,
    SeriesDetector,
    TailCalibrator,
    tail_score,
)

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
    that take part, and the explanation names the baseline of the judge that spoke.
    """

    def __init__(self, cfg: ScoringConfig) -> None:
        self.cfg = cfg
        self.model = make_model(cfg)
        self.periodic = (PeriodicZScore(period=cfg.period_seconds, buckets=cfg.period_buckets,
                                        alpha=min(cfg.alpha, 0.01), warmup=cfg.warmup)
                         if cfg.periodic else None)
        self.calibrator = self._calibrator()
        self.periodic_calibrator = self._calibrator() if self.periodic is not None else None
        self._series: dict[tuple[str, str], int] = {}
        rules = [cfg.features.get(f) for f in FEATURES]
        self._enabled = np.array([r is not None and r.enabled for r in rules])
        self._abs = np.array([0.0 if r is None else r.abs_floor for r in rules])
        self._rel = np.array([0.0 if r is None else r.rel_floor for r in rules])
        dirs = np.array([("up" if r is None else r.direction) for r in rules])
        self._up, self._down, self._both = dirs == "up", dirs == "down", dirs == "both"

    def _calibrator(self) -> TailCalibrator | None:
        cfg = self.cfg
        return (TailCalibrator(min_history=cfg.calibration_history, k=cfg.calibration_k)
                if cfg.calibrate else None)

    @property
    def series_count(self) -> int:
        return len(self._series)

    def state_nbytes(self) -> int:
        """Bytes of the baselines and of the (service, feature) -> series index."""
        index = sys.getsizeof(self._series) + sum(
            sys.getsizeof(k) + sys.getsizeof(k[0]) for k in self._series
        )
        parts = [self.model, self.periodic, self.calibrator, self.periodic_calibrator]
        return sum(p.nbytes() for p in parts if p is not None) + index

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
        floor, rel = self._abs[f_idx], self._rel[f_idx]
        s = self.model.score_learn(ids, x, floor, rel)
        scores = self._tails(s, f_idx, ids, self.calibrator)
        ready = s.seen >= self.cfg.warmup
        use_periodic = np.zeros(len(x), dtype=bool)
        if self.periodic is not None:
            active = self.periodic.explains(ids)  # judged before this window is learned
            sp = self.periodic.score_learn(ids, x, floor, rel, ts=np.full(len(x), rows.start))
            pscores = self._tails(sp, f_idx, ids, self.periodic_calibrator)
            active &= sp.seen >= self.cfg.warmup
            # Bonferroni over the judges taking part: p = k * min p.
            p = np.where(active, 2.0 * np.minimum(1.0 - scores, 1.0 - pscores), 1.0 - scores)
            use_periodic = active & (pscores > scores)
            s = Scored(z=np.where(use_periodic, sp.z, s.z), mean=np.where(use_periodic, sp.mean, s.mean),
                       std=np.where(use_periodic, sp.std, s.std), seen=s.seen, dof=s.dof)
            scores = 1.0 - np.minimum(p, 1.0)
        hits = np.nonzero((scores >= self.cfg.threshold) & ready)[0]
        out = []
        for k in hits:
            feat = FEATURES[f_idx[k]]
            out.append(Anomaly(
                service=rows.services[r_idx[k]], feature=feat, window_start=rows.start,
                window_end=rows.end, value=float(x[k]), baseline_mean=float(s.mean[k]),
                baseline_std=float(s.std[k]), score=float(scores[k]),
                model="periodic" if use_periodic[k] else self.model.name,
                explanation=explain(feat, float(x[k]), float(s.mean[k]), float(s.std[k])),
                events=int(rows.counts[r_idx[k]]),
            ))
        return out

    def _tails(self, s: Scored, f_idx: np.ndarray, ids: np.ndarray,
               calibrator: TailCalibrator | None) -> np.ndarray:
        """1 - p per value: each feature's direction, then the series' own calibration (learned
        after warm-up only, so the start-up transient does not count as history)."""
        scores = np.empty(len(s.z))
        for direction, m in (("up", self._up[f_idx]), ("down", self._down[f_idx]),
                             ("both", self._both[f_idx])):
            if m.any():
                scores[m] = tail_score(s.z[m], direction, s.dof[m])  # type: ignore[arg-type]
        ready = s.seen >= self.cfg.warmup
        if calibrator is not None and ready.any():
            scores[ready] = 1.0 - calibrator.calibrate(ids[ready], 1.0 - scores[ready])
        return scores

    def _series_id(self, service: str, feature: str) -> int:
        key = (service, feature)
        sid = self._series.get(key)
        if sid is None:
            sid = self._series[key] = len(self._series)
        return sid
