"""`vigil simulate --rca-cases N` writes an RCA dataset of short span and log captures."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from detector.cli import app


def test_simulate_rca_cases_writes_the_dataset_and_says_what(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "--rca-cases", "2", "--kinds",
                                      "weak_latency,code_exception", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "weak_latency: 2 case(s), root cause cart, catalog" in result.output
    assert "wrote 4 cases" in result.output
    assert len((tmp_path / "cases.csv").read_text().splitlines()) == 5
    assert (tmp_path / "cases" / "case-0003" / "spans.jsonl.gz").is_file()


def test_simulate_rca_cases_refuses_an_unknown_kind(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "--rca-cases", "1", "--kinds", "disk_full",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown fault kind 'disk_full'" in result.output
