"""A capture: the spans, log records and metric samples of a stretch of time, as tables.

The same tables come from files (`read_capture`, for `vigil rca`) and from the stream (a
`CaptureBuffer` fed by the pipeline), so both reach the same root-cause judgement. Records go
through the pipeline's own decoder, so spans and logs are mapped like any log line is: a record
with a span id and a duration is a span; one with a message is a log record (a simulator line that
has both is both). Logs and spans of one trace join on the trace id (and span id where the log has
one).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from detector.config import VigilConfig
from detector.decode.batch import BatchDecoder
from detector.events import LEVEL_ERROR, LEVEL_UNKNOWN, LEVEL_WARN, EventBatch
from detector.sources.files import iter_batches
from detector.templates.miner import TemplateMiner

SPAN_SCHEMA: dict[str, type[pl.DataType] | pl.DataType] = {
    "t": pl.Float64, "service": pl.String, "pod": pl.String, "trace": pl.String,
    "span": pl.String, "parent": pl.String, "name": pl.String, "kind": pl.String,
    "dur_ms": pl.Float64, "error": pl.Boolean, "callee_hint": pl.String,
}
LOG_SCHEMA: dict[str, type[pl.DataType] | pl.DataType] = {
    "t": pl.Float64, "service": pl.String, "trace": pl.String, "span": pl.String,
    "level": pl.Int16, "template": pl.Int64,
}
# Level words and exception names in the text of a record that has no level field.
_ERROR_TEXT = r"\b(?:ERROR|FATAL|CRITICAL|SEVERE|PANIC)\b|[A-Za-z](?:Exception|Error)\b|Traceback"
_WARN_TEXT = r"\b(?:WARN|WARNING)\b"
METRIC_SCHEMA: dict[str, type[pl.DataType] | pl.DataType] = {
    "t": pl.Float64, "service": pl.String, "pod": pl.String, "metric": pl.String,
    "value": pl.Float64,
}


@dataclass(slots=True)
class Capture:
    """Spans, logs and metrics of one stretch of time; `templates` names the log template ids."""

    spans: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=SPAN_SCHEMA))
    logs: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=LOG_SCHEMA))
    metrics: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=METRIC_SCHEMA))
    templates: dict[int, str] = field(default_factory=dict)
    dead_letters: int = 0  # records that did not decode (their reasons are in `dead_reasons`)
    dead_reasons: dict[str, int] = field(default_factory=dict)
    metric_rows_dropped: int = 0  # CSV rows with no time, no service or a value not a number

    @property
    def start(self) -> float:
        """Time of the earliest record (NaN when empty)."""
        return min(self._bounds(), default=math.nan)

    @property
    def end(self) -> float:
        """Time of the latest record (NaN when empty)."""
        return max(self._bounds(), default=math.nan)

    def _bounds(self) -> list[float]:
        return [v for df in (self.spans, self.logs, self.metrics) if df.height
                for v in (_num(df["t"].min()), _num(df["t"].max()))]

    def services(self) -> list[str]:
        """Every service seen in any of the three tables, sorted."""
        seen: set[str] = set()
        for df in (self.spans, self.logs, self.metrics):
            seen.update(s for s in df["service"].unique().to_list() if s)
        return sorted(seen)


def _num(v: object) -> float:
    return float(v) if isinstance(v, int | float) else math.nan


def tables_of(batch: EventBatch) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(spans, logs) of a decoded batch whose `template_id` is set.

    >>> from detector.events import LogEvent
    >>> b = EventBatch.from_events([
    ...     LogEvent(1.0, "cart", 9, "", request_id="t", span_id="s", latency_ms=5.0,
    ...              attrs={"name": "GetCart"}),
    ...     LogEvent(1.1, "cart", 17, "db timeout", request_id="t", span_id="s")])
    >>> spans, logs = tables_of(b)
    >>> spans["name"].to_list(), spans["dur_ms"].to_list(), logs["level"].to_list()
    (['GetCart'], [5.0], [17])
    >>> b = EventBatch.from_events([LogEvent(1.0, "cart", 0, "java.lang.NullPointerException"),
    ...                             LogEvent(1.0, "cart", 0, "2022 WARN slow query"),
    ...                             LogEvent(1.0, "cart", 0, "errors=0 all fine")])
    >>> tables_of(b)[1]["level"].to_list()
    [17, 13, 0]
    """
    return tables_of_frame(frame_of(batch))


def frame_of(batch: EventBatch) -> pl.DataFrame:
    """The columns of a decoded batch that `tables_of_frame` reads, as one frame: the batch's
    own text columns, not copies (what `CaptureBuffer` keeps until an incident asks)."""
    n = len(batch)
    tids = batch.template_id if len(batch.template_id) == n else np.full(n, -1, dtype=np.int64)
    return pl.DataFrame({
        "t": batch.ts, "service": batch.service, "trace": batch.request_id,
        "span": batch.span_id, "parent": batch.parent_id, "message": batch.message,
        "dur_ms": batch.latency_ms, "status": batch.status, "level": batch.level,
        "template": tids, "pod": batch.attr_column("pod"), "name": batch.attr_column("name"),
        "kind": batch.attr_column("kind"), "callee_hint": batch.attr_column("callee"),
    })


