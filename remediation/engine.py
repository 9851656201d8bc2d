"""The remediation engine: a trigger in, each matching rule's ladder climbed rung by rung through
the guard, approval, the hook (timeout, retries), verification and, at the top, a page; every
decision is an audit record. Intake (`submit`) never waits for a hook."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from remediation.actions import Action, InputError, Outcome, Verdict, redact, scrub
from remediation.audit import AuditRecord, Claim
from remediation.audit_log import AuditLog, AuditUnavailable, GuardedClaims
from remediation.engine_settings import EngineSettings
from remediation.guard import Guard, GuardDecision
from remediation.hooks.base import HookParamError, HookRegistry
from remediation.hooks.log import LogHook
from remediation.planning import plan_action
from remediation.policy import CredentialError, HttpCheck, Policy, Rule, Rung
from remediation.templating import (
    SHOWN,
    TemplateError,
    references,
    render,
    render_promql,
    render_url,
)
from remediation.trigger import Trigger, TriggerError


@dataclass
class _Episode:
    trigger: Trigger
    resolved: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    json: str | None = None  # the trigger, serialised once for its audit rows
    seen: float = 0.0  # when a delivery of this episode last arrived
    checks: dict[int, _Seen] = field(default_factory=dict)  # by id(rung): what its checks saw


@dataclass
class _Seen:
    """What a rung's verification saw: what verified it, or each check's last probe."""

    why: str = ""
    http: str = ""
    promql: str = ""


class Engine:
    """Runs inside an asyncio loop. `submit` records and schedules; `drain` waits for the
    scheduled work (tests, shutdown); `approve`/`reject` answer a pending approval.

    Idempotency: each (episode, rule, rung) is claimed in the audit database before its hook runs,
    so a resent alert, a second Vigil replica sharing the database, or a restart never acts twice
    on one rung of one episode.

    Interruptions: a claim that no row ended (the process died while the hook ran) is resolved by
    the next engine on the database (`resume_interrupted`, also run by the first `submit`): once
    the old hook cannot still be running it is audited `interrupted`, then its ladder resumes at
    that rung (retried: the rung says `on_interrupt: retry`, its hook is idempotent, or it was a
    dry run) or a person is paged (`escalated`). Never forgotten, never silently done twice.
    """

    def __init__(self, policy: Policy, store: AuditLog, hooks: HookRegistry | None = None,
                 settings: EngineSettings | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.policy = policy
        self.store = store
        self.hooks = hooks or HookRegistry()
        self.settings = settings or EngineSettings()
        self.clock = clock
        self.sleep = sleep
        # A store shared by engines on several hosts (PostgreSQL) checks cooldown, restart loop
        # and budgets with each claim, atomically across them; this guard keeps the rest.
        self.guard = Guard(policy.guards, clock, shared=store.shared_guards)
        g = policy.guards
        horizon = max(g.cooldown_s, g.budget.window_s, g.restart_loop.window_s)
        self.guard.load(store.acted_since(clock() - horizon), dry_run=self.settings.dry_run)
        self._rng = random.Random(self.settings.seed)
        self._prior_claims = store.claims_since(clock() - self.settings.claim_memory_s)
        self._interrupted: list[Claim] = store.interrupted_claims()
        self._episodes: dict[str, _Episode] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._approvals: dict[int, asyncio.Future[bool]] = {}
        self._dry_hook = LogHook()
        self._bg: set[asyncio.Future[Any]] = set()
        self._submitted = 0

    # ---- intake -------------------------------------------------------------------------
    def submit(self, trigger: Trigger) -> list[str]:
        """Take a trigger; returns the rules whose ladders started (none for a resend or a
        resolution). Must be called from the engine's event loop; returns at once."""
        started, _ = self._take(trigger)
        return started

    async def process(self, trigger: Trigger) -> None:
        """`submit`, then wait until everything it started has finished (its ladders, or the
        audit row of a resolution or suppression): a caller that marks the trigger handled
        afterwards never loses it to a crash in between."""
        _, work = self._take(trigger)
        if work:
            results = await asyncio.gather(*work, return_exceptions=True)
            lost = next((r for r in results if isinstance(r, AuditUnavailable)), None)
            if lost is not None:  # its decisions are not all audited: the caller must not
                raise lost        # mark it handled (it is redone, and the claims dedupe it)

    def _take(self, trigger: Trigger) -> tuple[list[str], list[asyncio.Future[Any]]]:
        # Secret labels and annotations go no further: not to the audit, a hook or a page.
        trigger = self.policy.redact_trigger(trigger)
        if self._interrupted:  # before anything else touches these episodes
            self.resume_interrupted()
        self._submitted += 1
        if self._submitted % 4096 == 0:
            self._forget_finished()
        ep = self._episodes.get(trigger.episode)
        if trigger.status == "resolved":
            if ep is not None:
                ep.resolved.set()
                ep.seen = self.clock()
            return [], [self._background(self._record(
                trigger, Verdict.RESOLVED, detail="the alert resolved" + (
                    "; waiting steps stop, a verification in progress counts it"
                    if ep and _running(ep) else "")))]
        if ep is None:
            ep = self._episodes[trigger.episode] = _Episode(trigger)
        elif trigger != ep.trigger:  # news of the episode (a detector's incident named a new
            ep.trigger, ep.json = trigger, None  # root cause): the steps still to come act on it
        ep.seen = self.clock()
        rules = self.policy.matching(trigger)
        if not rules:
            return [], [self._background(self._record(trigger, Verdict.SUPPRESSED, guard="policy",
                                                      detail="no rule matches"))]
        started: list[str] = []
        work: list[asyncio.Future[Any]] = []
        for rule in rules:
            running = ep.tasks.get(rule.name)
            if running is not None:  # a resend of an episode already being handled:
                if not running.done():  # it is finished when that handling is
                    work.append(running)
                continue
            task = ep.tasks[rule.name] = asyncio.get_running_loop().create_task(
                self._ladder(rule, ep))
            started.append(rule.name)
            work.append(task)
        return started, work

    def resume_interrupted(self) -> int:
        """Start resolving the steps an earlier engine claimed and never finished (see the class
        docstring); returns how many. Runs once, from the engine's event loop: the first
        `submit` calls it, and an owner should at start (a quiet engine must resolve them too)."""
        claims, self._interrupted = self._interrupted, []
        loop = asyncio.get_running_loop()
        for c in claims:
            trigger = self._claim_trigger(c)
            ep = self._episodes.get(trigger.episode)
            if ep is None:
                ep = self._episodes[trigger.episode] = _Episode(trigger)
            ep.seen = self.clock()
            rule = next((r for r in self.policy.rules if r.name == c.rule), None)
            if rule is None or c.rung >= len(rule.ladder):
                self._background(self._unresumable(c, trigger, "its rule is no longer in the "
                                                   "policy"))
            elif rule.name in ep.tasks:
                self._background(self._unresumable(c, trigger, "a later claim of the same "
                                                   "ladder is being resolved"))
            else:
                ep.tasks[rule.name] = loop.create_task(self._ladder(rule, ep, resume=c))
        return len(claims)

    def _claim_trigger(self, c: Claim) -> Trigger:
        """The trigger a claim acted for (as the policy redacts it now), or a stand-in."""
        try:
            if c.trigger is not None:
                return self.policy.redact_trigger(Trigger.from_dict(c.trigger))
        except TriggerError:
            pass
        fingerprint, _, starts = c.episode.rpartition("@")
        try:
            starts_at = float(starts)
        except ValueError:
            fingerprint, starts_at = c.episode, 0.0
        return Trigger("manual", fingerprint or c.episode, "firing", starts_at)

    async def _taken_over(self, c: Claim, trigger: Trigger) -> bool:
        """With a store shared by engines: True when this engine now resolves the claim, False
        (audited) when it was closed meanwhile or another engine took it first. Always True on
        a store of one machine."""
        if not self.store.shared_guards:
            return True
        store: GuardedClaims = self.store  # type: ignore[assignment]  # shared_guards says so
        if await store.atake_over(c):
            return True
        await self._record(trigger, Verdict.SUPPRESSED, rule=c.rule, rung=c.rung,
                           guard="idempotency", detail=(
                               f"step {c.rung} of {c.rule!r} (claimed {_when(c.ts)}) was "
                               "finished, or taken over, by another engine"))
        return False

    async def _unresumable(self, c: Claim, trigger: Trigger, why: str) -> None:
        if not await self._taken_over(c, trigger):
            return
        detail = (f"the engine stopped while step {c.rung} of {c.rule!r} ran (claimed "
                  f"{_when(c.ts)}); its outcome is unknown and {why}: escalating")
        await self._record(trigger, Verdict.INTERRUPTED, rule=c.rule, rung=c.rung, detail=detail)
        await self._page(c.rule, trigger, detail, rung=c.rung, closes_claim=True)

    async def _resolve_interrupted(self, rule: Rule, ep: _Episode, c: Claim) -> bool:
        """Audit the interrupted step and decide: True to retry it, False once escalated."""
        trigger, rung = ep.trigger, rule.ladder[c.rung]
        r = self.policy.guards.retries
        # Until the old hook cannot still be running (a command's process group outlives its
        # engine), nothing is decided: no second run overlaps the first.
        longest = rung.timeout_s * (r.attempts + 1) + r.attempts * r.max_s
        if (left := c.ts + longest - self.clock()) > 0:
            await self.sleep(left)
        if not await self._taken_over(c, trigger):  # a live replica's step, or another resolver
            return False
        retry, why = self._retry_interrupted(rung, c.dry_run)
        detail = (f"the engine stopped while this step ran (claimed {_when(c.ts)}); its outcome is "
                  f"unknown; {'retrying' if retry else 'escalating'}: {why}")
        try:
            action: Action | None = self._action(rule, c.rung, rung, trigger)
        except (InputError, CredentialError):
            action = None
        await self._record(trigger, Verdict.INTERRUPTED, rule=rule, rung=c.rung, action=action,
                           detail=detail)
        if not retry:
            await self._page(rule, trigger, f"step {rung.name!r} of {rule.name!r} was "
                             f"interrupted by a stop of the engine; its outcome is unknown and it "
                             f"is not retried ({why})", rung=c.rung, closes_claim=True)
        return retry

    def _retry_interrupted(self, rung: Rung, dry_run: bool) -> tuple[bool, str]:
        if dry_run:
            return True, "it was a dry run (the log hook)"
        if rung.on_interrupt is not None:
            return rung.on_interrupt == "retry", f"on_interrupt: {rung.on_interrupt}"
        try:
            idempotent = getattr(self.hooks.get(rung.hook), "idempotent", None)
            yes = bool(idempotent(rung.params) if callable(idempotent) else idempotent)
        except Exception:  # an unknown hook or a broken declaration: not idempotent
            yes = False
        return yes, (f"{rung.hook} is idempotent for these params" if yes else
                     f"{rung.hook} is not idempotent for these params (set on_interrupt: retry "
                     "if it is)")

    def _forget_finished(self) -> None:
        horizon = self.clock() - self.settings.episode_memory_s
        for key in [k for k, ep in self._episodes.items()
                    if ep.seen < horizon and not _running(ep)]:
            del self._episodes[key]

    def episodes_in_memory(self) -> int:
        return len(self._episodes)

    async def drain(self) -> None:
        """Wait until every started ladder (and pending audit write) has finished."""
        while True:
            tasks: list[asyncio.Future[Any]] = [
                t for ep in self._episodes.values() for t in ep.tasks.values() if not t.done()]
            tasks += [t for t in self._bg if not t.done()]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    def _background(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        return task

    def pending_approvals(self) -> list[int]:
        return [k for k, f in self._approvals.items() if not f.done()]

    def approve(self, audit_id: int) -> bool:
        return self._answer(audit_id, True)

    def reject(self, audit_id: int) -> bool:
        return self._answer(audit_id, False)

    def _answer(self, audit_id: int, yes: bool) -> bool:
        fut = self._approvals.get(audit_id)
        if fut is None or fut.done():
            return False
        fut.set_result(yes)
        return True

    # ---- the ladder ---------------------------------------------------------------------
    async def _ladder(self, rule: Rule, ep: _Episode, resume: Claim | None = None) -> None:
        """Climb `rule`'s ladder for the episode; with `resume`, first resolve that interrupted
        claim and, if it is retried, start at its rung (already claimed: not claimed again)."""
        trigger = ep.trigger
        held = None  # the rung whose claim this ladder holds without having claimed it now
        first = 0
        if resume is not None:
            if not await self._resolve_interrupted(rule, ep, resume):
                return
            held = first = resume.rung
        elif done := self._prior_claims.get((trigger.episode, rule.name), []):
            # Rungs of this episode claimed before this engine started (a restart, or another
            # replica on the same database); claims made since are refused by the claim itself.
            last = max(done)
            prior = [r for r in self.store.query(episode=trigger.episode, limit=100_000)
                     if r.rule == rule.name and r.rung == last]
            climbed = any(r.verdict in (Verdict.NOT_BETTER, Verdict.FAILED) for r in prior)
            ran = next((r for r in prior if r.verdict in (Verdict.ACTED, Verdict.DRY_RUN)), None)
            judged = climbed or any(r.verdict in (Verdict.VERIFIED, Verdict.ESCALATED)
                                    for r in prior)
            if ran is not None and not judged and last < len(rule.ladder):
                # The step ran, and the engine stopped while waiting to see whether it helped:
                # that wait is finished now (what is left of it), not forgotten.
                if not await self._finish_verification(rule, last, ep, ran):
                    return
                climbed = True
                if last + 1 >= len(rule.ladder):
                    await self._page(rule, trigger)
                    return
            if not climbed or last + 1 >= len(rule.ladder):
                await self._record(trigger, Verdict.SUPPRESSED, rule=rule, rung=last, guard="idempotency",
                             detail=f"rung {last} of this episode already ran")
                return
            first = last + 1
        acted = first > 0 or resume is not None  # then a guard that stops the climb pages
        for i in range(first, len(rule.ladder)):
            rung, trigger = rule.ladder[i], ep.trigger
            closes = i == held  # what is recorded for this rung ends the held claim
            if ep.resolved.is_set():
                await self._record(trigger, Verdict.CANCELLED, rule=rule, rung=i,
                                   detail="the alert resolved before this step", closes_claim=closes)
                return
            try:
                action = self._action(rule, i, rung, trigger)
            except TemplateError as exc:  # the target needs a value this alert lacks
                await self._record(trigger, Verdict.INPUT_ERROR, rule=rule, rung=i,
                                   detail=f"target: {exc}", closes_claim=closes)
                continue
            except CredentialError as exc:  # configuration, not the alert nor the target
                await self._record(trigger, Verdict.FAILED, rule=rule, rung=i, detail=str(exc),
                                   closes_claim=closes)
                continue
            problem = self._input_problem(action, trigger)
            if problem is not None:  # before any guard counts it: the target was never called
                verdict, detail = problem
                await self._record(trigger, verdict, action=action, detail=detail, closes_claim=closes)
                continue
            decision = self.guard.check(action)
            if not decision:
                if await self._held(rule, rung, trigger, action, decision, acted, closes):
                    continue  # a restart loop: the next rung (or the page) instead
                return
            needs_approval = (rule.approval is not None and rule.approval.required and not closes
                              and not self.settings.dry_run)  # dry-run acts on nothing to approve
            if needs_approval and not await self._approved(action, trigger, ep,
                                                           rule.approval.expires_s):  # type: ignore[union-attr]
                return
            lock = self._locks.setdefault(action.target, asyncio.Lock())
            async with lock:  # one ladder at a time per target: two triggers never race
                # Asked again under the lock: another episode may have acted on this target
                # while this one waited for the lock or an approval (two incidents at once).
                decision = self.guard.check(action)
                if not decision:
                    if await self._held(rule, rung, trigger, action, decision, acted, closes):
                        continue
                    return
                # It counts from here, before the claim is awaited: episodes on other targets
                # checked meanwhile see it (a budget held only one target at a time before).
                reserved = self.guard.started(action)
                running = False
                try:
                    if not closes and self.store.shared_guards:
                        decision = await self._claim_guarded(action, trigger)
                        if decision.guard == "idempotency":
                            await self._record(trigger, Verdict.SUPPRESSED, action=action,
                                               guard="idempotency", detail=decision.detail)
                            return
                        if not decision:  # its row is written, with the check, by the store
                            self.guard.cancel(reserved)
                            running = True  # cancelled: nothing to undo below
                            if await self._held(rule, rung, trigger, action, decision, acted,
                                                closes, recorded=True):
                                continue
                            return
                    elif not closes and not await self.store.aclaim(
                            trigger.episode, rule.name, i, self._trigger_json(trigger),
                            self.settings.dry_run):
                        await self._record(trigger, Verdict.SUPPRESSED, action=action,
                                           guard="idempotency",
                                           detail="this rung of this episode already ran")
                        return
                    running = True  # from here _execute ends the slot, whatever happens
                finally:
                    if not running:
                        self.guard.cancel(reserved)
                outcome, took = await self._execute(action, trigger)
                acted = True
                verdict = ((Verdict.DRY_RUN if self.settings.dry_run else Verdict.ACTED)
                           if outcome.ok else
                           Verdict.INPUT_ERROR if outcome.input_error else Verdict.FAILED)
                done_rec = self._audit_record(trigger, verdict, action=action,
                                              detail=outcome.detail, output=outcome.output,
                                              duration=took, closes_claim=True)
                if outcome.ok and self._settled_now(rung, ep):
                    # Nothing to wait for: both rows go to disk in one write.
                    await self.store.aadd_many([done_rec, self._audit_record(
                        trigger, Verdict.VERIFIED, action=action, detail=self._why_better(rung, ep))])
                    return
                await self.store.aadd(done_rec)
                if outcome.ok and await self._verified(rung, ep):
                    await self._record(trigger, Verdict.VERIFIED, action=action,
                                       detail=self._why_better(rung, ep))
                    return
                if outcome.ok:
                    await self._record(trigger, Verdict.NOT_BETTER, action=action,
                                       detail=self._why_not_better(rung, ep))
        await self._page(rule, trigger)

    async def _claim_guarded(self, action: Action, trigger: Trigger) -> GuardDecision:
        """Claim the step through a store that checks the counting guards across engines: the
        claim, or the refusal's row, in one transaction with the counts."""
        store: GuardedClaims = self.store  # type: ignore[assignment]  # shared_guards says so
        return await store.aclaim_guarded(
            action, self._trigger_json(trigger), self.settings.dry_run, self.policy.guards,
            lambda d: self._audit_record(trigger, Verdict.SUPPRESSED, action=action,
                                         guard=d.guard, detail=d.detail))

    async def _held(self, rule: Rule, rung: Rung, trigger: Trigger, action: Action,
                    decision: GuardDecision, acted: bool, closes: bool,
                    recorded: bool = False) -> bool:
        """Audit a guard's refusal (unless `recorded` already); True when the ladder goes on to
        its next rung (a restart loop), False when it stops (paging first if earlier steps
        acted without helping)."""
        if not recorded:
            await self._record(trigger, Verdict.SUPPRESSED, action=action, guard=decision.guard,
                               detail=decision.detail, closes_claim=closes)
        if decision.escalate:
            return True
        if acted:  # the ladder acted and it did not help: a person must know
            await self._page(rule, trigger, f"step {rung.name!r} of {rule.name!r} "
                             f"suppressed by {decision.guard} ({decision.detail}) after "
                             "earlier steps did not help")
        return False

    async def _finish_verification(self, rule: Rule, i: int, ep: _Episode, ran: AuditRecord
                                   ) -> bool:
        """Verify rung `i`, which ran (`ran`) before this engine started, for what is left of
        its wait; audit the outcome. True when it did not help (the ladder climbs)."""
        rung, trigger = rule.ladder[i], ep.trigger
        try:
            action: Action | None = self._action(rule, i, rung, trigger)
        except (TemplateError, CredentialError):
            action = None
        left = max(0.0, ran.ts + rung.wait_s - self.clock())
        note = (f" (the engine stopped while waiting; {rung.wait_s - left:.0f}s of the "
                f"{rung.wait_s:g}s wait had passed)")
        if await self._verified(rung, ep, wait_s=left):
            await self._record(trigger, Verdict.VERIFIED, rule=rule, rung=i, action=action,
                               detail=self._why_better(rung, ep) + note)
            return False
        await self._record(trigger, Verdict.NOT_BETTER, rule=rule, rung=i, action=action,
                           detail=self._why_not_better(rung, ep) + note)
        return True

    def _action(self, rule: Rule, i: int, rung: Rung, trigger: Trigger) -> Action:
        return plan_action(self.policy, rule, i, rung, trigger)

    async def _approved(self, action: Action, trigger: Trigger, ep: _Episode, expires_s: float
                        ) -> bool:
        rec_id = await self._record(trigger, Verdict.PENDING_APPROVAL, action=action,
                              detail=f"waiting for approval (expires in {expires_s:g}s)")
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._approvals[rec_id] = fut
        resolved: asyncio.Future[Any] = asyncio.ensure_future(ep.resolved.wait())
        waiting: set[asyncio.Future[Any]] = {fut, resolved}
        try:
            finished, _ = await asyncio.wait(waiting, timeout=expires_s,
                                             return_when=asyncio.FIRST_COMPLETED)
        finally:
            resolved.cancel()
            self._approvals.pop(rec_id, None)
        if fut in finished and fut.result():
            return True
        why = ("rejected" if fut in finished else
               "the alert resolved first" if ep.resolved.is_set() else f"expired after {expires_s:g}s")
        await self._record(trigger, Verdict.REJECTED, action=action, guard="approval", detail=why)
        return False

    def _input_problem(self, action: Action, trigger: Trigger) -> tuple[Verdict, str] | None:
        """The real hook's `prepare` (in dry-run too): (input_error, why) when the trigger's data
        cannot make the call, (failed, why) when `prepare` itself breaks; None when it can."""
        try:
            prepare = getattr(self.hooks.get(action.hook), "prepare", None)
        except HookParamError:
            return None  # an unknown hook: the call fails and says so
        if prepare is None:
            return None
        try:
            prepare(action, trigger)
        except InputError as exc:
            return Verdict.INPUT_ERROR, str(exc)
        except Exception as exc:  # a hook's bug is a failed step, not a dead ladder
            return Verdict.FAILED, f"{action.hook}.prepare raised {type(exc).__name__}: {exc}"
        return None

    async def _execute(self, action: Action, trigger: Trigger) -> tuple[Outcome, float]:
        hook = self._dry_hook if self.settings.dry_run else self.hooks.get(action.hook)
        r = self.policy.guards.retries
        delays = r.delays(r.attempts, self._rng)
        t0 = time.perf_counter()  # the guard counted it when it was claimed (`Guard.started`)
        outcome = Outcome(False, "not run")
        try:
            for attempt in range(len(delays) + 1):
                outcome = await self._call(hook, action, trigger)
                if outcome.ok or outcome.input_error or attempt == len(delays):
                    break  # the same data would fail the same way: no retry
                await self.sleep(delays[attempt])
        finally:
            # The breaker counts the target's failures, never the alert's bad data.
            self.guard.finished(action, outcome.ok, counts=not outcome.input_error)
        if not outcome.ok and not outcome.input_error and len(delays):
            outcome.detail += f" (after {len(delays) + 1} attempts)"
        return outcome, time.perf_counter() - t0

    async def _call(self, hook: Any, action: Action, trigger: Trigger) -> Outcome:
        try:
            if inspect.iscoroutinefunction(hook.run):
                coro = hook.run(action, trigger)
            else:  # a synchronous hook runs in a worker thread; its timeout still applies
                coro = asyncio.to_thread(hook.run, action, trigger)
            result = await asyncio.wait_for(coro, timeout=action.timeout_s)
        except TimeoutError:
            return Outcome(False, f"{action.hook} timed out after {action.timeout_s:g}s")
        except InputError as exc:
            return Outcome(False, str(exc), input_error=True)
        except Exception as exc:  # a hook's bug is a failed action, not a dead engine
            return Outcome(False, f"{action.hook} raised {type(exc).__name__}: {exc}")
        if not isinstance(result, Outcome):
            return Outcome(False, f"{action.hook} returned {type(result).__name__}, not an Outcome")
        return result

    async def _verified(self, rung: Rung, ep: _Episode, wait_s: float | None = None) -> bool:
        """Within the rung's wait: did the trigger resolve (if asked), the HTTP check pass, or
        the PromQL condition hold for `for`? Each check is probed at its interval and once more at
        the deadline; a failed probe (Prometheus down, a bad query) is "not yet", never an
        exception. What verified it, or what was last seen, is kept for the audit's detail. With
        `live_checks` off (a what-if on history) only the resolution counts."""
        v = rung.verify
        live = self.settings.live_checks
        http = v.http if live else None
        query: str | None = None
        seen = ep.checks[id(rung)] = _Seen()
        if live and v.promql is not None:
            try:
                query = render_promql(v.promql, ep.trigger)
            except TemplateError as exc:
                seen.promql = f"promql: {exc}"
            if self.policy.prometheus is None:
                seen.promql = "promql: the policy names no prometheus.url to ask"
        held_since: float | None = None
        async with contextlib.AsyncExitStack() as stack:
            client = None
            if query is not None and self.policy.prometheus is not None:
                client = await stack.enter_async_context(httpx.AsyncClient(
                    base_url=self.policy.prometheus.url, timeout=self.policy.prometheus.timeout_s))
            start = self.clock()
            wait = rung.wait_s if wait_s is None else wait_s
            deadline, due_http, due_prom = start + wait, start, start
            first = True
            while True:
                if v.resolved and ep.resolved.is_set():
                    seen.why = "the alert resolved"
                    return True
                # The first probes count from the start of the wait, so a `for` as long as the
                # wait is judged by the deadline's probe.
                now, first = (start if first else self.clock()), False
                last = now >= deadline  # the deadline's probe: every check once more
                if http is not None and (last or now >= due_http):
                    ok, seen.http = await _http_probe(http, ep.trigger)
                    due_http = self.clock() + http.interval_s
                    if ok:
                        seen.why = seen.http
                        return True
                if client is not None and query is not None and (last or now >= due_prom):
                    ok, what = await _promql_probe(client, query)
                    due_prom = self.clock() + v.interval_s
                    held_since = (held_since if held_since is not None else now) if ok else None
                    held = now - held_since if held_since is not None else 0.0
                    seen.promql = (f"{what} (held {held:.1f}s of {v.for_s:g}s)"
                                   if ok and v.for_s else what)
                    if held_since is not None and held >= v.for_s:
                        seen.why = (f"promql held {v.for_s:g}s: {query}" if v.for_s else
                                    f"promql held: {query}")
                        return True
                left = deadline - self.clock()
                if last or left <= 0:
                    return rung.wait_s == 0 and not v.live and not v.resolved
                dues = ([due_http] if http else []) + ([due_prom] if client else [])
                step = max(0.0, min([left, *(d - self.clock() for d in dues)]))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ep.resolved.wait(), timeout=step)

    def _why_better(self, rung: Rung, ep: _Episode) -> str:
        seen = ep.checks.pop(id(rung), None)
        if seen is not None and seen.why:
            why = seen.why
        elif ep.resolved.is_set():
            why = "the alert resolved"
        elif rung.verify.http is not None and self.settings.live_checks:
            why = f"{rung.verify.http.field} below {rung.verify.http.below:g}"
        else:
            why = "no verification configured"
        return why + self._what_if_note(rung)

    def _why_not_better(self, rung: Rung, ep: _Episode) -> str:
        """The NOT_BETTER detail: how long it waited and what the checks last saw."""
        seen = ep.checks.pop(id(rung), None)
        last = [x for x in (seen.http, seen.promql) if x] if seen is not None else []
        return (f"no better after {rung.wait_s:g}s" + ("; last seen: " + "; ".join(last)
                                                       if last else "")
                + self._what_if_note(rung))

    def _what_if_note(self, rung: Rung) -> str:
        return ("" if self.settings.live_checks or not rung.verify.live else
                " (what-if: http/promql checks not run)")

    async def _page(self, rule: Rule | str, trigger: Trigger, why: str | None = None,
                    rung: int | None = None, closes_claim: bool = False) -> None:
        """Escalate to a person (the policy's page, if any) and record it as `escalated`."""
        page = self.policy.page
        name = rule if isinstance(rule, str) else rule.name
        detail = why or f"ladder of {name!r} exhausted without recovery"
        if page is None:
            await self._record(trigger, Verdict.ESCALATED, rule=rule, rung=rung,
                               detail=detail + "; no page configured", closes_claim=closes_claim)
            return
        if not self.settings.live_checks:  # a what-if: history's on-call is not paged today
            await self._record(trigger, Verdict.ESCALATED, rule=rule, rung=rung,
                               detail=detail + f"; would page {page.url}", closes_claim=closes_claim)
            return
        body = {"text": f"Vigil: {detail} for {trigger.service or trigger.fingerprint}",
                "rule": name, "trigger": trigger.to_dict(),
                "audit": [r.to_dict() for r in self.store.query(episode=trigger.episode)][-20:]}
        try:
            names = {r.partition(".")[2] for r in references(page.headers)}
            headers = render(page.headers, trigger, False, self.policy.credential_values(names))
            async with httpx.AsyncClient(timeout=page.timeout_s) as client:
                resp = await client.post(page.url, json=body, headers=headers)
            detail += f"; paged {page.url} -> {resp.status_code}"
        except (httpx.HTTPError, CredentialError) as exc:
            detail += f"; paging {page.url} failed: {exc}"
        await self._record(trigger, Verdict.ESCALATED, rule=rule, rung=rung, detail=detail,
                           closes_claim=closes_claim)

    async def _record(self, trigger: Trigger, verdict: str, rule: Rule | str | None = None,
                      rung: int | None = None, action: Action | None = None,
                      guard: str | None = None, detail: str = "", output: str = "",
                      duration: float | None = None, closes_claim: bool = False) -> int:
        return await self.store.aadd(self._audit_record(
            trigger, verdict, rule, rung, action, guard, detail, output, duration, closes_claim))

    def _audit_record(self, trigger: Trigger, verdict: str, rule: Rule | str | None = None,
                      rung: int | None = None, action: Action | None = None,
                      guard: str | None = None, detail: str = "", output: str = "",
                      duration: float | None = None, closes_claim: bool = False) -> AuditRecord:
        params = None
        if action is not None:
            try:  # credentials show as '***': what is stored never holds one
                shown = render(action.params, trigger, False, SHOWN)
            except TemplateError:
                shown = action.params
            params = redact(shown, action.secrets)
            if action.restart:
                params["_restart"] = True  # so restart-loop counts survive a restart of Vigil
            if action.credentials:  # a URL in a detail, an echo in a response body
                detail = scrub(detail, action.credentials.values())
                output = scrub(output, action.credentials.values())
        rule_name = rule if isinstance(rule, str) or rule is None else rule.name
        rung_name = None
        if isinstance(rule, Rule) and rung is not None and 0 <= rung < len(rule.ladder):
            rung_name = rule.ladder[rung].name
        return AuditRecord(
            episode=trigger.episode, fingerprint=trigger.fingerprint, source=trigger.source,
            verdict=str(verdict), rule=action.rule if action else rule_name,
            rung=action.rung if action else rung,
            rung_name=action.rung_name if action else rung_name,
            hook=action.hook if action else None,
            target=action.target if action else None, params=params, guard=guard, detail=detail,
            output=output, duration_s=duration, trigger_json=self._trigger_json(trigger),
            ts=self.clock(), closes_claim=closes_claim)

    def _settled_now(self, rung: Rung, ep: _Episode) -> bool:
        """Verified without waiting: already resolved, or a rung that asks for no check."""
        if rung.verify.resolved and ep.resolved.is_set():
            return True
        return rung.wait_s == 0 and not rung.verify.live and not rung.verify.resolved

    def _trigger_json(self, trigger: Trigger) -> str:
        ep = self._episodes.get(trigger.episode)
        if ep is not None and ep.trigger is trigger:
            if ep.json is None:
                ep.json = json.dumps(trigger.to_dict())
            return ep.json
        return json.dumps(trigger.to_dict())


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _running(ep: _Episode) -> bool:
    return any(not t.done() for t in ep.tasks.values())


