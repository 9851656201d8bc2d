"""The live fleet's load generator: Poisson arrivals at a settable rate sent to the gateway by a
fixed pool of threads. Bounded: when every worker is busy and the queue is full an arrival is
dropped and counted, never queued without end; it talks to loopback only."""

from __future__ import annotations

import queue
import random
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from detector.simulate.live.topology import ENTRY_MIX

DEFAULT_RPS = 40.0
MAX_RPS = 1000.0


class LoadGenerator:
    """Sends `GET {base_url}/api/<operation>` (operations drawn from `mix`) at `rps` a second."""

    def __init__(
        self, base_url: str, rps: float = DEFAULT_RPS, seed: int = 0, workers: int = 24,
        timeout_s: float = 2.0, mix: tuple[tuple[str, float], ...] = ENTRY_MIX,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.rps = rps
        self.seed = seed
        self.workers = workers
        self.timeout_s = timeout_s
        self.mix = mix
        self._rng = random.Random(f"load/{seed}")
        self._queue: queue.Queue[str] = queue.Queue(maxsize=workers * 2)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._sent = 0
        self._dropped = 0
        self._failed = 0
        self._by_status: dict[str, int] = {}
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._pace, name="load-pace", daemon=True)]
        self._threads += [threading.Thread(target=self._work, name=f"load-{i}", daemon=True)
                          for i in range(self.workers)]
        for t in self._threads:
            t.start()

    def stop(self, timeout_s: float = 3.0) -> None:
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def set_rate(self, rps: float) -> None:
        """A new rate in requests/s (0 pauses), from the next arrival on."""
        if not 0.0 <= rps <= MAX_RPS:
            raise ValueError(f"rps must be between 0 and {MAX_RPS:g}, got {rps!r}")
        self.rps = rps
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"rps": self.rps, "sent": self._sent, "dropped": self._dropped,
                    "failed": self._failed, "by_status": dict(sorted(self._by_status.items())),
                    "workers": self.workers}

    # ---- threads ------------------------------------------------------------------------------
    def _pace(self) -> None:
        ops, weights = [op for op, _ in self.mix], [w for _, w in self.mix]
        due = time.monotonic()
        while not self._stop.is_set():
            rps = self.rps
            if rps <= 0:
                self._wake.wait(0.5)
                self._wake.clear()
                due = time.monotonic()
                continue
            due += self._rng.expovariate(rps)
            now = time.monotonic()
            if due < now - 1.0:  # fell far behind (a pause, a slow host): do not burst to catch up
                due = now
            if due > now and self._wake.wait(due - now):
                self._wake.clear()
                due = time.monotonic()  # the rate changed: draw the next gap at the new rate
                continue
            try:
                self._queue.put_nowait(self._rng.choices(ops, weights)[0])
            except queue.Full:
                with self._lock:
                    self._dropped += 1

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                op = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            code = self._get(op)
            with self._lock:
                self._sent += 1
                if code is None:
                    self._failed += 1
                else:
                    self._by_status[str(code)] = self._by_status.get(str(code), 0) + 1

    def _get(self, op: str) -> int | None:
        try:
            with self._opener.open(f"{self.base_url}/api/{op}", timeout=self.timeout_s) as resp:
                resp.read()
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            exc.read()
            return int(exc.code)
        except OSError:  # refused, reset, timed out: the gateway is down or stuck
            return None