_IS_SPAN = pl.col("span").is_not_null() & (pl.col("span") != "") & pl.col("dur_ms").is_finite()
_IS_LOG = pl.col("message").is_not_null() & (pl.col("message") != "")


def records_in(df: pl.DataFrame) -> int:
    """How many spans and log records `tables_of_frame(df)` holds, without making them."""
    if df.height == 0:
        return 0
    return int(df.select(_IS_SPAN.sum() + _IS_LOG.sum()).item())


def tables_of_frame(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(spans, logs) of a `frame_of` frame."""
    if df.height == 0:
        return pl.DataFrame(schema=SPAN_SCHEMA), pl.DataFrame(schema=LOG_SCHEMA)
    # One frame, filtered twice: per-column filters cost a tenth of the pipeline's time.
    spans = df.lazy().filter(_IS_SPAN).with_columns(
        parent=pl.col("parent").fill_null(""), name=pl.col("name").fill_null(""),
        kind=pl.col("kind").str.to_uppercase(), error=pl.col("status") >= 500,
    ).select(list(SPAN_SCHEMA))
    # A log line that is also a failed span (status >= 500) counts as an error log.
    # A record with no level says it in its text often enough ("ERROR", "...Exception").
    # (polars runs both sides of a when, so the texts are searched only in a frame that has
    # records with no level: most have none, and the search costs more than the rest)
    unknown = pl.col("level") == LEVEL_UNKNOWN
    guessed = (pl.when(unknown & pl.col("message").str.contains(_ERROR_TEXT)).then(LEVEL_ERROR)
               .when(unknown & pl.col("message").str.contains(_WARN_TEXT)).then(LEVEL_WARN)
               .otherwise(pl.col("level"))
               if bool((df["level"] == LEVEL_UNKNOWN).any()) else pl.col("level"))
    logs = df.lazy().filter(_IS_LOG).with_columns(
        level=pl.when(pl.col("status") >= 500).then(pl.max_horizontal(
            guessed, pl.lit(LEVEL_ERROR))).otherwise(guessed).cast(pl.Int16),
    ).select(list(LOG_SCHEMA))
    got = pl.collect_all([spans, logs])
    return got[0].cast(SPAN_SCHEMA), got[1].cast(LOG_SCHEMA)  # type: ignore[arg-type]


def read_capture(inputs: Iterable[str | Path], cfg: VigilConfig,
                 metrics: Iterable[str | Path] = ()) -> Capture:
    """Read JSON-lines files of logs and/or spans (plain or gzip; OTLP/JSON exports expanded)
    and long-format metric CSVs into one `Capture`. Undecodable records are counted, not fatal.
    """
    decoder = BatchDecoder(cfg.parsing)
    miner = TemplateMiner(cfg.templates)
    cap = Capture()
    span_parts, log_parts = [], []
    for path in inputs:
        for lb in iter_batches(path, cfg.batch_size):
            res = decoder.decode(lb.lines, lb.source, lb.line_numbers)
            for d in res.dead:
                cap.dead_reasons[d.reason] = cap.dead_reasons.get(d.reason, 0) + 1
            cap.dead_letters += len(res.dead)
            batch = res.batch
            batch.template_id = miner.mine(batch.message, batch.ts,
                                           cfg.window.seconds).template_id
            s, lg = tables_of(batch)
            span_parts.append(s)
            log_parts.append(lg)
    if span_parts:
        cap.spans = pl.concat(span_parts).sort("t")
    if log_parts:
        cap.logs = pl.concat(log_parts).sort("t")
    cap.templates = {tid: text for tid, text, _ in miner.templates()}
    parts = [read_metrics_csv(p) for p in metrics]
    if parts:
        cap.metrics = pl.concat([df for df, _ in parts]).sort("t")
        cap.metric_rows_dropped = sum(n for _, n in parts)
    return cap


def read_metrics_csv(path: str | Path) -> tuple[pl.DataFrame, int]:
    """A long-format CSV `timestamp,service,pod,metric,value` (gzip or plain) as a metric table,
    and how many rows were dropped (no time, no service, or a value that is not a number).

    `timestamp` is RFC 3339 or epoch seconds; `pod` may be empty.
    """
    raw = pl.read_csv(path, infer_schema=False, columns=None)
    missing = {"timestamp", "service", "metric", "value"} - set(raw.columns)
    if missing:
        raise ValueError(f"{path}: the metrics CSV lacks column(s) {', '.join(sorted(missing))} "
                         "(expected timestamp,service,pod,metric,value)")
    if "pod" not in raw.columns:
        raw = raw.with_columns(pod=pl.lit(None, dtype=pl.String))
    ts = raw["timestamp"]
    numeric = ts.cast(pl.Float64, strict=False)
    parsed = ts.str.to_datetime(time_zone="UTC", strict=False, time_unit="us").dt.epoch("us") / 1e6
    t = numeric.fill_null(parsed)
    df = pl.DataFrame({
        "t": t, "service": raw["service"], "pod": raw["pod"], "metric": raw["metric"],
        "value": raw["value"].cast(pl.Float64, strict=False),
    }).filter(pl.col("t").is_not_null() & pl.col("service").is_not_null()
              & (pl.col("service") != "") & pl.col("value").is_finite())
    return df.select(list(METRIC_SCHEMA)).cast(METRIC_SCHEMA), raw.height - df.height  # type: ignore[arg-type]
