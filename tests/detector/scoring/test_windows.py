"""The detector's scorers on the models' judge: WindowScorer names the periodic baseline of a
contextual break, and gives and takes its own state (index, models, calibrators), checked.

These test `detector/scoring/` (floor 3) from the models' side; they belong in
tests/detector/scoring/ once that directory exists."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from detector.config import ScoringConfig
from detector.scoring.windows import WindowScorer
from detector.windows.aggregate import FEATURES, WindowRows
from models import EwmaZScore
from tests.models.test_periodic import DAY, STEP, daily


def test_window_scorer_names_the_periodic_baseline_for_a_contextual_break() -> None:
    """Pipeline level: a service busy by day that stays quiet one morning is an anomaly whose
    explanation compares it with the same time yesterday."""
    scorer = WindowScorer(ScoringConfig(alpha=0.001, clip_z=1e9))
    x = daily(6, seed=6)
    day5 = 5 * DAY
    x[day5 + 96:] = 20.0
    rate = FEATURES.index("rate")
    found = []
    for t, v in enumerate(x[: day5 + 100]):
        vals = np.full((1, len(FEATURES)), np.nan)
        vals[0, rate] = v
        rows = WindowRows(start=STEP * t, end=STEP * (t + 1), services=["api"],
                          counts=np.array([100]), values=vals)
        found += [(t, a) for a in scorer.score(rows)]
    # The very first busy morning is news to any baseline; after that, only the quiet morning.
    late = [(t, a) for t, a in found if t >= DAY]
    assert late, "the quiet morning was not flagged"
    assert all(t >= day5 + 96 for t, _ in late), [t for t, _ in late]
    assert late[0][1].model == "periodic" and late[0][1].feature == "rate"
    assert late[0][1].baseline_mean > 90.0  # yesterday's busy level, not the flat mean


def _windows(x: np.ndarray, services: list[str], start: int = 0) -> list[WindowRows]:
    out = []
    for t in range(len(x)):
        vals = np.full((len(services), len(FEATURES)), np.nan)
        vals[:, FEATURES.index("rate")] = x[t]
        vals[:, FEATURES.index("error_ratio")] = 0.01 + 0.001 * (t % 3)
        out.append(WindowRows(start=STEP * (start + t), end=STEP * (start + t + 1), services=services,
                              counts=np.full(len(services), 100), values=vals))
    return out


def _warmed(cfg: ScoringConfig | None = None) -> tuple[WindowScorer, np.ndarray]:
    scorer = WindowScorer(cfg or ScoringConfig(alpha=0.001, clip_z=1e9))
    x = daily(4, seed=7)
    for rows in _windows(x[: 3 * DAY], ["api", "db"]):
        scorer.score(rows)
    return scorer, x


def test_window_scorer_state_round_trips_through_json_with_identical_anomalies() -> None:
    a, x = _warmed()
    b = WindowScorer(a.cfg)
    b.load_state(json.loads(json.dumps(a.state_dict(), allow_nan=False)))
    assert b.series_count == a.series_count == 4
    later = x[3 * DAY:].copy()
    later[96:110] = 20.0  # a quiet morning: the periodic baseline speaks
    rows = _windows(later, ["api", "db"], start=3 * DAY)
    found_a = [an for r in rows for an in a.score(r)]
    found_b = [an for r in rows for an in b.score(r)]
    assert found_a == found_b and any(an.model == "periodic" for an in found_a)


def test_window_scorer_state_keeps_the_shape_checkpoints_have_always_written() -> None:
    a, _ = _warmed()
    legacy = {  # what detector/runtime/checkpoint.py wrote under "scorer" before state_dict
        "series": [[svc, feat, sid] for (svc, feat), sid in a._series.items()],
        "model": a.model.state_dict(),
        "periodic": a.periodic.state_dict() if a.periodic is not None else None,
        "calibrator": a.calibrator.state_dict() if a.calibrator is not None else None,
        "periodic_calibrator": (a.periodic_calibrator.state_dict()
                                if a.periodic_calibrator is not None else None),
    }
    state = a.state_dict()
    assert {k: v for k, v in state.items() if k != "others"} == legacy
    assert set(state["others"]) == {"shift"}
    b = WindowScorer(a.cfg)
    b.load_state(json.loads(json.dumps(legacy)))  # written before the other members existed
    assert {k: v for k, v in b.state_dict().items() if k != "others"} == legacy
    assert all(m.nbytes() == 0 for m in b.judge.members[2:])  # they start cold


def test_window_scorer_refuses_a_broken_member_of_the_others() -> None:
    a, _ = _warmed()
    state = json.loads(json.dumps(a.state_dict()))
    state["others"]["shift"]["member"]["gap_ms"] = "wide"  # a member of the others, broken
    before = a.state_dict()
    with pytest.raises(ValueError):
        a.load_state(state)
    assert a.state_dict() == before


def _tampered(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for what, series in (
            ("an id out of range", [["api", "rate", 10**9]]),
            ("a negative id", [["api", "rate", -1]]),
            ("an id twice", [["api", "rate", 0], ["db", "rate", 0]]),
            ("a (service, feature) twice", [["api", "rate", 0], ["api", "rate", 1]]),
            ("an id that is not an int", [["api", "rate", 0.0]]),
            ("an id that is a bool", [["api", "rate", True]]),
            ("an entry of two", [["api", 0]]),
            ("a service that is not text", [[7, "rate", 0]]),
            ("series that are not a list", "api:rate:0")):
        out[what] = {**state, "series": series}
    out["not an object"] = []  # type: ignore[assignment]
    out["no model"] = {k: v for k, v in state.items() if k != "model"}
    out["a model of another configuration"] = {
        **state, "model": EwmaZScore(alpha=0.3).state_dict()}
    out["a calibrator as text"] = {**state, "calibrator": "x"}
    out["a periodic model with a broken array"] = {
        **state, "periodic": {**state["periodic"], "n": "many"}}
    return out


@pytest.mark.parametrize("what", list(_tampered({"periodic": {}})))
def test_window_scorer_refuses_a_state_it_cannot_trust_and_stays_as_it_was(what: str) -> None:
    a, _ = _warmed()
    before = a.state_dict()
    with pytest.raises(ValueError):
        a.load_state(_tampered(json.loads(json.dumps(before)))[what])
    assert a.state_dict() == before


def test_window_scorer_starts_absent_optional_parts_cold_and_ignores_unused_ones() -> None:
    a, _ = _warmed()
    state = a.state_dict()
    b = WindowScorer(a.cfg)
    b.load_state({**state, "periodic": None, "periodic_calibrator": None})
    assert b.model.state_dict() == a.model.state_dict()
    assert b.periodic is not None and b.periodic.nbytes() == 0
    c = WindowScorer(ScoringConfig(alpha=0.001, clip_z=1e9, periodic=False))
    c.load_state(state)
    assert c.periodic is None and c.series_count == a.series_count


def test_every_member_of_the_default_can_judge_windows_and_round_trips() -> None:
    cfg = ScoringConfig(alpha=0.001, clip_z=1e9, members=["weekly", "shift", "subsequence", "counts"])
    a, x = _warmed(cfg)
    assert [m.name for m in a.judge.members] == ["ewma", "periodic", "weekly", "shift",
                                                  "subsequence", "counts"]
    b = WindowScorer(cfg)
    b.load_state(json.loads(json.dumps(a.state_dict(), allow_nan=False)))
    rows = _windows(x[3 * DAY:3 * DAY + 200], ["api", "db"], start=3 * DAY)
    assert [an for r in rows for an in a.score(r)] == [an for r in rows for an in b.score(r)]
