"""What-if on history: the incidents of a replay go, in event time, through the remediation engine
a live Vigil runs (same triggers, policy, guards, ladders, verification by resolution, audit), in
dry-run and in virtual time. It never acts and never calls out: no hook but the log hook runs,
no live check or page is made (history's services are not today's), and its audit is its own
database, replaced on every run, so two runs on the same history decide the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from detector.incidents.triggers import incident_time, incident_trigger
from remediation.actions import Verdict
from remediation.audit import AuditRecord, AuditStore
from remediation.engine import Engine
from remediation.engine_settings import EngineSettings
from remediation.policy import Policy
from remediation.trigger import Trigger
from remediation.virtual_time import run_virtual


@dataclass(slots=True)
class WhatIf:
    """What the engine decided on a history: every audit row, in order, and the triggers."""

    decisions: list[AuditRecord]
    triggers: list[tuple[float, Trigger]]
    audit_db: Path

    @property
    def actions(self) -> list[AuditRecord]:
        """The steps that would have run (dry-run rows)."""
        return [d for d in self.decisions if d.verdict == Verdict.DRY_RUN]

    def table(self) -> pl.DataFrame:
        """Every decision as a row, in order: when (event time), the incident, the verdict (a
        step that would have run is `dry_run`; a guard's is `suppressed`, naming the guard),
        rule, rung, step, hook, target, guard and why (`detail`)."""
        incident = {t.episode: t.labels.get("incident", t.fingerprint) for _, t in self.triggers}
        return pl.DataFrame([{
            "ts": d.ts, "incident": incident.get(d.episode), "verdict": d.verdict, "rule": d.rule,
            "rung": None if d.rung is None else d.rung + 1, "step": d.rung_name, "hook": d.hook,
            "target": d.target, "guard": d.guard, "detail": d.detail, "episode": d.episode,
        } for d in self.decisions], schema=_TABLE)

    def story(self) -> list[str]:
        """`story(self)`: a line per decision, in an operator's words."""
        return story(self)


_TABLE: dict[str, Any] = {
    "ts": pl.Float64, "incident": pl.String, "verdict": pl.String, "rule": pl.String,
    "rung": pl.Int64, "step": pl.String, "hook": pl.String, "target": pl.String,
    "guard": pl.String, "detail": pl.String, "episode": pl.String}


def incident_triggers(records: Iterable[dict[str, Any]]) -> list[tuple[float, Trigger]]:
    """(event time, trigger) of every incident record, in event time (ties keep their order)."""
    timed = [(incident_time(r), i, incident_trigger(r)) for i, r in enumerate(records)
             if r.get("kind", "incident") == "incident"]
    timed.sort(key=lambda x: (x[0], x[1]))
    return [(t, trig) for t, _, trig in timed]


def what_if(records: Iterable[dict[str, Any]], policy: Policy, audit_db: Path) -> WhatIf:
    """Decide, in dry-run and virtual time, on incident records (`incidents.jsonl`'s lines).

    >>> import tempfile
    >>> from remediation.policy import parse_policy
    >>> pol = parse_policy('rules: [{name: cart-errors, match: {kind: [error]}, ladder: ['
    ...     '{name: restart, hook: log, wait_s: 60}, {name: rollback, hook: log, wait_s: 600}]}]')
    >>> inc = {"kind": "incident", "id": "inc-cart-1", "fingerprint": "root_cause=cart",
    ...        "service": "cart", "status": "open", "opened_at": 100.0, "detected_at": 110.0,
    ...        "features": {"error_ratio": 3}, "root_cause": [{"service": "cart"}]}
    >>> done = {**inc, "status": "resolved", "resolved_at": 400.0}
    >>> w = what_if([inc, done], pol, Path(tempfile.mkdtemp()) / "whatif.db")
    >>> [(d.ts - 110, d.verdict, d.rung_name) for d in w.decisions]  # doctest: +NORMALIZE_WHITESPACE
    [(0.0, 'dry_run', 'restart'), (60.0, 'not_better', 'restart'), (60.0, 'dry_run', 'rollback'),
     (290.0, 'resolved', None), (290.0, 'verified', 'rollback')]
    >>> print(*story(w), sep=chr(10))
    00:01:50 cart error (incident inc-cart-1, root cause cart) → would restart cart (rule cart-errors, rung 1)
    00:02:50   still firing: no better after 60s → climbs
    00:02:50 → would rollback cart (rule cart-errors, rung 2)
    00:06:40   resolved
    00:06:40   recovered: the alert resolved
    """
    triggers = incident_triggers(records)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{audit_db}{suffix}").unlink(missing_ok=True)
    if not triggers:
        AuditStore(audit_db).close()
        return WhatIf([], [], audit_db)
    return run_virtual(_decide(triggers, policy, audit_db), start=triggers[0][0])


async def _decide(triggers: list[tuple[float, Trigger]], policy: Policy, audit_db: Path
                  ) -> WhatIf:
    loop = asyncio.get_running_loop()
    store = AuditStore(audit_db, synchronous="NORMAL", inline=True, clock=loop.time)
    settings = EngineSettings(dry_run=True, seed=0, live_checks=False)
    engine = Engine(policy, store, settings=settings, clock=loop.time)
    try:
        for at, trigger in triggers:
            if at > loop.time():
                await asyncio.sleep(at - loop.time())
            engine.submit(trigger)
        await engine.drain()
        decisions = sorted(store.query(limit=10_000_000), key=lambda r: r.id or 0)
    finally:
        store.close()
    return WhatIf(decisions, triggers, audit_db)


def story(result: WhatIf) -> list[str]:
    """What Vigil would have done and when, a line per decision, in the words of an operator.

    Each incident is introduced once (its service, what moved, its root cause); a step reads
    "would <step> <target>", a climb says why, a guard says which and why.
    """
    about: dict[str, Trigger] = {}
    for _, trig in result.triggers:
        about.setdefault(trig.episode, trig)
    told: set[str] = set()
    quiet: set[str] = set()  # episodes already said to match no rule
    lines: list[str] = []
    for d in result.decisions:
        when = datetime.fromtimestamp(d.ts, UTC).strftime("%H:%M:%S")
        t = about.get(d.episode)
        head = ""
        if d.episode not in told and t is not None:
            told.add(d.episode)
            head = (f"{t.labels.get('service', t.service)} {t.kind or 'anomaly'} "
                    f"(incident {t.labels.get('incident', t.fingerprint)}, root cause "
                    f"{t.root_cause or '-'}) ")
        line = _line(d, quiet)
        if line is not None:
            lines.append(f"{when} {head}{line}")
    return lines


def _line(d: AuditRecord, quiet: set[str]) -> str | None:
    step = f"rule {d.rule}, rung {(d.rung or 0) + 1}"
    v = d.verdict
    if v == Verdict.DRY_RUN:
        return f"→ would {d.rung_name} {d.target} ({step})"
    if v == Verdict.NOT_BETTER:
        return f"  still firing: {d.detail} → climbs"
    if v == Verdict.VERIFIED:
        return f"  recovered: {d.detail}"
    if v == Verdict.SUPPRESSED:
        if d.guard == "policy":
            if d.episode in quiet:
                return None
            quiet.add(d.episode)
            return "  no rule matches: nothing would be done"
        return f"  {d.rung_name or 'step'} suppressed by {d.guard}: {d.detail}"
    if v == Verdict.ESCALATED:
        return f"→ would page: {d.detail}"
    if v == Verdict.RESOLVED:
        return "  resolved"
    return f"  {v}: {d.rung_name or ''} {d.detail}".rstrip()
