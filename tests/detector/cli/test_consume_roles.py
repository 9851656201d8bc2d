"""`vigil consume --role`: which roles a process runs, and the combinations refused (exit 2,
a message saying what to give instead) before anything connects."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from detector.cli import app
from detector.config import VigilConfig
from detector.runtime.engine_host import EngineHost
from detector.runtime.topology_run import TopologyRunner, remediate_group
from remediation.policy import parse_policy

runner = CliRunner()
POLICY = "rules: [{name: r, ladder: [{name: note, hook: log, wait_s: 0}]}]\n"


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return p


@pytest.mark.parametrize(("args", "said"), [
    (["--role", "nope"], "choose ingest, merge, incidents, remediate, all or partitions"),
    (["--role", "partitions", "--role", "ingest"], "--role partitions"),
    (["--role", "partitions", "--role", "all"], "runs alone"),
    (["--role", "remediate"], "--role remediate acts through a policy: give --policy"),
    (["--role", "remediate", "--triggers-topic", "t"], "give --policy"),
    (["--role", "ingest", "--policy", "{policy}", "--triggers-topic", "t"],
     "--policy goes with --role remediate or all"),
    (["--policy", "{policy}"], "give --triggers-topic"),
    (["--role", "all", "--policy", "{policy}"], "give --triggers-topic"),
    (["--role", "remediate", "--policy", "{policy}"], "give --triggers-topic"),
    (["--role", "partitions", "--policy", "{policy}", "--triggers-topic", "t"], "choose one"),
    (["--act"], "--audit-db and --act go with --policy"),
    (["--role", "partitions", "--audit-db", "a.db"], "go with --policy"),
])
def test_bad_role_combinations_exit_2_with_what_to_give(args: list[str], said: str,
                                                         policy: Path) -> None:
    result = runner.invoke(app, ["consume", *(a.replace("{policy}", str(policy))
                                              for a in args)])
    assert result.exit_code == 2, result.output
    assert said in " ".join(result.output.split()), result.output


def test_all_is_the_three_stages_and_remediate_only_with_an_engine(tmp_path: Path) -> None:
    cfg = VigilConfig()
    assert TopologyRunner(cfg, ["all"]).roles == ["ingest", "merge", "incidents"]
    assert TopologyRunner(cfg, ["all"], "t").remediator is None
    engine = EngineHost(parse_policy(POLICY), tmp_path / "audit.db")  # not started: not needed
    try:
        both = TopologyRunner(cfg, ["all"], "vigil.triggers", engine=engine)
        assert both.roles == ["ingest", "merge", "incidents", "remediate"]
        assert both.remediator is not None
        assert both.remediator.k.topics == ["vigil.triggers"]
        assert both.remediator.k.group_id == remediate_group(cfg) == "vigil-remediate"
        alone = TopologyRunner(cfg, ["remediate"], "vigil.triggers", engine=engine)
        assert alone.roles == ["remediate"]
        assert alone.ready() == (False, "not connected: connecting")
        with pytest.raises(ValueError, match="needs an engine and a triggers topic"):
            TopologyRunner(cfg, ["remediate"], "vigil.triggers")
        with pytest.raises(ValueError, match="needs an engine and a triggers topic"):
            TopologyRunner(cfg, ["all"], None, engine=engine)
    finally:
        engine.store.close()


def test_a_failing_remediate_loop_stops_the_process_and_the_drain_stops_the_engine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a broker error (those are retried): the loop's failure sets the stop, the runner
    exits 1, its drain leaves the group and stops the engine; /readyz said why before."""
    import threading

    engine = EngineHost(parse_policy(POLICY), tmp_path / "audit.db").start()
    run = TopologyRunner(VigilConfig(), ["remediate"], "vigil.triggers", engine=engine)
    rem = run.remediator
    assert rem is not None
    run.connect()
    assert run.ready() == (False, "remediate: not connected to the broker: connecting")

    def broken() -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(rem, "connect", lambda: None)  # no broker: the loop goes straight on
    monkeypatch.setattr(rem, "poll_once", broken)
    stop = threading.Event()
    assert run.run(stop) == 1
    assert stop.is_set() and run.failed and not run.is_alive() and not rem.is_alive()
    assert not engine._thread.is_alive()  # the drain stopped it
