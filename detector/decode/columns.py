"""The columnar decoder: a whole batch of JSON lines through polars' NDJSON reader, then every field
checked and converted as a column in Rust. Several times faster than decoding line by line.

It only accepts what it can decode exactly: fields of the expected types at the top level or inside
objects (read as polars structs). Anything else (a bad line, a value of the wrong type, a field
inside an array such as OTLP's KeyValue lists) raises `ColumnarMiss` and the caller hands those
lines to the per-line decoder, which explains them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.config import ParsingConfig
from detector.decode.fields import FieldPlan
from detector.decode.isotime import fixed_rfc3339
from detector.events import LEVEL_UNKNOWN, ColumnAttrs, EventBatch, level_code

# An escaped UTF-16 surrogate that is not half of a pair: not a character, so not valid text.
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_TEXT_FIELDS = ("service", "level", "request_id", "span_id", "parent_id")
_F = "\x00field:"  # prefix of the decoded fields' column names, apart from any JSON key
_A = "\x00attr:"  # and of the extra keys' raw columns
_LEVEL = "\x00level"  # the level codes the query maps from the level texts it knows
_NULLS = "\x00nulls"  # one column of nulls, for the extra keys a batch does not use
_LEVEL_NEW = -32768  # a level text the query does not know yet: mapped after it
_MAX_LEVEL_TEXTS = 256  # level texts the query maps (more are mapped after it, batch by batch)
_DENSE_AFTER = 2  # batches a field's first key is in every record before it is taken as dense
_DENSE_AFTER_MAX = 1024  # the most, after the assumption has failed again and again


class ColumnarMiss(Exception):
    """The batch cannot be decoded column-wise; `bisect` says whether halves may fare better."""

    def __init__(self, why: str, bisect: bool) -> None:
        super().__init__(why)
        self.bisect = bisect


class ColumnarDecoder:
    """Decodes a batch of lines in one polars call, or raises `ColumnarMiss`."""

    def __init__(self, cfg: ParsingConfig, plan: FieldPlan | None = None) -> None:
        self.cfg = cfg
        plan = plan or FieldPlan.from_mapping(cfg.fields)
        self._plan = plan
        schema: dict[str, pl.DataType] = {}
        for k in plan.keys:
            owners = plan.leaf_owners.get(k, frozenset())
            plain = k not in plan.prefix_keys and k not in plan.attr_keys
            schema[k] = _leaf_dtype(owners) if plain else pl.String()
        self._text_schema = schema  # polars writes any JSON value in a String column as text
        # Keys this source sends as objects are read as polars structs of the paths below them.
        self._structs = {k: _struct_for(k, plan) for k in plan.prefix_keys}
        self._nested_dtypes: dict[str, pl.DataType] = {}  # keys read as structs
        self._full = dict(schema)
        # Keys this source has been seen to use are parsed; the rest are declared Null, which
        # costs polars far less and still fails loudly the first time such a key appears.
        self._seen: set[str] = set()
        self._schema = self._schema_for(self._seen)
        self._leaf = {
            f: [k for k, rest in alts if not rest] for f, alts in plan.alternatives.items()
        }
        self._prefix = {
            f: list(dict.fromkeys(k for k, rest in alts if rest))
            for f, alts in plan.alternatives.items()
        }
        # Level texts met so far and their codes, which the query maps itself
        self._level_codes: dict[str, int] = {}
        # The query's expressions for the current schema and level texts, by the fields taken
        # to be dense: built once, not per batch (building them costs about as much as reading
        # a small batch)
        self._queries: dict[frozenset[str], _Query] = {}
        # Fields taken to be dense: their first key this source uses has been in every record
        # of the last `_need[f]` batches. The keys ranked below it cannot change such a field,
        # so the query does not read them if they are unseen (each costs polars a lookup per
        # record), and checks that it was right: where a record lacks that key, the batch is
        # read again in full, and the field waits twice as many batches before it is trusted
        # again (a source that often lacks the key costs few second reads).
        self._dense: frozenset[str] = frozenset()
        self._streak: dict[str, int] = {}
        self._need: dict[str, int] = {}
        # where each key stands among each field's alternatives
        self._ranks: dict[str, list[tuple[str, int]]] = {}
        for f, alts in plan.alternatives.items():
            for i, (k, _rest) in enumerate(alts):
                self._ranks.setdefault(k, []).append((f, i))

    @property
    def read_schema(self) -> dict[str, pl.DataType]:
        """The schema a batch is read with first: the keys seen so far, the rest as Null."""
        return dict(self._schema)

    def decode(self, lines: Sequence[bytes]) -> EventBatch:
        try:
            try:
                return self._decode(lines)
            except _NeedStructs as need:
                before = dict(self._nested_dtypes)
                self._use_structs({**before, **{k: self._structs[k] for k in need.objects}})
                try:
                    return self._decode(lines)
                except (ColumnarMiss, _NeedStructs, pl.exceptions.PolarsError) as exc:
                    # A bad line, or a source that mixes shapes: halves will tell which.
                    self._use_structs(before)
                    raise ColumnarMiss(f"with objects read as structs: {exc}", bisect=True) from exc
        except pl.exceptions.PolarsError as exc:  # a cast or parse deeper in
            raise ColumnarMiss(f"polars: {str(exc)[:200]}", bisect=True) from exc

    def _decode(self, lines: Sequence[bytes]) -> EventBatch:
        n = len(lines)
        data = b"\n".join(lines)  # a record with a raw newline breaks the row count below
        # memchr for a backslash first: most batches have none, and `in` for two bytes is ten
        # times slower over a batch's megabytes
        if data.find(b"\\") != -1 and b"\\u" in data and _LONE_SURROGATE.search(data):
            # polars reads an escaped lone surrogate as NUL; the per-line decoder refuses it.
            raise ColumnarMiss("an escaped lone surrogate", bisect=True)
        cols, chk = self._query_batch(data)
        if chk["rows"] != n:
            raise ColumnarMiss("blank or partial lines", bisect=True)
        if any(chk[f"array:{f}"] for f in self._leaf):
            raise ColumnarMiss("a field inside an array: a nested shape", bisect=False)
        objects = {k for f in self._leaf for k in chk[f"object:{f}"]}
        if objects:
            raise _NeedStructs(objects)
        required = set(self.cfg.required)
        for f in ("timestamp", "service", "message"):
            if f in required and chk[f"null:{f}"]:
                raise ColumnarMiss(f"{f} is missing", bisect=True)
        for f in _TEXT_FIELDS:
            if chk[f"container:{f}"]:
                raise ColumnarMiss(f"{f} holds an object or array", bisect=True)
        if chk["empty:service"]:
            raise ColumnarMiss("service is empty", bisect=True)
        if chk["bad:latency_ms"]:
            raise ColumnarMiss("a negative or infinite latency", bisect=True)
        if chk["bad:status"]:
            raise ColumnarMiss("a status out of range", bisect=True)
        message = cols["message"]
        cap = self.cfg.max_message_chars
        if (chk["maxlen:message"] or 0) > cap:
            message = message.str.slice(0, cap)
        attrs, attr_columns = self._attrs(cols, n)
        return EventBatch(
            ts=self._timestamps(cols["timestamp"], chk["null:timestamp"], chk["first:timestamp"],
                                (chk["minlen:timestamp"], chk["maxlen:timestamp"])),
            service=cols["service"],
            level=self._levels(cols),
            message=message,
            request_id=cols["request_id"],
            span_id=cols["span_id"],
            parent_id=cols["parent_id"],
            latency_ms=cols["latency_ms"].to_numpy().astype(np.float64, copy=False),
            status=cols["status"].to_numpy().astype(np.int32),
            attrs=attrs,
            attr_columns=attr_columns,
        )

    def _query_batch(self, data: bytes) -> tuple[pl.DataFrame, dict[str, Any]]:
        """One query: polars' read of the batch, then every field and check on it; again with
        every key if a field taken to be dense was not, or eagerly to learn a new key."""
        try:
            cols, chk, q = self._columns_and_checks(pl.scan_ndjson(data, schema=self._schema),
                                                    self._schema, self._dense)
            wrong = [f for f in q.dense if chk[f"sparse:{f}"]]
            if wrong:
                for f in wrong:
                    self._need[f] = min(2 * self._need.get(f, _DENSE_AFTER), _DENSE_AFTER_MAX)
                cols, chk, q = self._columns_and_checks(
                    pl.scan_ndjson(data, schema=self._schema), self._schema, frozenset())
        except (pl.exceptions.PolarsError, ValueError):
            # perhaps a key this source had not used before: read it eagerly, and learn it
            df = self._read(data)
            cols, chk, q = self._columns_and_checks(df.lazy(), df.schema, frozenset())
        for f in q.tops:
            self._streak[f] = 0 if chk[f"sparse:{f}"] else self._streak.get(f, 0) + 1
        self._dense = frozenset(f for f in q.tops
                                if self._streak[f] >= self._need.get(f, _DENSE_AFTER))
        return cols, chk

    def _columns_and_checks(self, lf: pl.LazyFrame, schema: Mapping[str, pl.DataType],
                            dense: frozenset[str]) -> tuple[pl.DataFrame, dict[str, Any], _Query]:
        """The fields (nulls filled, levels mapped), the extra keys' columns, and every validity
        check as one row, from one parallel query over `lf` (the batch read with `schema`;
        the unseen keys that cannot change the `dense` fields left unread)."""
        q = self._queries.get(dense)
        if q is None or q.schema is not schema:
            if q is not None:
                self._queries.clear()  # the schema changed: every query is stale
            q = self._build_query(schema, dense)
            if schema is self._schema:  # the eager read's schema is a batch's, not kept
                self._queries[dense] = q
        base = lf.with_columns(q.fields)
        cols, chk = pl.collect_all([base.select(q.columns), base.select(q.checks)])
        row = chk.row(0, named=True)
        for f in self._leaf:
            row.setdefault(f"object:{f}", [])
            row.setdefault(f"array:{f}", [])
        return cols, row, q

    def _build_query(self, schema: Mapping[str, pl.DataType], dense: frozenset[str]) -> _Query:
        c = pl.col
        text_keys = {k for k in self._seen if schema[k] == pl.String}
        struct_keys = {k for k in self._seen if isinstance(schema[k], pl.Struct)}
        # each field's first key read as a value (not as a struct), and where it ranks
        tops: dict[str, tuple[str, int]] = {}
        for f, alts in self._plan.alternatives.items():
            for i, (k, rest) in enumerate(alts):
                if not rest and k in self._seen and k not in struct_keys:
                    tops[f] = (k, i)
                    break
        dense = frozenset(f for f in dense if f in tops)

        def unread(k: str) -> bool:
            """An unseen key that only ranks below the first key of dense fields."""
            ranks = self._ranks.get(k)
            return (bool(ranks) and k not in self._seen and k not in self._plan.attr_keys
                    and all(f in dense and i > tops[f][1] for f, i in ranks or ()))

        def leaf(k: str) -> pl.Expr:
            # A key that may also hold an object to dig into ("service": {"name": ...}) gives
            # its value only when that value is not an object.
            if k in self._plan.prefix_keys and k in text_keys:
                return pl.when(_container_expr(c(k))).then(None).otherwise(c(k))
            return c(k)

        def candidates(f: str, dtype: pl.DataType) -> list[pl.Expr]:
            out: list[pl.Expr] = []
            for k, rest in self._plan.alternatives[f]:
                if not rest and k in self._seen and k not in struct_keys:
                    out.append(leaf(k).cast(dtype))
                elif rest and k in struct_keys:
                    out.extend(e.cast(dtype) for e in _struct_paths(c(k), schema[k], rest))
            return out

        def field(f: str, dtype: pl.DataType) -> pl.Expr:
            # Named apart from the raw keys ("service" is both), which the checks still read.
            exprs = candidates(f, dtype)
            if not exprs:
                return pl.lit(None, dtype=dtype).alias(_F + f)
            return (exprs[0] if len(exprs) == 1 else pl.coalesce(exprs)).alias(_F + f)

        def nested_needed(f: str) -> list[pl.Expr]:
            """Keys whose objects could hold the field where it is still missing, and keys
            whose arrays could (OTLP KeyValue lists, also inside objects), which are the
            per-line decoder's: polars reads lists of structs slower than msgspec does."""
            keys = [k for k in self._prefix[f] if k in text_keys]
            missing = c(_F + f).is_null()
            has_array = [c(k).str.contains("[", literal=True) for k in keys]
            objects = [pl.when((missing & c(k).str.starts_with("{") & ~arr).any()).then(pl.lit(k))
                       for k, arr in zip(keys, has_array, strict=True)]
            arrays = [pl.when((missing & arr).any()).then(pl.lit(k))
                      for k, arr in zip(keys, has_array, strict=True)]
            return [pl.concat_list(objects).list.drop_nulls().alias(f"object:{f}"),
                    pl.concat_list(arrays).list.drop_nulls().alias(f"array:{f}")]

        fields = [*[field(f, pl.String()) for f in ("timestamp", "message", *_TEXT_FIELDS)],
                  field("latency_ms", pl.Float64()), field("status", pl.Int64())]
        names = list(self._leaf)
        v = {f: c(_F + f) for f in names}
        ts_bytes = v["timestamp"].str.len_bytes()
        checks = [
            *[v[f].null_count().alias(f"null:{f}") for f in names],
            *[_container_expr(v[f]).any().alias(f"container:{f}") for f in _TEXT_FIELDS],
            (v["service"] == "").any().alias("empty:service"),
            ((v["latency_ms"] < 0) | v["latency_ms"].is_infinite()).any().alias("bad:latency_ms"),
            ((v["status"] < 0) | (v["status"] > 999)).any().alias("bad:status"),
            v["message"].str.len_chars().max().alias("maxlen:message"),
            v["timestamp"].drop_nulls().first().alias("first:timestamp"),
            ts_bytes.min().alias("minlen:timestamp"),
            ts_bytes.max().alias("maxlen:timestamp"),
            pl.len().alias("rows"),
            # Every key declared Null is read (not projected away), so that a value under it
            # fails the read and is learnt (`_read`), but those that cannot change a field
            *[c(k).null_count().alias(f"unseen:{k}") for k in schema
              if k not in self._seen and not unread(k)],
            # which fields' first keys are missing (or objects) somewhere
            *[(leaf(k).null_count() > 0).alias(f"sparse:{f}") for f, (k, _) in tops.items()],
            # Only a field missing somewhere can be hiding inside an object (each check asks
            # about the rows where it is missing), and only below a key read as text.
            *[e for f in names if any(k in text_keys for k in self._prefix[f])
              for e in nested_needed(f)],
        ]
        # What the EventBatch takes, converted here rather than a Series call at a time after
        service = v["service"]
        if "service" not in self.cfg.required:
            service = service.fill_null("unknown")
        level = v["level"]
        known = self._level_codes
        codes = (level.replace_strict(list(known), list(known.values()), default=_LEVEL_NEW,
                                      return_dtype=pl.Int16)
                 if known else pl.lit(_LEVEL_NEW, dtype=pl.Int16))
        columns = [
            *[v[f].alias(f) for f in names
              if f not in ("message", "service", "latency_ms", "status")],
            v["message"].fill_null("").alias("message"),
            service.alias("service"),
            v["latency_ms"].fill_null(float("nan")).alias("latency_ms"),
            v["status"].fill_null(-1).alias("status"),
            pl.when(level.is_null()).then(pl.lit(LEVEL_UNKNOWN, dtype=pl.Int16))
            .otherwise(codes).alias(_LEVEL),
            pl.lit(None, dtype=pl.String).alias(_NULLS),
            *[_scalar_text(c(k)).alias(_A + k) if schema[k] == pl.String else c(k).alias(_A + k)
              for k in self._plan.attr_keys if k in schema],
        ]
        return _Query(schema, dense, frozenset(tops), fields, columns, checks)

    def _read(self, data: bytes) -> pl.DataFrame:
        """The batch as a frame of the keys this source uses, learning new keys as they come."""
        try:
            return pl.read_ndjson(data, schema=self._schema)
        except (pl.exceptions.PolarsError, ValueError) as exc:
            error: Exception = exc
        # Perhaps a key this source had not used before: read with every key; or the source
        # went back from objects to flat values: read them as text again.
        for schema in (self._full, self._text_schema):
            try:
                df = pl.read_ndjson(data, schema=schema)
            except (pl.exceptions.PolarsError, ValueError) as exc:
                error = exc
                continue
            if schema is self._text_schema and self._nested_dtypes:
                self._use_structs({})
            present = {c for c in df.columns if df[c].null_count() < df.height}
            if not present <= self._seen:
                self._seen |= present
                self._schema = self._schema_for(self._seen)
            return df
        raise ColumnarMiss(f"polars: {str(error)[:200]}", bisect=True) from error

    def _schema_for(self, seen: set[str]) -> dict[str, pl.DataType]:
        return {k: (v if k in seen else pl.Null()) for k, v in self._full.items()}

    def _use_structs(self, dtypes: dict[str, pl.DataType]) -> None:
        """Read these keys with these nested dtypes from now on, every other key as text."""
        self._nested_dtypes = dtypes
        self._full = {k: dtypes.get(k, v) for k, v in self._text_schema.items()}
        self._schema = self._schema_for(self._seen)

    # ---- fields -------------------------------------------------------------------------
    @staticmethod
    def _timestamps(s: pl.Series, missing: int, first: str | None,
                    widths: tuple[int | None, int | None]) -> npt.NDArray[np.float64]:
        """Epoch seconds; `first`: the first timestamp present, `widths`: the fewest and most
        bytes of one (the query's)."""
        if missing == len(s) or first is None:
            return np.zeros(len(s), dtype=np.float64)
        if "-" in first[1:] or "T" in first:  # RFC 3339 first; epoch numbers only if some fail
            # the common layouts, in numpy; None sends all to polars
            fast = fixed_rfc3339(s, widths if not missing else None)
            if fast is not None:
                return fast
            dt = s.str.to_datetime("%+", time_unit="us", time_zone="UTC", strict=False)
            epoch = dt.dt.epoch("us").cast(pl.Float64) / 1e6
            if epoch.null_count() != missing:
                epoch = epoch.fill_null(_epoch_unit(s.cast(pl.Float64, strict=False)))
        else:
            epoch = _epoch_unit(s.cast(pl.Float64, strict=False))
            if epoch.null_count() != missing:
                dt = s.str.to_datetime("%+", time_unit="us", time_zone="UTC", strict=False)
                epoch = epoch.fill_null(dt.dt.epoch("us").cast(pl.Float64) / 1e6)
        if epoch.null_count() != missing:
            raise ColumnarMiss("a timestamp polars cannot read", bisect=True)
        arr: npt.NDArray[np.float64] = epoch.fill_null(0.0).to_numpy()
        if not np.isfinite(arr).all():
            raise ColumnarMiss("a timestamp is not finite", bisect=True)
        return arr

    def _levels(self, cols: pl.DataFrame) -> npt.NDArray[np.int16]:
        """The query's level codes; texts it did not know yet are checked and mapped here, and
        learnt (up to `_MAX_LEVEL_TEXTS`) so that the next batch's query maps them."""
        codes = cols[_LEVEL].to_numpy()
        new = codes == _LEVEL_NEW
        if not new.any():
            return codes.astype(np.int16, copy=False)
        texts = cols["level"].filter(pl.Series(new))
        distinct = texts.unique().to_list()  # a handful: map them in Python
        mapped = []
        for text in distinct:
            code = level_code(text)
            if code is None or text in ("true", "false"):  # polars writes a JSON boolean as text
                raise ColumnarMiss(f"level {text!r} is not a level", bisect=True)
            mapped.append(code)
        out = codes.astype(np.int16)
        out[new] = texts.replace_strict(distinct, mapped, return_dtype=pl.Int16).to_numpy()
        room = _MAX_LEVEL_TEXTS - len(self._level_codes)
        if room > 0:
            self._level_codes.update(list(zip(distinct, mapped, strict=True))[:room])
            self._queries.clear()  # the next query maps them
        return out

    def _attrs(self, cols: pl.DataFrame, n: int) -> tuple[ColumnAttrs, dict[str, pl.Series]]:
        """Configured extra keys with scalar values, as text columns (objects and arrays are
        left out by the query), and per event, built from those columns only when asked for."""
        columns: dict[str, pl.Series] = {}
        nulls = cols[_NULLS]  # one column of nulls, named anew for each key (no copy)
        for key in self._plan.attr_keys:
            col = cols[_A + key]
            if col.null_count() == n:
                columns[key] = nulls.alias(key)
            elif col.dtype == pl.String:
                columns[key] = col.alias(key)
        return ColumnAttrs(columns, n), columns


