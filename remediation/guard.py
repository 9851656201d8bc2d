"""Guardrails between a planned action and a hook: circuit breakers, cooldowns, restart-loop
protection, budgets and concurrency. It decides; the engine records why."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from remediation.actions import Action
from remediation.audit import AuditRecord
from remediation.policy import Guards


@dataclass(slots=True)
class GuardDecision:
    allowed: bool
    guard: str | None = None  # which guard said no
    detail: str = ""
    escalate: bool = False  # restart loop: climb past restarts or page, instead of stopping

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class Guard:
    """Counts what ran and answers `check(action)`. Cooldown and breakers are per (hook, target),
    budgets per window globally and per target, restarts per target; state is rebuilt from the
    audit on start (`load`), so a restart of Vigil does not reset them.

    >>> from remediation.policy import Guards
    >>> from remediation.actions import Action
    >>> g = Guard(Guards(cooldown_s=60), clock=lambda: 1000.0)
    >>> a = Action("r", 0, "restart", "log", "cart", {}, 5.0, 0.0, "e")
    >>> bool(g.check(a)); g.started(a); g.finished(a, ok=True)
    True
    >>> d = g.check(a); d.allowed, d.guard
    (False, 'cooldown')
    """

    def __init__(self, cfg: Guards, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._all: deque[float] = deque()
        self._target: dict[str, deque[float]] = {}
        self._restarts: dict[str, deque[float]] = {}
        self._breakers: dict[tuple[str, str], _Breaker] = {}
        self.inflight = 0

    def load(self, records: list[AuditRecord]) -> None:
        for r in records:
            if r.hook is None or r.target is None:
                continue
            if r.verdict in ("acted", "dry_run", "failed"):
                self._count(r.hook, r.target, r.ts, restart=bool(r.params and r.params.get("_restart")))

    def check(self, action: Action) -> GuardDecision:
        now = self.clock()
        key = (action.hook, action.target)
        br = self._breakers.get(key)
        if br is not None and br.opened_at is not None and (
                now - br.opened_at < self.cfg.breaker.reset_s or br.probing):
            return GuardDecision(False, "circuit_breaker",
                                 f"{action.hook} on {action.target} failed {br.failures} times; "
                                 f"open until {br.opened_at + self.cfg.breaker.reset_s:.0f}")
        last = self._last.get(key)
        if last is not None and now - last < self.cfg.cooldown_s:
            return GuardDecision(False, "cooldown", f"{action.hook} acted on {action.target} "
                                 f"{now - last:.0f}s ago (cooldown {self.cfg.cooldown_s:g}s)")
        if action.restart:
            rl = self.cfg.restart_loop
            recent = self._trim(self._restarts.get(action.target), now - rl.window_s)
            if len(recent) >= rl.max_restarts:
                return GuardDecision(False, "restart_loop", f"{action.target} restarted "
                                     f"{len(recent)} times in {rl.window_s:g}s", escalate=True)
        b = self.cfg.budget
        if len(self._trim(self._all, now - b.window_s)) >= b.max_actions:
            return GuardDecision(False, "budget", f"{b.max_actions} actions in {b.window_s:g}s "
                                 "already (all targets)")
        per = self._trim(self._target.get(action.target), now - b.window_s)
        if len(per) >= b.max_per_target:
            return GuardDecision(False, "target_budget", f"{b.max_per_target} actions on "
                                 f"{action.target} in {b.window_s:g}s already")
        if self.inflight >= self.cfg.max_concurrent:
            return GuardDecision(False, "concurrency", f"{self.inflight} actions running "
                                 f"(max {self.cfg.max_concurrent})")
        return GuardDecision(True)

    def started(self, action: Action) -> None:
        self.inflight += 1
        self._count(action.hook, action.target, self.clock(), action.restart)
        br = self._breakers.get((action.hook, action.target))
        if br is not None and br.opened_at is not None:
            br.probing = True  # half-open: this is the one probe

    def finished(self, action: Action, ok: bool, counts: bool = True) -> None:
        """The action ended; `counts=False` (an input error: the target was not at fault)
        leaves the breaker as it was, failures and half-open probe included."""
        self.inflight = max(0, self.inflight - 1)
        key = (action.hook, action.target)
        br = self._breakers.setdefault(key, _Breaker())
        br.probing = False
        if not counts:
            return
        if ok:
            br.failures, br.opened_at = 0, None
        else:
            br.failures += 1
            if br.failures >= self.cfg.breaker.failures or br.opened_at is not None:
                br.opened_at = self.clock()

    def breaker_open(self, hook: str, target: str) -> bool:
        br = self._breakers.get((hook, target))
        return br is not None and br.opened_at is not None

    def _count(self, hook: str, target: str, ts: float, restart: bool) -> None:
        self._last[(hook, target)] = max(ts, self._last.get((hook, target), ts))
        self._all.append(ts)
        self._target.setdefault(target, deque()).append(ts)
        if restart:
            self._restarts.setdefault(target, deque()).append(ts)

    @staticmethod
    def _trim(q: deque[float] | None, since: float) -> deque[float]:
        if q is None:
            return deque()
        while q and q[0] < since:
            q.popleft()
        return q
