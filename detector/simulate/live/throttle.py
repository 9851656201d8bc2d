"""A token-bucket rate limit for a live service: `allow()` says at once whether a request may go
on. It never sleeps or queues: a throttled request is refused quickly, which is what relieves an
overloaded service."""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """At most `rps` requests a second on average, with bursts of a quarter second's worth.

    >>> b = TokenBucket(4.0)
    >>> [b.allow() for _ in range(3)]
    [True, False, False]
    """

    def __init__(self, rps: float) -> None:
        self.rps = rps
        self.burst = max(1.0, rps * 0.25)
        self._tokens = self.burst
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rps)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False
