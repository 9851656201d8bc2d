"""Reads JSONL files (plain, gzip, or `-` for stdin) as batches of raw lines with their numbers.

No decoding here: lines stay bytes so the decoder can batch them and dead letters keep them exact.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

_CHUNK = 1 << 20


@dataclass(slots=True)
class LineBatch:
    source: str
    lines: list[bytes]
    line_numbers: Sequence[int]  # 1-based, in the source file


def open_source(path: str | Path) -> tuple[BinaryIO, BinaryIO]:
    """(reader of the decompressed lines, the raw file, whose position measures progress)."""
    if str(path) == "-":
        return sys.stdin.buffer, sys.stdin.buffer
    raw = Path(path).open("rb")  # noqa: SIM115 - returned open; iter_batches closes it
    head = raw.read(2)
    raw.seek(0)
    if head == b"\x1f\x8b":
        return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb")), raw
    return raw, raw


def iter_batches(
    path: str | Path,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> Iterator[LineBatch]:
    """Yield batches of at most `batch_size` non-blank lines; `progress(raw_bytes_read)`."""
    reader, raw = open_source(path)
    source = str(path)
    line_no = 0
    pending: list[bytes] = []
    numbers: list[int] = []
    tail = b""
    try:
        while True:
            chunk = reader.read(_CHUNK)
            if not chunk:
                break
            parts = (tail + chunk).split(b"\n")
            tail = parts.pop()
            stripped = [p.strip() for p in parts]
            if b"" in stripped:
                numbers.extend(line_no + 1 + i for i, s in enumerate(stripped) if s)
                pending.extend(s for s in stripped if s)
            else:
                numbers.extend(range(line_no + 1, line_no + 1 + len(stripped)))
                pending.extend(stripped)
            line_no += len(parts)
            while len(pending) >= batch_size:
                yield LineBatch(source, pending[:batch_size], numbers[:batch_size])
                del pending[:batch_size], numbers[:batch_size]
            if progress is not None and raw is not sys.stdin.buffer:
                progress(raw.tell())
        if tail.strip():
            pending.append(tail.strip())
            numbers.append(line_no + 1)
        if pending:
            yield LineBatch(source, pending, numbers)
    finally:
        if reader is not sys.stdin.buffer:
            reader.close()
            raw.close()
