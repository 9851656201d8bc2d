"""Per-series online standardisation of feature vectors, shared by the vector detectors."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.base import FloatArray, IntArray, grow


def check_vectors(series: IntArray, x: FloatArray, n_features: int) -> tuple[IntArray, FloatArray]:
    """One time step of vectors, checked: ids unique and >= 0, shape (n, n_features), finite."""
    s = np.asarray(series, dtype=np.int64)
    v = np.asarray(x, dtype=np.float64)
    if s.ndim != 1 or v.ndim != 2 or len(s) != len(v) or v.shape[1] != n_features:
        raise ValueError(f"expected series (n,) and vectors (n, {n_features}); got {s.shape} and {v.shape}")
    if len(s) and (s.min() < 0 or len(np.unique(s)) != len(s)):
        raise ValueError("series ids must be >= 0 and unique within one call (one call = one time step)")
    if not np.isfinite(v).all():
        raise ValueError("vectors must be finite (NaN or inf found); impute or drop them first")
    return s, v


class OnlineScaler:
    """EWMA mean and variance per (series, feature); `scale` returns z-scores judged before the
    vector is learned, clipped to +/- `clip`.

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
        self._mean = np.zeros((0, n_features))
        self._var = np.zeros((0, n_features))
        self._n = np.zeros(0, dtype=np.int64)

    def scale(self, series: IntArray, x: FloatArray) -> FloatArray:
        if len(series):
            top = int(series.max()) + 1
            self._mean = grow(self._mean, top, 0.0)
            self._var = grow(self._var, top, 0.0)
            self._n = grow(self._n, top, 0)
        mean, var, n = self._mean[series], self._var[series], self._n[series]
        std = np.sqrt(var) + 1e-9 * (1.0 + np.abs(mean))
        z = np.where(n[:, None] > 1, np.clip((x - mean) / std, -self.clip, self.clip), 0.0)
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))[:, None]
        d = x - mean
        self._mean[series] = mean + a * d
        self._var[series] = np.where(n[:, None] > 0, (1.0 - a) * (var + a * d * d), 0.0)
        self._n[series] = n + 1
        out: FloatArray = z
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self._mean.tolist(), "var": self._var.tolist(), "n": self._n.tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        self._mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1, self.n_features)
        self._var = np.asarray(state["var"], dtype=np.float64).reshape(-1, self.n_features)
        self._n = np.asarray(state["n"], dtype=np.int64)

    def nbytes(self) -> int:
        return int(self._mean.nbytes + self._var.nbytes + self._n.nbytes)
