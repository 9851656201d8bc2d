"""Strict JSON for every request body: RFC 8259 and nothing else.

FastAPI reads bodies with Python's `json` module, which also takes `NaN`, `Infinity` and lone
surrogates (escaped, or as raw bytes). None of them is JSON, and each one ended as a 500 (a NaN in
the 422 error it caused, a surrogate when the alert was written): Alertmanager retries a 5xx until
the alert expires. `StrictJSONRoute` parses bodies with orjson, which refuses all three; FastAPI
turns its error into a 422 that names the problem and where it is. `validation_error` renders any
validation error with an encoder that cannot fail, so a 4xx never becomes a 500 on its way out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute


class StrictJSONRequest(Request):
    """A request whose `json()` is orjson's: `NaN`, `Infinity`, lone surrogates and bytes that
    are not UTF-8 raise `orjson.JSONDecodeError` (a `json.JSONDecodeError`, which FastAPI turns
    into a 422 naming the problem and its position)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """Route class for routers whose bodies must be strict JSON (`APIRouter(route_class=...)`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))
        return strict


def printable(value: Any) -> Any:
    """`value` made encodable: non-finite floats become their names and strings holding lone
    surrogates are backslash-escaped (what is shown is still what was sent).

    >>> printable({"a": float("nan"), "b": ["x\\udc80", 1.5]})
    {'a': 'nan', 'b': ['x\\\\udc80', 1.5]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


async def validation_error(_: Request, exc: Exception) -> Response:
    """The 422 for a request that failed validation: FastAPI's shape (`detail`: the errors with
    `loc`, `msg`, `input`), rendered so that it cannot fail."""
    errors: list[dict[str, Any]] = (list(exc.errors()) if isinstance(exc, RequestValidationError)
                                    else [{"msg": str(exc)}])
    for e in errors:
        if e.get("type") == "json_invalid":
            ctx: dict[str, Any] = e.get("ctx") or {}
            e["msg"] = (f"the body is not JSON: {ctx.get('error', '')} "
                        "(RFC 8259: no NaN, Infinity, lone surrogates or bytes that are not UTF-8)")
    body = orjson.dumps({"detail": printable(jsonable_encoder(errors, custom_encoder={
        float: lambda f: f if math.isfinite(f) else str(f)}))})
    return Response(body, status_code=422, media_type="application/json")
