"""The detector's vocabulary: `LogEvent`, its columnar batch `EventBatch`, `Anomaly` and `Incident`.

Plain data only; no parsing, scoring or I/O lives here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

# Severity codes follow OpenTelemetry's severity number ranges (TRACE=1 .. FATAL=21).
LEVEL_UNKNOWN = 0
LEVEL_DEBUG = 5
LEVEL_INFO = 9
LEVEL_WARN = 13
LEVEL_ERROR = 17
LEVEL_FATAL = 21

LEVEL_NAMES = {
    "trace": 1, "debug": LEVEL_DEBUG, "info": LEVEL_INFO, "information": LEVEL_INFO,
    "notice": 10, "warn": LEVEL_WARN, "warning": LEVEL_WARN, "error": LEVEL_ERROR, "err": LEVEL_ERROR,
    "critical": LEVEL_FATAL, "crit": LEVEL_FATAL, "fatal": LEVEL_FATAL, "alert": LEVEL_FATAL,
    "emergency": LEVEL_FATAL, "emerg": LEVEL_FATAL, "panic": LEVEL_FATAL, "severe": LEVEL_ERROR,
}


def level_code(text: str) -> int | None:
    """OpenTelemetry severity number of a level name or numeric string.

    Unknown names are LEVEL_UNKNOWN (custom levels are not errors); None means a number
    outside 0-24, which is.

    >>> level_code("WARN"), level_code(" error "), level_code("17"), level_code("chatty")
    (13, 17, 17, 0)
    >>> level_code("99") is None
    True
    """
    t = text.strip().lower()
    code = LEVEL_NAMES.get(t)
    if code is not None:
        return code
    if t.lstrip("-").isdigit():
        n = int(t)
        return n if 0 <= n <= 24 else None
    return LEVEL_UNKNOWN


@dataclass(slots=True)
class LogEvent:
    """One structured log record, normalised from whichever JSON shape it arrived in."""

    ts: float  # epoch seconds, event time
    service: str
    level: int  # OpenTelemetry severity number; 0 when unknown
    message: str
    template_id: int = -1
    request_id: str | None = None
    span_id: str | None = None
    parent_id: str | None = None
    latency_ms: float | None = None
    status: int | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


class ColumnAttrs(Sequence[dict[str, str] | None]):
    """Per-event extra keys (`EventBatch.attrs`) read from text columns (null: absent) only
    when asked for: the columnar decoder builds no per-event dict on the hot path.

    >>> a = ColumnAttrs({"pod": pl.Series([None, "p1"]), "kind": pl.Series(["k", None])}, 2)
    >>> list(a), a[-1], len(a)
    ([{'kind': 'k'}, {'pod': 'p1'}], {'pod': 'p1'}, 2)
    """

    def __init__(self, columns: dict[str, pl.Series], n: int) -> None:
        self._columns = {k: c for k, c in columns.items() if c.null_count() < n}
        self._n = n
        self._rows: list[dict[str, str] | None] | None = None

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        return self._materialised()[i]

    def __iter__(self) -> Iterator[dict[str, str] | None]:
        return iter(self._materialised())

    def __eq__(self, other: object) -> bool:  # as the list it stands for
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ColumnAttrs({self._materialised()!r})"

    def _materialised(self) -> list[dict[str, str] | None]:
        if self._rows is None:
            rows: list[dict[str, str] | None] = [None] * self._n
            for key, col in self._columns.items():
                values = col.to_list()
                for i in np.flatnonzero(col.is_not_null().to_numpy()).tolist():
                    d = rows[i]
                    if d is None:
                        d = rows[i] = {}
                    d[key] = values[i]
            self._rows = rows
        return self._rows


@dataclass(slots=True)
class EventBatch:
    """Decoded events as columns, the shape the pipeline works on.

    Numbers are numpy arrays (`latency_ms` NaN and `status` -1 when absent); text columns are
    polars String series (null when absent), so batch work on them runs in Rust, not per event.
    """

    ts: npt.NDArray[np.float64]
    service: pl.Series
    level: npt.NDArray[np.int16]
    message: pl.Series
    request_id: pl.Series
    span_id: pl.Series
    parent_id: pl.Series
    latency_ms: npt.NDArray[np.float64]
    status: npt.NDArray[np.int32]
    attrs: Sequence[dict[str, str] | None]  # per event; `ColumnAttrs` builds them on demand
    template_id: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.empty(0, dtype=np.int64)
    )
    # The same extra keys as text columns, where the decoder had them as columns (null where
    # absent or not a scalar); `attr_column` falls back to `attrs`.
    attr_columns: dict[str, pl.Series] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ts)

    def attr_column(self, name: str) -> pl.Series:
        """One extra key as a String column (null where absent).

        >>> b = EventBatch.from_events([LogEvent(0.0, "a", 9, "m", attrs={"callee": "db"}),
        ...                             LogEvent(0.0, "a", 9, "m")])
        >>> b.attr_column("callee").to_list()
        ['db', None]
        """
        col = self.attr_columns.get(name)
        if col is not None and len(col) == len(self):
            return col
        return pl.Series(name, [a.get(name) if a else None for a in self.attrs], dtype=pl.String)

    @classmethod
    def empty(cls) -> EventBatch:
        return cls.from_events([])

    @classmethod
    def from_events(cls, events: list[LogEvent]) -> EventBatch:
        """Columns from records; for tests and notebooks (the decoders build columns directly)."""

        def text(name: str, values: list[str | None]) -> pl.Series:
            return pl.Series(name, values, dtype=pl.String)

        return cls(
            ts=np.array([e.ts for e in events], dtype=np.float64),
            service=text("service", [e.service for e in events]),
            level=np.array([e.level for e in events], dtype=np.int16),
            message=text("message", [e.message for e in events]),
            request_id=text("request_id", [e.request_id for e in events]),
            span_id=text("span_id", [e.span_id for e in events]),
            parent_id=text("parent_id", [e.parent_id for e in events]),
            latency_ms=np.array(
                [np.nan if e.latency_ms is None else e.latency_ms for e in events], dtype=np.float64
            ),
            status=np.array([-1 if e.status is None else e.status for e in events], dtype=np.int32),
            attrs=[{k: str(v) for k, v in e.attrs.items()} or None for e in events],
            template_id=np.array([e.template_id for e in events], dtype=np.int64),
        )

    @classmethod
    def concat(cls, parts: list[EventBatch]) -> EventBatch:
        """One batch of `parts` in order."""
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()
        return cls(
            ts=np.concatenate([p.ts for p in parts]),
            service=pl.concat([p.service for p in parts]),
            level=np.concatenate([p.level for p in parts]),
            message=pl.concat([p.message for p in parts]),
            request_id=pl.concat([p.request_id for p in parts]),
            span_id=pl.concat([p.span_id for p in parts]),
            parent_id=pl.concat([p.parent_id for p in parts]),
            latency_ms=np.concatenate([p.latency_ms for p in parts]),
            status=np.concatenate([p.status for p in parts]),
            attrs=[a for p in parts for a in p.attrs],
            template_id=np.concatenate([p.template_id for p in parts]),
            attr_columns={k: pl.concat([p.attr_columns[k] for p in parts])
                          for k in parts[0].attr_columns
                          if all(k in p.attr_columns for p in parts)},
        )

    def events(self) -> Iterator[LogEvent]:
        """The batch as `LogEvent` records (allocates one object per event: not for hot paths)."""
        tids = self.template_id if len(self.template_id) == len(self) else None
        service, message = self.service.to_list(), self.message.to_list()
        rid, sid, pid = self.request_id.to_list(), self.span_id.to_list(), self.parent_id.to_list()
        for i in range(len(self)):
            lat = float(self.latency_ms[i])
            st = int(self.status[i])
            yield LogEvent(
                ts=float(self.ts[i]),
                service=service[i],
                level=int(self.level[i]),
                message=message[i],
                template_id=-1 if tids is None else int(tids[i]),
                request_id=rid[i],
                span_id=sid[i],
                parent_id=pid[i],
                latency_ms=None if lat != lat else lat,
                status=None if st < 0 else st,
                attrs=dict(self.attrs[i] or {}),
            )


@dataclass(slots=True)
class Anomaly:
    """A scored window that crossed the threshold, with an explanation a person can read."""

    service: str
    feature: str
    window_start: float
    window_end: float
    value: float
    baseline_mean: float
    baseline_std: float
    score: float
    model: str
    explanation: str
    events: int
    labels: dict[str, str] | None = None  # a metric series' labels
    link: str | None = None  # where to look (a metric: Prometheus's graph page)

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.labels is not None:
            extra["labels"] = self.labels
        if self.link is not None:
            extra["link"] = self.link
        return {
            "kind": "anomaly",
            "service": self.service,
            "feature": self.feature,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "value": self.value,
            "baseline": {"mean": self.baseline_mean, "std": self.baseline_std},
            "score": self.score,
            "model": self.model,
            "explanation": self.explanation,
            "events": self.events,
        } | extra


@dataclass(slots=True)
class Incident:
    """Anomalies grouped in time under their root-cause service (`service`, the key); `id` is
    stable for the same onset and key. `root_cause` ranks the candidate services with evidence;
    `revision` counts the snapshots of an open incident (0 when it opens)."""

    id: str
    fingerprint: str
    service: str
    status: str  # "open" | "resolved"
    opened_at: float  # start of the first anomalous window
    detected_at: float  # end of that window: the earliest event time it could be known
    last_anomaly_at: float
    resolved_at: float | None = None
    max_score: float = 0.0
    anomaly_count: int = 0
    features: dict[str, int] = field(default_factory=dict)
    first_explanation: str = ""
    top_explanation: str = ""
    services: dict[str, int] = field(default_factory=dict)  # window anomalies per service
    root_cause: list[dict[str, Any]] = field(default_factory=list)
    revision: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "incident",
            "id": self.id,
            "fingerprint": self.fingerprint,
            "service": self.service,
            "status": self.status,
            "opened_at": self.opened_at,
            "detected_at": self.detected_at,
            "last_anomaly_at": self.last_anomaly_at,
            "resolved_at": self.resolved_at,
            "max_score": self.max_score,
            "anomaly_count": self.anomaly_count,
            "features": dict(self.features),
            "first_explanation": self.first_explanation,
            "top_explanation": self.top_explanation,
            "services": dict(self.services),
            "root_cause": self.root_cause,
            "revision": self.revision,
        }
