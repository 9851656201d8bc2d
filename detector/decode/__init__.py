"""Lines to `EventBatch`es, every bad record a dead letter: the batch decoder (`batch`) over a
columnar fast path (`columns`) and an exact per-line path (`rows`) for JSON, and the raw-text
decoder (`text`: `logfmt`, regex `layouts`), the field mapping (`fields`), timestamps and dead
letters."""

from detector.decode.batch import BatchDecoder, DecodeResult
from detector.decode.deadletter import REASONS, DeadLetter, DeadLetterCounter

__all__ = ["REASONS", "BatchDecoder", "DeadLetter", "DeadLetterCounter", "DecodeResult"]
