"""Per-series online standardisation of feature vectors, shared by the vector detectors."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import FloatArray, IntArray, as_ids
from models.ewma import EwmaZScore


def check_vectors(series: IntArray, x: FloatArray, n_features: int) -> tuple[IntArray, FloatArray]:
    """One time step of vectors, checked: ids unique and >= 0, shape (n, n_features), finite."""
    s = np.asarray(series)
    if s.dtype.kind not in "iu" and not (s.size == 0 and s.dtype.kind == "f"):
        raise ValueError(f"series ids must be integers, not {s.dtype}")
    s = s.astype(np.int64, copy=False)
    v = np.asarray(x, dtype=np.float64)
    if s.ndim != 1 or v.ndim != 2 or len(s) != len(v) or v.shape[1] != n_features:
        raise ValueError(f"expected series (n,) and vectors (n, {n_features}); got {s.shape} and {v.shape}")
    if len(s) and (s.min() < 0 or len(np.unique(s)) != len(s)):
        raise ValueError("series ids must be >= 0 and unique within one call (one call = one time step)")
    if not np.isfinite(v).all():
        raise ValueError("vectors must be finite (NaN or inf found); impute or drop them first")
    return s, v


class OnlineScaler:
    """EWMA mean and variance per (series, feature) — an `EwmaZScore` over one id per pair;
    `scale` returns z-scores judged before the vector is learned, clipped to +/- `clip`
    (0 until a pair has two values).

    >>> sc = OnlineScaler(n_features=2, alpha=0.1)
    >>> for v in ([1.0, 10.0], [1.2, 11.0], [0.8, 9.0]):
    ...     _ = sc.scale(np.array([0]), np.array([v]))
    >>> sc.scale(np.array([0]), np.array([[1.0, 10.0]])).round(2).tolist()
    [[0.0, 0.0]]
    """

    def __init__(self, n_features: int, alpha: float = 0.01, clip: float = 10.0) -> None:
        self.n_features = n_features
        self.alpha = alpha
        self.clip = clip
        self._ewma = EwmaZScore(alpha=alpha, clip_z=np.inf, warmup=0)

    def scale(self, series: IntArray, x: FloatArray) -> FloatArray:
        ids = (series[:, None] * self.n_features + np.arange(self.n_features)).ravel()
        tiny = np.full(len(ids), 1e-9)
        s = self._ewma.score_learn(ids, x.ravel(), floor=tiny, rel_floor=tiny)
        z: FloatArray = np.where(s.seen > 1, np.clip(s.z, -self.clip, self.clip), 0.0)
        return z.reshape(x.shape)

    def forget(self, series: IntArray) -> None:
        """Start these series' baselines afresh (their ids may be reused)."""
        ids = as_ids(series)
        self._ewma.forget((ids[:, None] * self.n_features + np.arange(self.n_features)).ravel())

    def state_dict(self) -> dict[str, Any]:
        return self._ewma.state_dict()

    def load_state(self, state: dict[str, Any]) -> None:
        self._ewma.load_state(state)

    def nbytes(self) -> int:
        return self._ewma.nbytes()
