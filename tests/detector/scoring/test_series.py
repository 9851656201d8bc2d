"""MetricScorer on the default metric detector: one anomaly per episode (the quiet period counts
the series' own points), the warm-up read silences nothing, and the explanation names what the
member that spoke compared the point with."""

from __future__ import annotations

import numpy as np

from detector.config import PromQuery
from detector.scoring.series import MetricScorer
from detector.sources.prometheus import Points, SeriesIndex, SourceStats

STEP = 60.0


def _scorer(quiet: int) -> tuple[MetricScorer, SeriesIndex]:
    q = PromQuery(name="lat", query="lat", step_seconds=STEP, warmup=12, quiet_steps=quiet)
    index = SeriesIndex(q, 100)
    assert index.lookup({"service": "api"}, SourceStats()) == 0
    return MetricScorer(q, 0.9999, "http://127.0.0.1:9090"), index


def _points(scorer: MetricScorer, values: np.ndarray, start: int, warmup: bool = False) -> Points:
    ts = STEP * (start + np.arange(len(values), dtype=np.float64))
    return Points(query=scorer.q, series=np.zeros(len(values), dtype=np.int64), ts=ts,
                  values=values.astype(np.float64), expired=np.zeros(0, dtype=np.int64),
                  end=float(ts[-1]), warmup=warmup)


def _calm(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 2.0, n)


def _bursts() -> np.ndarray:
    x = _calm(120, 9)
    x[::10] = 400.0  # a bursty incident: a spike every 10 points
    return x


def test_a_bursty_incident_is_one_anomaly_per_quiet_period() -> None:
    found = {}
    for quiet in (0, 50):
        scorer, index = _scorer(quiet=quiet)
        scorer.score(_points(scorer, _calm(600, 0), 0), index)
        found[quiet] = [round(a.window_end / STEP) - 600 for a in
                        scorer.score(_points(scorer, _bursts(), 600), index)]
    # every burst pages, and the points after one too (the recent mean and shape moved)
    assert {0, 10, 20} <= set(found[0]) and len(found[0]) > 12
    assert found[50] == [0, 60]  # one page, then the next burst after the quiet period


def test_the_explanation_names_what_the_member_compared_with() -> None:
    scorer, index = _scorer(quiet=50)
    scorer.score(_points(scorer, _calm(600, 0), 0), index)
    a = scorer.score(_points(scorer, np.array([400.0]), 600), index)[0]
    assert a.model == "ewma" and a.service == "api" and a.feature == "metric:lat"
    assert a.explanation.startswith('lat{service="api"} 400 vs baseline 100')


def test_an_alarm_in_the_warm_up_read_silences_nothing() -> None:
    scorer, index = _scorer(quiet=100)
    history = np.concatenate([_calm(600, 1), np.full(3, 180.0), _calm(20, 2)])
    assert scorer.score(_points(scorer, history, 0, warmup=True), index) == []
    found = scorer.score(_points(scorer, np.full(3, 400.0), len(history)), index)
    assert len(found) == 1  # the first live point alarms: the warm-up spike paged nobody


def test_quiet_zero_reports_every_point_over_the_threshold() -> None:
    scorer, index = _scorer(quiet=0)
    scorer.score(_points(scorer, _calm(600, 3), 0), index)
    assert len(scorer.score(_points(scorer, np.full(5, 400.0), 600), index)) == 5
