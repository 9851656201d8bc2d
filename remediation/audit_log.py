"""What the engine needs of an audit store, as protocols: `AuditStore` (SQLite, one machine) and
`PgAuditStore` (PostgreSQL, shared by engines on several hosts) both are an `AuditLog`; a store
that also checks the counting guards atomically with each claim, across engines, is a
`GuardedClaims` and says so with `shared_guards = True`.

>>> from remediation.audit import AuditStore
>>> store = AuditStore(":memory:")
>>> isinstance(store, AuditLog), store.shared_guards
(True, False)
>>> store.close()
>>> open_audit(":memory:").shared_guards
False
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from remediation.actions import Action
from remediation.audit import AuditRecord, Claim
from remediation.guard import GuardDecision
from remediation.policy import Guards


class AuditUnavailable(RuntimeError):
    """The audit's database could not be reached (after its retries), or refused the
    connection: what was being written is not written, and whoever waited for it is told."""


@runtime_checkable
class AuditLog(Protocol):
    shared_guards: bool  # True: `aclaim_guarded` checks cooldown, restart loop and budgets

    def close(self) -> None: ...

    async def aadd(self, rec: AuditRecord) -> int: ...

    async def aadd_many(self, recs: list[AuditRecord]) -> list[int]: ...

    async def aclaim(self, episode: str, rule: str, rung: int, trigger_json: str | None = None,
                     dry_run: bool = False) -> bool: ...

    def add(self, rec: AuditRecord) -> int: ...

    def claim(self, episode: str, rule: str, rung: int, trigger_json: str | None = None,
              dry_run: bool = False) -> bool: ...

    def interrupted_claims(self) -> list[Claim]: ...

    def claims_since(self, since: float) -> dict[tuple[str, str], list[int]]: ...

    def query(self, since: float | None = None, target: str | None = None,
              episode: str | None = None, verdict: str | None = None, limit: int = 1000,
              ) -> list[AuditRecord]: ...

    def acted_since(self, since: float) -> list[AuditRecord]: ...


class GuardedClaims(AuditLog, Protocol):
    async def aclaim_guarded(self, action: Action, trigger_json: str | None, dry_run: bool,
                             guards: Guards, refused: Callable[[GuardDecision], AuditRecord],
                             ) -> GuardDecision:
        """In one transaction, under a lock every engine on the store takes: count what ran
        (cooldown, restart loop, budgets; `guard.counted_decision`), then claim (episode, rule,
        rung) if they allow it. Allowed: the claim is made. Refused by a guard: the row
        `refused(decision)` is written instead, in that transaction. Already claimed: guard
        `idempotency`, nothing written."""
        ...

    async def atake_over(self, claim: Claim) -> bool:
        """Make this engine the one that resolves an interrupted `claim`: True if it is still
        open and unchanged since it was listed (its time is set to now), False when it was
        closed meanwhile (a live engine's step that finished) or another engine took it first."""
        ...


def open_audit(where: Path | str, retries: int | None = None) -> AuditLog:
    """The audit store at `where`: PostgreSQL for a `postgresql://` DSN (`PgAuditStore`, with
    `retries` reconnections per transaction if given), else the SQLite file (`AuditStore`)."""
    from remediation.audit import AuditStore
    from remediation.audit_pg import PgAuditStore, is_dsn

    if is_dsn(where):
        return PgAuditStore(str(where)) if retries is None else \
            PgAuditStore(str(where), retries=retries)
    return AuditStore(where)

