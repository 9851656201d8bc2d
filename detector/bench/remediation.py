"""`vigil bench remediation`: decisions/s of the remediation engine with a durable audit."""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(slots=True)
class RemediationFigures:
    triggers: int
    targets: int
    seconds: float
    decisions_per_s: float
    audit_records: int
    audit_writes_per_s: float  # audit rows + claims, durable (WAL, synchronous=FULL)
    verdicts: dict[str, int]


def bench_remediation(triggers: int = 10_000, targets: int = 10_000,
                      db: Path | None = None) -> RemediationFigures:
    """Triggers through policy, guard, claim, the `log` hook, verification and the audit, all
    durable: each decision waits for its audit rows to be on disk (group commit)."""
    import tempfile

    from remediation.audit import AuditStore
    from remediation.engine import Engine
    from remediation.engine_settings import EngineSettings
    from remediation.policy import parse_policy
    from remediation.trigger import Trigger

    policy = parse_policy("""
rules:
  - name: note
    match: {labels: {severity: {in: [page, critical]}}}
    ladder:
      - {name: log, hook: log, wait_s: 0, success: {resolved: false}}
guards:
  cooldown_s: 300
  max_concurrent: 100000
  budget: {window_s: 3600, max_actions: 1000000, max_per_target: 5}
  retries: {attempts: 0}
""")
    with tempfile.TemporaryDirectory() as tmp:
        store = AuditStore(db or Path(tmp) / "audit.db")
        trig = [Trigger("alertmanager", f"fp{i}", "firing", 1_700_000_000.0 + i,
                        labels={"service": f"svc-{i % targets}", "severity": "page"})
                for i in range(triggers)]

        async def run() -> float:
            engine = Engine(policy, store, settings=EngineSettings(dry_run=False))
            t0 = time.perf_counter()
            for t in trig:
                engine.submit(t)
            await engine.drain()
            return time.perf_counter() - t0

        seconds = asyncio.run(run())
        recs = store.query(limit=10 * triggers)
        store.close()
    counts = collections.Counter(r.verdict for r in recs)
    writes = len(recs) + counts.get("acted", 0)  # rows plus one claim per action
    return RemediationFigures(triggers, targets, seconds, triggers / seconds, len(recs),
                              writes / seconds, dict(counts))
