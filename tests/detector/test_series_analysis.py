"""The notebook API for metric series (`from_prometheus`, `from_series`): against the real Debian
`prometheus` on a free loopback port, backfilled with a NAB series (its labelled windows found;
every point read once; the same anomalies `vigil metrics`'s watcher finds on the same points,
and the same the CSV gives through `from_series`; other baselines judged without reading
again); without a server, DataFrames of several series, counts, plots and bad input."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import detector
from detector.bench.servers import LocalPrometheus, free_port, openmetrics, prometheus_available
from detector.config import PrometheusConfig, PromQuery, VigilConfig
from detector.events import Anomaly
from detector.plots import Plot
from detector.runtime.watch import MetricWatcher
from detector.scoring.series import MetricScorer, ScoredStep
from detector.series_analysis import SeriesAnalysis, from_prometheus, from_series
from detector.sources.prometheus import PrometheusSource, SourceUnavailable
from tests.support import SHARED

NAB = SHARED / "nab"
NAB_FILE = "realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv"
STEP = 300.0
needs_prometheus = pytest.mark.skipif(
    not prometheus_available(), reason="needs the Debian package prometheus (make test installs it)")
needs_nab = pytest.mark.skipif(not (NAB / "data" / NAB_FILE).exists(),
                               reason="needs ../shared/datasets/nab (not part of a clone)")


def epoch(s: str) -> float:
    return datetime.strptime(s[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


@dataclass
class Served:
    url: str
    ts: list[float]
    values: list[float]
    windows: list[tuple[float, float]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The NAB series as `nab_value{service="db",series="rds"}` in a backfilled Prometheus."""
    if not prometheus_available():
        pytest.skip("needs the Debian package prometheus (make test installs it)")
    if not (NAB / "data" / NAB_FILE).exists():
        pytest.skip("needs ../shared/datasets/nab (not part of a clone)")
    tmp = tmp_path_factory.mktemp("prom")
    rows = list(csv.DictReader((NAB / "data" / NAB_FILE).open()))
    ts = [epoch(r["timestamp"]) for r in rows]
    values = [float(r["value"]) for r in rows]
    openmetrics(tmp / "nab.om", "nab_value",
                (({"service": "db", "series": "rds"}, t, v) for t, v in zip(ts, values, strict=True)))
    windows = [(epoch(a), epoch(b)) for a, b in
               json.loads((NAB / "labels" / "combined_windows.json").read_text())[NAB_FILE]]
    prom = LocalPrometheus(tmp)
    prom.backfill(tmp / "nab.om")
    with prom:
        yield Served(prom.url, ts, values, windows)


def rows(a: SeriesAnalysis) -> list[tuple[Any, ...]]:
    """What an anomaly says, to compare two runs."""
    return a.anomalies.select("service", "feature", "window_end", "value", "score", "model",
                              "explanation").rows()


def said(found: list[Anomaly]) -> list[tuple[Any, ...]]:
    return [(x.service, x.feature, x.window_end, x.value, x.score, x.model, x.explanation)
            for x in found]


# ---- a backfilled Prometheus ----------------------------------------------------------------
@needs_prometheus
@needs_nab
def test_a_range_is_read_once_and_its_labelled_windows_are_hit(served: Served) -> None:
    a = from_prometheus(served.url, "nab_value", served.ts[0], served.ts[-1], "5m", name="nab")
    st = a.stats
    assert (st.points, st.duplicates, st.gaps, st.non_finite, st.failed_polls) == (
        len(served.ts), 0, 0, 0, 0)
    assert a.source == f"prometheus {served.url}"
    assert a.series.select("series", "service", "labels", "points").rows() == [
        (0, "db", 'nab_value{series="rds",service="db"}', len(served.ts))]
    assert a.points["ts"].to_list() == served.ts  # Prometheus evaluates at start + k * step
    assert a.points["value"].to_list() == served.values
    assert not a.points["ready"].head(30).any() and a.points["ready"].tail(100).all()
    assert a.points.filter("anomaly")["ts"].to_list() == a.anomalies["window_end"].to_list()
    hit = a.against(served.windows)
    assert hit["hit"].all(), hit  # the spike and the level shift NAB labels
    assert len(a.anomalies) - int(hit["anomalies"].sum()) <= 4  # false alarms, as far as NAB knows
    first = a.anomalies.row(0, named=True)
    assert first["feature"] == "metric:nab" and first["labels"] == a.series["labels"][0]
    assert first["link"].startswith(served.url + "/graph?g0.expr=nab_value")
    assert isinstance(a.plot_series(windows=served.windows), Plot)


