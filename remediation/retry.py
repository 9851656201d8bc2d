"""The one retry shape of Vigil: exponential backoff with full jitter, as configuration
(`Backoff`: the delays; `Retry`: bounded attempts of them) and as delays.

Used alike by remediation hooks (`guards.retries`), the Prometheus source (`prometheus.retry`)
and the Kafka consumer's reconnects (`kafka.reconnect`, unbounded: it never gives up).
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field


class Backoff(BaseModel):
    """Delays that double from `base_s` up to `max_s`, each drawn uniformly below its cap.

    >>> b = Backoff(base_s=1.0, max_s=5.0)
    >>> d = b.delays(4, random.Random(0))
    >>> len(d), all(0 <= x <= c for x, c in zip(d, [1, 2, 4, 5]))
    (4, True)
    >>> b.cap(10)
    5.0
    """

    model_config = ConfigDict(extra="forbid")

    base_s: float = Field(default=1.0, gt=0, description="the first delay's cap (seconds)")
    max_s: float = Field(default=30.0, gt=0, description="no delay's cap grows past this")

    def cap(self, i: int) -> float:
        """The cap of the delay before retry `i` (from 0)."""
        return float(min(self.max_s, self.base_s * 2.0 ** min(i, 64)))

    def delay(self, i: int, rng: random.Random | None = None) -> float:
        return float((rng or random.Random()).uniform(0.0, self.cap(i)))

    def delays(self, n: int, rng: random.Random | None = None) -> list[float]:
        r = rng or random.Random()
        return [self.delay(i, r) for i in range(n)]


class Retry(Backoff):
    """At most `attempts` retries after the first try, with `Backoff`'s delays."""

    attempts: int = Field(default=2, ge=0, le=10, description="retries after the first try")
