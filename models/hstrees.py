"""Half-space trees (river) on per-series standardised vectors squashed into [0, 1]."""

from __future__ import annotations

from typing import Any

import numpy as np
from river.anomaly import HalfSpaceTrees

from models.base import FloatArray, IntArray, check_params, check_state, state_count, state_part
from models.scaling import OnlineScaler, check_vectors


class HalfSpaceTreesDetector:
    """River's `HalfSpaceTrees` on aggregated vectors (one per series per step, e.g. one
    service's window features), each standardised against its series' EWMA baseline and squashed
    into [0, 1] with a logistic of z / `squash`, the range river's trees split.

    One model serves every series. Mass profiles live in tumbling windows of `window_size`
    learned rows: the reference window scores, the current one learns. Scores are in [0, 1]
    (high = anomalous); pass them to `TailCalibrator` for a per-series tail probability.

    Good at: streams whose normal region drifts (the reference window keeps moving), cheap
    constant memory. Bad at: anomalies that last longer than a window (they become the reference),
    and speed: river learns and scores one row at a time in Python (about 1-3k rows/s here), so
    feed it aggregated windows, never raw events.

    Checkpoints hold the rows learned since the start of the reference window, and the seed:
    `load_state` rebuilds the same trees and replays those rows, which restores the masses exactly.

    Examples
    --------
    >>> import numpy as np
    >>> det = HalfSpaceTreesDetector(n_features=2, window_size=50, seed=1)
    >>> rng = np.random.default_rng(0)
    >>> for t in range(300):
    ...     _ = det.score_learn(np.array([0]), rng.normal([5.0, 1.0], 0.1, size=(1, 2)))
    >>> normal = det.score_learn(np.array([0]), np.array([[5.0, 1.0]]))
    >>> odd = det.score_learn(np.array([0]), np.array([[5.0, 3.0]]))
    >>> bool(odd[0] > normal[0])
    True
    """

    name = "hstrees"

    def __init__(self, n_features: int, n_trees: int = 25, height: int = 8, window_size: int = 250,
                 squash: float = 3.0, alpha: float = 0.01, seed: int = 0) -> None:
        self.n_features = n_features
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.squash = squash
        self.seed = seed
        self.scaler = OnlineScaler(n_features, alpha=alpha)
        self._new_model()

    def _new_model(self) -> None:
        self.model = HalfSpaceTrees(n_trees=self.n_trees, height=self.height,
                                    window_size=self.window_size, seed=self.seed)
        self._since_ref: list[list[float]] = []  # rows since the reference window began
        self._learned = 0

    def _learn(self, row: list[float]) -> None:
        self.model.learn_one(dict(enumerate(row)))  # type: ignore[no-untyped-call]
        self._learned += 1
        self._since_ref.append(row)
        if self._learned % self.window_size == 0 and len(self._since_ref) > self.window_size:
            del self._since_ref[: len(self._since_ref) - self.window_size]

    def score_learn(self, series: IntArray, x: FloatArray) -> FloatArray:
        """Scores in [0, 1] of one time step's vectors (0 during the first window), then learn."""
        series, v = check_vectors(series, x, self.n_features)
        z = self.scaler.scale(series, v)
        u = 1.0 / (1.0 + np.exp(-z / self.squash))
        out = np.zeros(len(series))
        for i, row in enumerate(u.tolist()):
            out[i] = self.model.score_one(dict(enumerate(row)))  # type: ignore[no-untyped-call]
            self._learn(row)
        return out

    def forget(self, series: IntArray) -> None:
        """Start these series' baselines afresh (their ids may be reused). The shared trees keep
        the masses they learned from them."""
        self.scaler.forget(series)

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against); the scaler's
        weight is checked by its own state."""
        return {"n_features": self.n_features, "n_trees": self.n_trees, "height": self.height,
                "window_size": self.window_size, "squash": self.squash, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "params": self.params(),
            "scaler": self.scaler.state_dict(),
            "learned": self._learned,
            "rows": self._since_ref,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        check_params(check_state(state, self.name), self.params())
        learned = state_count(state, "learned")
        try:
            rows = np.asarray(state_part(state, "rows"), dtype=np.float64).reshape(-1, self.n_features)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint rows are not vectors of {self.n_features} numbers") from exc
        if not np.isfinite(rows).all() or len(rows) > self.window_size * 2 or len(rows) > learned:
            raise ValueError("checkpoint rows do not fit the window size")
        scaler = OnlineScaler(self.n_features, alpha=self.scaler.alpha)
        scaler.load_state(state_part(state, "scaler"))
        self.scaler = scaler
        self._new_model()
        # Replay from a window boundary so the masses pivot where they pivoted before.
        for row in rows.tolist():
            self._learn(row)
        self._learned = learned

    def nbytes(self) -> int:
        nodes = self.n_trees * (2 ** (self.height + 1) - 1)
        return int(self.scaler.nbytes() + nodes * 64 + len(self._since_ref) * self.n_features * 8)
