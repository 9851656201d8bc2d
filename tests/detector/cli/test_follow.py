"""`vigil follow` as a user runs it: a process that follows a file while it is written, writes
its outputs live and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from detector.simulate.runs import simulated_lines
from tests.support import ROOT


def test_follow_writes_outputs_live_and_sigterm_exits_zero(tmp_path: Path) -> None:
    log, out = tmp_path / "app.jsonl", tmp_path / "out"
    lines, _ = simulated_lines(600, seed=1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "detector", "follow", str(log), "--out", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (out / "dead_letter.jsonl").exists():  # started; the file is waited for
            assert proc.poll() is None and time.monotonic() < deadline, "vigil follow did not start"
            time.sleep(0.05)
        for i in range(0, len(lines), 200):
            with log.open("ab") as fh:
                fh.write(b"\n".join(lines[i:i + 200]) + b"\n")
            time.sleep(0.05)
        with log.open("ab") as fh:
            fh.write(b"{not json\n")
        while not (out / "dead_letter.jsonl").read_bytes():  # flushed while running
            assert time.monotonic() < deadline, "the dead letter was not written live"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr[-2000:]
    assert stderr.startswith(f"vigil follow: {log} from the start")
    assert "Follow summary" in stdout and "601" in stdout
    assert all((out / f).is_file() for f in ("anomalies.jsonl", "incidents.jsonl"))
    assert b'"source":"%s:601"' % str(log).encode() in (out / "dead_letter.jsonl").read_bytes()


def test_follow_with_a_policy_hands_its_incidents_to_the_engine(tmp_path: Path) -> None:
    from detector.simulate.scenarios import write_run
    from remediation.audit import AuditStore

    sim, log, out = tmp_path / "sim.jsonl", tmp_path / "app.jsonl", tmp_path / "out"
    write_run(sim, "error_burst", 40_000, seed=3)
    (tmp_path / "p.yaml").write_text("rules: [{name: errors, match: {kind: [error]}, ladder: "
                                     "[{name: throttle, hook: log, wait_s: 1}]}]\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "detector", "follow", str(log), "--out", str(out),
                             "--policy", str(tmp_path / "p.yaml"), "--audit-db",
                             str(tmp_path / "audit.db")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log.write_bytes(sim.read_bytes())
        deadline = time.monotonic() + 60
        while b'"status":"open"' not in (out / "incidents.jsonl").read_bytes() if (
                out / "incidents.jsonl").exists() else True:
            assert proc.poll() is None and time.monotonic() < deadline, "no incident"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    assert "remediation dry-run with" in stderr
    store = AuditStore(tmp_path / "audit.db")
    try:
        rows = store.query()
    finally:
        store.close()
    assert ("dry_run", "payments") in {(r.verdict, r.target) for r in rows}
