"""Service names as small integer ids, assigned in order of first appearance, for batch work.

Names come from the input, so their number is bounded: past `cap`, every new name shares the id
of `OTHER_SERVICES` (counted), so a mis-mapped field or a hostile sender cannot exhaust memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

OTHER_SERVICES = "(other services)"  # the one name of every service past a cap


class ServiceIndex:
    """name <-> id; a batch's names map to ids with one dictionary lookup per distinct name.

    >>> idx = ServiceIndex(cap=3)
    >>> idx.ids(pl.Series(["cart", "db", "cart", None])).tolist(), idx.names
    ([0, 1, 0, -1], ['cart', 'db'])
    >>> idx.ids(pl.Series(["web", "mail", "db"])).tolist(), idx.names, idx.overflow
    ([2, 2, 1], ['cart', 'db', '(other services)'], 2)
    """

    def __init__(self, cap: int = 2000) -> None:
        if cap < 2:
            raise ValueError("a service index needs room for one name and OTHER_SERVICES")
        self.cap = cap
        self._id: dict[str, int] = {}
        self.names: list[str] = []
        self.overflow = 0  # events whose names are past the cap (they share OTHER_SERVICES' id)
        # The last column mapped and its ids: the windows and the correlator both map a batch's
        # services, and the second asks for the same column (each mapping is a polars query)
        self._last: tuple[pl.Series, npt.NDArray[np.int32]] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def id_of(self, name: str) -> int:
        sid = self._id.get(name)
        if sid is None:
            if len(self.names) >= self.cap - 1 and name != OTHER_SERVICES:
                self.overflow += 1
                return self.id_of(OTHER_SERVICES)
            sid = self._id[name] = len(self.names)
            self.names.append(name)
        return sid

    def state_dict(self) -> list[str]:
        return list(self.names)

    def load_state(self, names: Any) -> None:
        """Names of `state_dict`, into an empty index (their ids are their positions)."""
        if self.names:
            raise ValueError("load_state needs an empty service index")
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names) \
                or len(set(names)) != len(names):
            raise ValueError("services is not a list of distinct names")
        for name in names:
            self.id_of(name)

    def get(self, name: str) -> int | None:
        return self._id.get(name)

    def ids(self, names: pl.Series) -> npt.NDArray[np.int32]:
        """Ids of a batch's names (-1 for null), read-only; asked again for the same column
        object, the same array (its events past the cap counted once).

        >>> idx, names = ServiceIndex(cap=2), pl.Series(["a", "b", "b"])
        >>> first = idx.ids(names)
        >>> idx.ids(names) is first, idx.overflow
        (True, 2)
        """
        last = self._last
        if last is not None and last[0] is names:
            return last[1]
        out = self._ids(names)
        out.flags.writeable = False
        self._last = (names, out)
        return out

    def _ids(self, names: pl.Series) -> npt.NDArray[np.int32]:
        if len(names) == 0:
            return np.zeros(0, dtype=np.int32)
        n = len(names)
        nulls = names.null_count()
        if nulls == n:
            return np.full(n, -1, dtype=np.int32)
        if nulls > n // 2:  # a sparse column (callee, caller): map only the values present
            at = np.flatnonzero(names.is_not_null().to_numpy())
            out = np.full(n, -1, dtype=np.int32)
            out[at] = self._ids(names.gather(at))
            return out
        distinct = [v for v in names.unique(maintain_order=True).to_list() if v is not None]
        before = self.overflow
        ids = [self.id_of(v) for v in distinct]
        if self.overflow > before:  # count events, not distinct names, past the cap
            other = self._id[OTHER_SERVICES]
            past = [v for v, i in zip(distinct, ids, strict=True) if i == other and v != OTHER_SERVICES]
            self.overflow += int(names.is_in(past).sum()) - len(past)
        mapped = names.replace_strict(distinct, ids, default=-1, return_dtype=pl.Int32)
        return mapped.fill_null(-1).to_numpy().astype(np.int32)
