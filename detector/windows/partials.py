"""Mergeable window partials: what one ingest task saw of one (service, window), summed by merge.

A partial holds sums and extremes only (events, errors, events of new and of rare templates,
latency sketch bucket counts, first and last event time), so partials of one (service, window)
from any number of tasks, in any order, add up to what one process folding every event would
hold. `WindowAggregator.take_partials` emits them; `WindowAggregator.merge` folds them in.

>>> a = WindowPartial(window=3, service="cart", count=2, errors=1.0, new=0.0, rare=0.0,
...                   tmin=30.5, tmax=31.0, lat={7: 2})
>>> b = WindowPartial.from_dict(a.to_dict())
>>> b == a, b.key
(True, 'cart|3')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class PartialError(ValueError):
    """A partial record that is not one (wrong types, missing fields, impossible values)."""


@dataclass(slots=True)
class WindowPartial:
    """One task's sums for one (service, window index)."""

    window: int  # floor(event time / window.seconds)
    service: str
    count: int
    errors: float
    new: float
    rare: float
    tmin: float  # first and last event time folded in
    tmax: float
    lat: dict[int, int] = field(default_factory=dict)  # latency sketch bucket -> events

    @property
    def key(self) -> str:
        """The record key partials of one (service, window) share (routing: by service)."""
        return f"{self.service}|{self.window}"

    def to_dict(self) -> dict[str, Any]:
        return {"w": self.window, "s": self.service, "n": self.count, "e": self.errors,
                "new": self.new, "rare": self.rare, "lo": self.tmin, "hi": self.tmax,
                "lat": [[b, c] for b, c in sorted(self.lat.items())]}

    @classmethod
    def from_dict(cls, d: Any, buckets: int = 1 << 20) -> WindowPartial:
        """A partial from its `to_dict` form; anything else raises `PartialError`."""
        try:
            if not isinstance(d, dict):
                raise TypeError("not an object")
            w, s, n = d["w"], d["s"], d["n"]
            if type(w) is not int or not isinstance(s, str) or type(n) is not int or n < 0:
                raise TypeError("w, s, n must be int, str, int >= 0")
            nums = [float(d[k]) for k in ("e", "new", "rare", "lo", "hi")]
            if not all(math.isfinite(v) for v in nums) or nums[3] > nums[4]:
                raise ValueError("sums and times must be finite, lo <= hi")
            lat: dict[int, int] = {}
            for pair in d["lat"]:
                b, c = pair
                if type(b) is not int or type(c) is not int or not 0 <= b < buckets or c < 0:
                    raise ValueError("lat is not [[bucket, count], ...]")
                lat[b] = lat.get(b, 0) + c
        except (KeyError, TypeError, ValueError) as exc:
            raise PartialError(f"not a window partial: {exc}") from exc
        return cls(w, s, n, nums[0], nums[1], nums[2], nums[3], nums[4], lat)
