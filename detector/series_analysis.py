"""`from_prometheus` and `from_series`: a metric's points, baselines and anomalies as polars
DataFrames a notebook can filter and plot.

`from_prometheus` reads a range through the source `vigil metrics` polls with
(`PrometheusSource.read_range`: the same requests in chunks, the same labels to series ids and
services, the same duplicate, NaN/Inf and gap counts) and judges it with the same `MetricScorer`
(the query's judge and episode rule, and `vigil metrics`'s threshold, `prometheus.threshold`'s
default, unless told otherwise). `from_series` does the same from a DataFrame of timestamps and
values, such as a CSV export. The whole range is reported: the judge's own warm-up decides
where a series may alarm. The scorer's `on_step` hook keeps every point's baseline and score
(one record per timestamp, each one batched model call over every series at that time).

`SeriesAnalysis.compare` runs other baselines over the same points (read once);
`plot_series` and `Comparison.plot` draw them (`detector.plots`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import polars as pl

from detector.config import PrometheusConfig, PromQuery
from detector.events import Anomaly
from detector.scoring.series import MetricScorer, ScoredStep
from detector.sources.prometheus import (
    FloatArray,
    IntArray,
    Points,
    PrometheusSource,
    SeriesIndex,
    SourceStats,
    SourceUnavailable,
    accept,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Baseline = Literal["default", "level", "periodic", "seasonal"]
BASELINES: tuple[Baseline, ...] = ("default", "level", "periodic", "seasonal")
Moment = float | int | str | datetime | np.datetime64  # epoch seconds, ISO text or a datetime
Window = tuple[Moment, Moment]

THRESHOLD: float = PrometheusConfig.model_fields["threshold"].default  # what `vigil metrics` uses
_MAX_SERIES: int = PrometheusConfig.model_fields["max_series"].default
_FIXED = ("name", "query", "step_seconds", "baseline", "lookback_seconds")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.-]*$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}
_ANOMALY_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "kind": pl.String, "service": pl.String, "feature": pl.String, "window_start": pl.Float64,
    "window_end": pl.Float64, "value": pl.Float64,
    "baseline": pl.Struct({"mean": pl.Float64, "std": pl.Float64}), "score": pl.Float64,
    "model": pl.String, "explanation": pl.String, "events": pl.Int64, "labels": pl.String,
    "link": pl.String, "series": pl.Int64, "time": pl.Datetime("us", "UTC")}


@dataclass
class SeriesAnalysis:
    """What one `from_prometheus` or `from_series` run saw; every table a polars DataFrame.

    - `points`: one row per point judged: `ts` (epoch s) and `time` (UTC), `series` (its id),
      `service`, `labels` (as text, `name{k="v",...}`), `value`, `baseline_mean` and
      `baseline_std` (the baseline of the member that spoke, as an explanation shows it),
      `score` (1 - p), `model` (the member that spoke; null before the series is `ready`, past
      the judge's warm-up) and `anomaly` (the point was reported).
    - `anomalies`: the reported points, with the columns of `Anomaly.to_dict` (as `analyze`
      has them; `labels` as text, `link` to Prometheus's graph page), plus `series` and `time`.
    - `series`: one row per series: id, service, labels, points, anomalies, first and last time.
    - `stats`: what the source counted (points, duplicates, non-finite values, gaps, requests).

    `read` and `index` are the points as read and their series, which `compare` judges again.
    """

    points: pl.DataFrame
    anomalies: pl.DataFrame
    series: pl.DataFrame
    stats: SourceStats
    query: PromQuery
    threshold: float
    source: str  # "prometheus <url>" or "dataframe"
    url: str = ""
    read: Points | None = field(default=None, repr=False)
    index: SeriesIndex | None = field(default=None, repr=False)
    tables: ClassVar[tuple[str, ...]] = ("points", "anomalies", "series")

    def to_pandas(self) -> dict[str, Any]:
        """Every table as a pandas DataFrame, by name (needs pandas and pyarrow installed)."""
        return {name: getattr(self, name).to_pandas() for name in self.tables}

    def select(self, series: int | str | None = None) -> int:
        """A series id: `series` itself (an id), the series whose labels text or service it is,
        or by default the series with the most anomalies (the first on ties).

        >>> a = from_series(pl.DataFrame({"timestamp": [0.0, 60.0, 120.0], "value": [1.0, 2, 3],
        ...                               "service": "api"}))
        >>> a.select(), a.select("api"), a.select('{service="api"}')
        (0, 0, 0)
        """
        rows = self.series
        if series is None:
            if not len(rows):
                raise ValueError("no series")
            best = rows.sort(["anomalies", "series"], descending=[True, False])
            return int(best["series"][0])
        if isinstance(series, int | np.integer):
            if int(series) not in rows["series"].to_list():
                raise ValueError(f"no series {series}; the ids are {rows['series'].to_list()}")
            return int(series)
        hit = rows.filter((pl.col("labels") == series) | (pl.col("service") == series))
        if len(hit) != 1:
            shown = ", ".join(rows["labels"].head(10).to_list())
            raise ValueError(f"{series!r} names {len(hit)} series (say which by id or labels: "
                             f"{shown})")
        return int(hit["series"][0])

    def against(self, windows: Sequence[Window], series: int | str | None = None
                ) -> pl.DataFrame:
        """One row per labelled window (`(start, end)`, both included): how many anomalies fell
        inside it (of `series`, or of every series), the first of them, and whether it was hit.

        >>> a = from_series(pl.DataFrame({"timestamp": [0.0, 60.0, 120.0], "value": [1.0, 2, 3]}))
        >>> a.against([(0, 120)]).select("anomalies", "hit").row(0)
        (0, False)
        """
        hits = self.anomalies
        if series is not None:
            hits = hits.filter(pl.col("series") == self.select(series))
        return _against(hits, windows)

    def plot_series(self, series: int | str | None = None,
                    windows: Sequence[Window] | None = None) -> Figure:
        """One series' values, the baseline band (mean ± 3 spreads of the member that spoke),
        its anomalies and, shaded, labelled `windows` (`detector.plots.plot_metric`)."""
        from detector.plots import plot_metric

        return plot_metric(self, self.select(series), _spans(windows or ()))

    def compare(self, baselines: Sequence[Baseline] = BASELINES) -> Comparison:
        """The same points judged by each baseline (`default`, `level`, `periodic`, `seasonal`;
        see `detector.scoring.series`) through the same scorer, threshold and query settings,
        without reading them again.

        >>> rng = np.random.default_rng(0)
        >>> values = rng.normal(100.0, 2.0, 400)
        >>> values[300] = 160.0
        >>> a = from_series(pl.DataFrame({"timestamp": 60.0 * np.arange(400), "value": values}))
        >>> c = a.compare(("default", "level"))
        >>> c.summary.select("baseline", "anomalies").rows()  # the default's shape member too
        [('default', 2), ('level', 1)]
        >>> c.anomalies.filter(pl.col("value") == 160.0)["baseline"].to_list()
        ['default', 'level']
        """
        if self.read is None or self.index is None:
            raise ValueError("this analysis keeps no points to judge again")
        out: dict[str, SeriesAnalysis] = {}
        for b in dict.fromkeys(baselines):
            if b not in BASELINES:
                raise ValueError(f"unknown baseline {b!r}; choose from {', '.join(BASELINES)}")
            out[b] = self if b == self.query.baseline else _judged(
                self.query.model_copy(update={"baseline": b}), self.threshold, self.url,
                self.read, self.index, self.stats, self.source)
        return Comparison(out)

    def __repr__(self) -> str:
        return (f"SeriesAnalysis({self.query.name}: {len(self.series):,} series, "
                f"{len(self.points):,} points, {len(self.anomalies):,} anomalies; "
                f"{self.query.baseline} baseline, threshold {self.threshold:g}; {self.source})")


@dataclass
class Comparison:
    """The same points judged by several baselines (`SeriesAnalysis.compare`).

    - `analyses`: each baseline's `SeriesAnalysis`, by name;
    - `anomalies`: every baseline's anomalies, its name first (`baseline`; the anomaly's own
      baseline as `baseline_mean` and `baseline_std`);
    - `summary`: one row per baseline: anomalies, series that alarmed, the first anomaly's time
      and which members spoke (`models`, the member names with their counts).
    """

    analyses: dict[str, SeriesAnalysis]
    anomalies: pl.DataFrame = field(init=False)
    summary: pl.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.anomalies = pl.concat([
            a.anomalies.with_columns(baseline_mean=pl.col("baseline").struct.field("mean"),
                                     baseline_std=pl.col("baseline").struct.field("std"))
             .drop("baseline").select(pl.lit(b).alias("baseline"), pl.all())
            for b, a in self.analyses.items()])
        rows = []
        for b, a in self.analyses.items():
            speakers = a.anomalies["model"].value_counts(sort=True, name="n")
            rows.append({
                "baseline": b, "anomalies": len(a.anomalies),
                "series": a.anomalies["series"].n_unique(),
                "first": a.anomalies["time"].min() if len(a.anomalies) else None,
                "models": ", ".join(f"{m} {n}" for m, n in speakers.iter_rows())})
        self.summary = pl.DataFrame(rows, schema={
            "baseline": pl.String, "anomalies": pl.Int64, "series": pl.Int64,
            "first": pl.Datetime("us", "UTC"), "models": pl.String})

    def against(self, windows: Sequence[Window]) -> pl.DataFrame:
        """One row per baseline: the labelled windows, how many it hit, and its anomalies inside
        and outside them (outside: false alarms, as far as the labels know).

        >>> a = from_series(pl.DataFrame({"timestamp": [0.0, 60.0, 120.0], "value": [1.0, 2, 3]}))
        >>> a.compare(("level",)).against([(0, 60)]).row(0)
        ('level', 1, 0, 0, 0)
        """
        rows = []
        for b, a in self.analyses.items():
            per = _against(a.anomalies, windows)
            inside = int(per["anomalies"].sum())
            rows.append((b, len(per), int(per["hit"].sum()), inside, len(a.anomalies) - inside))
        return pl.DataFrame(rows, orient="row", schema={
            "baseline": pl.String, "windows": pl.Int64, "hit": pl.Int64, "inside": pl.Int64,
            "outside": pl.Int64})

    def plot(self, series: int | str | None = None,
             windows: Sequence[Window] | None = None) -> Figure:
        """Where each baseline fires on one series (`detector.plots.plot_baselines`)."""
        from detector.plots import plot_baselines

        first = next(iter(self.analyses.values()))
        if series is None:  # the series most baselines alarm on most
            best = self.anomalies.group_by("series").len().sort(["len", "series"],
                                                                descending=[True, False])
            series = int(best["series"][0]) if len(best) else first.select()
        return plot_baselines(self, first.select(series), _spans(windows or ()))

    def __repr__(self) -> str:
        counts = ", ".join(f"{b} {len(a.anomalies)}" for b, a in self.analyses.items())
        return f"Comparison(anomalies by baseline: {counts})"


def from_prometheus(url: str, query: str, start: Moment, end: Moment,
                    step: float | str | timedelta, *, baseline: Baseline = "default",
                    name: str | None = None, bearer_token_file: str | Path | None = None,
                    verify_tls: bool = True, timeout_s: float = 10.0,
                    threshold: float | None = None, **options: Any) -> SeriesAnalysis:
    """Read `query` from the Prometheus at `url` between `start` and `end` (epoch seconds, ISO
    text or datetimes; without a time zone, UTC), every `step` (seconds, or a duration such as
    `"5m"`), and judge every point as `vigil metrics` would.

    The range is read through `PrometheusSource` (the source `vigil metrics` polls with) and
    judged by `MetricScorer` with `baseline`, `vigil metrics`'s `threshold` by default
    (`prometheus.threshold`: 0.9999) and any other `PromQuery` setting in `options`
    (`direction`, `warmup`, `quiet_steps`, `service_labels`, `series_labels`, `alpha`,
    `abs_floor`, `rel_floor`). `name` names the anomalies' feature (`metric:<name>`; default:
    the query if it is a metric name, else `query`). Raises `ValueError` for an empty range, a
    step that is not positive or a query that returns no points, and `SourceUnavailable`
    (naming the server and the error) when Prometheus cannot be read after the source's retries.

    >>> from_prometheus("http://127.0.0.1:9", "up", 100, 50, 60)
    Traceback (most recent call last):
    ...
    ValueError: the range is empty: end (1970-01-01 00:00:50 UTC) is not after start (1970-01-01 00:01:40 UTC)
    """
    lo, hi, dt = seconds(start, "start"), seconds(end, "end"), step_seconds(step)
    if hi <= lo:
        raise ValueError(f"the range is empty: end ({_show(hi)}) is not after start ({_show(lo)})")
    q = _query(name or (query if _NAME.match(query) else "query"), query, dt, baseline, options)
    cfg = PrometheusConfig(url=url, queries=[q], verify_tls=verify_tls, timeout_s=timeout_s,
                           bearer_token_file=None if bearer_token_file is None
                           else Path(bearer_token_file))
    src = PrometheusSource(cfg)
    try:
        pts = src.read_range(q, lo, hi)
    except SourceUnavailable as exc:
        raise SourceUnavailable(f"cannot read {query!r} from Prometheus at {url}: {exc}") from exc
    if not len(pts.ts):
        raise ValueError(f"no points: {query!r} returned no series from {url} between "
                         f"{_show(lo)} and {_show(hi)} (at a {dt:g} s step)")
    return _judged(q, THRESHOLD if threshold is None else threshold, url, pts,
                   src.state[q.name].index, src.stats, f"prometheus {url}")


def from_series(frame: Any, *, ts: str = "timestamp", value: str = "value",
                labels: Sequence[str] | None = None, step: float | str | timedelta | None = None,
                baseline: Baseline = "default", name: str = "series",
                threshold: float | None = None, **options: Any) -> SeriesAnalysis:
    """Judge a DataFrame (polars or pandas) of points as `from_prometheus` judges a range: the
    same series index, counts and scorer.

    `ts` is the timestamp column (datetimes, ISO text, or epoch seconds; without a time zone,
    UTC), `value` the value column; `labels` the columns that tell series apart and name their
    service (the first of `service`, `job`, `app` present; default: every other column). `step`
    is the sampling interval (default: the median interval of the series). A pandas frame may
    hold its timestamps in an index named `ts`. A timestamp repeated
    within a series keeps its first value (counted in `stats.duplicates`); NaN and null values
    are dropped and counted.

    >>> frame = pl.DataFrame({"timestamp": ["2024-01-01 00:00", "2024-01-01 00:05"],
    ...                       "value": [1.0, None], "service": ["api", "api"]})
    >>> a = from_series(frame)
    >>> a.points.select("time", "service", "value", "ready").rows()
    [(datetime.datetime(2024, 1, 1, 0, 0, tzinfo=zoneinfo.ZoneInfo(key='UTC')), 'api', 1.0, False)]
    >>> a.query.step_seconds, a.stats.non_finite
    (300.0, 1)
    """
    df = _polars(frame, ts)
    missing = [c for c in (ts, value, *(labels or ())) if c not in df.columns]
    if missing:
        raise ValueError(f"no column {', '.join(map(repr, missing))}; the columns are "
                         f"{', '.join(df.columns)}")
    if not len(df):
        raise ValueError("no rows: the DataFrame is empty")
    keys = [c for c in df.columns if c not in (ts, value)] if labels is None else list(labels)
    t = _epoch_column(df[ts])
    try:
        x = df[value].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"column {value!r} is not numeric: {exc}") from exc
    lab = df.select(pl.col(keys).cast(pl.String).fill_null("")) if keys else pl.DataFrame()
    groups = lab.unique(maintain_order=True).with_row_index("_code") if keys else None
    codes = (lab.join(groups, on=keys, how="left", maintain_order="left")["_code"]
             .to_numpy().astype(np.int64) if groups is not None
             else np.zeros(len(df), dtype=np.int64))
    dt = step_seconds(step) if step is not None else _median_step(codes, t)
    q = _query(name, name, dt, baseline, options)
    index, stats = SeriesIndex(q, _MAX_SERIES), SourceStats()
    rows = groups.drop("_code").iter_rows(named=True) if groups is not None else iter([{}])
    sid = np.array([-1 if (got := index.lookup(row, stats)) is None else got for row in rows],
                   dtype=np.int64)
    s = sid[codes]
    known = s >= 0
    s, t, x = accept(index, stats, dt, s[known], t[known], x[known])
    order = np.argsort(t, kind="stable")
    stats.points += len(order)
    pts = Points(q, s[order], t[order], x[order], np.zeros(0, dtype=np.int64),
                 float(t.max()) if len(t) else 0.0)
    if not len(pts.ts):
        raise ValueError("no points: every value is missing or not finite")
    return _judged(q, THRESHOLD if threshold is None else threshold, "", pts, index, stats,
                   "dataframe")


def seconds(moment: Moment, what: str = "time") -> float:
    """Epoch seconds of a moment: a number (epoch seconds), ISO text or a datetime (without a
    time zone: UTC).

    >>> seconds("2014-04-01 00:00:00"), seconds(datetime(2014, 4, 1, tzinfo=UTC)), seconds(5)
    (1396310400.0, 1396310400.0, 5.0)
    """
    if isinstance(moment, bool):
        raise ValueError(f"{what} must be a time, not {moment!r}")
    if isinstance(moment, int | float):
        return float(moment)
    if isinstance(moment, np.datetime64):
        return float(moment.astype("datetime64[us]").astype(np.int64)) / 1e6
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.strip())
        except ValueError as exc:
            raise ValueError(f"{what} {moment!r} is not an ISO time (2014-04-01 12:00:00)") from exc
    if isinstance(moment, datetime):
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    raise ValueError(f"{what} must be epoch seconds, ISO text or a datetime, not "
                     f"{type(moment).__name__}")


def step_seconds(step: float | str | timedelta) -> float:
    """A step in seconds: a number, a `timedelta` or a Prometheus duration (`30s`, `5m`, `1h`).

    >>> step_seconds("5m"), step_seconds(timedelta(hours=1)), step_seconds(15)
    (300.0, 3600.0, 15.0)
    """
    if isinstance(step, timedelta):
        out = step.total_seconds()
    elif isinstance(step, str):
        m = _DURATION.match(step.strip())
        if m is None:
            raise ValueError(f"step {step!r} is not a duration (30s, 5m, 1h) or seconds")
        out = float(m.group(1)) * _UNIT[m.group(2)]
    elif isinstance(step, int | float) and not isinstance(step, bool):
        out = float(step)
    else:
        raise ValueError(f"step must be seconds, a duration or a timedelta, not {step!r}")
    if not out > 0 or not np.isfinite(out):
        raise ValueError(f"step must be positive, got {step!r}")
    return out


def _query(name: str, query: str, step: float, baseline: str, options: dict[str, Any]
           ) -> PromQuery:
    fixed = sorted(set(options) & set(_FIXED))
    if fixed:
        raise ValueError(f"{', '.join(fixed)} cannot be an option here (say it by argument)")
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}")
    return PromQuery(name=name, query=query, step_seconds=step, baseline=baseline, **options)


def _judged(q: PromQuery, threshold: float, url: str, pts: Points, index: SeriesIndex,
            stats: SourceStats, source: str) -> SeriesAnalysis:
    """Score the points with a fresh `MetricScorer`, keeping every step."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be between 0 and 1 (1 - p), got {threshold}")
    keep = _Steps()
    scorer = MetricScorer(q, threshold, url, on_step=keep.add)
    found = scorer.score(pts, index)
    names = [m.name for m in scorer.judge.members]
    text = [_labels_text(lab) for lab in index.labels]
    points = keep.frame(names, index.service, text)
    anomalies = _anomalies(found, keep.fired_ids(), text, keep_links=bool(url))
    per = (points.group_by("series", maintain_order=True)
           .agg(pl.col("service").first(), pl.col("labels").first(),
                pl.len().cast(pl.Int64).alias("points"),
                pl.col("anomaly").sum().cast(pl.Int64).alias("anomalies"),
                pl.col("time").min().alias("first"), pl.col("time").max().alias("last"))
           .sort("series"))
    return SeriesAnalysis(points=points, anomalies=anomalies, series=per, stats=stats, query=q,
                          threshold=threshold, source=source, url=url, read=pts, index=index)


