"""Virtual time for the engine: an asyncio loop whose clock jumps to the next timer whenever
nothing is ready, so a what-if replay climbs ladders whose waits span hours in milliseconds, and
the same history gives the same decisions, in the same order, every run.

It must not be given work that finishes outside the loop (threads, sockets): time would run on
while that work is in flight. The what-if engine audits inline (`AuditStore(inline=True)`) and
runs only the log hook, so nothing does.
"""

from __future__ import annotations

import asyncio
import math
import selectors
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class _Selector(selectors.BaseSelector):
    """A real selector that, asked to block for `timeout` with nothing ready, advances the
    loop's clock by `timeout` instead (and waits for real only when no timer is due at all)."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.loop: VirtualTimeLoop | None = None

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only real I/O can wake the loop
            return self._real.select(None)
        assert self.loop is not None
        # Epoch seconds are coarse floats (a ULP is ~0.2 us): always move at least one.
        self.loop.now = max(self.loop.now + timeout, math.nextafter(self.loop.now, math.inf))
        return []

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose `time()` is `now` (epoch seconds of the history being replayed).

    >>> async def story() -> list[float]:
    ...     loop = asyncio.get_running_loop()
    ...     seen = [loop.time()]
    ...     await asyncio.sleep(3600)          # an hour of history, at once
    ...     seen.append(loop.time())
    ...     return seen
    >>> run_virtual(story(), start=1000.0)
    [1000.0, 4600.0]
    """

    def __init__(self, start: float) -> None:
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self
        self.now = float(start)
        self._clock_resolution = 1e-6  # timers due within a microsecond run together

    def time(self) -> float:
        return self.now


def run_virtual(coro: Coroutine[Any, Any, T], start: float) -> T:
    """Run `coro` to completion on a fresh `VirtualTimeLoop` starting at `start`; close it.

    Called where an event loop already runs in this thread (a Jupyter kernel, an async
    application), it runs the virtual loop on a thread of its own and waits for it: asyncio
    allows one running loop per thread.

    >>> async def inside():  # a caller that is itself a coroutine
    ...     async def hour() -> float:
    ...         await asyncio.sleep(3600)
    ...         return asyncio.get_running_loop().time()
    ...     return run_virtual(hour(), start=0.0)
    >>> asyncio.run(inside())
    3600.0
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run(coro, start)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vigil-virtual") as pool:
        return pool.submit(_run, coro, start).result()


def _run(coro: Coroutine[Any, Any, T], start: float) -> T:
    loop = VirtualTimeLoop(start)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
