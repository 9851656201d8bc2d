"""Bounded retries: exponential backoff with full jitter."""

from __future__ import annotations

import random


def backoff_delays(attempts: int, base_s: float, max_s: float, rng: random.Random | None = None
                   ) -> list[float]:
    """Delays before each retry: uniform in [0, min(max_s, base_s * 2**i)] ("full jitter").

    >>> d = backoff_delays(4, 1.0, 5.0, random.Random(0))
    >>> len(d), all(0 <= x <= c for x, c in zip(d, [1, 2, 4, 5]))
    (4, True)
    """
    r = rng or random.Random()
    return [r.uniform(0.0, min(max_s, base_s * 2 ** i)) for i in range(attempts)]
