"""Decode ahead: each batch's decode (polars' NDJSON read and checks, which release the GIL) runs
on a worker thread while the batch before it goes through the rest of the pipeline on the
caller's, so the two cores both work. One batch in flight, in order: the outcomes are the ones
`Pipeline.process` gives batch by batch (tests hold them equal)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from detector.pipeline import BatchOutcome, Pipeline

Batch = tuple[Sequence[bytes], str, Sequence[int] | None]  # lines, source, positions


class DecodeAhead:
    """Runs batches through a pipeline with the next batch's decode on a worker thread;
    `waited_s`: the time the caller's thread waited for a decode (what the overlap did not hide).

    >>> from detector.config import VigilConfig
    >>> pipe = Pipeline(VigilConfig())
    >>> found = []
    >>> DecodeAhead(pipe).run([([b'{"ts": 0, "service": "cart", "msg": "ok"}'], "a", None),
    ...                        ([b'{oops'], "b", None)], found.append)
    >>> [len(o.events) for o in found], [d.reason for o in found for d in o.dead]
    ([1, 0], ['undecodable'])
    """

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self.waited_s = 0.0

    def run(self, batches: Iterable[Batch], each: Callable[[BatchOutcome], None]) -> None:
        """`each(outcome)` for every batch, in order (not `finish`: the caller's)."""
        it = iter(batches)
        pipe = self.pipe
        with ThreadPoolExecutor(1, thread_name_prefix="vigil-decode") as pool:
            cur = next(it, None)
            pending = pool.submit(pipe.decode, *cur) if cur is not None else None
            while cur is not None and pending is not None:
                t0 = time.perf_counter()
                decoded = pending.result()  # its exception, if any, is raised here
                waited = time.perf_counter() - t0
                self.waited_s += waited
                pipe.stats.seconds += waited  # the pipeline's time, as the caller saw it
                nxt = next(it, None)
                pending = pool.submit(pipe.decode, *nxt) if nxt is not None else None
                lines, source, positions = cur
                each(pipe.process(lines, source, positions, decoded=decoded))
                cur = nxt
