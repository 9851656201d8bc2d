"""Where outcomes go: a record sink protocol with JSONL-file, in-memory and null versions, and
`Outputs`, the three sinks a runtime hands each `BatchOutcome` to.

Sinks only write; deciding what to write is the stages' job, and handing it over is the
runtime's (`runtime/replay.py`, `runtime/watch.py`; `vigil consume` writes to Kafka topics
through `sinks/kafka.py`). No stage holds a sink.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    from detector.pipeline import BatchOutcome


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
    """Drops records."""

    def write(self, records: list[dict[str, Any]]) -> None:
        return None

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass
class Outputs:
    """The anomaly, incident and dead-letter sinks of a run; `write` hands one outcome over.

    >>> from detector.config import VigilConfig
    >>> from detector.pipeline import Pipeline
    >>> outputs = Outputs()
    >>> outputs.write(Pipeline(VigilConfig()).process([b'{oops']))
    >>> [r["reason"] for r in outputs.dead.records]  # type: ignore[attr-defined]
    ['undecodable']
    """

    anomalies: RecordSink = field(default_factory=MemorySink)
    incidents: RecordSink = field(default_factory=MemorySink)
    dead: RecordSink = field(default_factory=MemorySink)

    @classmethod
    def jsonl(cls, directory: Path, dead_letters: bool = True) -> Outputs:
        """anomalies.jsonl, incidents.jsonl and (unless not wanted) dead_letter.jsonl in
        `directory`."""
        return cls(JsonlSink(directory / "anomalies.jsonl"), JsonlSink(directory / "incidents.jsonl"),
                   JsonlSink(directory / "dead_letter.jsonl") if dead_letters else NullSink())

    def write(self, out: BatchOutcome) -> None:
        if out.dead:
            self.dead.write([d.to_dict() for d in out.dead])
        if out.anomalies:
            self.anomalies.write([a.to_dict() for a in out.anomalies])
        if out.incidents:
            self.incidents.write([i.to_dict() for i in out.incidents])

    def flush(self) -> None:
        for sink in (self.anomalies, self.incidents, self.dead):
            sink.flush()

    def close(self) -> None:
        for sink in (self.anomalies, self.incidents, self.dead):
            sink.close()
