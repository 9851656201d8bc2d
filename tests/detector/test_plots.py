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


def test_the_call_graph_marks_the_failing_path_to_the_root_cause() -> None:
    fig = A.plot_call_graph()
    ax = fig.axes[0]
    failing = [t.get_text() for t in ax.texts if "failing" in t.get_text()]
    # gateway -> checkout -> payments carry the failing requests; payments -> db does not
    assert len(failing) == 2 and all(t.split()[0].isdigit() and int(t.split()[0]) > 100
                                     for t in failing)
    names = {t.get_text() for t in ax.texts}
    assert {"gateway", "checkout", ROOT, "db", "cart", "catalog"} <= names
    red = next(t for t in ax.texts if t.get_text() == ROOT).get_bbox_patch()
    assert red is not None
    assert red.get_facecolor()[:3] == pytest.approx((0.839, 0.153, 0.157), abs=0.01)  # tab:red
    assert "anomalous requests" in fig.axes[1].texts[0].get_text()  # the ranking's evidence
    assert _png(fig).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="no incident 'nope'"):
        A.plot_call_graph("nope")


def test_the_what_if_plot_puts_each_decision_on_its_incident(tmp_path: object) -> None:
    from remediation.policy import parse_policy

    w = A.what_if(parse_policy("rules: [{name: r, match: {kind: [error]}, ladder: [{name: "
                               "restart, hook: log, wait_s: 60}, {name: rollback, hook: log}]}]"))
    fig = A.plot_what_if(w)
    labels = sorted(t.get_text() for t in fig.axes[0].texts)
    assert labels == [f"restart {ROOT}", f"rollback {ROOT}"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "would act" in legend and "no better: climbs" in legend
    assert _png(fig).startswith(b"\x89PNG") and fig._repr_png_().startswith(b"\x89PNG")
