"""The notebook plots draw what the analysis holds: the series with its anomalies, one bar per
incident on its root cause's row, the templates that changed at the onset; they render to PNG."""

from __future__ import annotations

import io

import pytest

from detector import analyze
from detector.simulate.runs import simulated_lines

LINES, TRUTH = simulated_lines(60_000, seed=3, scenario="error_burst")
A = analyze(LINES)
ROOT = TRUTH.faults[0].service


def _png(fig: object) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)  # type: ignore[attr-defined]
    return buf.getvalue()


def test_the_series_shows_every_anomaly_of_that_series() -> None:
    fig = A.plot_series(ROOT, "error_ratio")
    ax = fig.axes[0]
    markers = ax.collections[-1].get_offsets()
    want = A.anomalies.filter((A.anomalies["service"] == ROOT)
                              & (A.anomalies["feature"] == "error_ratio"))
    assert len(markers) == len(want) > 0
    assert _png(fig).startswith(b"\x89PNG")


def test_the_timeline_puts_each_incident_on_its_root_cause_row() -> None:
    fig = A.plot_incidents()
    ax = fig.axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    bars = ax.patches
    assert len(bars) == len(A.incidents) == 1
    assert rows[round(bars[0].get_y() + bars[0].get_height() / 2)] == ROOT
    assert _png(fig).startswith(b"\x89PNG")


def test_the_templates_that_changed_at_the_onset_include_the_failure() -> None:
    fig = A.plot_templates(top=4)
    labels = [line.get_label() for line in fig.axes[0].lines[:-1]]
    assert len(labels) == 4 and any("fail" in label for label in labels)


def test_unknown_series_are_refused_with_what_exists() -> None:
    with pytest.raises(ValueError, match="the features are"):
        A.plot_series(ROOT, "cpu")
    with pytest.raises(ValueError, match="no windows of service"):
        A.plot_series("nobody", "rate")
