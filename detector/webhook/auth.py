"""Authentication of webhook and API calls: a bearer token and/or basic auth (what Alertmanager's
`http_config` sends), compared in constant time."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request, status

from detector.webhook.settings import ServeSettings


def authenticate(settings: ServeSettings, refused: Callable[[], None] = lambda: None
                 ) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that admits a request carrying a configured credential; `refused` is
    called for each request turned away (a metric)."""
    token = settings.token()
    user, password = settings.basic_user, settings.password()

    async def check(request: Request) -> None:  # async: no thread hop per request
        if settings.allow_unauthenticated:
            return
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        ok = False
        if token and scheme.lower() == "bearer":
            ok = hmac.compare_digest(value.strip().encode(), token.encode())
        elif user and password and scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True)
            except ValueError:
                given = b""
            ok = hmac.compare_digest(given, f"{user}:{password}".encode())
        if not ok:
            refused()
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong credentials",
                                headers={"WWW-Authenticate": 'Bearer, Basic realm="vigil"'})
    return check