@needs_prometheus
@needs_nab
def test_the_watcher_of_vigil_metrics_finds_the_same_anomalies(served: Served) -> None:
    """`vigil metrics`'s watcher, polling the same grid six hours at a time from a lookback of one
    point (learned, not reported: a series is not ready then anyway), says what
    `from_prometheus` says of the range."""
    start = np.ceil(served.ts[0] / STEP) * STEP  # the grid the watcher's polls align to
    end = start + 4 * 86_400  # the spike on the fourth day included
    a = from_prometheus(served.url, "nab_value", start, end, STEP, name="nab")
    assert len(a.anomalies) >= 2
    q = PromQuery(name="nab", query="nab_value", step_seconds=STEP, lookback_seconds=0)
    cfg = VigilConfig(prometheus=PrometheusConfig(url=served.url, queries=[q]))
    clock = [start]
    watcher = MetricWatcher(cfg, PrometheusSource(cfg.prometheus, clock=lambda: clock[0]))
    found: list[Anomaly] = []
    while True:  # "live", six hours a poll (within max_backfill_seconds)
        found += watcher.poll_once().anomalies
        if clock[0] >= end:
            break
        clock[0] = min(clock[0] + 6 * 3600, end)
    assert watcher.source.stats.points == len(a.points)
    assert said(found) == rows(a)
    assert [x.link for x in found] == a.anomalies["link"].to_list()


@needs_prometheus
@needs_nab
def test_the_csv_gives_what_prometheus_gives(served: Served) -> None:
    end = served.ts[0] + 4 * 86_400
    a = from_prometheus(served.url, "nab_value", datetime.fromtimestamp(served.ts[0], UTC),
                        datetime.fromtimestamp(end, UTC), STEP, name="nab")
    frame = pl.read_csv(NAB / "data" / NAB_FILE).with_columns(service=pl.lit("db"),
                                                                series=pl.lit("rds"))
    b = from_series(frame.filter(pl.col("timestamp") <= "2014-04-14 00:02:00"), name="nab")
    assert b.source == "dataframe" and b.query.step_seconds == STEP
    assert rows(a) == rows(b) and len(a.anomalies) >= 2
    assert b.anomalies["link"].is_null().all()  # no Prometheus to link to
    assert a.points.drop("labels").equals(b.points.drop("labels"))


@needs_prometheus
@needs_nab
def test_baselines_are_compared_on_the_points_read_once(served: Served) -> None:
    end = served.ts[0] + 4 * 86_400
    a = from_prometheus(served.url, "nab_value", served.ts[0], end, STEP, baseline="level")
    requests = a.stats.requests
    c = a.compare()
    assert a.stats.requests == requests  # nothing read again
    assert c.analyses["level"] is a and list(c.analyses) == ["default", "level", "periodic",
                                                            "seasonal"]
    assert c.summary["anomalies"].to_list() == [len(x.anomalies) for x in c.analyses.values()]
    assert set(c.anomalies["baseline"]) <= set(c.analyses)
    # each is what a scorer of that baseline says of the same points
    for name, x in c.analyses.items():
        scorer = MetricScorer(a.query.model_copy(update={"baseline": name}), a.threshold, a.url)
        assert a.read is not None and a.index is not None
        assert said(scorer.score(a.read, a.index)) == rows(x)
    by = c.against(served.windows)
    assert by["windows"].to_list() == [2] * 4
    assert isinstance(c.plot(windows=served.windows), Plot)


@needs_prometheus
@needs_nab
def test_a_query_without_points_and_a_bad_query_say_so(served: Served) -> None:
    with pytest.raises(ValueError, match="returned no series"):
        from_prometheus(served.url, "no_such_metric", served.ts[0], served.ts[0] + 3600, 300)
    with pytest.raises(SourceUnavailable, match="parse error"):
        from_prometheus(served.url, "nab_value{", served.ts[0], served.ts[0] + 3600, 300)


