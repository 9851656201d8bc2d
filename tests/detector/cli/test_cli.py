"""The `vigil` command as a user runs it: simulate, replay, config show, errors."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from detector.cli import app

runner = CliRunner()


def vigil(*args: str, env: dict[str, str] | None = None) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "burst.jsonl"
    vigil("simulate", "--scenario", "error_burst", "--events", "60000", "--seed", "3",
          "--out", str(path))
    return path


def test_simulate_writes_logs_and_ground_truth(burst: Path) -> None:
    assert sum(1 for _ in burst.open("rb")) == 60000
    truth = orjson.loads(burst.with_name(burst.name + ".truth.json").read_bytes())
    (fault,) = truth["faults"]
    assert (fault["kind"], fault["service"]) == ("error_burst", "payments")


def test_replay_writes_outputs_and_prints_the_incidents(burst: Path, tmp_path: Path) -> None:
    output = vigil("replay", str(burst), "--out", str(tmp_path))
    assert "payments" in output and "Incidents" in output
    incidents = [orjson.loads(x) for x in (tmp_path / "incidents.jsonl").read_bytes().splitlines()]
    assert any(i["service"] == "payments" for i in incidents)
    assert (tmp_path / "anomalies.jsonl").stat().st_size > 0
    assert (tmp_path / "dead_letter.jsonl").read_bytes() == b""


def test_replay_reads_gzip_and_keeps_bad_lines_as_dead_letters(burst: Path, tmp_path: Path,
                                                                ) -> None:
    gz = tmp_path / "mixed.jsonl.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write(burst.read_bytes()[:200_000].rsplit(b"\n", 1)[0] + b"\n{not json\n\n[1]\n")
    out_dir = tmp_path / "out"
    output = vigil("replay", str(gz), "--out", str(out_dir))
    assert "undecodable" in output and "not_object" in output
    dead = [orjson.loads(x) for x in (out_dir / "dead_letter.jsonl").read_bytes().splitlines()]
    assert [d["reason"] for d in dead] == ["undecodable", "not_object"]
    assert dead[0]["raw"] == "{not json" and dead[0]["source"].startswith(str(gz))


def test_replay_from_stdin(tmp_path: Path) -> None:
    data = b'{"ts": 1795435200, "service": "a", "msg": "x"}\n'
    result = subprocess.run(
        [sys.executable, "-m", "detector", "replay", "-", "--out", str(tmp_path)],
        input=data, capture_output=True, check=True,
    )
    assert b"events" in result.stdout
    assert (tmp_path / "incidents.jsonl").exists()


def test_replay_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["replay", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_dead_letters_of_a_missing_or_broken_file_is_one_line_and_an_error(tmp_path: Path) -> None:
    """A real `vigil` process: one line on stderr naming the file, no traceback, exit code 2."""
    (tmp_path / "broken.jsonl").write_text('{"reason": "oversize"}\n')
    for name, says in (("nope.jsonl", "no such file"), (".", "not a file"),
                       ("broken.jsonl", "not a dead-letter file")):
        res = subprocess.run([sys.executable, "-m", "detector", "dead-letters", str(tmp_path / name)],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2, (name, res.returncode, res.stderr)
        assert res.stderr.count("\n") == 1 and says in res.stderr and "Traceback" not in res.stderr, \
            (name, res.stderr)
        assert res.stdout == ""


def test_config_show_applies_file_then_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text("window:\n  seconds: 30\nparsing:\n  max_record_bytes: 4096\n")
    output = vigil("config", "show", "--config", str(cfg),
                   env={"VIGIL_PARSING__MAX_RECORD_BYTES": "2048"})
    assert "seconds: 30.0" in output
    assert "max_record_bytes: 2048" in output


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("window:\n  seconds: -1\n")
    result = runner.invoke(app, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "window.seconds" in result.output or "seconds" in result.output


def test_unknown_config_keys_are_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("windw:\n  seconds: 5\n")
    result = runner.invoke(app, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 2 and "windw" in result.output


def test_python_dash_m_detector_is_the_vigil_command() -> None:
    result = subprocess.run([sys.executable, "-m", "detector", "--help"], capture_output=True,
                            check=True, text=True)
    assert "replay" in result.stdout and "simulate" in result.stdout


def test_dead_letters_can_be_fixed_and_replayed(tmp_path: Path) -> None:
    """A source that names its service 'app' is dead-lettered, then replayed with a mapping."""
    logs = tmp_path / "app.jsonl"
    logs.write_bytes(b"".join(
        orjson.dumps({"ts": 1795435200 + i, "app": "billing", "msg": "ok"}) + b"\n"
        for i in range(50)))
    first = tmp_path / "first"
    res = runner.invoke(app, ["replay", str(logs), "--out", str(first)])
    assert res.exit_code == 1  # not one line became an event, and it says why
    assert "50 of 50 lines lack a timestamp or a service" in res.output
    assert "parsing.fields" in res.output and '"app":"billing"' in res.output
    summary = vigil("dead-letters", str(first / "dead_letter.jsonl"))
    assert "missing_field" in summary and "50" in summary
    raw = runner.invoke(app, ["dead-letters", str(first / "dead_letter.jsonl"), "--raw"])
    assert raw.exit_code == 0
    fixed_input = tmp_path / "again.jsonl"
    fixed_input.write_bytes(raw.stdout_bytes)
    cfg = tmp_path / "vigil.yaml"
    cfg.write_text("parsing:\n  fields:\n    service: [app]\n")
    output = vigil("replay", str(fixed_input), "--config", str(cfg), "--out",
                   str(tmp_path / "second"))
    assert "dead letters total │ 0" in output
    assert (tmp_path / "second" / "dead_letter.jsonl").read_bytes() == b""


@pytest.mark.parametrize(
    "args",
    [["simulate", "--scenario", "nope"], ["simulate", "--shape", "xml"],
     ["eval", "nab", "--data", ".", "--labels", "x.json", "--out", ".", "--detector", "nope"]],
)
def test_unknown_choices_are_clear_errors(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "choose from" in result.output


def test_replay_summary_file_counts_incidents_not_revisions(tmp_path: Path) -> None:
    """Two incidents printed as four: snapshots at the end of input were counted again."""
    run_file = tmp_path / "burst.jsonl"
    vigil("simulate", "--scenario", "error_burst", "--events", "60000", "--seed", "1",
          "--out", str(run_file))
    out_dir, figures = tmp_path / "out", tmp_path / "summary.json"
    vigil("replay", str(run_file), "--out", str(out_dir), "--summary", str(figures))
    data = orjson.loads(figures.read_bytes())
    ids = {orjson.loads(x)["id"] for x in (out_dir / "incidents.jsonl").read_bytes().splitlines()}
    assert data["incidents_opened"] == len(ids) >= 1
    assert data["lines"] == data["events"] + data["dead_letters_total"] == 60000
    for key in ("windows_closed", "anomalies", "seconds", "dead_letters", "gaps", "capped"):
        assert key in data


def test_a_file_of_raw_text_logs_says_what_was_expected(tmp_path: Path) -> None:
    logs = tmp_path / "hdfs.log"
    logs.write_text("".join(f"081109 2035{i % 60:02d} 143 INFO dfs.DataNode: Receiving block "
                            f"blk_{i}\n" for i in range(2000)))
    res = runner.invoke(app, ["replay", str(logs), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "2000 of 2000 lines are not JSON (undecodable)" in res.output
    assert "081109 2035" in res.output and "vigil replay --preset hdfs" in res.output


def test_replay_with_a_preset_reads_raw_text_logs(tmp_path: Path) -> None:
    logs = tmp_path / "hdfs.log"
    logs.write_text("".join(f"081109 2035{i % 60:02d} 143 INFO dfs.DataNode: Receiving block "
                            f"blk_{i}\n" for i in range(2000)) + "not an hdfs line\n")
    figures = tmp_path / "summary.json"
    res = runner.invoke(app, ["replay", str(logs), "--preset", "hdfs", "--out",
                              str(tmp_path / "o"), "--summary", str(figures)])
    assert res.exit_code == 0, res.output
    data = orjson.loads(figures.read_bytes())
    assert (data["events"], data["dead_letters"]["no_match"]) == (2000, 1)


def test_replay_refuses_an_unknown_preset_naming_the_option(tmp_path: Path) -> None:
    logs = tmp_path / "x.log"
    logs.write_text("x\n")
    res = runner.invoke(app, ["replay", str(logs), "--preset", "hfds", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "parsing.preset" in res.output