class _Steps:
    """What the scorer's hook hands over, one `ScoredStep` per timestamp, kept as columns."""

    def __init__(self) -> None:
        self.ts: list[FloatArray] = []
        self.ids: list[IntArray] = []
        self.values: list[FloatArray] = []
        self.mean: list[FloatArray] = []
        self.std: list[FloatArray] = []
        self.score: list[FloatArray] = []
        self.speaker: list[IntArray] = []
        self.ready: list[np.ndarray] = []
        self.fired: list[np.ndarray] = []

    def add(self, step: ScoredStep) -> None:
        v = step.verdict
        self.ts.append(np.full(len(step.series), step.ts))
        self.ids.append(step.series.copy())
        self.values.append(step.values.copy())
        self.mean.append(v.mean)
        self.std.append(v.std)
        self.score.append(v.score)
        self.speaker.append(v.speaker)
        self.ready.append(v.ready)
        self.fired.append(step.fired)

    def fired_ids(self) -> IntArray:
        """The series of the anomalies, in the scorer's order (step by step, then by row)."""
        if not self.ids:
            return np.zeros(0, dtype=np.int64)
        ids: IntArray = np.concatenate(self.ids)[np.concatenate(self.fired)]
        return ids

    def frame(self, names: list[str], service: list[str], labels: list[str]) -> pl.DataFrame:
        def cat(parts: list[Any], dtype: Any) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        ids = cat(self.ids, np.int64)
        ready = cat(self.ready, bool).astype(bool)
        ts = cat(self.ts, np.float64)
        speaker = pl.Series(names, dtype=pl.String).gather(cat(self.speaker, np.int64))
        frame = pl.DataFrame({
            "ts": ts, "time": _times(ts), "series": ids,
            "service": pl.Series(service, dtype=pl.String).gather(ids),
            "labels": pl.Series(labels, dtype=pl.String).gather(ids),
            "value": cat(self.values, np.float64),
            "baseline_mean": cat(self.mean, np.float64),
            "baseline_std": cat(self.std, np.float64),
            "score": cat(self.score, np.float64),
            "model": speaker, "ready": ready, "anomaly": cat(self.fired, bool).astype(bool)})
        return frame.with_columns(model=pl.when("ready").then("model"))