def test_an_unreachable_prometheus_raises_source_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(SourceUnavailable, match=f"from Prometheus at {url}: ConnectionError"):
        from_prometheus(url, "up", 0, 3600, 60, timeout_s=1)
    assert time.monotonic() - t0 < 15  # the source's bounded retries


@pytest.mark.parametrize(("start", "end", "step", "message"), [
    (100, 50, 60, "the range is empty"),
    (100, 100, 60, "the range is empty"),
    ("2024-01-02", "2024-01-01", "1m", "the range is empty"),
    (0, 3600, 0, "step must be positive"),
    (0, 3600, -5, "step must be positive"),
    (0, 3600, "5 minutes", "is not a duration"),
    ("yesterday", 3600, 60, "is not an ISO time"),
])
def test_bad_ranges_are_refused_before_asking(start: Any, end: Any, step: Any,
                                               message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_prometheus("http://127.0.0.1:9", "up", start, end, step)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown baseline"):
        from_prometheus("http://127.0.0.1:9", "up", 0, 60, 60, baseline="weekly")
    with pytest.raises(ValueError, match="step_seconds cannot be an option"):
        from_prometheus("http://127.0.0.1:9", "up", 0, 60, 60, step_seconds=5)
    with pytest.raises(ValueError, match="quiet_stepz"):  # a PromQuery setting, validated
        from_prometheus("http://127.0.0.1:9", "up", 0, 60, 60, quiet_stepz=5)
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        from_series(pl.DataFrame({"timestamp": [0.0, 60.0], "value": [1.0, 2.0]}), threshold=1.5)


# ---- DataFrames, no server ------------------------------------------------------------------
def fleet(n: int = 600, seed: int = 0) -> pl.DataFrame:
    """Two services' latency a minute apart, shuffled; one spike in `api` at 5/6 of the way
    (step 500 of 600)."""
    rng = np.random.default_rng(seed)
    t = [datetime.fromtimestamp(1_700_000_000 + 60 * i, UTC).replace(tzinfo=None)
         for i in range(n)]
    api, db = rng.normal(100, 2, n), rng.normal(20, 1, n)
    api[n * 5 // 6] = 180.0
    frame = pl.DataFrame({"timestamp": t + t, "value": np.concatenate([api, db]),
                          "service": ["api"] * n + ["db"] * n, "region": "eu"})
    return frame.sample(fraction=1.0, shuffle=True, seed=seed)


def test_a_frame_of_two_series_is_judged_per_series() -> None:
    a = from_series(fleet(), name="latency", baseline="level")
    assert a.series.select("series", "service", "labels", "points").sort("service").rows() == [
        (a.select("api"), "api", '{region="eu",service="api"}', 600),
        (a.select("db"), "db", '{region="eu",service="db"}', 600)]
    assert a.query.step_seconds == 60.0 and a.stats.points == 1200
    spike = 1_700_000_000 + 60 * 500
    assert (spike, "api") in a.anomalies.select("window_end", "service").rows()
    said_ = a.anomalies.filter(pl.col("window_end") == spike)["explanation"].to_list()
    assert said_[0].startswith('latency{region="eu",service="api"} 180 vs baseline 100')
    assert a.points["ts"].is_sorted()
    assert a.select() == a.select("api")  # the series with the most anomalies
    assert isinstance(a.plot_series("db"), Plot)
    assert detector.from_series is from_series  # the notebook API exports it


def test_repeats_missing_values_and_gaps_are_counted_like_prometheus_points() -> None:
    frame = pl.DataFrame({"timestamp": [0.0, 60.0, 60.0, 120.0, 420.0, 480.0],
                          "value": [1.0, 2.0, 9.0, None, float("nan"), 3.0]})
    a = from_series(frame)
    assert (a.stats.duplicates, a.stats.non_finite, a.stats.gaps) == (1, 2, 1)
    assert a.points.select("ts", "value").rows() == [(0.0, 1.0), (60.0, 2.0), (480.0, 3.0)]
    assert a.series["service"].to_list() == ["series"]  # no service label: the query's name


def test_labels_can_be_chosen_and_step_given() -> None:
    frame = fleet(120).with_columns(host=pl.lit("h1"))
    a = from_series(frame, labels=["service"], step="1m")
    assert sorted(a.series["labels"]) == ['{service="api"}', '{service="db"}']
    b = from_series(frame.with_columns(pl.col("timestamp").dt.epoch("s").alias("t")).drop(
        "timestamp"), ts="t", labels=["service"], step=60)
    assert rows(a) == rows(b) and a.points.equals(b.points)


@pytest.mark.parametrize(("frame", "options", "message"), [
    (pl.DataFrame({"ts": [0.0], "value": [1.0]}), {}, "no column 'timestamp'"),
    (pl.DataFrame(schema={"timestamp": pl.Float64, "value": pl.Float64}), {}, "no rows"),
    (pl.DataFrame({"timestamp": [0.0, 60.0], "value": ["a", "b"]}), {}, "is not numeric"),
    (pl.DataFrame({"timestamp": ["x", "y"], "value": [1.0, 2.0]}), {}, "is not a time"),
    (pl.DataFrame({"timestamp": [0.0, None], "value": [1.0, 2.0]}), {}, "missing timestamps"),
    (pl.DataFrame({"timestamp": [0.0], "value": [1.0]}), {}, "give step="),
    (pl.DataFrame({"timestamp": [0.0, 60.0], "value": [None, None]},
                  schema={"timestamp": pl.Float64, "value": pl.Float64}), {}, "every value"),
    (pl.DataFrame({"timestamp": [0.0, 60.0], "value": [1.0, 2.0]}), {"labels": ["host"]},
     "no column 'host'"),
])
def test_bad_frames_are_refused_with_a_reason(frame: pl.DataFrame, options: dict[str, Any],
                                              message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_series(frame, **options)


def test_a_frame_is_a_dataframe() -> None:
    with pytest.raises(TypeError, match="polars or pandas DataFrame"):
        from_series([1, 2, 3])


def test_a_pandas_frame_is_read_too() -> None:
    pd = pytest.importorskip("pandas")
    frame = fleet(120)
    a = from_series(pd.DataFrame(frame.to_dict(as_series=False)))
    assert a.points.equals(from_series(frame).points)
    indexed = pd.DataFrame(frame.to_dict(as_series=False)).set_index("timestamp")
    assert from_series(indexed).points.equals(a.points)  # the timestamps as the index


def test_the_step_hook_changes_nothing_and_is_called_once_per_timestamp() -> None:
    a = from_series(fleet(), name="latency")
    assert a.read is not None and a.index is not None
    steps: list[ScoredStep] = []
    plain = MetricScorer(a.query, a.threshold, "")
    hooked = MetricScorer(a.query, a.threshold, "", on_step=steps.append)
    assert said(plain.score(a.read, a.index)) == said(hooked.score(a.read, a.index)) == rows(a)
    assert len(steps) == 600 and all(len(s.series) == 2 for s in steps)
    assert sum(int(s.fired.sum()) for s in steps) == len(a.anomalies)


def test_labelled_windows_are_told_hit_or_not() -> None:
    a = from_series(fleet(), baseline="level")
    spike = 1_700_000_000 + 60 * 500
    hit = a.against([(spike - 600, spike + 600), ("2023-11-14 22:14", "2023-11-14 22:20")])
    assert hit["hit"].to_list() == [True, False]
    assert hit["first"][0] == datetime.fromtimestamp(spike, UTC)
    assert a.against([(spike - 600, spike + 600)], series="db")["hit"].to_list() == [False]
    with pytest.raises(ValueError, match="ends before it starts"):
        a.against([(spike, spike - 1)])
    with pytest.raises(ValueError, match="names 0 series"):
        a.select("nope")


def test_the_tables_are_empty_not_missing_when_nothing_alarms(tmp_path: Path) -> None:
    a = from_series(pl.DataFrame({"timestamp": 60.0 * np.arange(20), "value": np.ones(20)}))
    assert len(a.anomalies) == 0 and "explanation" in a.anomalies.columns
    assert a.series["anomalies"].to_list() == [0]
    c = a.compare(("level", "seasonal"))
    assert c.summary["anomalies"].to_list() == [0, 0] and len(c.anomalies) == 0
    a.plot_series().savefig(tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 1000