async def _check_ok(check: HttpCheck, trigger: Trigger) -> bool:
    return (await _http_probe(check, trigger))[0]


async def _http_probe(check: HttpCheck, trigger: Trigger) -> tuple[bool, str]:
    """(passed, what was seen) for one GET of an HTTP check; never raises for the service's
    failures."""
    try:
        url = render_url(check.url, trigger)
        async with httpx.AsyncClient(timeout=5.0) as client:
            resp = await client.get(url)
        if not 200 <= resp.status_code < 300:
            return False, f"http: {check.url} answered {resp.status_code}"
        value: Any = resp.json()
        for part in check.field.split("."):
            value = value[part]
        if float(value) < check.below:
            return True, f"{check.field} below {check.below:g}"
        return False, f"http: {check.field} is {float(value):g}, not below {check.below:g}"
    except httpx.HTTPError as exc:
        return False, f"http: {check.url}: {_http_error(exc)}"
    except (ValueError, KeyError, TypeError, TemplateError) as exc:
        return False, f"http: {check.url}: {check.field}: {type(exc).__name__}: {exc}"


async def _promql_probe(client: httpx.AsyncClient, query: str) -> tuple[bool, str]:
    """(holds, what was seen) for one instant query. As for a Prometheus alerting rule, a vector
    result holds when it is non-empty, whatever its values: a comparison such as `rate(x[30s]) <
    0.1` filters to empty when false and keeps the left side's value (0 for a recovered error
    rate) when true. A scalar result (a `bool` comparison of scalars) holds when non-zero and not
    NaN. Prometheus down, a bad query, a non-2xx or a timeout: (False, why); never raises."""
    try:
        resp = await client.get("/api/v1/query", params={"query": query})
        try:
            body: Any = resp.json()
        except ValueError:
            body = None
        if not 200 <= resp.status_code < 300 or not isinstance(body, dict) or \
                body.get("status") != "success":
            err = body.get("error") if isinstance(body, dict) else None
            kind = body.get("errorType") if isinstance(body, dict) else None
            shown = f": {kind}: {err}" if err else ""
            return False, f"prometheus: HTTP {resp.status_code}{shown}"
        data = body.get("data") or {}
        rtype = data.get("resultType")
        result: Any = data.get("result")
        if rtype == "scalar":
            value = float(result[1])
            return bool(value) and value == value, f"promql: scalar {value:g}"
        if rtype != "vector" or not isinstance(result, list):
            return False, f"promql: a {rtype} result, not an instant vector or a scalar"
        first = result[0]["value"][1] if result else None
    except httpx.TimeoutException:
        return False, f"prometheus: no answer within {client.timeout.read or 0:g}s"
    except httpx.HTTPError as exc:
        return False, f"prometheus: {_http_error(exc)}"
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        return False, f"prometheus: an answer that is not a query result ({exc})"
    if not result:
        return False, "promql: empty result"
    if len(result) == 1 and first is not None:
        return True, f"promql: 1 series, value {first}"
    return True, f"promql: {len(result)} series"


def _http_error(exc: httpx.HTTPError) -> str:
    """A transport failure in a few words ('connection refused', 'timed out', ...)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError) and ("refused" in text.lower() or
                                                 "all connection attempts failed" in text.lower()):
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return text