@dataclass(frozen=True, slots=True)
class _Query:
    """The expressions of one decode query, for batches read with `schema`."""

    schema: Mapping[str, pl.DataType]
    dense: frozenset[str]  # fields taken to be in every record (unseen keys below them unread)
    tops: frozenset[str]  # fields with a key this source uses, checked for being dense
    fields: list[pl.Expr]  # the coalesced fields, added to the read
    columns: list[pl.Expr]  # what the EventBatch is made of
    checks: list[pl.Expr]  # one row of validity checks


class _NeedStructs(Exception):
    """A signal between two methods: these keys hold objects with fields the batch needs."""

    def __init__(self, objects: set[str]) -> None:
        super().__init__(", ".join(sorted(objects)))
        self.objects = objects


def _leaf_dtype(owners: frozenset[str]) -> pl.DataType:
    if owners == {"latency_ms"}:
        return pl.Float64()
    if owners == {"status"}:
        return pl.Int64()
    return pl.String()


def _struct_for(key: str, plan: FieldPlan) -> pl.Struct:
    """The struct that holds every path the plan digs for below `key`, in each dotted form."""
    tree: dict[str, Any] = {}

    def add(node: dict[str, Any], rest: tuple[str, ...], dtype: pl.DataType) -> None:
        for i in range(len(rest), 0, -1):
            head, tail = ".".join(rest[:i]), rest[i:]
            if not tail:
                node.setdefault(head, dtype)
            elif isinstance(node.setdefault(head, {}), dict):
                add(node[head], tail, dtype)

    for f, alts in plan.alternatives.items():
        for k, rest in alts:
            if k == key and rest:
                add(tree, rest, _leaf_dtype(frozenset({f})))

    def build(node: dict[str, Any]) -> pl.Struct:
        return pl.Struct({
            name: build(sub) if isinstance(sub, dict) else sub for name, sub in node.items()
        })

    return build(tree)


