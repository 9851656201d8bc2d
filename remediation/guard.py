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
class Reservation:
    """An action counted by `Guard.started` before it runs; `Guard.cancel` undoes it."""

    action: Action
    ts: float
    previous: float | None  # the episode's last time on (hook, target) before this one
    probe: bool  # this action took the half-open breaker's one probe


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class Guard:
    """Counts what ran and answers `check(action)`. Cooldown and breakers are per (hook, target),
    budgets per window globally and per target, restarts per target; state is rebuilt from the
    audit on start (`load`), so a restart of Vigil does not reset them.

    The cooldown is between episodes: it holds another episode's action on the same (hook,
    target), never the next rung of the ladder that acted (a rollback after a restart of the same
    deployment). Budgets count every rung.

    >>> from remediation.policy import Guards
    >>> from remediation.actions import Action
    >>> g = Guard(Guards(cooldown_s=60), clock=lambda: 1000.0)
    >>> a = Action("r", 0, "restart", "log", "cart", {}, 5.0, 0.0, "e1")
    >>> bool(g.check(a)); _ = g.started(a); g.finished(a, ok=True)
    True
    >>> bool(g.check(Action("r", 1, "rollback", "log", "cart", {}, 5.0, 0.0, "e1")))  # next rung
    True
    >>> d = g.check(Action("r", 0, "restart", "log", "cart", {}, 5.0, 0.0, "e2")); d.guard
    'cooldown'
    """

    def __init__(self, cfg: Guards, clock: Callable[[], float] = time.time,
                 shared: bool = False) -> None:
        """`shared=True`: the audit store checks cooldown, restart loop and budgets atomically
        with each claim, across every engine on it (`counted_decision` on its counts); this
        guard then keeps only what is per engine: breakers and concurrency."""
        self.cfg = cfg
        self.clock = clock
        self.shared = shared
        # (hook, target) -> episode -> when it last acted there (entries past the cooldown go)
        self._last: dict[tuple[str, str], dict[str, float]] = {}
        self._all: deque[float] = deque()
        self._target: dict[str, deque[float]] = {}
        self._restarts: dict[str, deque[float]] = {}
        self._breakers: dict[tuple[str, str], _Breaker] = {}
        self.inflight = 0

    def load(self, records: list[AuditRecord], dry_run: bool = False) -> None:
        """Count what the audit says ran. An acting engine (`dry_run=False`) counts only what
        really ran (acted, failed): dry-run rows are what would have happened and must never
        hold a cooldown or spend a budget. A dry-run engine counts them too (it simulates)."""
        counted = ("acted", "failed", "dry_run") if dry_run else ("acted", "failed")
        for r in records:
            if r.hook is None or r.target is None:
                continue
            if r.verdict in counted:
                self._count(r.hook, r.target, r.ts, restart=bool(r.params and r.params.get("_restart")),
                            episode=r.episode)

    def check(self, action: Action) -> GuardDecision:
        now = self.clock()
        key = (action.hook, action.target)
        br = self._breakers.get(key)
        if br is not None and br.opened_at is not None and (
                now - br.opened_at < self.cfg.breaker.reset_s or br.probing):
            return GuardDecision(False, "circuit_breaker",
                                 f"{action.hook} on {action.target} failed {br.failures} times; "
                                 f"open until {br.opened_at + self.cfg.breaker.reset_s:.0f}")
        if not self.shared:
            others = [ts for ep, ts in self._recent(key, now).items() if ep != action.episode]
            rl, b = self.cfg.restart_loop, self.cfg.budget
            decision = counted_decision(
                self.cfg, action, now, max(others) if others else None,
                len(self._trim(self._restarts.get(action.target), now - rl.window_s)),
                len(self._trim(self._all, now - b.window_s)),
                len(self._trim(self._target.get(action.target), now - b.window_s)))
            if not decision:
                return decision
        if self.inflight >= self.cfg.max_concurrent:
            return GuardDecision(False, "concurrency", f"{self.inflight} actions running "
                                 f"(max {self.cfg.max_concurrent})")
        return GuardDecision(True)

    def started(self, action: Action) -> Reservation:
        """The action passed its check and will run: it counts from now (cooldown, restart
        loop, budgets) and holds a concurrency slot, before the engine awaits anything (its
        claim), so another episode checked meanwhile already sees it. `cancel` undoes it when
        the step does not run after all (its claim was refused).

        >>> from remediation.policy import parse_policy
        >>> g = Guard(parse_policy("{rules: [], guards: {budget: {max_actions: 1}}}").guards)
        >>> a, b = (Action("r", 0, "restart", "log", t, {}, 5.0, 0.0, "e" + t) for t in "xy")
        >>> bool(g.check(a)), bool(g.check(b))
        (True, True)
        >>> r = g.started(a)
        >>> g.check(b).guard  # a counts before its claim is written: b waits for the budget
        'budget'
        >>> g.cancel(r)
        >>> bool(g.check(b)), g.inflight
        (True, 0)
        """
        self.inflight += 1
        key = (action.hook, action.target)
        previous = self._last.get(key, {}).get(action.episode)
        ts = self.clock()
        self._count(action.hook, action.target, ts, action.restart, action.episode)
        br = self._breakers.get(key)
        probe = br is not None and br.opened_at is not None and not br.probing
        if br is not None and br.opened_at is not None:
            br.probing = True  # half-open: this is the one probe
        return Reservation(action, ts, previous, probe)

    def cancel(self, r: Reservation) -> None:
        """Undo `started` for a step that did not run: its counts, its slot, its probe."""
        a = r.action
        self.inflight = max(0, self.inflight - 1)
        for q in (self._all, self._target.get(a.target),
                  self._restarts.get(a.target) if a.restart else None):
            if q is not None and r.ts in q:
                q.remove(r.ts)
        by_episode = self._last.get((a.hook, a.target))
        if by_episode is not None:
            if r.previous is None:
                by_episode.pop(a.episode, None)
            else:
                by_episode[a.episode] = r.previous
        br = self._breakers.get((a.hook, a.target))
        if r.probe and br is not None:
            br.probing = False

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

    def _recent(self, key: tuple[str, str], now: float) -> dict[str, float]:
        """The episodes that acted on `key` within the cooldown (older entries are dropped)."""
        by_episode = self._last.get(key)
        if not by_episode:
            return {}
        for ep in [e for e, ts in by_episode.items() if now - ts >= self.cfg.cooldown_s]:
            del by_episode[ep]
        if not by_episode:
            del self._last[key]
        return by_episode

    def _count(self, hook: str, target: str, ts: float, restart: bool, episode: str = "") -> None:
        by_episode = self._last.setdefault((hook, target), {})
        by_episode[episode] = max(ts, by_episode.get(episode, ts))
        self._recent((hook, target), self.clock())
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


