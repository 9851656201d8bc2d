"""Authentication of webhook and API calls: a bearer token and/or basic auth (what Alertmanager's
`http_config` sends), compared in constant time.

`RequireAuth` is ASGI middleware in front of everything, so credentials are checked before a body
is read and no route (the OpenAPI docs included) is public unless it is listed as such.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from remediation.alertmanager.settings import ServeConfig

Scope = dict[str, Any]


class Credentials:
    """What the server accepts, read once from the settings' files or environment.

    >>> from pathlib import Path
    >>> from pydantic import SecretStr
    >>> c = Credentials(ServeConfig(policy=Path("p"), bearer_token=SecretStr("a-token-of-16-bytes")))
    >>> c.admits("Bearer a-token-of-16-bytes"), c.admits("Bearer nope"), c.admits("")
    (True, False, False)
    """

    def __init__(self, settings: ServeConfig) -> None:
        token = settings.token()
        password = settings.password()
        self._token = token.encode() if token else None
        self._basic = (f"{settings.basic_user}:{password}".encode()
                       if settings.basic_user and password else None)
        self.open = settings.allow_unauthenticated

    def admits(self, header: str) -> bool:
        """Whether an Authorization header value carries a configured credential."""
        if self.open:
            return True
        scheme, _, value = header.partition(" ")
        if self._token is not None and scheme.lower() == "bearer":
            return hmac.compare_digest(value.strip().encode(), self._token)
        if self._basic is not None and scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True)
            except (ValueError, binascii.Error):
                return False
            return hmac.compare_digest(given, self._basic)
        return False


class RequireAuth:
    """ASGI middleware: every HTTP request outside `public` paths needs a credential; refusals
    get a 401 (with `WWW-Authenticate`) before the body is read, and `refused()` is called."""

    def __init__(self, app: Any, credentials: Credentials, public: Iterable[str],
                 refused: Callable[[], None] = lambda: None) -> None:
        self.app = app
        self.credentials = credentials
        self.public = frozenset(public)
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.public:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if self.credentials.admits(header.decode("latin-1")):
            await self.app(scope, receive, send)
            return
        self.refused()
        body = orjson.dumps({"detail": "missing or wrong credentials"})
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer, Basic realm="vigil"')]})
        await send({"type": "http.response.body", "body": body})
