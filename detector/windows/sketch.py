"""A log-bucketed quantile sketch (DDSketch's idea): fixed relative error, mergeable, batch updates.

Bucket i holds values in (gamma^(i-1), gamma^i]; any quantile is reported with relative error at
most (gamma - 1) / (gamma + 1). Updates take a whole numpy array; nothing loops per value.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class LogBuckets:
    """The bucket layout shared by every sketch of one pipeline.

    >>> b = LogBuckets(rel_error=0.01)
    >>> counts = b.counts(np.array([10.0, 20.0, 30.0, 40.0, 1000.0]))
    >>> [round(q, -1) for q in b.quantiles(counts, [0.5, 0.99])]  # within 1%
    [30.0, 1000.0]
    """

    def __init__(self, rel_error: float = 0.01, lo: float = 1e-3, hi: float = 1e7) -> None:
        if not 0 < rel_error < 1:
            raise ValueError("rel_error must be in (0, 1)")
        self.gamma = (1 + rel_error) / (1 - rel_error)
        self._log_gamma = math.log(self.gamma)
        self._offset = math.floor(math.log(lo) / self._log_gamma)
        self.size = math.ceil(math.log(hi) / self._log_gamma) - self._offset + 2

    def index(self, values: FloatArray) -> npt.NDArray[np.int64]:
        """Bucket of each value (values <= lo share bucket 0; values >= hi share the last)."""
        with np.errstate(divide="ignore"):
            idx = np.ceil(np.log(np.maximum(values, 1e-300)) / self._log_gamma) - self._offset
        out: npt.NDArray[np.int64] = np.clip(idx, 0, self.size - 1).astype(np.int64)
        return out

    def counts(self, values: FloatArray) -> npt.NDArray[np.int64]:
        return np.bincount(self.index(values), minlength=self.size)

    def quantiles(self, counts: npt.NDArray[np.int64], qs: list[float]) -> list[float]:
        """Quantiles from bucket counts; NaN for an empty sketch."""
        total = int(counts.sum())
        if total == 0:
            return [math.nan] * len(qs)
        cum = np.cumsum(counts)
        out = []
        for q in qs:
            rank = max(math.ceil(q * total) - 1, 0)  # nearest-rank definition
            i = int(np.searchsorted(cum, rank, side="right"))
            # The bucket's midpoint in relative terms keeps the error within rel_error.
            upper = self.gamma ** (i + self._offset)
            out.append(2.0 * upper / (self.gamma + 1.0))
        return out
