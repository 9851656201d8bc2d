"""A remediation engine replica in its own process, on a shared audit (a SQLite file or a
`postgresql://` DSN), as a second `vigil serve` or `vigil remediate` host would run one.

    python engine_replica.py AUDIT POLICY TRIGGERS_JSON SYNC_DIR [--act]

It builds its engine (reading the audit's claims, interrupted ones too); then, unless SYNC_DIR is
`-`, it writes `SYNC_DIR/ready.PID` and waits for `SYNC_DIR/go` (so replicas start their work
together); then it resolves the interrupted claims, submits every trigger of the JSON list at
once, waits for all of it, and exits."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from remediation.audit_log import open_audit
from remediation.engine import Engine
from remediation.engine_settings import EngineSettings
from remediation.policy import load_policy
from remediation.trigger import Trigger


async def main(where: str, policy: str, triggers: str, sync: str, act: bool) -> None:
    store = open_audit(where)
    engine = Engine(load_policy(policy), store, settings=EngineSettings(dry_run=not act, seed=1))
    if sync != "-":
        (Path(sync) / f"ready.{os.getpid()}").touch()
        while not (Path(sync) / "go").exists():
            await asyncio.sleep(0.005)
    engine.resume_interrupted()
    for t in json.loads(triggers):
        engine.submit(Trigger.from_dict(t))
    await engine.drain()
    store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], "--act" in sys.argv[5:]))
