"""The ids of recently closed requests, bounded in count and age, to tell late events apart."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detector.correlation.idtable import IdTable

U64 = npt.NDArray[np.uint64]


class RecentIds:
    """A ring of the last `capacity` closed ids with their closing times, indexed by `IdTable`.

    >>> r = RecentIds(capacity=2, max_age=10.0)
    >>> r.add(np.array([5, 6, 7], dtype=np.uint64), np.array([0.0, 1.0, 2.0]))
    >>> r.contains(np.array([5, 6, 7, 8], dtype=np.uint64), now=5.0).tolist()
    [False, True, True, False]
    >>> r.contains(np.array([6], dtype=np.uint64), now=20.0).tolist()  # too old to count
    [False]
    """

    def __init__(self, capacity: int, max_age: float) -> None:
        self.capacity = capacity
        self.max_age = max_age
        self._table = IdTable(max(capacity, 1))
        self._keys = np.zeros(capacity, dtype=np.uint64)
        self._when = np.zeros(capacity)
        self._head = 0

    def __len__(self) -> int:
        return len(self._table)

    def nbytes(self) -> int:
        return int(self._table.nbytes() + self._keys.nbytes + self._when.nbytes)

    def add(self, keys: U64, when: npt.NDArray[np.float64]) -> None:
        if not self.capacity or not len(keys):
            return
        keys, when = keys[-self.capacity:], when[-self.capacity:]
        pos = (self._head + np.arange(len(keys))) % self.capacity
        old = self._keys[pos]
        used = old != 0
        if used.any():  # forget what these ring positions held (if the table still points here)
            stale = old[used]
            mine = self._table.get(stale) == pos[used]
            self._table.delete(stale[mine])
        fresh = self._table.get(keys) < 0
        self._table.insert(keys[fresh], pos[fresh])
        self._keys[pos], self._when[pos] = keys, when
        self._head = int((self._head + len(keys)) % self.capacity)

    def contains(self, keys: U64, now: float) -> npt.NDArray[np.bool_]:
        if not self.capacity or not len(keys):
            return np.zeros(len(keys), dtype=bool)
        at = self._table.get(keys)
        found = at >= 0
        out = np.zeros(len(keys), dtype=bool)
        out[found] = self._when[at[found]] >= now - self.max_age
        return out