def _anomalies(found: list[Anomaly], series: IntArray, labels: list[str], keep_links: bool
               ) -> pl.DataFrame:
    if not found:
        return pl.DataFrame(schema=_ANOMALY_SCHEMA)
    rows = []
    for a, sid in zip(found, series.tolist(), strict=True):
        d = a.to_dict()
        d["labels"] = labels[sid]
        d["link"] = d.get("link") if keep_links else None
        d["series"] = sid
        rows.append(d)
    out = pl.DataFrame(rows, schema={k: v for k, v in _ANOMALY_SCHEMA.items() if k != "time"})
    return out.with_columns(time=_times(out["window_end"].to_numpy()))


def _against(hits: pl.DataFrame, windows: Sequence[Window]) -> pl.DataFrame:
    spans = _spans(windows)
    at = hits["window_end"].to_numpy()
    when = hits["time"]
    rows = []
    for lo, hi in spans:
        inside = (at >= lo) & (at <= hi)
        n = int(inside.sum())
        rows.append({"start": lo, "end": hi, "anomalies": n,
                     "first": when.filter(pl.Series(inside)).min() if n else None, "hit": n > 0})
    frame = pl.DataFrame(rows, schema={"start": pl.Float64, "end": pl.Float64,
                                       "anomalies": pl.Int64, "first": pl.Datetime("us", "UTC"),
                                       "hit": pl.Boolean})
    return frame.with_columns(start=_times(frame["start"].to_numpy()),
                              end=_times(frame["end"].to_numpy()))


