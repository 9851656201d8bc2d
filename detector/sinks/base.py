"""Where anomalies and incidents go: a small sink protocol with JSONL-file and in-memory versions.

Sinks only write; deciding what to write is the pipeline's job.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Protocol

import orjson


class RecordSink(Protocol):
    def write(self, records: list[dict[str, Any]]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class JsonlSink:
    """Appends records to a JSONL file; `flush` makes them durable up to the OS."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = self.path.open("ab")

    def write(self, records: list[dict[str, Any]]) -> None:
        if records:
            self._fh.write(b"".join(orjson.dumps(r) + b"\n" for r in records))

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class MemorySink:
    """Keeps records in a list: for tests and notebooks."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, records: list[dict[str, Any]]) -> None:
        self.records.extend(records)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


class NullSink:
    """Drops records: for a caller that takes them from `BatchOutcome` instead (the consumer)."""

    def write(self, records: list[dict[str, Any]]) -> None:
        return None

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None
