"""`vigil rca` and `vigil eval rca` as a user runs them; the real Online Boutique cases where
../shared is present."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detector.simulate.captures import write_rca_cases
from tests.support import SHARED

OB = SHARED / "rca" / "onlineboutique"


def _vigil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "detector", *args], capture_output=True,
                          text=True, timeout=300)


def test_vigil_rca_writes_every_service_ranked_and_explains(tmp_path: Path) -> None:
    write_rca_cases(tmp_path / "set", ["cpu_contention"], seed=5)
    case = tmp_path / "set" / "cases" / "case-0000"
    r = _vigil("rca", str(case / "spans.jsonl.gz"), str(case / "logs.jsonl.gz"),
               "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "out" / "rootcause.json").read_text())
    assert set(doc) >= {"onset", "ranking"}
    truth = (tmp_path / "set" / "cases.csv").read_text().splitlines()[1].split(",")[1]
    assert doc["ranking"][0]["service"] == truth
    assert {x["service"] for x in doc["ranking"]} == {
        "gateway", "catalog", "cart", "checkout", "payments", "db"}
    assert f"1. {truth}" in r.stdout and "own (exclusive) time" in r.stdout


def test_vigil_rca_refuses_a_bad_onset_and_a_missing_file(tmp_path: Path) -> None:
    r = _vigil("rca", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path))
    assert r.returncode == 2 and "no such file" in r.stderr
    f = tmp_path / "x.jsonl"
    f.write_text("{}\n")
    r = _vigil("rca", str(f), "--onset", "yesterday-ish", "--out", str(tmp_path))
    assert r.returncode == 2 and "--onset" in r.stderr


def test_vigil_eval_rca_scores_a_dataset_beside_the_naive_baselines(tmp_path: Path) -> None:
    write_rca_cases(tmp_path / "set", ["weak_latency", "network_delay"], cases_per_kind=2, seed=1)
    r = _vigil("eval", "rca", "--data", str(tmp_path / "set"), "--out", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    for method in ("vigil rca", "naive: first error per trace", "naive: duration increase",
                   "random"):
        assert method in r.stdout
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["summary"]["vigil rca"]["ac@1"] >= 0.75
    assert res["summary"]["random"]["ac@1"] == pytest.approx(1 / 6, abs=1e-3)


@pytest.mark.skipif(not OB.is_dir(), reason=f"the Online Boutique RCA cases are not at {OB}")
def test_real_fault_cases_beat_the_naive_baselines(tmp_path: Path) -> None:
    # One case of each fault type with traces on both sides of the injection.
    chosen = "b1_05,b1_06,b1_17,b2_19,b2_21,b2_12,b2_23,b2_27"
    r = _vigil("eval", "rca", "--data", str(OB), "--cases", chosen, "--out",
               str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert s["vigil rca"]["ac@1"] >= 0.6
    assert s["vigil rca --baseline"]["ac@1"] >= 0.6
    assert s["vigil rca"]["ac@1"] > s["naive: duration increase"]["ac@1"]