def _spans(windows: Sequence[Window]) -> list[tuple[float, float]]:
    out = []
    for w in windows:
        if len(w) != 2:
            raise ValueError(f"a window is (start, end), not {w!r}")
        lo, hi = seconds(w[0], "a window's start"), seconds(w[1], "a window's end")
        if hi < lo:
            raise ValueError(f"a window ends before it starts: {w!r}")
        out.append((lo, hi))
    return out


def _labels_text(labels: dict[str, str]) -> str:
    """`name{k="v",...}`, as Prometheus writes a series.

    >>> _labels_text({"__name__": "up", "job": "api"}), _labels_text({})
    ('up{job="api"}', '{}')
    """
    shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{shown}}}"


def _times(ts: np.ndarray) -> pl.Series:
    """Epoch seconds as UTC datetimes (microseconds)."""
    us = np.round(np.asarray(ts, dtype=np.float64) * 1e6).astype(np.int64)
    return pl.Series("time", us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _show(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _polars(frame: Any, ts: str) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    if hasattr(frame, "to_dict") and hasattr(frame, "columns"):  # pandas, without pyarrow
        if ts not in frame.columns and getattr(frame.index, "name", None) == ts:
            frame = frame.reset_index()  # the timestamps are the index
        return pl.DataFrame(frame.to_dict(orient="list"))
    raise TypeError(f"from_series reads a polars or pandas DataFrame, not {type(frame).__name__}")


def _epoch_column(col: pl.Series) -> FloatArray:
    """A timestamp column as epoch seconds (naive datetimes and text: UTC)."""
    if col.null_count():
        raise ValueError(f"column {col.name!r} has {col.null_count()} missing timestamps")
    if col.dtype == pl.String:
        try:
            col = col.str.to_datetime(time_unit="us")
        except pl.exceptions.PolarsError as exc:
            raise ValueError(f"column {col.name!r} holds text that is not a time: {exc}") from exc
    if col.dtype == pl.Date:
        col = col.cast(pl.Datetime("us"))
    if isinstance(col.dtype, pl.Datetime):
        return col.dt.epoch("us").to_numpy().astype(np.float64) / 1e6
    if col.dtype.is_numeric():
        return col.cast(pl.Float64).to_numpy()
    raise ValueError(f"column {col.name!r} is {col.dtype}: give datetimes, ISO text or epoch "
                     f"seconds")


def _median_step(codes: IntArray, t: FloatArray) -> float:
    """The median interval between a series' consecutive distinct timestamps."""
    order = np.lexsort((t, codes))
    c, u = codes[order], t[order]
    d = np.diff(u)[(np.diff(c) == 0)]
    d = d[d > 0]
    if not len(d):
        raise ValueError("cannot tell the step from fewer than two distinct timestamps: give step=")
    return float(np.median(d))
