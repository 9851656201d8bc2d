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
from detector.features import FEATURES, WindowRows
from models import EwmaZScore, RobustZScore, SeriesDetector, TailCalibrator, tail_score

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
    return f"{label} {_fmt(value)}{unit} vs baseline {_fmt(mean)} ± {_fmt(std)}{unit}"


def _fmt(v: float) -> str:
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
    """Scores every (service, feature) of each closed window, then learns it."""

    def __init__(self, cfg: ScoringConfig) -> None:
        self.cfg = cfg
        self.model = make_model(cfg)
        self.calibrator = (TailCalibrator(min_history=cfg.calibration_history, k=cfg.calibration_k)
                           if cfg.calibrate else None)
        self._series: dict[tuple[str, str], int] = {}
        rules = [cfg.features.get(f) for f in FEATURES]
        self._enabled = np.array([r is not None and r.enabled for r in rules])
        self._abs = np.array([0.0 if r is None else r.abs_floor for r in rules])
        self._rel = np.array([0.0 if r is None else r.rel_floor for r in rules])
        dirs = np.array([("up" if r is None else r.direction) for r in rules])
        self._up, self._down, self._both = dirs == "up", dirs == "down", dirs == "both"

    @property
    def series_count(self) -> int:
        return len(self._series)

    def state_nbytes(self) -> int:
        """Bytes of the baselines and of the (service, feature) -> series index."""
        index = sys.getsizeof(self._series) + sum(
            sys.getsizeof(k) + sys.getsizeof(k[0]) for k in self._series
        )
        cal = self.calibrator.nbytes() if self.calibrator is not None else 0
        return self.model.nbytes() + cal + index

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
        s = self.model.score_learn(ids, x, self._abs[f_idx], self._rel[f_idx])
        scores = np.empty(len(x))
        for direction, m in (("up", self._up[f_idx]), ("down", self._down[f_idx]),
                             ("both", self._both[f_idx])):
            if m.any():
                scores[m] = tail_score(s.z[m], direction, s.dof[m])  # type: ignore[arg-type]
        if self.calibrator is not None:
            # Judge each series' tail against how often it really went that far (learned after
            # warm-up only, so the start-up transient does not count as history).
            ready = s.seen >= self.cfg.warmup
            if ready.any():
                p = self.calibrator.calibrate(ids[ready], 1.0 - scores[ready])
                scores[ready] = 1.0 - p
        hits = np.nonzero((scores >= self.cfg.threshold) & (s.seen >= self.cfg.warmup))[0]
        out = []
        for k in hits:
            feat = FEATURES[f_idx[k]]
            out.append(Anomaly(
                service=rows.services[r_idx[k]], feature=feat, window_start=rows.start,
                window_end=rows.end, value=float(x[k]), baseline_mean=float(s.mean[k]),
                baseline_std=float(s.std[k]), score=float(scores[k]), model=self.model.name,
                explanation=explain(feat, float(x[k]), float(s.mean[k]), float(s.std[k])),
                events=int(rows.counts[r_idx[k]]),
            ))
        return out

    def _series_id(self, service: str, feature: str) -> int:
        key = (service, feature)
        sid = self._series.get(key)
        if sid is None:
            sid = self._series[key] = len(self._series)
        return sid
