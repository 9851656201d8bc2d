"""The columnar decoder: a whole batch of JSON lines through polars' NDJSON reader, then every field
checked and converted as a column in Rust. Several times faster than decoding line by line.

It only accepts what it can decode exactly: top-level fields of the expected types. Anything else
(a bad line, a nested shape such as ECS or OTLP, a value of the wrong type) raises `ColumnarMiss`
and the caller hands those lines to the per-line decoder, which explains them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from detector.config import ParsingConfig
from detector.events import LEVEL_UNKNOWN, EventBatch, level_code
from detector.fieldmap import FieldPlan

_TEXT_FIELDS = ("service", "level", "request_id", "span_id", "parent_id")



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
            if plain and owners == {"latency_ms"}:
                schema[k] = pl.Float64()
            elif plain and owners == {"status"}:
                schema[k] = pl.Int64()
            else:
                schema[k] = pl.String()  # polars writes any JSON value here as text
        self._full = schema
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

    def decode(self, lines: Sequence[bytes]) -> EventBatch:
        try:
            return self._decode(lines)
        except pl.exceptions.PolarsError as exc:  # a cast or parse deeper in
            raise ColumnarMiss(f"polars: {str(exc)[:200]}", bisect=True) from exc

    def _decode(self, lines: Sequence[bytes]) -> EventBatch:
        n = len(lines)
        data = b"\n".join(lines)  # a record with a raw newline breaks the row count below
        try:
            df = pl.read_ndjson(data, schema=self._schema)
        except (pl.exceptions.PolarsError, ValueError):
            try:  # perhaps a key this source had not used before: read with every key
                df = pl.read_ndjson(data, schema=self._full)
            except (pl.exceptions.PolarsError, ValueError) as exc:
                raise ColumnarMiss(f"polars: {str(exc)[:200]}", bisect=True) from exc
            present = {c for c in df.columns if df[c].null_count() < df.height}
            if not present <= self._seen:
                self._seen |= present
                self._schema = self._schema_for(self._seen)
        if df.height != n:
            raise ColumnarMiss("blank or partial lines", bisect=True)
        cols, chk = self._columns_and_checks(df)
        for f in self._leaf:
            if chk[f"nested:{f}"]:
                raise ColumnarMiss(f"{f} is inside an object: a nested shape", bisect=False)
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
        message = cols["message"].fill_null("")
        cap = self.cfg.max_message_chars
        if (chk["maxlen:message"] or 0) > cap:
            message = message.str.slice(0, cap)
        service = cols["service"] if "service" in required else cols["service"].fill_null("unknown")
        return EventBatch(
            ts=self._timestamps(cols["timestamp"], chk["null:timestamp"]),
            service=service,
            level=self._levels(cols["level"]),
            message=message,
            request_id=cols["request_id"],
            span_id=cols["span_id"],
            parent_id=cols["parent_id"],
            latency_ms=cols["latency_ms"].fill_null(float("nan")).to_numpy().astype(
                np.float64, copy=False),
            status=cols["status"].fill_null(-1).to_numpy().astype(np.int32),
            attrs=self._attrs(df, n),
        )

    def _columns_and_checks(self, df: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, Any]]:
        """The coalesced fields, and every validity check as one row, from one parallel query."""
        c = pl.col
        text_keys = {k for k in self._seen if df.schema[k] == pl.String}

        def leaf(k: str) -> pl.Expr:
            # A key that may also hold an object to dig into ("service": {"name": ...}) gives
            # its value only when that value is not an object.
            if k in self._plan.prefix_keys and k in text_keys:
                return pl.when(_container_expr(c(k))).then(None).otherwise(c(k))
            return c(k)

        def field(f: str, dtype: pl.DataType) -> pl.Expr:
            keys = [k for k in self._leaf[f] if k in self._seen]
            if not keys:
                return pl.lit(None, dtype=dtype).alias(f)
            e = leaf(keys[0]) if len(keys) == 1 else pl.coalesce([leaf(k) for k in keys])
            return e.cast(dtype).alias(f)

        def nested_needed(f: str) -> pl.Expr:
            """Rows where the field is still missing but an object could hold it."""
            keys = [k for k in self._prefix[f] if k in text_keys]
            if not keys:
                return pl.lit(False).alias(f"nested:{f}")
            holds = pl.any_horizontal([_container_expr(c(k)).fill_null(False) for k in keys])
            return (c(f).is_null() & holds).any().alias(f"nested:{f}")

        fields = [*[field(f, pl.String()) for f in ("timestamp", "message", *_TEXT_FIELDS)],
                  field("latency_ms", pl.Float64()), field("status", pl.Int64())]
        base = df.lazy().with_columns(fields)
        names = [f for f in self._leaf]
        checks = [
            *[c(f).null_count().alias(f"null:{f}") for f in ("timestamp", "service", "message")],
            *[_container_expr(c(f)).any().alias(f"container:{f}") for f in _TEXT_FIELDS],
            (c("service") == "").any().alias("empty:service"),
            ((c("latency_ms") < 0) | c("latency_ms").is_infinite()).any().alias("bad:latency_ms"),
            ((c("status") < 0) | (c("status") > 999)).any().alias("bad:status"),
            c("message").str.len_chars().max().alias("maxlen:message"),
            *[nested_needed(f) for f in names],
        ]
        cols, chk = pl.collect_all([base.select(names), base.select(checks)])
        return cols, chk.row(0, named=True)

    def _schema_for(self, seen: set[str]) -> dict[str, pl.DataType]:
        return {k: (v if k in seen else pl.Null()) for k, v in self._full.items()}

    # ---- fields -------------------------------------------------------------------------
    @staticmethod
    def _timestamps(s: pl.Series, missing: int) -> npt.NDArray[np.float64]:
        if missing == len(s):
            return np.zeros(len(s), dtype=np.float64)
        first = s.drop_nulls()[0]
        if "-" in first[1:] or "T" in first:  # RFC 3339 first; epoch numbers only if some fail
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

    def _levels(self, s: pl.Series) -> npt.NDArray[np.int16]:
        if s.null_count() == len(s):
            return np.full(len(s), LEVEL_UNKNOWN, dtype=np.int16)
        distinct = s.drop_nulls().unique().to_list()  # a handful: map them in Python
        codes = []
        for text in distinct:
            code = level_code(text)
            if code is None or text in ("true", "false"):  # polars writes a JSON boolean as text
                raise ColumnarMiss(f"level {text!r} is not a level", bisect=True)
            codes.append(code)
        out = s.replace_strict(distinct, codes, default=LEVEL_UNKNOWN, return_dtype=pl.Int16)
        return out.fill_null(LEVEL_UNKNOWN).to_numpy().astype(np.int16)

    def _attrs(self, df: pl.DataFrame, n: int) -> list[dict[str, str] | None]:
        out: list[dict[str, str] | None] = [None] * n
        for key in self._plan.attr_keys:
            col = df[key]
            if col.null_count() == n:
                continue
            for i in np.flatnonzero(col.is_not_null().to_numpy()).tolist():
                d = out[i]
                if d is None:
                    d = out[i] = {}
                d[key] = col[i]
        return out


def _container_expr(e: pl.Expr) -> pl.Expr:
    """Whether a text value is an object or array (polars writes those as JSON text)."""
    return e.str.starts_with("{") | e.str.starts_with("[")


def _epoch_unit(s: pl.Series) -> pl.Series:
    """Epoch numbers in s, ms, µs or ns to seconds, by magnitude (see `detector.timestamps`)."""
    a = s.abs()
    scale = (
        pl.select(
            pl.when(a < 1e11).then(1.0).when(a < 1e14).then(1e-3)
            .when(a < 1e17).then(1e-6).otherwise(1e-9)
        ).to_series()
    )
    return s * scale
