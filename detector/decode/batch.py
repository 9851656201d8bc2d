"""Lines to `EventBatch`, a batch at a time, every bad record turned into a dead letter.

Raw text (`parsing.format` logfmt or regex) goes to the text decoder. For JSON, the columnar
decoder takes whole batches; where it cannot (a bad line, a nested shape), the batch
is halved until the trouble is cornered in small pieces that the per-line decoder handles and
explains. A source whose shape is nested goes straight to the per-line decoder for a while.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl
from polars.exceptions import PanicException

from detector.config import ParsingConfig
from detector.decode.columns import ColumnarDecoder, ColumnarMiss
from detector.decode.deadletter import DeadLetter
from detector.decode.fields import FieldPlan
from detector.decode.otlp import flatten_export, is_export
from detector.decode.rows import RowDecoder, RowErrors
from detector.decode.text import TextDecoder
from detector.events import EventBatch

_MIN_COLUMNAR = 64  # below this many lines the per-line decoder is as fast
_SKIP_AFTER_SHAPE_MISS = 32  # batches sent straight to the per-line decoder after a nested shape


@dataclass(slots=True)
class DecodeResult:
    batch: EventBatch
    dead: list[DeadLetter]
    line_index: npt.NDArray[np.int64]  # position in the input of each decoded event


@dataclass
class DecoderStats:
    columnar_lines: int = 0
    row_lines: int = 0
    text_lines: int = 0


class BatchDecoder:
    """Decodes batches of lines (JSON, or logfmt or regex) according to a `ParsingConfig`.

    >>> dec = BatchDecoder(ParsingConfig())
    >>> r = dec.decode([b'{"ts": 1795435200, "service": "cart", "level": "error", "msg": "boom"}',
    ...                 b'not json'])
    >>> r.batch.service.to_list(), [d.reason for d in r.dead]
    (['cart'], ['undecodable'])
    """

    def __init__(self, cfg: ParsingConfig) -> None:
        self.cfg = cfg
        plan = FieldPlan.from_mapping(cfg.fields)
        self._columnar = ColumnarDecoder(cfg, plan)
        self._rows = RowDecoder(cfg, plan)
        self._text = TextDecoder(cfg, plan) if cfg.format != "json" else None
        self._skip = 0
        self.stats = DecoderStats()

    def read_schema(self) -> dict[str, pl.DataType]:
        """The schema the columnar decoder hands polars' NDJSON read now (for benchmarks)."""
        return self._columnar.read_schema

    def decode(
        self, lines: Sequence[bytes], source: str = "-", positions: Sequence[int] | None = None
    ) -> DecodeResult:
        """Decode `lines`; dead letters name `source:position` (line number or offset).

        `positions` defaults to line numbers 1, 2, ...
        """
        cap = self.cfg.max_record_bytes
        bad: RowErrors = {}
        index = np.arange(len(lines), dtype=np.int64)
        sizes = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
        todo: Sequence[bytes] = lines
        if (sizes > cap).any():
            for i in np.flatnonzero(sizes > cap).tolist():
                bad[i] = ("oversize", f"record is {int(sizes[i])} bytes; the cap is {cap} "
                          "(parsing.max_record_bytes)")
            index = np.flatnonzero(sizes <= cap)
            todo = [lines[i] for i in index.tolist()]
        parts: list[EventBatch] = []
        kept: list[npt.NDArray[np.int64]] = []
        if self._text is not None:
            self._decode_text(todo, parts, kept, bad, index)
        else:
            self._decode_range(todo, 0, len(todo), parts, kept, bad, index)
        batch = EventBatch.concat(parts)
        line_index = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)

        def at(i: int) -> int:
            return i + 1 if positions is None else int(positions[i])

        # OTLP/JSON export requests fail as records (no timestamp or service at the top): only
        # those lines are looked at again, so the test costs nothing on ordinary input.
        exports = [i for i, (r, _) in bad.items()
                   if r != "oversize" and self._text is None and is_export(lines[i])]
        if exports:
            batch, line_index = self._expand(lines, exports, at, source, bad, batch, line_index)
        dead = [
            DeadLetter(reason=r, detail=d, source=f"{source}:{at(i)}", raw=bytes(lines[i]),
                       position=at(i))
            for i, (r, d) in sorted(bad.items())
        ]
        return DecodeResult(batch=batch, dead=dead, line_index=line_index)

    def _expand(self, lines: Sequence[bytes], exports: list[int], at: Callable[[int], int],
                source: str, bad: RowErrors, batch: EventBatch,
                line_index: npt.NDArray[np.int64]) -> tuple[EventBatch, npt.NDArray[np.int64]]:
        """Decode the flat records of export lines; their events join the batch, each with its
        export line's index; a line that does not expand keeps its dead letter."""
        records: list[bytes] = []
        owner: list[int] = []
        for i in exports:
            flat = flatten_export(lines[i])
            if flat:
                records.extend(flat)
                owner.extend([i] * len(flat))
                del bad[i]
        if not records:
            return batch, line_index
        sub = self.decode(records, source, [at(i) for i in owner])
        line_of = {at(i): i for i in exports}
        for d in sub.dead:  # a bad record inside an export: one letter for the export's line
            bad.setdefault(line_of[d.position or 0], (d.reason, "a record inside this OTLP export: "
                                                 + d.detail))
        owners = np.asarray(owner, dtype=np.int64)
        return (EventBatch.concat([batch, sub.batch]),
                np.concatenate([line_index, owners[sub.line_index]]))

    def _decode_text(self, lines: Sequence[bytes], parts: list[EventBatch],
                     kept: list[npt.NDArray[np.int64]], bad: RowErrors,
                     index: npt.NDArray[np.int64]) -> None:
        assert self._text is not None
        batch, errors, good = self._text.decode(lines)
        self.stats.text_lines += len(lines)
        parts.append(batch)
        kept.append(index[good])
        for i, err in errors.items():
            bad[int(index[i])] = err

    def _decode_range(
        self,
        lines: Sequence[bytes],
        lo: int,
        hi: int,
        parts: list[EventBatch],
        kept: list[npt.NDArray[np.int64]],
        bad: RowErrors,
        index: npt.NDArray[np.int64],
    ) -> None:
        if hi <= lo:
            return
        chunk = lines[lo:hi]
        if hi - lo >= _MIN_COLUMNAR and self._skip == 0:
            try:
                parts.append(self._columnar.decode(chunk))
                kept.append(index[lo:hi])
                self.stats.columnar_lines += hi - lo
                return
            except (Exception, PanicException) as exc:  # PanicException is a BaseException
                # Anything else the columnar decoder raises is a line it could not handle:
                # halves will corner it, and the per-line decoder names it.
                miss = exc if isinstance(exc, ColumnarMiss) else ColumnarMiss(str(exc), True)
                if miss.bisect:
                    mid = (lo + hi) // 2
                    self._decode_range(lines, lo, mid, parts, kept, bad, index)
                    self._decode_range(lines, mid, hi, parts, kept, bad, index)
                    return
                self._skip = _SKIP_AFTER_SHAPE_MISS + 1
        if self._skip:
            self._skip -= 1
        batch, errors, good = self._rows.decode(chunk)
        self.stats.row_lines += hi - lo
        parts.append(batch)
        kept.append(index[lo:hi][good])
        for i, err in errors.items():
            bad[int(index[lo + i])] = err
