"""The per-line decoder: msgspec decodes each line into a struct generated from the field mapping,
then fields are checked a column at a time. It handles every shape and explains every bad record;
`decode.BatchDecoder` uses it where the columnar decoder cannot go.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import polars as pl

from detector.config import ParsingConfig
from detector.decode.fields import (
    LOGICAL_FIELDS,
    OTEL_STATUS,
    OTEL_STATUS_NUMBERS,
    FieldPlan,
    dig,
    json_kind,
    unwrap,
)
from detector.decode.timestamps import TimestampError, epoch_seconds
from detector.events import LEVEL_UNKNOWN, EventBatch, level_code

RowErrors = dict[int, tuple[str, str]]  # row -> (dead-letter reason, detail)

# The JSON types a key may hold when it is the whole path of a field; msgspec checks these in C.
_LEAF_TYPES: dict[str, Any] = {
    "timestamp": str | int | float | None,
    "service": str | None,
    "level": str | int | None,
    "message": str | dict[str, Any] | list[Any] | None,  # structured bodies become JSON text
    "request_id": str | None,
    "span_id": str | None,
    "parent_id": str | None,
    "latency_ms": int | float | None,
    "status": int | str | dict[str, Any] | None,  # an OTLP status object: {"code": 2}
}


class RowDecoder:
    """Decodes JSON lines one by one according to a `ParsingConfig`.

    >>> from detector.config import ParsingConfig
    >>> dec = RowDecoder(ParsingConfig())
    >>> batch, bad, kept = dec.decode([b'{"ts": 1795435200, "service": "cart", "msg": "boom"}',
    ...                                b'not json'])
    >>> batch.service.to_list(), bad, kept.tolist()
    (['cart'], {1: ('undecodable', 'not valid JSON: JSON is malformed: invalid character (byte 4)')}, [0])
    """

    def __init__(self, cfg: ParsingConfig, plan: FieldPlan | None = None) -> None:
        self.cfg = cfg
        plan = plan or FieldPlan.from_mapping(cfg.fields)
        self._alts = plan.alternatives
        self._attr_keys = list(plan.attr_keys)
        keys = plan.keys
        self._attr_name = {k: f"f{i}" for i, k in enumerate(keys)}
        fields: list[tuple[str, Any, Any]] = []
        for k in keys:
            owners = plan.leaf_owners.get(k, frozenset())
            typed = len(owners) == 1 and k not in plan.prefix_keys and k not in plan.attr_keys
            tp = _LEAF_TYPES[next(iter(owners))] if typed else Any
            fields.append((self._attr_name[k], tp, None))
        record = msgspec.defstruct(
            "Record", fields, rename={v: k for k, v in self._attr_name.items()}, gc=False
        )
        self._decoder = msgspec.json.Decoder(record)
        self._any = msgspec.json.Decoder()
        self._getters = {k: attrgetter(v) for k, v in self._attr_name.items()}
        self._level_cache: dict[str, int] = {}

    # ---- public -------------------------------------------------------------------------
    def decode(
        self, lines: Sequence[bytes]
    ) -> tuple[EventBatch, RowErrors, npt.NDArray[np.int64]]:
        """(good events, errors by line index, line index of each good event)."""
        bad: RowErrors = {}
        recs: list[Any] = []
        rec_idx: list[int] = []
        decode = self._decoder.decode
        # Nested objects arrive as dicts the cycle collector would scan over and over while
        # the batch is built; none of them can form a cycle, so it waits for the batch.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            utf8_checked = _valid_utf8(b"\n".join(lines))
            for i, line in enumerate(lines):
                if line[:3] == _BOM:
                    line = line[3:]  # a byte-order mark says UTF-8; it is not part of the JSON
                try:
                    if not utf8_checked:
                        line.decode("utf-8")
                    recs.append(decode(line))
                    rec_idx.append(i)
                except msgspec.ValidationError as exc:
                    bad[i] = self._classify_validation(line, exc)
                except Exception as exc:
                    bad[i] = undecodable(line, exc)
            cols, row_bad = self._columns_isolated(recs)
        finally:
            if was_enabled:
                gc.enable()
        for j, err in row_bad.items():
            bad[rec_idx[j]] = err
        keep = [j for j in range(len(recs)) if j not in row_bad] if row_bad else None
        batch = self._batch(cols, keep)
        idx = np.asarray(rec_idx, dtype=np.int64)
        if keep is not None:
            idx = idx[np.asarray(keep, dtype=np.int64)] if keep else idx[:0]
        return batch, bad, idx

    def _columns_isolated(self, recs: list[Any]) -> tuple[dict[str, Any], RowErrors]:
        """`_columns`, and where it raises (a value no check foresaw), the records that make it
        raise on their own become `decoder_error` letters and the rest are decoded again."""
        try:
            return self._columns(recs)
        except Exception:
            pass
        bad: RowErrors = {}
        for j, rec in enumerate(recs):
            try:
                self._columns([rec])
            except Exception as exc:
                bad[j] = ("decoder_error", f"{type(exc).__name__}: {str(exc)[:200]} (a bug in "
                          "Vigil's decoder: please report it with this line)")
        keep = [j for j in range(len(recs)) if j not in bad]
        cols, row_bad = self._columns([recs[j] for j in keep])
        bad.update({keep[j]: err for j, err in row_bad.items()})
        # Back to one row per record: dropped records get placeholder rows, removed by `decode`.
        full: dict[str, Any] = {}
        where = {j: k for k, j in enumerate(keep)}
        for name, col in cols.items():
            if isinstance(col, np.ndarray):
                arr = np.zeros(len(recs), dtype=col.dtype)
                if keep:
                    arr[np.asarray(keep, dtype=np.int64)] = col
                full[name] = arr
            else:
                full[name] = [col[where[j]] if j in where else None for j in range(len(recs))]
        return full, bad

    # ---- per-line classification --------------------------------------------------------
    def _classify_validation(self, line: bytes, exc: msgspec.ValidationError) -> tuple[str, str]:
        try:
            value = self._any.decode(line)
        except Exception as err:
            return undecodable(line, err)
        if not isinstance(value, dict):
            return ("not_object", f"a log record must be a JSON object, got {json_kind(value)}")
        return ("wrong_type", self._explain(str(exc)))

    def _explain(self, msg: str) -> str:
        """msgspec's 'Expected `int`, got `str` - at `$.status`' in the user's terms."""
        m = re.match(r"Expected `(.+)`, got `(.+)` - at `\$\.?(.*)`", msg)
        if not m:
            return msg
        want, got, key = m.group(1).replace(" | null", ""), m.group(2), m.group(3)
        owner = next((f for f, alts in self._alts.items() if (key, ()) in alts), key)
        return f"field {owner!r} (JSON key {key!r}) must be {want}, got {got}"

    # ---- columns --------------------------------------------------------------------------
    def _raw_column(self, recs: list[Any], fname: str) -> list[Any]:
        """The first usable value of each record along the field's candidate paths."""
        alts = self._alts[fname]
        col: list[Any] = [None] * len(recs)
        todo: list[int] | None = None  # None: every row
        containers: dict[int, Any] = {}  # rows that so far only offered an object or array
        for key, rest in alts:
            get = self._getters[key]
            vals = list(map(get, recs)) if todo is None else [get(recs[i]) for i in todo]
            if vals.count(None) == len(vals):
                continue  # this key is in none of the rows still to resolve
            if rest:
                vals = _dig_all(vals, rest)
            rows = range(len(recs)) if todo is None else todo
            left = []
            for i, v in zip(rows, vals, strict=True):
                # A container where a scalar belongs (ECS "service": {"name": ...}) may be the
                # prefix of a later candidate path, so it counts as not found yet.
                if v is None:
                    left.append(i)
                elif type(v) in (dict, list) and unwrap(v) is v:
                    containers.setdefault(i, v)
                    left.append(i)
                else:
                    col[i] = v
            todo = left
            if not todo:
                break
        for i, v in containers.items():
            if col[i] is None:
                col[i] = v  # nothing better: the type checks say what is wrong with it
        return col

    def _columns(self, recs: list[Any]) -> tuple[dict[str, Any], RowErrors]:
        bad: RowErrors = {}
        required = set(self.cfg.required)
        raw = {f: self._raw_column(recs, f) for f in LOGICAL_FIELDS}
        cols: dict[str, Any] = {}
        cols["ts"] = self._timestamps(raw["timestamp"], bad, "timestamp" in required)
        cols["service"] = self._strings(raw["service"], bad, "service", "service" in required,
                                        default="unknown", nonempty=True)
        cols["level"] = self._levels(raw["level"], bad)
        cols["message"] = self._messages(raw["message"], bad, "message" in required)
        for f in ("request_id", "span_id", "parent_id"):
            cols[f] = self._strings(raw[f], bad, f, False, default=None, nonempty=False)
        cols["latency_ms"] = self._latencies(raw["latency_ms"], bad)
        cols["status"] = self._statuses(raw["status"], bad)
        cols["attrs"] = self._attrs(recs)
        return cols, bad

    def _batch(self, cols: dict[str, Any], keep: list[int] | None) -> EventBatch:
        if keep is not None:
            k = np.asarray(keep, dtype=np.int64)
            for name, v in cols.items():
                cols[name] = v[k] if isinstance(v, np.ndarray) else [v[i] for i in keep]
        def text(name: str) -> pl.Series:
            return pl.Series(name, cols[name], dtype=pl.String)

        return EventBatch(
            ts=cols["ts"], service=text("service"), level=cols["level"],
            message=text("message"), request_id=text("request_id"), span_id=text("span_id"),
            parent_id=text("parent_id"), latency_ms=cols["latency_ms"], status=cols["status"],
            attrs=cols["attrs"],
        )

    @staticmethod
    def _missing(bad: RowErrors, i: int, field: str) -> None:
        bad.setdefault(i, ("missing_field", f"field {field!r} is missing; map it under "
                           f"parsing.fields.{field} or send one of the default names"))

    def _timestamps(
        self, col: list[Any], bad: RowErrors, required: bool
    ) -> npt.NDArray[np.float64]:
        types = set(map(type, col))
        if types <= {str} and col and col[0].isdigit():  # OTLP JSON: nanoseconds as digits
            try:
                digits = np.asarray(col, dtype=np.float64)
                if np.isfinite(digits).all():
                    return _epoch_unit(digits)
            except ValueError:
                pass
        elif types <= {str}:
            try:
                return np.array([_iso(s) for s in col], dtype=np.float64)
            except ValueError:
                pass
        elif types <= {int, float}:
            arr = np.asarray(col, dtype=np.float64)
            if np.isfinite(arr).all():
                return _epoch_unit(arr)
        out = np.zeros(len(col), dtype=np.float64)
        for i, v in enumerate(col):
            if v is None:
                if required:
                    self._missing(bad, i, "timestamp")
                continue
            try:
                out[i] = epoch_seconds(unwrap(v))
            except TimestampError as exc:
                bad.setdefault(i, ("wrong_type", f"field 'timestamp': {exc}"))
        return out

    def _strings(
        self, col: list[Any], bad: RowErrors, field: str, required: bool,
        default: str | None, nonempty: bool,
    ) -> list[Any]:
        types = set(map(type, col))
        if types <= {str} and not (nonempty and "" in col):
            return col
        if types <= {str, type(None)} and not required and not (nonempty and "" in col):
            if default is not None:
                return [default if v is None else v for v in col]
            return col
        out: list[Any] = []
        for i, v in enumerate(col):
            v = unwrap(v)
            if v is None or (nonempty and v == ""):
                if required:
                    self._missing(bad, i, field)
                out.append(default)
            elif isinstance(v, str):
                out.append(v)
            elif isinstance(v, int) and not isinstance(v, bool):
                out.append(str(v))
            else:
                bad.setdefault(i, ("wrong_type", f"field {field!r} must be a string, got "
                                   f"{json_kind(v)}"))
                out.append(default)
        return out

    def _messages(
        self, col: list[Any], bad: RowErrors, required: bool
    ) -> list[str]:
        # A structured body (an object or array) is kept as its JSON text.
        col = [
            _json_text(v) if isinstance(v, dict | list) and unwrap(v) is v else v
            for v in col
        ]
        out: list[str] = self._strings(col, bad, "message", required, default="", nonempty=False)
        cap = self.cfg.max_message_chars
        if out and max(map(len, out)) > cap:
            out = [m if len(m) <= cap else m[:cap] for m in out]
        return out

    def _levels(self, col: list[Any], bad: RowErrors) -> npt.NDArray[np.int16]:
        cache = self._level_cache
        out = np.empty(len(col), dtype=np.int16)
        if set(map(type, col)) <= {str}:
            codes = [cache.get(s, -1) for s in col]
            if -1 not in codes:
                out[:] = codes
                return out
        for i, v in enumerate(col):
            v = unwrap(v)
            code = None
            if isinstance(v, str):
                code = cache.get(v)
                if code is None:
                    code = level_code(v)
                    if code is not None and len(cache) < 10_000:
                        cache[v] = code
            if v is None:
                out[i] = LEVEL_UNKNOWN
            elif code is not None:
                out[i] = code
            elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 24:
                out[i] = v
            else:
                out[i] = LEVEL_UNKNOWN
                bad.setdefault(i, ("wrong_type", "field 'level' must be a level name or an "
                                   f"OpenTelemetry severity number 0-24, got {json_kind(v)}"))
        return out

    def _latencies(
        self, col: list[Any], bad: RowErrors
    ) -> npt.NDArray[np.float64]:
        types = set(map(type, col))
        nan = float("nan")
        if types <= {int, float, type(None)}:
            arr = np.array([nan if v is None else v for v in col], dtype=np.float64)
            if not (arr < 0).any() and not np.isinf(arr).any():
                return arr
        out = np.full(len(col), nan, dtype=np.float64)
        for i, v in enumerate(col):
            v = unwrap(v)
            if v is None:
                continue
            if isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < float("inf"):
                out[i] = v
            else:
                bad.setdefault(i, ("wrong_type", "field 'latency_ms' must be a non-negative "
                                   f"number, got {json_kind(v)}"))
        return out

    def _statuses(self, col: list[Any], bad: RowErrors) -> npt.NDArray[np.int32]:
        types = set(map(type, col))
        if types <= {int, type(None)}:
            try:
                arr = np.array([-1 if v is None else v for v in col], dtype=np.int64)
            except OverflowError:  # an integer beyond 64 bits: the loop below names it
                arr = np.full(1, 1000, dtype=np.int64)
            if ((arr >= -1) & (arr <= 999)).all():
                return arr.astype(np.int32)
        out = np.full(len(col), -1, dtype=np.int32)
        for i, v in enumerate(col):
            v = unwrap(v)
            if v is None:
                continue
            if isinstance(v, str) and v.isdigit():
                v = int(v)
            elif isinstance(v, dict) and "code" in v:  # an OTLP span status {"code": 2, ...}
                code = unwrap(v["code"])
                v = OTEL_STATUS.get(str(code).upper(), OTEL_STATUS_NUMBERS.get(code, -2))
                if v == -1:
                    continue
                if v == -2:
                    bad.setdefault(i, ("wrong_type", "field 'status' is an OTLP status whose "
                                       f"code must be 0, 1 or 2 (or its name), got {json_kind(code)}"))
                    continue
            elif isinstance(v, str) and v.upper() in OTEL_STATUS:
                v = OTEL_STATUS[v.upper()]
                if v < 0:
                    continue
            if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 999:
                out[i] = v
            else:
                bad.setdefault(i, ("wrong_type", "field 'status' must be an integer status code "
                                   f"0-999, got {json_kind(v)}"))
        return out

    def _attrs(self, recs: list[Any]) -> list[dict[str, str] | None]:
        """Configured extra keys with scalar values, as text (objects and arrays are left out)."""
        out: list[dict[str, str] | None] = [None] * len(recs)
        for key in self._attr_keys:
            col = list(map(self._getters[key], recs))
            if col.count(None) == len(col):
                continue
            for i, v in enumerate(col):
                if v is not None and not isinstance(v, dict | list):
                    d = out[i]
                    if d is None:
                        d = out[i] = {}
                    d[key] = v if isinstance(v, str) else _json_text(v)
        return out


