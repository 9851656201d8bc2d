"""`run_follow` as a runtime: lines appended to followed files become incidents written live (the
same as a replay of those lines), bad bytes become dead letters, `on_outcome` sees each flushed
outcome, and a stop processes what was held and finishes the pipeline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from detector.config import VigilConfig
from detector.pipeline import BatchOutcome
from detector.runtime.follow import FollowResult, run_follow
from detector.runtime.replay import latest_incidents, replay
from detector.simulate.runs import simulated_lines

KEYS = ("id", "service", "status", "opened_at", "resolved_at", "anomaly_count", "features",
        "services")  # what test_replay pins of an incident


class Running:
    """`run_follow` in a thread, stopped and joined by the fixture if a test did not."""

    def __init__(self, paths: list[Path], out: Path,
                 on_outcome: Callable[[BatchOutcome], None] | None = None,
                 partial_timeout_s: float = 2.0) -> None:
        self.stop = threading.Event()
        self.outcomes: list[BatchOutcome] = []
        self.result: FollowResult | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = run_follow(paths, VigilConfig(), out, self.stop,
                                         on_outcome=on_outcome or self.outcomes.append,
                                         poll_s=0.02, partial_timeout_s=partial_timeout_s)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self, timeout: float = 20) -> FollowResult:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run_follow did not stop"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    runs: list[Running] = []

    def go(paths: list[Path], **kw: Any) -> Running:
        runs.append(Running(paths, tmp_path / "out", **kw))
        return runs[-1]

    yield go
    for r in runs:
        r.stop.set()
        r.thread.join(20)


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def summary(incident: dict[str, Any]) -> dict[str, Any]:
    return {k: incident[k] for k in KEYS} | {"root_cause": incident["root_cause"][0]["service"]}


def records(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


def test_appended_logs_open_incidents_written_live_as_a_replay_finds_them(
        tmp_path: Path, start: Callable[..., Running]) -> None:
    lines, _ = simulated_lines(60_000, seed=3, scenario="error_burst")
    log = tmp_path / "app.jsonl"
    run = start([log])
    out = tmp_path / "out"
    for i in range(0, len(lines), 5000):  # a writer appending as it goes
        with log.open("ab") as fh:
            fh.write(b"\n".join(lines[i:i + 5000]) + b"\n")
        time.sleep(0.01)
    until(lambda: any(r["service"] == "payments" for r in records(out / "incidents.jsonl")), 20,
          "the payments incident written before the stop")
    until(lambda: sum(len(o.events) for o in run.outcomes) == len(lines), 20, "every line")
    res = run.finish()
    assert res.stats.events == len(lines) and res.stats.dead.total == 0
    log.with_name("all.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    replayed = replay([log.with_name("all.jsonl")], VigilConfig(), tmp_path / "replayed")
    # What a replay pins and the top root cause:
    # the ranking's evidence below the top moves with where batches end, in a replay too.
    assert [summary(i) for i in latest_incidents(out / "incidents.jsonl")] == [
        summary(i) for i in replayed.incidents]


def test_invalid_utf8_ends_as_a_dead_letter(tmp_path: Path, start: Callable[..., Running]) -> None:
    log = tmp_path / "app.jsonl"
    run = start([log])
    log.write_bytes(b'{"ts": 1795392000, "service": "cart", "msg": "caf\xe9"}\n\xff\xfe\x00junk\n')
    until(lambda: len(records(tmp_path / "out" / "dead_letter.jsonl")) == 2, 10, "dead letters")
    res = run.finish()
    dead = records(tmp_path / "out" / "dead_letter.jsonl")
    assert [d["reason"] for d in dead] == ["undecodable", "undecodable"]
    assert [d["source"] for d in dead] == [f"{log}:1", f"{log}:2"]
    assert all("raw_b64" in d for d in dead)  # the original bytes, kept exact
    assert res.stats.dead.total == 2


def test_on_outcome_sees_each_outcome_after_it_is_flushed(tmp_path: Path,
                                                          start: Callable[..., Running]) -> None:
    dead_file = tmp_path / "out" / "dead_letter.jsonl"
    on_disk: list[int] = []

    def on_outcome(out: BatchOutcome) -> None:
        on_disk.append(len(records(dead_file)))

    log = tmp_path / "app.jsonl"
    run = start([log], on_outcome=on_outcome)
    log.write_bytes(b"{oops\n")
    until(lambda: on_disk != [], 10, "the first outcome")
    with log.open("ab") as fh:
        fh.write(b"[1]\n")
    until(lambda: len(on_disk) >= 2, 10, "the second outcome")
    run.finish()
    assert on_disk == [1, 2, 2]  # the third: finish


def test_a_stop_processes_the_held_partial_line_and_finishes_the_pipeline(
        tmp_path: Path, start: Callable[..., Running]) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(b"".join(orjson.dumps({"ts": 1795392000 + i, "service": "cart", "msg": "ok"})
                             + b"\n" for i in range(100)) + b'{"ts": 1795392100, "service": "cart"')
    run = start([log], partial_timeout_s=60)
    until(lambda: sum(len(o.events) for o in run.outcomes) == 100, 10, "the complete lines")
    t0 = time.monotonic()
    res = run.finish()
    assert time.monotonic() - t0 < 2
    assert res.stats.lines == 101 and res.stats.dead.counts["undecodable"] == 1
    assert res.stats.windows_closed > 0  # pipe.finish() closed the open windows
    assert records(tmp_path / "out" / "dead_letter.jsonl")[0]["source"] == f"{log}:101"


def test_the_result_reports_rotations_and_truncations(tmp_path: Path,
                                                      start: Callable[..., Running]) -> None:
    log = tmp_path / "app.jsonl"
    run = start([log])
    log.write_bytes(b"{oops\n")
    until(lambda: run.outcomes != [], 10, "the first line")
    log.rename(tmp_path / "app.jsonl.1")
    log.write_bytes(b"{oops\n{oops\n")
    until(lambda: sum(len(o.dead) for o in run.outcomes) == 3, 10, "the rotated file")
    with log.open("r+b") as fh:
        fh.truncate(0)
    log.write_bytes(b"[1]\n")
    until(lambda: sum(len(o.dead) for o in run.outcomes) == 4, 10, "the truncated file")
    res = run.finish()
    assert (res.follow.rotations, res.follow.truncations) == (1, 1)
    assert [d["source"] for d in records(tmp_path / "out" / "dead_letter.jsonl")] == [
        f"{log}:1", f"{log}:1", f"{log}:2", f"{log}:1"]