def _struct_paths(e: pl.Expr, dtype: pl.DataType, rest: tuple[str, ...]) -> list[pl.Expr]:
    """Expressions for `rest` below a struct, longest dotted key first (as `fieldmap.dig`)."""
    out: list[pl.Expr] = []
    fields: dict[str, Any] = (
        {f.name: f.dtype for f in dtype.fields} if isinstance(dtype, pl.Struct) else {}
    )
    for i in range(len(rest), 0, -1):
        head, tail = ".".join(rest[:i]), rest[i:]
        sub = fields.get(head)
        if sub is None:
            continue
        inner = e.struct.field(head)
        out.extend([inner] if not tail else _struct_paths(inner, sub, tail))
    return out


def _scalar_text(e: pl.Expr) -> pl.Expr:
    """A text column's values that are not objects or arrays (null for those)."""
    return pl.when(e.is_not_null() & ~_container_expr(e)).then(e)


def _container_expr(e: pl.Expr) -> pl.Expr:
    """Whether a text value is an object or array (polars writes those as JSON text)."""
    return e.str.starts_with("{") | e.str.starts_with("[")


def _epoch_unit(s: pl.Series) -> pl.Series:
    """Epoch numbers in s, ms, µs or ns to seconds, by magnitude (see `detector.decode.timestamps`)."""
    a = s.abs()
    scale = (
        pl.select(
            pl.when(a < 1e11).then(1.0).when(a < 1e14).then(1e-3)
            .when(a < 1e17).then(1e-6).otherwise(1e-9)
        ).to_series()
    )
    return s * scale
