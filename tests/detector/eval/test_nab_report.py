"""The NAB report is the evaluation `vigil eval nab` prints, not a second scorer: its tables add
up to the command's figures, its detections are the alarms the results files mark, and each
alarm is judged as NAB's rules judge it."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import detector
from detector.cli import app
from detector.eval.nab import report as report_module
from detector.eval.nab.corpus import write_example
from detector.eval.nab.report import NabReport, nab_report
from detector.eval.nab.scoring import PROFILES


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_example(tmp_path_factory.mktemp("nab"))


@pytest.fixture(scope="module")
def report(example: tuple[Path, Path]) -> NabReport:
    return nab_report(*example)


def test_each_file_has_its_hits_misses_and_false_positives(report: NabReport) -> None:
    files = {r["file"]: r for r in report.files.iter_rows(named=True)}
    assert (files["spike.csv"]["hits"], files["step.csv"]["hits"]) == (1, 1)
    assert files["subtle.csv"]["misses"] == 1 and files["subtle.csv"]["hits"] == 0
    assert files["flat.csv"]["false_positives"] == 1 and files["flat.csv"]["windows"] == 0
    assert report.files["rows"].to_list() == [500] * 4
    kinds = report.detections.select("file", "kind").rows()
    assert kinds == [("flat.csv", "false positive"), ("spike.csv", "hit"), ("step.csv", "hit")]
    assert report.windows.filter(pl.col("status") == "missed")["file"].to_list() == ["subtle.csv"]
    assert report.windows["start"].to_list()[0] == report.series[1].windows[0][0]


def test_the_points_of_the_files_add_up_to_each_profile_score(report: NabReport) -> None:
    for r in report.results:
        assert report.files[f"{r.profile}_points"].sum() == pytest.approx(r.score)
    # a miss costs, a false positive costs, a hit earns
    points = dict(zip(report.files["file"], report.files["standard_points"], strict=True))
    assert points["subtle.csv"] == 0.0 and points["flat.csv"] < 0 < points["spike.csv"]


def test_the_alarms_earn_what_the_sweep_counted(report: NabReport) -> None:
    """Per file, the sweep's raw total is the detections' weights minus a miss weight per
    missed window: the two views of the same alarms agree."""
    fn = PROFILES[report.profile][2]
    chosen = report.result(report.profile)
    for s in report.series:
        file = s.name.split("/", 1)[1]
        earned = report.detections.filter(pl.col("file") == file)["weight"].sum()
        missed = report.windows.filter((pl.col("file") == file)
                                       & (pl.col("status") == "missed")).height
        assert earned - fn * missed == pytest.approx(chosen.files[s.name].raw)


def test_corpora_carry_the_scores_and_held_out_scores(report: NabReport) -> None:
    c = report.corpora
    assert c["corpus"].to_list() == ["alpha", "beta"]
    assert c.select("files", "windows", "hits", "misses", "false_positives").rows() == [
        (2, 1, 1, 0, 1), (2, 2, 1, 1, 0)]
    for r in report.results:
        assert c[r.profile].to_list() == [r.by_corpus["alpha"], r.by_corpus["beta"]]
        assert c[f"{r.profile}_held_out"].to_list() == [r.held_out["alpha"], r.held_out["beta"]]
    assert report.profiles["profile"].to_list() == list(PROFILES)


def _printed(output: str) -> tuple[list[list[str]], list[list[str]]]:
    """The body rows of the command's two tables (scores; held out), cell texts."""
    rows = [[c.strip() for c in line.strip().strip("│").split("│")]
            for line in output.splitlines() if line.startswith("│")]
    n = len(PROFILES)
    assert len(rows) == 2 * n, output
    return rows[:n], rows[n:]