# ---- helpers ------------------------------------------------------------------------------
_BOM = b"\xef\xbb\xbf"
_JSON_ENCODE = msgspec.json.Encoder().encode  # any int size, any depth (orjson stops at 64 bits, 254)


def _json_text(v: Any) -> str:
    return _JSON_ENCODE(v).decode()


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def undecodable(line: bytes, exc: BaseException) -> tuple[str, str]:
    """The dead-letter reason and detail of a line that does not decode, in a person's terms.

    >>> undecodable(b'{"a": "\\xff"}', UnicodeDecodeError("utf-8", b"", 0, 1, "x"))
    ('undecodable', 'not valid UTF-8 (byte 0xff at offset 7); JSON text must be UTF-8')
    >>> undecodable(b"[[[", RecursionError())[1]
    'nested deeper than the decoder allows (about 1,000 levels of objects and arrays)'
    """
    if isinstance(exc, UnicodeDecodeError):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as err:
            at = err.start
            return ("undecodable", f"not valid UTF-8 (byte 0x{line[at]:02x} at offset {at}); "
                    "JSON text must be UTF-8")
        return ("undecodable", f"not valid UTF-8: {exc}")
    if isinstance(exc, RecursionError):
        return ("undecodable", "nested deeper than the decoder allows (about 1,000 levels of "
                "objects and arrays)")
    if isinstance(exc, msgspec.DecodeError):
        return ("undecodable", f"not valid JSON: {exc}")
    return ("decoder_error", f"{type(exc).__name__}: {str(exc)[:200]} (a bug in Vigil's "
            "decoder: please report it with this line)")
def _dig_all(vals: list[Any], rest: tuple[str, ...]) -> list[Any]:
    if len(rest) == 1:  # the common case, a plain nested key, without a call per row
        k = rest[0]
        return [v.get(k) if type(v) is dict and k in v else
                (None if v is None else dig(v, rest)) for v in vals]
    return [None if v is None else dig(v, rest) for v in vals]


def _iso(s: str) -> float:
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _epoch_unit(arr: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    a = np.abs(arr)
    scale = np.where(a < 1e11, 1.0, np.where(a < 1e14, 1e-3, np.where(a < 1e17, 1e-6, 1e-9)))
    out: npt.NDArray[np.float64] = arr * scale
    return out
