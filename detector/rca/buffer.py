"""The stream's recent spans and logs, kept so an incident can be analysed like a capture.

Bounded twice: by event time (`keep_seconds` behind the newest record) and by count
(`max_records`; the oldest batches go first and are counted in `dropped`). Adding a batch costs
its own size; nothing here grows with the input beyond those bounds. A batch is kept as its own
columns (no copies) and made into span and log tables only when an incident asks for them,
which is rare next to batches coming in.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import polars as pl

from detector.config import RcaConfig
from detector.events import EventBatch
from detector.rca.capture import (
    LOG_SCHEMA,
    SPAN_SCHEMA,
    Capture,
    frame_of,
    records_in,
    tables_of_frame,
)


class CaptureBuffer:
    """Recent spans and logs of a stream.

    >>> from detector.events import LogEvent
    >>> buf = CaptureBuffer(RcaConfig(keep_seconds=60))
    >>> buf.add(EventBatch.from_events([LogEvent(0.0, "a", 9, "", request_id="t", span_id="s",
    ...                                          latency_ms=2.0)]))
    >>> buf.add(EventBatch.from_events([LogEvent(100.0, "a", 9, "hello")]))
    >>> cap = buf.capture(since=0.0)
    >>> cap.spans.height, cap.logs.height, buf.expired
    (0, 1, 1)
    """

    def __init__(self, cfg: RcaConfig) -> None:
        self.cfg = cfg
        self._parts: deque[tuple[float, pl.DataFrame, int]] = deque()  # newest, frame, records
        self._rows = 0
        self.latest = float("-inf")
        self.dropped = 0  # records that left before their time because of max_records
        self.expired = 0

    def add(self, batch: EventBatch) -> None:
        """Keep the spans and log records of a decoded batch (template ids set)."""
        if len(batch) == 0:
            return
        frame = frame_of(batch)
        n = records_in(frame)
        if n == 0:
            return
        newest = float(batch.ts.max())
        self.latest = max(self.latest, newest)
        self._parts.append((newest, frame, n))
        self._rows += n
        horizon = self.latest - self.cfg.keep_seconds
        while self._parts and (self._parts[0][0] < horizon or self._rows > self.cfg.max_records):
            t, _, gone = self._parts.popleft()
            self._rows -= gone
            if t < horizon:
                self.expired += gone
            else:
                self.dropped += gone

    def __len__(self) -> int:
        return self._rows

    def capture(self, since: float = float("-inf")) -> Capture:
        """The kept records from `since` on, as a `Capture`."""
        kept = [tables_of_frame(f) for t, f, _ in self._parts if t >= since]

        def joined(parts: list[pl.DataFrame], schema: dict[str, Any]) -> pl.DataFrame:
            parts = [p for p in parts if p.height]
            if not parts:
                return pl.DataFrame(schema=schema)
            return pl.concat(parts).filter(pl.col("t") >= since).sort("t")

        return Capture(spans=joined([s for s, _ in kept], SPAN_SCHEMA),
                       logs=joined([lg for _, lg in kept], LOG_SCHEMA))
