"""Dead letters: records Vigil could not use, kept with the reason, source and original bytes.

Nothing here decides what is bad (the decoder and the windowing do) or where letters are written
(any `RecordSink`); this module describes and counts them.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

# Every reason a record can be dead-lettered for; the counters always carry all of them.
REASONS = (
    "undecodable", "not_object", "missing_field", "wrong_type", "oversize", "too_late",
    "clock_skew", "decoder_error", "pipeline_error", "no_match", "bad_timestamp",
)


@dataclass(slots=True)
class DeadLetter:
    reason: str
    detail: str
    source: str  # where, for a person: "file.jsonl:LINE", "topic/partition:OFFSET"
    raw: bytes
    position: int | None = None  # the line number or offset itself, for the code that needs it

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason, "detail": self.detail, "source": self.source}
        try:
            out["raw"] = self.raw.decode("utf-8")
        except UnicodeDecodeError:
            out["raw_b64"] = base64.b64encode(self.raw).decode("ascii")
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeadLetter:
        raw = d["raw"].encode("utf-8") if "raw" in d else base64.b64decode(d["raw_b64"])
        return cls(reason=d["reason"], detail=d["detail"], source=d["source"], raw=raw)


class DeadLetterCounter:
    """Counts per reason; shared by every sink so a summary never depends on the sink."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter({r: 0 for r in REASONS})
        self.first: dict[str, DeadLetter] = {}  # the first letter of each reason, as a sample

    def add(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            self.counts[letter.reason] += 1
            if letter.reason not in self.first:
                self.first[letter.reason] = letter

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def read_dead_letters(path: Path | str, reasons: set[str] | None = None) -> Iterator[DeadLetter]:
    """The dead letters in a `dead_letter.jsonl`, optionally only those with given reasons."""
    with Path(path).open("rb") as fh:
        for line in fh:
            if line.strip():
                letter = DeadLetter.from_dict(orjson.loads(line))
                if reasons is None or letter.reason in reasons:
                    yield letter
