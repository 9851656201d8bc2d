"""`vigil demo`: the whole loop on real processes. A local fleet of HTTP services serves load
and writes JSON logs; Vigil follows the logs live (`run_follow`), its incidents go to the
remediation engine (`EngineHost`) through a policy; a fault is injected, and the run measures
fault -> incident -> action -> verified recovery, prints the story and the audit, and leaves
nothing running.

The demo's detector settings are short windows (2 s) and a short incident gap, so a run fits in
two minutes; they are the demo's, not a recommendation for production logs.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector.config import VigilConfig
from detector.pipeline import BatchOutcome
from detector.runtime.demo_scenarios import SCENARIOS, Scenario
from detector.runtime.engine_feed import EngineFeed
from detector.runtime.engine_host import EngineHost
from detector.runtime.follow import run_follow
from detector.simulate.live.control import start_fleet
from remediation.actions import Verdict
from remediation.audit import AuditRecord
from remediation.engine_settings import EngineSettings
from remediation.policy import load_policy

# Short windows and gaps: the demo's clock, not production's.
DEMO_CONFIG: dict[str, Any] = {
    "window": {"seconds": 2.0, "allowed_lateness": 1.0, "min_events": 5},
    "scoring": {"warmup": 8},
    "incidents": {"gap_seconds": 12.0},
    "correlation": {"warmup_events": 300, "explain_gap": 12.0},
    "rca": {"refresh_seconds": 4.0, "lookback_seconds": 20.0, "keep_seconds": 120.0},
    "batch_size": 8192,
}
_ACTED = (Verdict.ACTED, Verdict.DRY_RUN)


@dataclass
class _Seen:
    """Incident records as the follower handed them over, with the wall time they arrived."""

    records: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def demo_config() -> VigilConfig:
    return VigilConfig.model_validate(DEMO_CONFIG)


def run_demo(run_dir: Path, scenario: str = "bad_deploy", dry_run: bool = False,
             warmup_s: float = 30.0, timeout_s: float = 75.0, duration_s: float | None = None,
             rps: float = 40.0, seed: int = 0, say: Callable[[str], None] = print
             ) -> dict[str, Any]:
    """Run one scenario in `run_dir` (replaced) and return `summary.json`'s content.

    Fault-free (`scenario="none"`) it runs `duration_s` (default `timeout_s`) after the warm-up
    and counts what Vigil did: nothing, if it does not raise false alarms.
    """
    sc: Scenario = SCENARIOS[scenario]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    seen = _Seen()
    stop = threading.Event()
    t_start = time.time()
    say(f"starting a fleet of real services in {run_dir / 'fleet'} (load {rps:g} requests/s)")
    with start_fleet(run_dir / "fleet", rps=rps, seed=seed) as fleet:
        policy_path = run_dir / "policy.yaml"
        policy_path.write_text(sc.policy_yaml(fleet.control_url, fleet.entry_url or "",
                                               str(fleet.token_file)))
        policy = load_policy(policy_path)
        host = EngineHost(policy, run_dir / "audit.db", EngineSettings(dry_run=dry_run)).start()
        feed = EngineFeed(host)  # as `vigil consume --role partitions --policy` hands incidents

        def on_outcome(out: BatchOutcome) -> None:
            now = time.time()
            records = [inc.to_dict() for inc in out.incidents]
            with seen.lock:
                seen.records.extend((now, rec) for rec in records)
            feed(records)

        follower = threading.Thread(
            target=run_follow, name="vigil-follow",
            args=(list(fleet.log_paths().values()), demo_config(), run_dir / "out", stop),
            kwargs={"on_outcome": on_outcome}, daemon=True)
        follower.start()
        mode = "dry-run: decisions are audited, nothing is done" if dry_run else "acting"
        say(f"Vigil follows {len(fleet.log_paths())} log files; remediation {mode}; policy "
            f"{policy_path}")
        say(f"warming up for {warmup_s:g}s (the detector learns the healthy baseline)")
        time.sleep(warmup_s)
        t_fault = time.time()
        say(f"+0.0s  fault: {sc.what}")
        sc.inject(fleet)
        try:
            _wait(host, seen, t_fault, timeout_s if sc.service else (duration_s or timeout_s),
                  sc.service is not None, say)
        finally:
            stop.set()
            follower.join(30)
            feed.close(timeout_s=10)
    audit = _audit(run_dir / "audit.db")
    summary = _summary(sc, seen, audit, t_fault, dry_run)
    summary |= {"warmup_s": warmup_s, "run_s": round(time.time() - t_start, 1),
                "engine_errors": feed.failed}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for line in _story(sc, seen, audit, t_fault, summary):
        say(line)
    say(f"summary: {run_dir / 'summary.json'}; audit: {run_dir / 'audit.db'} (vigil audit --db "
        "it); incidents: " + str(run_dir / "out" / "incidents.jsonl"))
    return summary


def _wait(host: EngineHost, seen: _Seen, t_fault: float, limit_s: float, faulty: bool,
          say: Callable[[str], None]) -> None:
    """Until the story ends (verified, escalated or ladder done) or `limit_s` passes."""
    told = 0
    deadline = t_fault + limit_s
    while time.time() < deadline:
        time.sleep(0.5)
        rows = sorted(host.store.query(limit=10_000), key=lambda r: r.id or 0)
        for r in rows[told:]:
            say(f"+{r.ts - t_fault:.1f}s  {r.verdict}: {r.rung_name or ''} {r.target or ''} "
                f"{r.detail}".replace("  ", " "))
        told = len(rows)
        if faulty and any(r.verdict in (Verdict.VERIFIED, Verdict.ESCALATED) for r in rows):
            time.sleep(1.0)  # the rows that follow at once (a resolution) join the story
            return


def _audit(path: Path) -> list[AuditRecord]:
    from remediation.audit import AuditStore

    store = AuditStore(path)
    try:
        return sorted(store.query(limit=100_000), key=lambda r: r.id or 0)
    finally:
        store.close()


def _summary(sc: Scenario, seen: _Seen, audit: list[AuditRecord], t_fault: float,
             dry_run: bool) -> dict[str, Any]:
    after = [(t, r) for t, r in seen.records if t >= t_fault]
    opened = next(((t, r) for t, r in after if r["status"] == "open"), None)
    acted = [r for r in audit if r.verdict in _ACTED]
    first = acted[0] if acted else None
    latest: dict[str, dict[str, Any]] = {}
    for _, r in seen.records:
        latest[r["id"]] = r
    cause = None
    if opened is not None:
        ranked = latest[opened[1]["id"]].get("root_cause") or []
        cause = ranked[0]["service"] if ranked else opened[1]["service"]
    if first is not None and first.target:  # the cause the action was taken for: its target
        cause = first.target
    verified = next((r for r in audit if r.verdict == Verdict.VERIFIED), None)
    return {
        "scenario": sc.name, "fault_service": sc.service, "incident_root_cause": cause,
        "fault_to_incident_s": round(opened[0] - t_fault, 1) if opened else None,
        "fault_to_action_s": round(first.ts - t_fault, 1) if first else None,
        "action": f"{first.rung_name} {first.target}" if first else None,
        "verified": verified is not None,
        "fault_to_recovery_s": round(verified.ts - t_fault, 1) if verified else None,
        "actions_total": len(acted), "dry_run": dry_run,
        "incidents_before_fault": len({r["id"] for t, r in seen.records if t < t_fault}),
        "incidents": len(latest),
        "escalated": any(r.verdict == Verdict.ESCALATED for r in audit),
    }


def _story(sc: Scenario, seen: _Seen, audit: list[AuditRecord], t_fault: float,
           s: dict[str, Any]) -> list[str]:
    lines = ["", f"The story ({sc.name}):"]
    if s["fault_to_incident_s"] is not None:
        lines.append(f"  +{s['fault_to_incident_s']:.1f}s incident opened; root cause "
                     f"{s['incident_root_cause']} (the fault was in {sc.service or 'nothing'})")
    elif sc.service:
        lines.append("  no incident opened after the fault (missed)")
    if s["action"]:
        verb = "would run" if s["dry_run"] else "ran"
        lines.append(f"  +{s['fault_to_action_s']:.1f}s Vigil {verb} {s['action']}")
    if s["verified"]:
        lines.append(f"  +{s['fault_to_recovery_s']:.1f}s verified: " + next(
            r.detail for r in audit if r.verdict == Verdict.VERIFIED))
    elif s["escalated"]:
        lines.append("  escalated to a person: " + next(
            r.detail for r in audit if r.verdict == Verdict.ESCALATED))
    lines.append(f"  actions: {s['actions_total']}; incidents: {s['incidents']} "
                 f"({s['incidents_before_fault']} before the fault)")
    lines.append("Audit trail:")
    for r in audit:
        lines.append(f"  +{r.ts - t_fault:6.1f}s {r.verdict:<12} {r.rule or '-'} "
                     f"{r.rung_name or ''} {r.target or ''}: {r.detail}")
    return lines
