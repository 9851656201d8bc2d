"""Session- and line-level detection on logs: the parsers, the online session scorer, the eval
commands on synthetic input, and regression floors on the shared Loghub samples."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import orjson
from typer.testing import CliRunner

from detector.cli import app
from detector.eval.loghub import eval_lines, eval_sessions, score_sessions
from detector.eval.loglines import parse_bgl, parse_hdfs
from detector.events import LEVEL_FATAL, LEVEL_INFO

NORMAL = ["open <*>", "write <*>", "write <*>", "write <*>", "close <*>"]


def write_sessions(path: Path, sessions: list[tuple[str, list[str]]], garbage: int = 0) -> None:
    with path.open("wb") as fh:
        for sid, msgs in sessions:
            for i, m in enumerate(msgs):
                fh.write(orjson.dumps({"block_id": sid, "seq": i, "message": m}) + b"\n")
        fh.write(b"{broken\n" * garbage)
        if garbage:
            fh.write(b'{"block_id": ["a list"], "message": "x"}\n')


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_session_scorer_flags_a_new_template_an_unusual_count_and_a_broken_invariant_only() -> None:
    sessions = [(f"s{i}", Counter(NORMAL)) for i in range(300)]
    sessions.insert(150, ("new", Counter([*NORMAL, "exception in <*>"])))
    sessions.insert(280, ("count", Counter([*NORMAL, *["write <*>"] * 40])))
    sessions.insert(250, ("invariant", Counter(["open <*>", "write <*>", "write <*>", "write <*>"])))
    verdicts = {v.session_id: v for v in score_sessions(sessions, warmup_share=0.1, alpha=0.02)}
    assert verdicts["new"].predicted and verdicts["new"].reason.startswith("new template")
    assert verdicts["count"].predicted and verdicts["count"].reason.startswith("unusual count")
    assert verdicts["invariant"].predicted and verdicts["invariant"].reason.startswith("broken")
    assert sum(v.predicted for v in verdicts.values()) == 3


def test_eval_sessions_writes_scores_counts_bad_lines_and_reports_f1(tmp_path: Path) -> None:
    sessions = [(f"b{i}", NORMAL) for i in range(120)] + [("bad", [*NORMAL, "disk failure on <*>"])]
    events = tmp_path / "e.jsonl"
    write_sessions(events, sessions, garbage=3)
    labels = tmp_path / "labels.csv"
    labels.write_text("BlockId,Label\n" + "".join(f"b{i},Normal\n" for i in range(120)) + "bad,Anomaly\n")
    out = tmp_path / "out.csv"
    r = eval_sessions(events, "block_id", out, labels)
    assert r.sessions == 121 and r.bad_lines == 4 and r.events == 121 * 5 + 1
    rows = read_csv(out)
    assert list(rows[0]) == ["session_id", "score", "predicted"] and len(rows) == 121
    assert r.overall is not None and r.overall.f1 == 1.0
    assert [row["session_id"] for row in rows if row["predicted"] == "1"] == ["bad"]


def test_the_parsers_read_both_layouts_and_keep_unparsed_lines() -> None:
    h = parse_hdfs("081109 203615 148 INFO dfs.DataNode$PacketResponder: Received block "
                   "blk_38865049064139660 of size 67108864 from /10.251.42.84 and blk_-1", 7)
    assert h.line_id == 7 and h.level == LEVEL_INFO and h.sessions == ["blk_38865049064139660", "blk_-1"]
    b = parse_bgl("KERNDTLB 1117869872 2005.06.04 R23-M1-N8-I:J18-U11 2005-06-04-00.24.32.432192 "
                  "R23-M1-N8-I:J18-U11 RAS KERNEL FATAL data TLB error interrupt", 3)
    assert b.level == LEVEL_FATAL and b.content == "data TLB error interrupt" and b.parsed
    assert not parse_bgl("not a bgl line", 1).parsed and not parse_hdfs("", 2).parsed


def test_eval_lines_on_bgl_skips_dump_fields(tmp_path: Path) -> None:
    head = "1117869872 2005.06.04 R23-M1-N8-I:J18-U11 2005-06-04-00.24.32.432192 R23-M1-N8-I:J18-U11 RAS"
    lines = [f"{head} KERNEL INFO generating core.{i}" for i in range(30)]
    lines += [f"{head} KERNEL FATAL data TLB error interrupt",
              f"{head} KERNEL FATAL instruction address: 0x00004ed8",
              f"{head} KERNEL FATAL machine check enable..............0"]
    log = tmp_path / "bgl.log"
    log.write_text("\n".join(lines) + "\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("LineId,Label,Category\n" + "".join(
        f"{i},{1 if i == 31 else 0},-\n" for i in range(1, 34)))
    r = eval_lines(log, "bgl", tmp_path / "out.csv", labels)
    assert [row["line_id"] for row in read_csv(tmp_path / "out.csv") if row["predicted"] == "1"] == ["31"]
    assert r.overall is not None and r.overall.f1 == 1.0
    assert r.baseline is not None and r.baseline.fp == 2  # the FATAL keyword rule takes the dump


def test_the_eval_commands_run_and_refuse_bad_options(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    write_sessions(events, [(f"b{i}", NORMAL) for i in range(20)])
    runner = CliRunner()
    ok = runner.invoke(app, ["eval", "sessions", "--events", str(events), "--session-field",
                             "block_id", "--out", str(tmp_path / "s.csv")])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["eval", "lines", "--log", str(events), "--format", "syslog",
                              "--out", str(tmp_path / "l.csv")])
    assert bad.exit_code == 2
    missing = runner.invoke(app, ["eval", "sessions", "--events", str(tmp_path / "nope"),
                                  "--session-field", "x", "--out", str(tmp_path / "s.csv")])
    assert missing.exit_code == 2


# ---- the shared Loghub samples (skipped where ../shared is absent) ----------------------------
def test_bgl_lines_beat_the_severity_keyword_rule(loghub: Path, tmp_path: Path) -> None:
    """0.759 F1 when written (the FATAL keyword rule: 0.584)."""
    r = eval_lines(loghub / "BGL" / "BGL_2k.unlabeled.log", "bgl", tmp_path / "bgl.csv",
                   loghub / "BGL" / "BGL_2k.line_labels.csv")
    assert r.overall is not None and r.baseline is not None
    assert r.overall.f1 >= 0.72 and r.overall.f1 >= r.baseline.f1 + 0.1
    assert r.overall.recall == 1.0


def test_hdfs_sessions_flag_the_exception_block_without_false_alarms(loghub: Path, tmp_path: Path) -> None:
    """The head-2000 sample: 8 anomalous blocks, 5 of them identical to normal ones."""
    r = eval_sessions(loghub / "HDFS" / "HDFS_head2000.events.jsonl", "block_id", tmp_path / "s.csv",
                      loghub / "HDFS" / "HDFS_head2000.block_labels.csv")
    assert r.sessions == 390 and r.indistinguishable_anomalies == 5
    assert r.distinguishable is not None and r.distinguishable.tp >= 1 and r.distinguishable.fp == 0
