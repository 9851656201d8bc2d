"""The raw-text decoder (`parsing.format` logfmt or regex): lines to text columns, one compiled
regex or logfmt split per line, then every field converted a column at a time, timestamps in
polars. It explains every bad line (no_match, bad_timestamp, ...); JSON is `columns`/`rows`'.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.config import ParsingConfig
from detector.decode.fields import LOGICAL_FIELDS, OTEL_STATUS, FieldPlan
from detector.decode.layouts import DEFAULT_SERVICE, PRESETS, Layout
from detector.decode.logfmt import not_logfmt, split_logfmt, unquote
from detector.decode.rows import RowErrors
from detector.decode.timestamps import TimestampError, epoch_seconds
from detector.events import LEVEL_UNKNOWN, EventBatch, level_code

Column = list[str | None]
# Syslog severities 0-7 (emerg .. debug) as OpenTelemetry severity numbers.
_SYSLOG_LEVELS = (21, 21, 21, 17, 13, 10, 9, 5)
_ABSENT = ("", "-")  # a value that means "none" in raw text layouts (Apache, syslog NILVALUE)
_BOM = "\ufeff"


class TextDecoder:
    """Decodes raw text lines according to a `ParsingConfig` whose format is logfmt or regex.

    >>> dec = TextDecoder(ParsingConfig(format="regex", preset="hdfs"))
    >>> batch, bad, kept = dec.decode([
    ...     b"081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block blk_-16089",
    ...     b"hello"])
    >>> batch.ts.tolist(), batch.service.to_list(), kept.tolist()
    ([1226262918.0], ['dfs.DataNode$DataXceiver'], [0])
    >>> bad
    {1: ('no_match', 'the line does not match the hdfs layout')}
    """

    def __init__(self, cfg: ParsingConfig, plan: FieldPlan | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        plan = plan or FieldPlan.from_mapping(cfg.fields)
        self._clock = clock
        self._layout: Layout | None = None
        if cfg.format == "regex":
            if cfg.preset is not None:
                self._layout = PRESETS[cfg.preset]
                self._what = f"the {cfg.preset} layout"
            else:
                assert cfg.pattern is not None  # ParsingConfig checks it
                self._layout = Layout("pattern", cfg.pattern, cfg.timestamp_format)
                self._what = "parsing.pattern"
        self._ts_format = (self._layout.ts_format if self._layout is not None
                           else cfg.timestamp_format)
        self._yearless = self._layout is not None and self._layout.yearless
        # Keys that can hold each field, in priority order: the mapping's whole-key candidates,
        # then the field's own name (so a preset's groups map whatever the mapping says).
        self._keys = {
            f: list(dict.fromkeys([*(k for k, rest in plan.alternatives[f] if not rest), f]))
            for f in LOGICAL_FIELDS
        }
        self._attr_keys = list(plan.attr_keys)
        self._service = cfg.default_service or DEFAULT_SERVICE.get(cfg.preset or "")
        self._level_cache: dict[str, int] = {}

    # ---- public -------------------------------------------------------------------------
    def decode(self, lines: Sequence[bytes]) -> tuple[EventBatch, RowErrors,
                                                      npt.NDArray[np.int64]]:
        """(good events, errors by line index, line index of each good event)."""
        bad: RowErrors = {}
        texts = _texts(lines, bad)
        rows, get = (self._match(texts, bad) if self._layout is not None
                     else self._logfmt(texts, bad))
        row_bad: RowErrors = {}
        cols = self._columns(get, len(rows), row_bad)
        keep = np.ones(len(rows), dtype=bool)
        for j, err in row_bad.items():
            keep[j] = False
            bad[rows[j]] = err
        idx = np.asarray(rows, dtype=np.int64)[keep]
        return _batch(cols, keep if row_bad else None), bad, idx

    # ---- lines to text columns ----------------------------------------------------------
    def _match(self, texts: list[str | None], bad: RowErrors
               ) -> tuple[list[int], Callable[[str], Column | None]]:
        assert self._layout is not None
        found = _each(self._layout.regex.match, texts)
        groups = [m.groups() for m in found if m is not None]
        rows = _rows(found, len(groups), texts, bad, lambda t: f"the line does not match "
                     f"{self._what}")
        index = self._layout.regex.groupindex
        by_group = list(zip(*groups, strict=True)) if groups else []

        def get(key: str) -> Column | None:
            j = index.get(key)
            if j is None:
                return None
            return list(by_group[j - 1]) if by_group else []

        return rows, get

    def _logfmt(self, texts: list[str | None], bad: RowErrors
                ) -> tuple[list[int], Callable[[str], Column | None]]:
        found = _each(split_logfmt, texts)
        records = [r for r in found if r is not None]
        rows = _rows(found, len(records), texts, bad, lambda t: f"not logfmt: {not_logfmt(t)}")
        present = set().union(*records) if records else set()

        def get(key: str) -> Column | None:
            if key not in present:
                return None
            col: Column = [r.get(key) for r in records]
            return [unquote(v) if v is not None and v[:1] == '"' else v for v in col]

        return rows, get

    # ---- text columns to typed columns --------------------------------------------------
    def _field(self, get: Callable[[str], Column | None], f: str, n: int) -> Column:
        """The first present value of each row among the field's keys ("" and "-" are none,
        except in the message)."""
        out: Column | None = None
        for key in self._keys[f]:
            col = get(key)
            if col is None:
                continue
            if f != "message":
                col = [None if v in _ABSENT else v for v in col]
            out = col if out is None else [a if a is not None else b
                                           for a, b in zip(out, col, strict=True)]
        return out if out is not None else [None] * n

    def _columns(self, get: Callable[[str], Column | None], n: int, bad: RowErrors
                 ) -> dict[str, Any]:
        required = set(self.cfg.required)
        raw = {f: self._field(get, f, n) for f in LOGICAL_FIELDS}
        cols: dict[str, Any] = {}
        cols["ts"] = self._timestamps(raw["timestamp"], bad, "timestamp" in required)
        service = raw["service"]
        if None in service:
            fallback = self._service or ("unknown" if "service" not in required else None)
            for j, v in enumerate(service):
                if v is None:
                    if fallback is None:
                        _missing(bad, j, "service")
                    service[j] = fallback or "unknown"
        cols["service"] = service
        cols["level"] = self._levels(raw["level"], get("pri"))
        message = raw["message"]
        if None in message:
            for j, v in enumerate(message):
                if v is None:
                    if "message" in required:
                        _missing(bad, j, "message")
                    message[j] = ""
        cap = self.cfg.max_message_chars
        if message and max(map(len, message)) > cap:  # type: ignore[arg-type]
            message = [m if m is None or len(m) <= cap else m[:cap] for m in message]
        cols["message"] = message
        for f in ("request_id", "span_id", "parent_id"):
            cols[f] = raw[f]
        cols["latency_ms"] = self._latencies(raw["latency_ms"], get("latency_s"), bad)
        cols["status"] = _statuses(raw["status"], bad)
        cols["attrs"], cols["attr_columns"] = self._attrs(get, n)
        return cols

    def _timestamps(self, col: Column, bad: RowErrors, required: bool
                    ) -> npt.NDArray[np.float64]:
        s = pl.Series("ts", col, dtype=pl.String)
        fmt = self._ts_format
        if fmt is None:
            epoch = _auto_epoch(s)
        elif self._yearless:
            epoch = self._yearless_epoch(s, fmt)
        else:
            epoch = _epoch_of(s, fmt)
        failed = epoch.is_null() & s.is_not_null()
        arr: npt.NDArray[np.float64] = epoch.fill_null(0.0).to_numpy().astype(np.float64)
        if failed.any() or s.null_count():
            how = f"does not read as {fmt}" if fmt else "is neither RFC 3339 nor an epoch number"
            for j in np.flatnonzero(failed.to_numpy()).tolist():
                bad.setdefault(j, ("bad_timestamp", f"timestamp {col[j]!r} {how}"))
            if required:
                for j in np.flatnonzero(s.is_null().to_numpy()).tolist():
                    _missing(bad, j, "timestamp")
        return arr

    def _yearless_epoch(self, s: pl.Series, fmt: str) -> pl.Series:
        now = self._clock()
        year = self.cfg.year or datetime.fromtimestamp(now, UTC).year
        squeezed = s.str.replace_all(r"\s+", " ")
        epoch = _epoch_of(f"{year} " + squeezed, fmt)
        if self.cfg.year is None:  # December's lines read in January are last year's
            ahead = (epoch > now + 86_400).fill_null(False)
            if ahead.any():
                epoch = pl.select(pl.when(ahead).then(_epoch_of(f"{year - 1} " + squeezed, fmt))
                                  .otherwise(epoch)).to_series()
        return epoch

    def _levels(self, col: Column, pri: Column | None) -> npt.NDArray[np.int16]:
        cache = self._level_cache
        out = np.empty(len(col), dtype=np.int16)
        for j, v in enumerate(col):
            if v is None:
                code = LEVEL_UNKNOWN
                p = pri[j] if pri is not None else None
                if p is not None and p.isdigit():
                    code = _SYSLOG_LEVELS[int(p) % 8]
            else:
                c = cache.get(v)
                if c is None:
                    c = level_code(v)
                    c = LEVEL_UNKNOWN if c is None else c
                    if len(cache) < 10_000:
                        cache[v] = c
                code = c
            out[j] = code
        return out

    def _latencies(self, ms: Column, seconds: Column | None, bad: RowErrors
                   ) -> npt.NDArray[np.float64]:
        out = _numbers(ms, bad, "latency_ms", 1.0)
        if seconds is not None:
            secs = [None if v in _ABSENT else v for v in seconds]
            from_s = _numbers(secs, bad, "latency_s", 1000.0)
            out = np.where(np.isnan(out), from_s, out)
        return out

    def _attrs(self, get: Callable[[str], Column | None], n: int
               ) -> tuple[list[dict[str, str] | None], dict[str, pl.Series]]:
        found = [(key, col) for key in self._attr_keys if (col := get(key)) is not None]
        columns = {key: pl.Series(key, col, dtype=pl.String) for key, col in found}
        if not found:
            return [None] * n, columns
        if len(found) == 1:  # the common case (a host), one comprehension
            key, col = found[0]
            return [None if v is None else {key: v} for v in col], columns
        names = [key for key, _ in found]
        out = [{k: v for k, v in zip(names, values, strict=True) if v is not None} or None
               for values in zip(*(col for _, col in found), strict=True)]
        return out, columns


# ---- helpers ------------------------------------------------------------------------------
def _texts(lines: Sequence[bytes], bad: RowErrors) -> list[str | None]:
    """The lines as text (None where not UTF-8, with its dead letter); a BOM is dropped."""
    if not lines:
        return []
    try:
        texts: list[str | None] = list(b"\n".join(lines).decode("utf-8").split("\n"))
        if len(texts) != len(lines):  # a record holding a newline (Kafka): line by line
            raise UnicodeDecodeError("utf-8", b"", 0, 1, "newline")
    except UnicodeDecodeError:
        texts = []
        for i, line in enumerate(lines):
            try:
                texts.append(line.decode("utf-8"))
            except UnicodeDecodeError as err:
                bad[i] = ("undecodable", f"not valid UTF-8 (byte 0x{line[err.start]:02x} at "
                          f"offset {err.start}); text lines must be UTF-8")
                texts.append(None)
    return [t[1:] if t is not None and t[:1] == _BOM else t for t in texts]


def _each(parse: Callable[[str], Any], texts: list[str | None]) -> list[Any]:
    """`parse` of every text (None where there is no text), without a Python loop when all are."""
    if None in texts:
        return [None if t is None else parse(t) for t in texts]
    return list(map(parse, texts))


def _rows(found: list[Any], n_found: int, texts: list[str | None], bad: RowErrors,
          why: Callable[[str], str]) -> list[int]:
    """The lines `found` something for; the others with text are no_match letters."""
    if n_found == len(found):
        return list(range(n_found))
    rows = []
    for i, r in enumerate(found):
        if r is not None:
            rows.append(i)
        elif (t := texts[i]) is not None:
            bad[i] = ("no_match", why(t))
    return rows


def _missing(bad: RowErrors, j: int, field: str) -> None:
    bad.setdefault(j, ("missing_field", f"field {field!r} is missing; name a group or key "
                       f"{field!r} (or one of parsing.fields.{field})"))


def _epoch_of(s: pl.Series, fmt: str) -> pl.Series:
    """Epoch seconds of text in a strftime format (null where it does not read); UTC when the
    format has no offset."""
    dt = s.str.to_datetime(fmt, time_unit="us", strict=False)
    if isinstance(dt.dtype, pl.Datetime) and dt.dtype.time_zone is not None:
        dt = dt.dt.convert_time_zone("UTC")
    return dt.dt.epoch("us").cast(pl.Float64) / 1e6


def _auto_epoch(s: pl.Series) -> pl.Series:
    """RFC 3339 or epoch numbers (s/ms/µs/ns by magnitude), as `decode.timestamps` reads them."""
    num = s.cast(pl.Float64, strict=False)
    a = num.abs()
    scale = pl.select(pl.when(a < 1e11).then(1.0).when(a < 1e14).then(1e-3)
                      .when(a < 1e17).then(1e-6).otherwise(1e-9)).to_series()
    epoch = num * scale
    todo = epoch.is_null() & s.is_not_null()
    if todo.any():
        iso = s.str.to_datetime("%+", time_unit="us", time_zone="UTC", strict=False)
        epoch = epoch.fill_null(iso.dt.epoch("us").cast(pl.Float64) / 1e6)
        rest = np.flatnonzero((epoch.is_null() & s.is_not_null()).to_numpy()).tolist()
        if rest:  # forms polars does not take (no offset, a space for T): Python's reader
            values = epoch.to_list()
            texts = s.to_list()
            for j in rest:
                with contextlib.suppress(TimestampError, ValueError):
                    values[j] = epoch_seconds(texts[j])
            epoch = pl.Series("ts", values, dtype=pl.Float64)
    return epoch.fill_nan(None)


def _numbers(col: Column, bad: RowErrors, key: str, scale: float) -> npt.NDArray[np.float64]:
    s = pl.Series(key, col, dtype=pl.String)
    num = s.cast(pl.Float64, strict=False)
    wrong = (num.is_null() & s.is_not_null()) | (num < 0).fill_null(False) \
        | num.is_infinite().fill_null(False) | num.is_nan().fill_null(False)
    if wrong.any():
        for j in np.flatnonzero(wrong.to_numpy()).tolist():
            bad.setdefault(j, ("wrong_type", f"field 'latency_ms' ({key}) must be a "
                               f"non-negative number, got {col[j]!r}"))
        num = pl.select(pl.when(wrong).then(None).otherwise(num)).to_series()
    arr: npt.NDArray[np.float64] = num.fill_null(float("nan")).to_numpy().astype(np.float64)
    return arr * scale if scale != 1.0 else arr


def _statuses(col: Column, bad: RowErrors) -> npt.NDArray[np.int32]:
    s = pl.Series("status", col, dtype=pl.String)
    num = s.cast(pl.Int64, strict=False)
    out: npt.NDArray[np.int32] = num.fill_null(-1).to_numpy().astype(np.int32)
    odd = (num.is_null() & s.is_not_null()) | (num < 0).fill_null(False) \
        | (num > 999).fill_null(False)
    for j in np.flatnonzero(odd.to_numpy()).tolist():
        v = col[j] or ""
        if v.upper() in OTEL_STATUS:  # an OpenTelemetry status name: ERROR is 500
            out[j] = OTEL_STATUS[v.upper()]
        else:
            out[j] = -1
            bad.setdefault(j, ("wrong_type", "field 'status' must be an integer status code "
                               f"0-999, got {v[:40]!r}"))
    return out


def _batch(cols: dict[str, Any], keep: npt.NDArray[np.bool_] | None) -> EventBatch:
    if keep is not None:
        sel = np.flatnonzero(keep).tolist()
        for name, v in list(cols.items()):
            if isinstance(v, np.ndarray):
                cols[name] = v[keep]
            elif isinstance(v, dict):
                cols[name] = {k: s.gather(sel) for k, s in v.items()}
            else:
                cols[name] = [v[i] for i in sel]

    def text(name: str) -> pl.Series:
        return pl.Series(name, cols[name], dtype=pl.String)

    return EventBatch(
        ts=cols["ts"], service=text("service"), level=cols["level"], message=text("message"),
        request_id=text("request_id"), span_id=text("span_id"), parent_id=text("parent_id"),
        latency_ms=cols["latency_ms"], status=cols["status"], attrs=cols["attrs"],
        attr_columns=cols["attr_columns"],
    )
