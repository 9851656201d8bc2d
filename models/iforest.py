"""Isolation forest (scikit-learn) over sliding windows of per-series standardised vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from models.base import (
    FloatArray,
    IntArray,
    as_ids,
    check_params,
    check_state,
    forget_rows,
    grow,
    load_rows,
    nonnegative,
    state_count,
    state_part,
)
from models.forest_scorer import ForestScorer
from models.scaling import OnlineScaler, check_vectors


class IsolationForestDetector:
    """Scores how easily the last `lags` vectors of a series are isolated from recent history.

    Each step, a series' vector (say rate, error ratio, p99 latency of one service) is
    standardised against that series' own EWMA baseline, and the last `lags` standardised vectors
    form one row. One forest serves every series: it learns what normal joint deviations look
    like. It is refitted every `refit_every` learned rows on the last `buffer` rows (bounded
    memory, deterministic: seed + refit number), and scores each step's rows in one batch call.
    It sets no contamination rate: its raw score (scikit-learn's, negated: about 0.4-0.5 normal,
    towards 1 isolated) is meant for `TailCalibrator`, which judges it against the series' own
    history.

    Good at: combinations no single feature shows (latency up while rate is down), and shapes
    over a few steps. Bad at: magnitude (anything beyond the training range isolates equally
    fast, so an 8-sigma spike scores like the largest normal value: pair it with a z-score);
    the first `min_fit` rows (scores are 0 until the first fit); per-step cost of about a
    few milliseconds per thousand rows for the forest (`ForestScorer`), so batch many series per
    call.

    Checkpoints hold the training rows of the current forest, not the forest: `load_state`
    refits it deterministically, so no code is ever unpickled.

    Examples
    --------
    >>> import numpy as np
    >>> det = IsolationForestDetector(n_features=2, lags=2, refit_every=200, min_fit=200, seed=0)
    >>> rng = np.random.default_rng(0)
    >>> for t in range(400):
    ...     v = rng.normal([10.0, 0.1], [1.0, 0.01], size=(3, 2))
    ...     _ = det.score_learn(np.arange(3), v)
    >>> normal = det.score_learn(np.arange(3), rng.normal([10.0, 0.1], [1.0, 0.01], size=(3, 2)))
    >>> odd = det.score_learn(np.array([0]), np.array([[10.0, 0.5]]))
    >>> bool(odd[0] > normal.max())
    True
    """

    name = "iforest"

    def __init__(self, n_features: int, lags: int = 4, buffer: int = 4096, refit_every: int = 1024,
                 min_fit: int = 256, n_estimators: int = 100, max_samples: int = 256,
                 alpha: float = 0.01, seed: int = 0) -> None:
        if lags < 1 or buffer < min_fit or refit_every < 1 or min_fit < 2:
            raise ValueError("need lags >= 1, refit_every >= 1, 2 <= min_fit <= buffer")
        self.n_features = n_features
        self.lags = lags
        self.buffer = buffer
        self.refit_every = refit_every
        self.min_fit = min_fit
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.seed = seed
        self.scaler = OnlineScaler(n_features, alpha=alpha)
        width = lags * n_features
        self._ring = np.zeros((0, lags, n_features))  # per series, newest last
        self._filled = np.zeros(0, dtype=np.int64)
        self._buf = np.zeros((buffer, width))
        self._buf_n = 0  # rows ever added
        self._since_fit = 0
        self._fits = 0
        self._train = np.zeros((0, width))
        self.forest: IsolationForest | None = None
        self._scorer: ForestScorer | None = None

    def _fit(self, rows: FloatArray) -> None:
        self._train = rows.copy()
        self.forest = IsolationForest(
            n_estimators=self.n_estimators, max_samples=min(self.max_samples, len(rows)),
            random_state=self.seed + self._fits,
        ).fit(rows)
        self._scorer = ForestScorer(self.forest)

    def score_learn(self, series: IntArray, x: FloatArray) -> FloatArray:
        """Raw isolation scores of one time step's vectors (0 while a series or the forest is
        not ready), then learn them."""
        series, v = check_vectors(series, x, self.n_features)
        if not len(series):
            return np.zeros(0)
        z = self.scaler.scale(series, v)
        top = int(series.max()) + 1
        self._ring = grow(self._ring, top, 0.0)
        self._filled = grow(self._filled, top, 0)
        ring = self._ring[series]
        ring = np.concatenate([ring[:, 1:], z[:, None, :]], axis=1)
        self._ring[series] = ring
        self._filled[series] += 1
        ready = self._filled[series] > self.lags  # the first vector is standardised against nothing
        rows = ring.reshape(len(series), -1)
        out = np.zeros(len(series))
        if self._scorer is not None and ready.any():
            out[ready] = self._scorer.score(rows[ready])
        new = rows[ready][-self.buffer:]
        self._buf[(self._buf_n + np.arange(len(new))) % self.buffer] = new
        self._buf_n += len(new)
        self._since_fit += int(ready.sum())
        have = min(self._buf_n, self.buffer)
        due = (self.forest is None and have >= self.min_fit) or self._since_fit >= self.refit_every
        if due and have >= self.min_fit:
            order = np.arange(self._buf_n - have, self._buf_n) % self.buffer
            self._fits += 1
            self._fit(self._buf[order])
            self._since_fit = 0
        return out

    def forget(self, series: IntArray) -> None:
        """Start these series afresh (their ids may be reused): their baselines and recent
        vectors. The shared forest keeps what it learned from them."""
        ids = as_ids(series)
        self.scaler.forget(ids)
        forget_rows(self, ("_ring", "_filled"), ids)

    def params(self) -> dict[str, Any]:
        """The parameters a checkpoint is written with (and checked against); the scaler's
        weight is checked by its own state."""
        return {k: getattr(self, k) for k in ("n_features", "lags", "buffer", "refit_every",
                                              "min_fit", "n_estimators", "max_samples", "seed")}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "params": self.params(),
            "scaler": self.scaler.state_dict(),
            "ring": self._ring.tolist(), "filled": self._filled.tolist(),
            "buf": self._buf.tolist(), "buf_n": self._buf_n, "since_fit": self._since_fit,
            "fits": self._fits, "train": self._train.tolist(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        check_params(check_state(state, self.name), self.params())
        width = self.lags * self.n_features
        rows = load_rows(state, {"ring": (np.float64, (self.lags, self.n_features)),
                                 "filled": (np.int64, ())})
        nonnegative(rows, "filled")
        buf = load_rows(state, {"buf": (np.float64, (width,))})["buf"]
        train = load_rows(state, {"train": (np.float64, (width,))})["train"]
        if len(buf) != self.buffer:
            raise ValueError(f"checkpoint buffer holds {len(buf)} rows, not {self.buffer}")
        if len(train) > self.buffer:
            raise ValueError(f"checkpoint training rows ({len(train)}) exceed the buffer")
        buf_n, since_fit, fits = (state_count(state, k) for k in ("buf_n", "since_fit", "fits"))
        scaler = OnlineScaler(self.n_features, alpha=self.scaler.alpha)
        scaler.load_state(state_part(state, "scaler"))
        self.scaler = scaler
        self._ring, self._filled, self._buf = rows["ring"], rows["filled"], buf
        self._buf_n, self._since_fit, self._fits = buf_n, since_fit, fits
        self.forest, self._scorer, self._train = None, None, train
        if len(train):
            self._fit(train)  # seeded with seed + fits, as when it was first fitted

    def nbytes(self) -> int:
        """Per-series state plus the shared buffer (the forest itself is not counted)."""
        return int(self.scaler.nbytes() + self._ring.nbytes + self._filled.nbytes
                   + self._buf.nbytes + self._train.nbytes)
