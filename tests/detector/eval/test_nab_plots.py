"""The NAB plots draw what the report holds: one shaded span per labelled window (a missed one
marked), one marker per alarm by kind, the score under the threshold; per corpus one bar per
count and per profile score, held-out scores beside them; they render to PNG."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from detector.eval.nab.corpus import write_example
from detector.eval.nab.report import NabReport, nab_report


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> NabReport:
    return nab_report(*write_example(tmp_path_factory.mktemp("nab")))


def _markers(ax: object) -> dict[str, int]:
    """Markers per legend label, without the count: {'hit': 1, ...}."""
    return {c.get_label().split(" (")[0]: len(c.get_offsets())
            for c in ax.collections if not c.get_label().startswith("_")}  # type: ignore[attr-defined]


@pytest.mark.parametrize("file", ["spike.csv", "subtle.csv", "flat.csv"])
def test_a_file_shows_its_signal_windows_and_alarms(report: NabReport, file: str) -> None:
    fig = report.plot_file(file)
    top, low = fig.axes[:2]
    windows = report.windows.filter(pl.col("file") == file)
    gids = sorted(p.get_gid() for p in top.patches)
    assert gids == sorted(f"window {s}" for s in windows["status"])
    values = top.lines[0].get_ydata()
    assert len(values) == 500 and np.isfinite(values).all()
    kinds = report.detections.filter(pl.col("file") == file)["kind"].value_counts()
    assert _markers(top) == dict(zip(kinds["kind"], kinds["count"], strict=True))
    texts = [t.get_text().strip() for t in top.texts]
    assert texts.count("missed") == int((windows["status"] == "missed").sum())
    assert any(line.get_ydata()[0] == report.threshold for line in low.lines)  # the threshold
    assert fig._repr_png_().startswith(b"\x89PNG")  # type: ignore[attr-defined]


def test_the_missed_window_is_marked_and_the_hit_is_not(report: NabReport) -> None:
    assert [p.get_gid() for p in report.plot_file("subtle").axes[0].patches] == ["window missed"]
    assert [p.get_gid() for p in report.plot_file("spike").axes[0].patches] == ["window hit"]
    assert len(report.plot_file("flat").axes[0].patches) == 0  # no window labelled


def test_the_corpora_show_counts_scores_and_held_out_scores(report: NabReport) -> None:
    fig = report.plot_corpora()
    counts, scores = fig.axes[:2]
    c = report.corpora
    heights = sorted(round(p.get_height()) for p in counts.patches)
    assert heights == sorted(c.select("hits", "misses", "false_positives").to_numpy().ravel())
    assert [t.get_text() for t in counts.get_xticklabels()] == c["corpus"].to_list()
    assert len(scores.patches) == 3 * len(c)  # three profiles per corpus with windows
    bars = sorted(round(p.get_height(), 6) for p in scores.patches)
    assert bars == sorted(round(v, 6) for v in c.select(
        "standard", "reward_low_FP_rate", "reward_low_FN_rate").to_numpy().ravel())
    held = [o[1] for coll in scores.collections for o in coll.get_offsets()]
    assert sorted(round(v, 6) for v in held) == sorted(round(v, 6) for v in c.select(
        "standard_held_out", "reward_low_FP_rate_held_out", "reward_low_FN_rate_held_out")
        .to_numpy().ravel())
    assert fig._repr_png_().startswith(b"\x89PNG")  # type: ignore[attr-defined]

