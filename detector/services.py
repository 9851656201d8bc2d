"""Service names as small integer ids, assigned in order of first appearance, for batch work."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl


class ServiceIndex:
    """name <-> id; a batch's names map to ids with one dictionary lookup per distinct name.

    >>> idx = ServiceIndex()
    >>> idx.ids(pl.Series(["cart", "db", "cart", None])).tolist(), idx.names
    ([0, 1, 0, -1], ['cart', 'db'])
    """

    def __init__(self) -> None:
        self._id: dict[str, int] = {}
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def id_of(self, name: str) -> int:
        sid = self._id.get(name)
        if sid is None:
            sid = self._id[name] = len(self.names)
            self.names.append(name)
        return sid

    def get(self, name: str) -> int | None:
        return self._id.get(name)

    def ids(self, names: pl.Series) -> npt.NDArray[np.int32]:
        """Ids of a batch's names (-1 for null)."""
        if len(names) == 0:
            return np.zeros(0, dtype=np.int32)
        n = len(names)
        nulls = names.null_count()
        if nulls == n:
            return np.full(n, -1, dtype=np.int32)
        if nulls > n // 2:  # a sparse column (callee, caller): map only the values present
            at = np.flatnonzero(names.is_not_null().to_numpy())
            out = np.full(n, -1, dtype=np.int32)
            out[at] = self.ids(names.gather(at))
            return out
        distinct = [v for v in names.unique(maintain_order=True).to_list() if v is not None]
        ids = [self.id_of(v) for v in distinct]
        mapped = names.replace_strict(distinct, ids, default=-1, return_dtype=pl.Int32)
        return mapped.fill_null(-1).to_numpy().astype(np.int32)