def counted_decision(cfg: Guards, action: Action, now: float, other_episode_last: float | None,
                     restarts: int, all_actions: int, target_actions: int) -> GuardDecision:
    """The guards that count what ran, in their order (cooldown, restart loop, budget, target
    budget), from counts over their windows: the last time another episode acted on (hook,
    target) within the cooldown (None: none did), the target's restarts in the restart loop's
    window, and the actions in the budget's window on all targets and on this one. One place for
    the in-process guard and for a store that counts across engines.

    >>> from remediation.policy import Guards
    >>> a = Action("r", 0, "restart", "log", "cart", {}, 5.0, 0.0, "e1")
    >>> counted_decision(Guards(), a, 100.0, None, 0, 20, 0).guard
    'budget'
    >>> bool(counted_decision(Guards(), a, 100.0, None, 0, 0, 0))
    True
    """
    if other_episode_last is not None:
        return GuardDecision(False, "cooldown", f"{action.hook} acted on {action.target} "
                             f"{now - other_episode_last:.0f}s ago for another episode "
                             f"(cooldown {cfg.cooldown_s:g}s)")
    rl, b = cfg.restart_loop, cfg.budget
    if action.restart and restarts >= rl.max_restarts:
        return GuardDecision(False, "restart_loop", f"{action.target} restarted "
                             f"{restarts} times in {rl.window_s:g}s", escalate=True)
    if all_actions >= b.max_actions:
        return GuardDecision(False, "budget", f"{b.max_actions} actions in {b.window_s:g}s "
                             "already (all targets)")
    if target_actions >= b.max_per_target:
        return GuardDecision(False, "target_budget", f"{b.max_per_target} actions on "
                             f"{action.target} in {b.window_s:g}s already")
    return GuardDecision(True)
