"""`create_app(settings)`: the webhook receiver. Alerts are validated, stored durably, queued and
answered within milliseconds; a worker hands them to the remediation engine (policy, guards,
hooks, audit), or, given a `Forwarder` (`vigil serve --triggers-topic`), to the triggers topic
that `vigil remediate` consumes, with no engine here (`forward.py`). Routers: alerts (POST
/alertmanager, GET /episodes), actions (the audit and approvals), health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from remediation.alertmanager.auth import Credentials, RequireAuth
from remediation.alertmanager.forward import Forwarder, ForwardWorker
from remediation.alertmanager.inbox import Inbox
from remediation.alertmanager.limits import BodyLimit
from remediation.alertmanager.payload import Accepted, Notification
from remediation.alertmanager.settings import AuthError, ServeConfig
from remediation.alertmanager.strict import StrictJSONRoute, validation_error
from remediation.alertmanager.worker import EngineProcess
from remediation.audit_log import open_audit
from remediation.policy import load_policy

log = logging.getLogger("vigil.serve")


def mode_of(settings: ServeConfig) -> str:
    """"dry-run" (hooks are planned and audited, never run), "acting", or "forwarding" (no
    engine here: alerts go to `serve.triggers_topic`)."""
    if settings.triggers_topic:
        return "forwarding"
    return "dry-run" if settings.engine.dry_run else "acting"


class Receiver:
    """The web process's state: inbox, engine process (or forwarder), queue depth and metrics
    (one per app)."""

    def __init__(self, settings: ServeConfig, forwarder: Forwarder | None = None) -> None:
        self.settings = settings
        self.inbox = Inbox(settings.inbox_db)
        self.store = open_audit(settings.audit())  # read here; the engine process writes it
        self.policy = load_policy(settings.policy_path())  # a bad policy stops the start here
        for line in self.policy.warnings:
            log.warning("%s", line)
        self.forwarding = forwarder is not None
        self.engine: EngineProcess | ForwardWorker = (
            ForwardWorker(settings, forwarder) if forwarder is not None
            else EngineProcess(settings))
        self.last_id = 0  # the newest alert written to the inbox
        self.reserved = 0  # alerts admitted by requests still writing them
        self.stopping = False
        self.supervisor: asyncio.Task[None] | None = None
        r = self.registry = CollectorRegistry()
        self.notifications = Counter("vigil_webhook_notifications_total",
                                     "Notifications by outcome", ["outcome"], registry=r)
        self.alerts = Counter("vigil_webhook_alerts_total", "Alerts accepted", ["status"],
                              registry=r)
        self.unauthorized = Counter("vigil_webhook_unauthorized",
                                    "Requests refused for missing or wrong credentials",
                                    registry=r)
        self.restarts = Counter("vigil_webhook_engine_restarts_total",
                                "Times the engine process died and was restarted", registry=r)
        Gauge("vigil_webhook_queue_depth", "Accepted alerts the engine has not finished",
              registry=r).set_function(self.depth)

    def depth(self) -> int:
        """Accepted alerts not yet finished by the engine (the durable inbox's backlog)."""
        e = self.engine
        return max(0, self.last_id + self.reserved - e.watermark - e.finished_above)

    async def start(self) -> None:
        self.last_id = await asyncio.to_thread(self.inbox.last_id)
        await self.engine.start()
        self.supervisor = asyncio.create_task(self._supervise())

    async def stop(self) -> None:
        self.stopping = True
        if self.supervisor is not None:
            self.supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.supervisor
        await self.engine.stop()
        self.inbox.close()
        self.store.close()

    async def _supervise(self) -> None:
        """Restart the engine process if it dies; what it had not finished is redone (the
        audit's claims keep that to one action per episode and rung)."""
        delay = 0.5
        pruned = time.monotonic()
        while not self.stopping:
            await asyncio.sleep(delay)
            if time.monotonic() - pruned > 60:  # finished alerts past their retention
                pruned = time.monotonic()
                await asyncio.to_thread(self.inbox.prune, self.engine.watermark,
                                        time.time() - self.settings.inbox_retention_s)
            process = self.engine.process
            if process is not None and not process.is_alive():
                log.error("engine process exited (%s); restarting", process.exitcode)
                self.restarts.inc()
                await self.engine.stop()
                try:
                    await self.engine.start()
                    delay = 0.5
                except RuntimeError as exc:
                    log.error("%s", exc)
                    delay = min(30.0, delay * 2)


def create_app(settings: ServeConfig, forwarder: Forwarder | None = None) -> FastAPI:
    """The receiver; with `forwarder` (required when `serve.triggers_topic` is set) it runs no
    engine and hands each accepted alert's trigger to it."""
    settings.check()
    if (forwarder is None) != (not settings.triggers_topic):
        raise AuthError("serve.triggers_topic and a forwarder go together (`vigil serve "
                        "--triggers-topic` wires the Kafka producer)")
    receiver = Receiver(settings, forwarder)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await receiver.start()
        yield
        await receiver.stop()

    app = FastAPI(title="Vigil webhook receiver", lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.state.receiver = receiver
    # Probes and scrapers need no credentials; everything else does, the docs included unless
    # they were made public. Auth is the outermost layer: nothing is read before it.
    public = {"/healthz", "/readyz", "/metrics"}
    if settings.public_docs:
        public |= {p for p in (app.docs_url, app.redoc_url, app.openapi_url,
                               app.swagger_ui_oauth2_redirect_url) if p}
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequireAuth, credentials=Credentials(settings), public=public,
                       refused=receiver.unauthorized.inc)

    app.include_router(_alerts_router(receiver))
    app.include_router(_actions_router(receiver))
    app.include_router(_health_router(receiver))
    return app


def _alerts_router(rx: Receiver) -> APIRouter:
    router = APIRouter(tags=["alerts"], route_class=StrictJSONRoute)

    @router.post("/alertmanager", response_model=Accepted)
    @router.post("/api/v1/alerts/alertmanager", response_model=Accepted, include_in_schema=False)
    async def alertmanager(notification: Notification, response: Response) -> Accepted:
        """Accept an Alertmanager webhook notification (version 4): each alert becomes a
        trigger, stored durably, then queued; 503 with Retry-After when the queue is full."""
        # Secret labels and annotations are redacted before the inbox (or anything) stores them.
        triggers = [rx.policy.redact_trigger(a.trigger()) for a in notification.alerts]
        if rx.depth() + len(triggers) > rx.settings.queue_size:
            rx.notifications.labels(outcome="busy").inc()
            raise HTTPException(503, "the processing queue is full; retry later",
                                headers={"Retry-After": str(rx.settings.retry_after_s)})
        rx.reserved += len(triggers)  # counted before the write: a concurrent request sees it
        try:
            ids = await rx.inbox.aadd(triggers)
        finally:
            rx.reserved -= len(triggers)
        rx.last_id = max(rx.last_id, *ids) if ids else rx.last_id
        firing = sum(t.status == "firing" for t in triggers)
        rx.alerts.labels(status="firing").inc(firing)
        rx.alerts.labels(status="resolved").inc(len(triggers) - firing)
        rx.notifications.labels(outcome="accepted").inc()
        return Accepted(accepted=len(triggers), queued=rx.depth())

    @router.get("/episodes")
    async def episodes(limit: Annotated[int, Query(ge=1, le=10_000)] = 500
                       ) -> list[dict[str, Any]]:
        """The latest state of each alert episode received (an alert's fingerprint and start:
        what remediation acts on once; not the detector's incidents)."""
        return await asyncio.to_thread(rx.inbox.episodes, limit)

    return router


def _actions_router(rx: Receiver) -> APIRouter:
    router = APIRouter(tags=["actions"], route_class=StrictJSONRoute)

    @router.get("/actions")
    async def actions(since: float | None = None, target: str | None = None,
                      episode: str | None = None, verdict: str | None = None,
                      limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[dict[str, Any]]:
        """The audit: every decision, filterable."""
        recs = await asyncio.to_thread(rx.store.query, since, target, episode, verdict, limit)
        return [r.to_dict() for r in recs]

    @router.post("/actions/{action_id}/approve")
    async def approve(action_id: int) -> dict[str, Any]:
        """Let a pending action run (its audit id, from GET /actions)."""
        await _answer(rx, action_id, True)
        return {"approved": action_id}

    @router.post("/actions/{action_id}/reject")
    async def reject(action_id: int) -> dict[str, Any]:
        """Refuse a pending action."""
        await _answer(rx, action_id, False)
        return {"rejected": action_id}

    return router


async def _answer(rx: Receiver, action_id: int, approve: bool) -> None:
    try:
        found = await rx.engine.answer(action_id, approve)
    except (RuntimeError, TimeoutError) as exc:
        raise HTTPException(503, f"the engine is not available: {exc}",
                            headers={"Retry-After": str(rx.settings.retry_after_s)}) from exc
    if not found:
        raise HTTPException(404, f"no pending approval {action_id}")


def _health_router(rx: Receiver) -> APIRouter:
    router = APIRouter(tags=["health"], route_class=StrictJSONRoute)
    started = time.time()

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"alive": True, "uptime_s": round(time.time() - started, 1)}

    @router.get("/readyz")
    async def readyz(response: Response) -> dict[str, Any]:
        engine = rx.engine.alive
        room = rx.depth() < rx.settings.queue_size
        response.status_code = 200 if engine and room else 503
        out: dict[str, Any] = {
            "ready": engine and room, "engine": engine, "queue": rx.depth(),
            "queue_size": rx.settings.queue_size, "mode": mode_of(rx.settings),
            "policy": str(rx.settings.policy), "audit_db": rx.settings.audit_shown()}
        if isinstance(rx.engine, ForwardWorker):  # "engine": the forwarder's health
            out |= {"triggers_topic": rx.settings.triggers_topic,
                    "producer": rx.engine.health(), "forwarded": rx.engine.forwarded}
        return out

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(rx.registry), media_type=CONTENT_TYPE_LATEST)

    return router
