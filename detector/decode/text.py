"""The raw-text decoder (`parsing.format` logfmt or regex): one compiled regex `match` a line, or
logfmt split by one Rust regex pass over the batch (polars), then every field converted as a
polars column. It explains every bad line (no_match, bad_timestamp, ...); JSON is `columns`/`rows`'.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.config import ParsingConfig
from detector.decode.fields import LOGICAL_FIELDS, OTEL_STATUS, FieldPlan
from detector.decode.layouts import DEFAULT_SERVICE, PRESETS, Layout
from detector.decode.logfmt import LOGFMT_PAIR, not_logfmt, quotes_balanced, unquote
from detector.decode.rows import RowErrors
from detector.decode.timestamps import TimestampError, epoch_seconds
from detector.events import LEVEL_UNKNOWN, EventBatch, level_code

Getter = Callable[[str], "pl.Series | None"]  # a key's text column over the matched lines
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
        # The logfmt keys worth a column: every field's and attr's, and the special groups.
        self._wanted = sorted({k for ks in self._keys.values() for k in ks}
                              | set(self._attr_keys) | {"pri", "latency_s"})

    # ---- public -------------------------------------------------------------------------
    def decode(self, lines: Sequence[bytes]) -> tuple[EventBatch, RowErrors,
                                                      npt.NDArray[np.int64]]:
        """(good events, errors by line index, line index of each good event)."""
        bad: RowErrors = {}
        row_bad: RowErrors = {}
        # A batch makes a tuple or dict a line, which the cycle collector would scan over and
        # over while the batch is built (most of the time, at 65,536 lines); none can form a
        # cycle, so it waits for the batch.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            texts = _texts(lines, bad)
            rows, get = (self._match(texts, bad) if self._layout is not None
                         else self._logfmt(texts, bad))
            cols = self._columns(get, len(rows), row_bad)
        finally:
            if was_enabled:
                gc.enable()
        keep = np.ones(len(rows), dtype=bool)
        for j, err in row_bad.items():
            keep[j] = False
            bad[rows[j]] = err
        idx = np.asarray(rows, dtype=np.int64)[keep]
        return _batch(cols, keep if row_bad else None), bad, idx

    # ---- lines to text columns ----------------------------------------------------------
    def _match(self, texts: list[str | None], bad: RowErrors
               ) -> tuple[list[int], Getter]:
        assert self._layout is not None
        found = _each(self._layout.regex.match, texts)
        groups = [m.groups() for m in found if m is not None]
        rows = _rows(found, len(groups), texts, bad, lambda t: f"the line does not match "
                     f"{self._what}")
        index = self._layout.regex.groupindex
        by_group = list(zip(*groups, strict=True)) if groups else []

        def get(key: str) -> pl.Series | None:
            j = index.get(key)
            if j is None:
                return None
            return pl.Series(key, by_group[j - 1] if by_group else [], dtype=pl.String)

        return rows, get

    def _logfmt(self, texts: list[str | None], bad: RowErrors) -> tuple[list[int], Getter]:
        """Every line's pairs by one Rust regex pass (polars), as `logfmt.split_logfmt` reads
        them, then one column per key the fields read (the last of a repeated key wins)."""
        line = pl.col("line")
        split = _in_parallel(pl.DataFrame({"line": pl.Series(texts, dtype=pl.String)}),
                             lambda lf: lf.select(
                                 line.str.extract_all(LOGFMT_PAIR).alias("p"),
                                 (line.str.count_matches('"', literal=True)
                                  - line.str.count_matches('\\"', literal=True)).alias("q"),
                                 line.str.contains("\\\\", literal=True).alias("bs")))
        pairs = split["p"]
        even = (split["q"] % 2 == 0).fill_null(False).to_numpy()
        # An escaped backslash before a quote does not escape it: such lines are counted again.
        for i in np.flatnonzero(split["bs"].fill_null(False).to_numpy()).tolist():
            even[i] = quotes_balanced(texts[i] or "")
        ok = (pairs.list.len().fill_null(0) > 0).to_numpy() & even
        rows = np.flatnonzero(ok).tolist()
        if len(rows) != len(texts):
            for i in np.flatnonzero(~ok).tolist():
                if texts[i] is not None:
                    bad[i] = ("no_match", f"not logfmt: {not_logfmt(texts[i] or '')}")
        wanted = self._wanted
        long = _in_parallel(
            pl.DataFrame({"p": pairs.filter(pl.Series(ok))}).with_row_index("row"),
            lambda lf: lf.explode("p").drop_nulls("p")
            .select("row", pl.col("p").str.splitn("=", 2).struct.rename_fields(["k", "v"])
                    .alias("kv")).unnest("kv").filter(pl.col("k").is_in(wanted)))
        by_key = long.partition_by("k", as_dict=True, include_key=False)
        n = len(rows)

        def get(key: str) -> pl.Series | None:
            part = by_key.get((key,))
            if part is None:
                return None
            part = part.unique("row", keep="last")
            v = part["v"].str.strip_prefix('"').str.strip_suffix('"')  # bare values hold none
            if v.str.contains("\\", literal=True).any():
                v = pl.Series("v", [None if x is None else unquote(f'"{x}"') if "\\" in x else x
                                    for x in v.to_list()], dtype=pl.String)
            return pl.Series(key, [None] * n, dtype=pl.String).scatter(part["row"], v)

        return rows, get

    # ---- text columns to typed columns --------------------------------------------------
    def _field(self, get: Getter, f: str, n: int) -> pl.Series:
        """The first present value of each row among the field's keys ("" and "-" are none,
        except in the message)."""
        out: pl.Series | None = None
        for key in self._keys[f]:
            col = get(key)
            if col is None:
                continue
            if f != "message":
                col = _absent_as_null(col)
            out = col if out is None else out.fill_null(col)
        return (out if out is not None else _nulls(n)).alias(f)

    def _columns(self, get: Getter, n: int, bad: RowErrors) -> dict[str, Any]:
        required = set(self.cfg.required)
        raw = {f: self._field(get, f, n) for f in LOGICAL_FIELDS}
        cols: dict[str, Any] = {}
        cols["ts"] = self._timestamps(raw["timestamp"], bad, "timestamp" in required)
        service = raw["service"]
        if service.null_count():
            fallback = self._service or ("unknown" if "service" not in required else None)
            if fallback is None:
                for j in np.flatnonzero(service.is_null().to_numpy()).tolist():
                    _missing(bad, j, "service")
            service = service.fill_null(fallback or "unknown")
        cols["service"] = service
        cols["level"] = self._levels(raw["level"], get("pri"))
        message = raw["message"]
        if message.null_count():
            if "message" in required:
                for j in np.flatnonzero(message.is_null().to_numpy()).tolist():
                    _missing(bad, j, "message")
            message = message.fill_null("")
        cap = self.cfg.max_message_chars
        if n and (message.str.len_chars().max() or 0) > cap:  # type: ignore[operator]
            message = message.str.slice(0, cap)
        cols["message"] = message
        for f in ("request_id", "span_id", "parent_id"):
            cols[f] = raw[f]
        cols["latency_ms"] = self._latencies(raw["latency_ms"], get("latency_s"), bad)
        cols["status"] = _statuses(raw["status"], bad)
        cols["attrs"], cols["attr_columns"] = self._attrs(get, n)
        return cols

    def _timestamps(self, s: pl.Series, bad: RowErrors, required: bool
                    ) -> npt.NDArray[np.float64]:
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
                bad.setdefault(j, ("bad_timestamp", f"timestamp {s[j]!r} {how}"))
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

    def _levels(self, s: pl.Series, pri: pl.Series | None) -> npt.NDArray[np.int16]:
        cache = self._level_cache
        distinct = s.drop_nulls().unique().to_list()  # a handful: map them in Python
        codes = []
        for v in distinct:
            c = cache.get(v)
            if c is None:
                c = level_code(v)
                c = LEVEL_UNKNOWN if c is None else c
                if len(cache) < 10_000:
                    cache[v] = c
            codes.append(c)
        out: npt.NDArray[np.int16] = (
            s.replace_strict(distinct, codes, default=LEVEL_UNKNOWN, return_dtype=pl.Int16)
            .to_numpy().astype(np.int16))
        if s.null_count():
            out[s.is_null().to_numpy()] = -1
        if pri is not None and (out == -1).any():  # a syslog priority where no level is
            sev = (pri.cast(pl.Int64, strict=False) % 8).fill_null(-1).to_numpy()
            use = (out == -1) & (sev >= 0)
            out[use] = np.asarray(_SYSLOG_LEVELS, dtype=np.int16)[sev[use]]
        out[out == -1] = LEVEL_UNKNOWN
        return out

    def _latencies(self, ms: pl.Series, seconds: pl.Series | None, bad: RowErrors
                   ) -> npt.NDArray[np.float64]:
        out = _numbers(ms, bad, "latency_ms", 1.0)
        if seconds is not None:
            from_s = _numbers(_absent_as_null(seconds), bad, "latency_s", 1000.0)
            out = np.where(np.isnan(out), from_s, out)
        return out

    def _attrs(self, get: Getter, n: int
               ) -> tuple[list[dict[str, str] | None], dict[str, pl.Series]]:
        columns = {key: col for key in self._attr_keys if (col := get(key)) is not None}
        if not columns:
            return [None] * n, columns
        found = [(key, col.to_list()) for key, col in columns.items()]
        if len(found) == 1:  # the common case (a host), one comprehension
            key, values = found[0]
            return [None if v is None else {key: v} for v in values], columns
        names = [key for key, _ in found]
        out = [{k: v for k, v in zip(names, row, strict=True) if v is not None} or None
               for row in zip(*(values for _, values in found), strict=True)]
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
    return list(map(parse, cast(list[str], texts)))


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


def _in_parallel(df: pl.DataFrame, query: Callable[[pl.LazyFrame], pl.LazyFrame]
                 ) -> pl.DataFrame:
    """`query` over slices of `df` at once, one per polars thread (string functions on one
    column run on one thread), in order."""
    k = min(pl.thread_pool_size(), max(1, df.height // 16_384))
    if k == 1:
        return query(df.lazy()).collect()
    step = -(-df.height // k)
    return pl.concat([query(df.slice(i, step).lazy()) for i in range(0, df.height, step)],
                     parallel=True).collect()


def _nulls(n: int) -> pl.Series:
    return pl.Series("", [None] * n, dtype=pl.String)


def _absent_as_null(s: pl.Series) -> pl.Series:
    absent = s.is_in(_ABSENT)
    if not absent.any():
        return s
    return s.zip_with(~absent, _nulls(len(s)))


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


def _numbers(s: pl.Series, bad: RowErrors, key: str, scale: float) -> npt.NDArray[np.float64]:
    num = s.cast(pl.Float64, strict=False)
    wrong = (num.is_null() & s.is_not_null()) | (num < 0).fill_null(False) \
        | num.is_infinite().fill_null(False) | num.is_nan().fill_null(False)
    if wrong.any():
        for j in np.flatnonzero(wrong.to_numpy()).tolist():
            bad.setdefault(j, ("wrong_type", f"field 'latency_ms' ({key}) must be a "
                               f"non-negative number, got {s[j]!r}"))
        num = num.zip_with(~wrong, pl.Series([None] * len(num), dtype=pl.Float64))
    arr: npt.NDArray[np.float64] = num.fill_null(float("nan")).to_numpy().astype(np.float64)
    return arr * scale if scale != 1.0 else arr


def _statuses(s: pl.Series, bad: RowErrors) -> npt.NDArray[np.int32]:
    num = s.cast(pl.Int64, strict=False)
    out: npt.NDArray[np.int32] = num.fill_null(-1).to_numpy().astype(np.int32)
    odd = (num.is_null() & s.is_not_null()) | (num < 0).fill_null(False) \
        | (num > 999).fill_null(False)
    for j in np.flatnonzero(odd.to_numpy()).tolist():
        v = s[j] or ""
        if v.upper() in OTEL_STATUS:  # an OpenTelemetry status name: ERROR is 500
            out[j] = OTEL_STATUS[v.upper()]
        else:
            out[j] = -1
            bad.setdefault(j, ("wrong_type", "field 'status' must be an integer status code "
                               f"0-999, got {v[:40]!r}"))
    return out


def _batch(cols: dict[str, Any], keep: npt.NDArray[np.bool_] | None) -> EventBatch:
    if keep is not None:
        mask = pl.Series(keep)
        sel = np.flatnonzero(keep).tolist()
        for name, v in list(cols.items()):
            if isinstance(v, np.ndarray):
                cols[name] = v[keep]
            elif isinstance(v, pl.Series):
                cols[name] = v.filter(mask)
            elif isinstance(v, dict):
                cols[name] = {k: s.filter(mask) for k, s in v.items()}
            else:
                cols[name] = [v[i] for i in sel]

    def text(name: str) -> pl.Series:
        col: pl.Series = cols[name]
        return col.alias(name)

    return EventBatch(
        ts=cols["ts"], service=text("service"), level=cols["level"], message=text("message"),
        request_id=text("request_id"), span_id=text("span_id"), parent_id=text("parent_id"),
        latency_ms=cols["latency_ms"], status=cols["status"], attrs=cols["attrs"],
        attr_columns=cols["attr_columns"],
    )