def _run_cli_keeping_its_report(data: Path, labels: Path, out: Path,
                                monkeypatch: pytest.MonkeyPatch) -> tuple[str, NabReport]:
    """Run `vigil eval nab` and keep the report it built (it must build one)."""
    kept: list[NabReport] = []
    real = report_module.nab_report

    def spy(*args: object, **kwargs: object) -> NabReport:
        kept.append(real(*args, **kwargs))
        return kept[-1]

    monkeypatch.setattr(report_module, "nab_report", spy)
    result = CliRunner().invoke(app, ["eval", "nab", "--data", str(data), "--labels",
                                      str(labels), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(kept) == 1, "vigil eval nab must score through nab_report"
    return result.output, kept[0]


def _check_against_the_command(output: str, r: NabReport, out: Path) -> None:
    scores, held = _printed(output)
    corpora = r.corpora["corpus"].to_list()
    totals = r.files.select(pl.col("hits", "misses", "false_positives").sum()).row(0)
    for printed, row, held_row in zip(scores, r.profiles.iter_rows(named=True), held, strict=True):
        by_corpus = r.corpora[row["profile"]].to_list()
        assert printed[1:5] == [f"{row['score']:.1f}", f"{row['threshold']:.6g}",
                                f"{row['windows_found']}/{row['windows']}",
                                str(row["false_positives"])]
        assert printed[5:] == [f"{v:.1f}" for v in by_corpus]
        held_out = r.corpora.filter(pl.col(f"{row['profile']}_held_out").is_not_null())
        assert held_row[1:] == [f"{row['held_out_mean']:.1f}",
                                *[f"{v:.1f}" for v in held_out[f"{row['profile']}_held_out"]]]
    standard = r.profiles.row(0, named=True)
    assert totals == (standard["windows_found"], standard["windows"] - standard["windows_found"],
                      standard["false_positives"])
    assert len(corpora) == len(scores[0]) - 5
    # The results files mark as alarms exactly the report's detections.
    for s in r.series:
        with (out / s.name).open() as fh:
            alarms = [i for i, row in enumerate(csv.DictReader(fh)) if row["alarm"] == "1"]
        file = s.name.split("/", 1)[1]
        mine = r.detections.filter((pl.col("corpus") == s.corpus) & (pl.col("file") == file))
        assert alarms == mine["row"].to_list()


def test_the_report_is_what_vigil_eval_nab_prints(example: tuple[Path, Path], tmp_path: Path,
                                                   report: NabReport,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    output, kept = _run_cli_keeping_its_report(*example, tmp_path / "out", monkeypatch)
    _check_against_the_command(output, kept, tmp_path / "out")
    assert kept.files.equals(report.files) and kept.detections.equals(report.detections)


def test_the_report_on_the_shared_corpus_is_what_the_command_prints(
        nab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output, r = _run_cli_keeping_its_report(nab / "data", nab / "labels" / "combined_windows.json",
                                            tmp_path / "out", monkeypatch)
    _check_against_the_command(output, r, tmp_path / "out")
    assert r.corpora["corpus"].to_list() == sorted({s.corpus for s in r.series})
    assert r.corpora.filter(pl.col("standard_held_out").is_not_null()).height == 4
    assert r.files.height == 41 and r.windows.height == 64
    assert r.result("standard").score >= 70.5  # the floor of test_nab (issue 18: 71.2)
    # and it plots: every window of the worst file is a span, four corpora have scores
    worst = r.files.filter(pl.col("windows") > 0).sort("standard_points").row(0, named=True)
    assert len(r.plot_file(f"{worst['corpus']}/{worst['file']}").axes[0].patches) == worst["windows"]
    assert len(r.plot_corpora().axes[1].patches) == 3 * 4


def test_files_are_found_by_name_and_unknown_ones_refused(report: NabReport) -> None:
    assert report.find("beta/step.csv") is report.find("step.csv") is report.find("step")
    with pytest.raises(ValueError, match="no file 'nope'"):
        report.find("nope")
    with pytest.raises(ValueError, match="no profile"):
        report.result("fast")


def test_it_is_exported_from_the_package(report: NabReport) -> None:
    assert detector.nab_report is nab_report and detector.NabReport is NabReport
    assert repr(report).startswith("NabReport('default', quiet 100 rows after an alarm: 4 files")
