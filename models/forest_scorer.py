"""Batch scoring of a fitted scikit-learn IsolationForest without its per-call overhead."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest

from models.base import FloatArray

_EULER = 0.5772156649015329


def average_path_length(n: np.ndarray) -> FloatArray:
    """c(n): the average path length of an unsuccessful binary-search-tree lookup among n points
    (Liu et al. 2008), the normaliser of isolation depths; 0 for n <= 1 and 1 for n == 2.

    >>> [round(float(v), 4) for v in average_path_length(np.array([1, 2, 3, 256]))]
    [0.0, 1.0, 1.2074, 10.2448]
    """
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros(n.shape)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + _EULER) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class ForestScorer:
    """The anomaly score of `IsolationForest.score_samples` (negated: in (0, 1], higher is more
    isolated), computed from the fitted trees' arrays.

    scikit-learn's `score_samples` validates its input and builds per-tree index arrays on
    every call, which costs more than the tree walks themselves at a thousand rows a call. This
    precomputes each leaf's depth (path length plus c(leaf size) for the points it did not
    split) once per fit, casts the batch to float32 once, and walks each tree with its compiled
    `apply`. Scores equal scikit-learn's to rounding (tested).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> forest = IsolationForest(n_estimators=20, random_state=0).fit(rng.normal(size=(500, 3)))
    >>> rows = rng.normal(size=(50, 3))
    >>> bool(np.allclose(ForestScorer(forest).score(rows), -forest.score_samples(rows)))
    True
    """

    def __init__(self, forest: IsolationForest) -> None:
        self.n_features = int(forest.n_features_in_)
        self._trees = []
        self._leaf_depth: list[FloatArray] = []
        self._features: list[np.ndarray | None] = []
        for est, feats in zip(forest.estimators_, forest.estimators_features_, strict=True):
            tree = est.tree_
            left, right = tree.children_left, tree.children_right
            depth = np.zeros(tree.node_count)
            for node in range(tree.node_count):  # parents precede children in sklearn's arrays
                if left[node] >= 0:
                    depth[left[node]] = depth[right[node]] = depth[node] + 1.0
            self._leaf_depth.append(depth + average_path_length(tree.n_node_samples))
            self._trees.append(tree)
            full = len(feats) == self.n_features and np.array_equal(feats, np.arange(self.n_features))
            self._features.append(None if full else np.asarray(feats))
        self._norm = float(average_path_length(np.array([forest.max_samples_]))[0])

    def score(self, rows: FloatArray) -> FloatArray:
        """2^(-mean depth / c(max_samples)) per row: about 0.5 for typical rows, towards 1 for
        rows isolated in few splits."""
        x = np.ascontiguousarray(rows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"rows must be (n, {self.n_features}), got {x.shape}")
        depth = np.zeros(len(x))
        for tree, leaf_depth, feats in zip(self._trees, self._leaf_depth, self._features, strict=True):
            xs = x if feats is None else np.ascontiguousarray(x[:, feats])
            depth += leaf_depth[tree.apply(xs)]
        if not self._trees:
            return np.zeros(len(x))
        return np.asarray(2.0 ** (-depth / len(self._trees) / self._norm))
