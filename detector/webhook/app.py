"""`create_app(settings)`: the webhook receiver. Alerts are validated, stored durably, queued and
answered within milliseconds; a worker hands them to the remediation engine (policy, guards,
hooks, audit). Routers: alerts, actions (the audit and approvals), incidents, health."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from detector.webhook.auth import authenticate
from detector.webhook.inbox import Inbox
from detector.webhook.models import Accepted, Notification
from detector.webhook.settings import ServeSettings
from remediation.audit import AuditStore
from remediation.engine import Engine, EngineSettings
from remediation.policy import load_policy
from remediation.trigger import Trigger


class Receiver:
    """The app's state: inbox, queue, engine and metrics (one per app, no globals)."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.inbox = Inbox(settings.inbox_db)
        self.store = AuditStore(settings.audit_db)
        self.policy = load_policy(settings.policy)
        self.engine: Engine | None = None
        self.queue: asyncio.Queue[tuple[int, Trigger]] | None = None
        self.worker: asyncio.Task[None] | None = None
        r = self.registry = CollectorRegistry()
        self.notifications = Counter("vigil_webhook_notifications_total",
                                     "Notifications by outcome", ["outcome"], registry=r)
        self.alerts = Counter("vigil_webhook_alerts_total", "Alerts accepted", ["status"],
                              registry=r)
        self.depth = Gauge("vigil_webhook_queue_depth", "Alerts waiting for the engine",
                           registry=r)

    async def start(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.settings.queue_size)
        self.engine = Engine(self.policy, self.store,
                             settings=EngineSettings(dry_run=self.settings.dry_run))
        for item in await asyncio.to_thread(self.inbox.pending):  # a crash after a 200
            self.queue.put_nowait(item)
        self.worker = asyncio.create_task(self._work())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        if self.engine is not None:
            await self.engine.drain()
        self.inbox.close()
        self.store.close()

    async def _work(self) -> None:
        assert self.queue is not None and self.engine is not None
        while True:
            first = await self.queue.get()
            batch = [first]
            while not self.queue.empty() and len(batch) < 1000:
                batch.append(self.queue.get_nowait())
            for _, trigger in batch:
                self.engine.submit(trigger)
            await self.inbox.adone([i for i, _ in batch])
            self.depth.set(self.queue.qsize())


def create_app(settings: ServeSettings) -> FastAPI:
    settings.check()
    receiver = Receiver(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await receiver.start()
        yield
        await receiver.stop()

    app = FastAPI(title="Vigil webhook receiver", lifespan=lifespan)
    app.state.receiver = receiver
    auth = Depends(authenticate(settings))

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > settings.max_body_bytes):
            return JSONResponse({"detail": f"body over {settings.max_body_bytes} bytes"}, 413)
        return await call_next(request)

    app.include_router(_alerts_router(receiver), dependencies=[auth])
    app.include_router(_actions_router(receiver), dependencies=[auth])
    app.include_router(_health_router(receiver))
    return app


def _alerts_router(rx: Receiver) -> APIRouter:
    router = APIRouter(tags=["alerts"])

    @router.post("/alertmanager", response_model=Accepted)
    @router.post("/api/v1/alerts/alertmanager", response_model=Accepted, include_in_schema=False)
    async def alertmanager(notification: Notification, response: Response) -> Accepted:
        """Accept an Alertmanager webhook notification (version 4): each alert becomes a
        trigger, stored durably, then queued; 503 with Retry-After when the queue is full."""
        assert rx.queue is not None
        triggers = [a.trigger() for a in notification.alerts]
        if rx.queue.qsize() + len(triggers) > rx.queue.maxsize:
            rx.notifications.labels(outcome="busy").inc()
            raise HTTPException(503, "the processing queue is full; retry later",
                                headers={"Retry-After": str(rx.settings.retry_after_s)})
        ids = await rx.inbox.aadd(triggers)
        for i, t in zip(ids, triggers, strict=True):
            rx.queue.put_nowait((i, t))
            rx.alerts.labels(status=t.status).inc()
        rx.notifications.labels(outcome="accepted").inc()
        rx.depth.set(rx.queue.qsize())
        return Accepted(accepted=len(triggers), queued=rx.queue.qsize())

    @router.get("/incidents")
    async def incidents(limit: Annotated[int, Query(ge=1, le=10_000)] = 500
                        ) -> list[dict[str, Any]]:
        """The latest state of each alert episode received."""
        return await asyncio.to_thread(rx.inbox.episodes, limit)

    return router


def _actions_router(rx: Receiver) -> APIRouter:
    router = APIRouter(tags=["actions"])

    @router.get("/actions")
    async def actions(since: float | None = None, target: str | None = None,
                      episode: str | None = None, verdict: str | None = None,
                      limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[dict[str, Any]]:
        """The audit: every decision, filterable."""
        recs = await asyncio.to_thread(rx.store.query, since, target, episode, verdict, limit)
        return [r.to_dict() for r in recs]

    @router.post("/actions/{action_id}/approve")
    async def approve(action_id: int) -> dict[str, Any]:
        assert rx.engine is not None
        if not rx.engine.approve(action_id):
            raise HTTPException(404, f"no pending approval {action_id}")
        return {"approved": action_id}

    @router.post("/actions/{action_id}/reject")
    async def reject(action_id: int) -> dict[str, Any]:
        assert rx.engine is not None
        if not rx.engine.reject(action_id):
            raise HTTPException(404, f"no pending approval {action_id}")
        return {"rejected": action_id}

    return router


def _health_router(rx: Receiver) -> APIRouter:
    router = APIRouter(tags=["health"])
    started = time.time()

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"alive": True, "uptime_s": round(time.time() - started, 1)}

    @router.get("/readyz")
    async def readyz(response: Response) -> dict[str, Any]:
        ok = rx.worker is not None and not rx.worker.done() and rx.queue is not None \
            and rx.queue.qsize() < rx.queue.maxsize
        response.status_code = 200 if ok else 503
        return {"ready": ok, "queue": rx.queue.qsize() if rx.queue else None}

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(rx.registry), media_type=CONTENT_TYPE_LATEST)

    return router
