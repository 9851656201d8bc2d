"""Line-atomic JSON log output for the live services: each record is encoded whole and written
with one unbuffered `write` on an O_APPEND descriptor, so a follower never sees half a line or two
lines interleaved. It must not buffer: a line is on disk when `write` returns."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def rfc3339(ts: float) -> str:
    """Epoch seconds as RFC 3339 in UTC with microseconds.

    >>> rfc3339(1795392000.25)
    '2026-11-23T00:00:00.250000Z'
    """
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LogWriter:
    """Appends one JSON object a line to `path` (created with its directory if missing)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        """Write `record` as one line; its `ts` (epoch seconds) is rendered as RFC 3339."""
        rec = {**record, "ts": rfc3339(float(record["ts"]))}
        data = (json.dumps(rec, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:  # one writer at a time, and a write of a regular file is one syscall
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)
