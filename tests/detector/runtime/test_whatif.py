"""`vigil replay --policy`: the incidents of a replay go through the real engine in dry-run and
virtual time; never acting, the same decisions every run, one claim per episode and rung."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from detector.cli import app
from detector.config import VigilConfig
from detector.incidents.whatif import story, what_if
from detector.runtime.replay import replay
from detector.simulate.scenarios import write_run
from remediation.policy import parse_policy

POLICY = """
rules:
  - name: errors
    match: {source: [detector], kind: [error]}
    ladder:
      - name: restart
        hook: command
        params: {argv: [touch, "{marker}"]}
        wait_s: 30
      - {name: rollback, hook: log, wait_s: 60}
  - name: latency
    match: {source: [detector], kind: [latency]}
    ladder: [{name: throttle, hook: log}]
"""


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("whatif")
    write_run(d / "crash.jsonl", "crash_loop", 60_000, seed=3)
    replay([d / "crash.jsonl"], VigilConfig(), d / "out")
    return d


def policy_text(tmp: Path) -> str:
    return POLICY.replace("{marker}", str(tmp / "acted"))


def records(out: Path) -> list[dict]:
    return [orjson.loads(line) for line in (out / "incidents.jsonl").open("rb")]


def decided(w: object) -> list[tuple]:
    return [(d.ts, d.episode, d.rule, d.rung, d.target, d.verdict, d.guard, d.detail)
            for d in w.decisions]  # type: ignore[attr-defined]


def test_two_runs_decide_the_same_and_act_on_nothing(history: Path, tmp_path: Path) -> None:
    pol = parse_policy(policy_text(tmp_path))
    first = what_if(records(history / "out"), pol, tmp_path / "a.db")
    second = what_if(records(history / "out"), pol, tmp_path / "a.db")  # the same file, replaced
    assert decided(first) == decided(second)
    verdicts = [d.verdict for d in first.decisions]
    assert verdicts.count("dry_run") >= 1 and "acted" not in verdicts
    assert not (tmp_path / "acted").exists()  # the command hook never ran: dry-run is forced
    # Virtual time: the restart is at the incident's detection, the climb 30 s of history later.
    steps = {(d.rung_name, d.verdict): d.ts for d in first.decisions}
    assert steps[("restart", "not_better")] - steps[("restart", "dry_run")] == 30.0
    with sqlite3.connect(tmp_path / "a.db") as db:
        claims = db.execute("SELECT episode, rule, rung, COUNT(*) FROM claims "
                            "GROUP BY episode, rule, rung").fetchall()
    assert claims and all(n == 1 for *_, n in claims)


def test_a_redelivered_incident_is_one_episode_with_one_claim_per_rung(history: Path,
                                                                       tmp_path: Path) -> None:
    recs = records(history / "out")
    pol = parse_policy(policy_text(tmp_path))
    once = what_if(recs, pol, tmp_path / "once.db")
    twice = what_if([r for r in recs for _ in range(2)], pol, tmp_path / "twice.db")
    assert [d.verdict for d in twice.actions] == [d.verdict for d in once.actions]
    with sqlite3.connect(tmp_path / "twice.db") as db:
        (n, distinct), = db.execute("SELECT COUNT(*), COUNT(DISTINCT episode || rule || rung) "
                                    "FROM claims").fetchall()
    assert n == distinct == len(once.actions)


def test_root_cause_news_moves_the_next_step_to_the_new_cause(tmp_path: Path) -> None:
    pol = parse_policy("rules: [{name: e, match: {kind: [error]}, ladder: [{name: restart, hook: "
                       "log, wait_s: 60}, {name: rollback, hook: log}]}]")
    inc = {"kind": "incident", "id": "inc-gw-1", "fingerprint": "root_cause=gateway",
           "service": "gateway", "status": "open", "opened_at": 100.0, "detected_at": 110.0,
           "last_anomaly_at": 110.0, "revision": 0, "features": {"error_ratio": 2},
           "root_cause": [{"service": "gateway", "confidence": 0.6}]}
    news = {**inc, "revision": 1, "last_anomaly_at": 130.0,
            "root_cause": [{"service": "db", "confidence": 0.9}]}
    w = what_if([inc, news], pol, tmp_path / "w.db")
    assert [(d.rung_name, d.target) for d in w.actions] == [("restart", "gateway"),
                                                             ("rollback", "db")]


def test_vigil_replay_policy_prints_what_vigil_would_have_done(history: Path,
                                                               tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(policy_text(tmp_path))
    result = CliRunner().invoke(app, ["replay", str(history / "crash.jsonl"), "--out",
                                      str(tmp_path / "o"), "--policy", str(tmp_path / "p.yaml")])
    assert result.exit_code == 0, result.output
    assert "would restart cart (rule errors, rung 1)" in result.output
    assert "still firing: no better after 30s → climbs" in result.output
    assert "would rollback cart (rule errors, rung 2)" in result.output
    rows = [orjson.loads(x) for x in (tmp_path / "o" / "whatif.jsonl").open("rb")]
    assert rows and {r["verdict"] for r in rows} >= {"dry_run", "not_better"}
    assert not (tmp_path / "acted").exists()
    lines = story(what_if(records(tmp_path / "o"), parse_policy(policy_text(tmp_path)),
                          tmp_path / "again.db"))
    assert all(line in result.output for line in lines)


def test_a_broken_policy_stops_before_the_replay(history: Path, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("rules:\n  - name: a\n    ladder: []\n")
    result = CliRunner().invoke(app, ["replay", str(history / "crash.jsonl"), "--out",
                                      str(tmp_path / "o"), "--policy", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2
    assert not (tmp_path / "o").exists()


def test_analysis_what_if_decides_as_vigil_replay_policy_does(history: Path, tmp_path: Path) -> None:
    from detector import analyze

    (tmp_path / "p.yaml").write_text(policy_text(tmp_path))
    result = CliRunner().invoke(app, ["replay", str(history / "crash.jsonl"), "--out",
                                      str(tmp_path / "o"), "--policy", str(tmp_path / "p.yaml")])
    assert result.exit_code == 0, result.output
    cli = [orjson.loads(x) for x in (tmp_path / "o" / "whatif.jsonl").open("rb")]
    a = analyze(history / "crash.jsonl")
    assert a.incident_log == records(history / "out")  # the updates a replay writes, in order
    w = a.what_if(tmp_path / "p.yaml", tmp_path / "nb.db")
    keys = ("ts", "episode", "verdict", "rule", "rung", "target", "guard", "detail")
    assert [tuple(d.to_dict()[k] for k in keys) for d in w.decisions] == \
        [tuple(r[k] for k in keys) for r in cli]
    table = w.table()
    assert table["verdict"].to_list() == [r["verdict"] for r in cli]
    assert table["incident"].is_not_null().all() and not (tmp_path / "acted").exists()
    assert w.story()[0].startswith(story(w)[0][:8])


def test_a_what_if_runs_where_an_event_loop_already_runs(history: Path, tmp_path: Path) -> None:
    """A Jupyter kernel runs an asyncio loop in the cell's thread: the virtual loop cannot run
    there, so it runs on a thread of its own (this failed in a real kernel)."""
    import asyncio

    pol = parse_policy(policy_text(tmp_path))
    recs = records(history / "out")

    async def in_a_loop() -> object:
        return what_if(recs, pol, tmp_path / "inside.db")

    inside = asyncio.run(in_a_loop())
    outside = what_if(recs, pol, tmp_path / "outside.db")
    assert decided(inside) == decided(outside) and inside.actions  # type: ignore[attr-defined]
