"""The `http` hook: call an endpoint (an admin API to set a rate limit, a deploy API to restart or
roll back) with a JSON body rendered from the trigger."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx

from remediation.actions import Action, InputError, Outcome
from remediation.hooks.base import HookParamError
from remediation.templating import references, render, render_url
from remediation.trigger import Trigger

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_IDEMPOTENT = ("GET", "PUT", "DELETE")  # RFC 9110 9.2.2
_MAX_BODY = 4096  # response bytes kept for the audit
MAX_URL = 8192  # characters of a rendered URL (what servers commonly accept)
MAX_HEADER = 8192  # characters of a rendered header value
MAX_JSON = 1 << 20  # bytes of a rendered JSON body


class HttpHook:
    """Params: `url` (scheme and host literal; `${...}` only in the path or query, where values are
    percent-encoded), `method` (POST), `headers` (values may use `${...}`; a credential comes from
    `${credentials.NAME}`, and secret-looking headers are redacted in the audit), `json` (a body
    template), `expect` (status codes that mean success; default any 2xx), `verify_tls` (true)."""

    name = "http"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        p = dict(params)
        url = p.get("url")
        if not isinstance(url, str) or not url:
            raise HookParamError("http: 'url' is required (a string)")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise HookParamError(f"http: url {url!r} needs http(s)://host")
        if "${" in parts.netloc or "${" in parts.scheme:
            raise HookParamError("http: the scheme and host must be literal; use ${...} only in the "
                                 "path or query")
        method = str(p.get("method", "POST")).upper()
        if method not in _METHODS:
            raise HookParamError(f"http: method {method!r}; use one of {', '.join(_METHODS)}")
        p["method"] = method
        headers = p.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise HookParamError("http: 'headers' must map names to strings")
        if any("\n" in k or "\r" in k for k in headers):
            raise HookParamError("http: header names cannot hold line breaks")
        expect = p.get("expect")
        if expect is not None and (not isinstance(expect, list)
                                   or not all(isinstance(c, int) for c in expect)):
            raise HookParamError("http: 'expect' must be a list of status codes")
        references(p)  # parses every reference
        return p

    def idempotent(self, params: dict[str, Any]) -> bool:
        """GET, PUT and DELETE are idempotent by HTTP's definition; POST and PATCH are not."""
        return str(params.get("method", "POST")).upper() in _IDEMPOTENT

    def request(self, action: Action, trigger: Trigger) -> tuple[str, str, dict[str, str], Any]:
        """(method, url, headers, body) for this trigger; `InputError` when the trigger's data
        cannot make a request (a header value with a line break or not ASCII, sizes over
        `MAX_URL`, `MAX_HEADER`, `MAX_JSON`, a missing value)."""
        p = action.params
        url = render_url(p["url"], trigger, action.credentials)
        if len(url) > MAX_URL:
            raise InputError(f"the rendered url is {len(url)} characters (at most {MAX_URL})")
        headers: dict[str, str] = render(p.get("headers", {}), trigger, False, action.credentials)
        for k, v in headers.items():
            if "\n" in v or "\r" in v:
                raise InputError(f"header {k}: the rendered value holds a line break")
            if not v.isascii():
                raise InputError(f"header {k}: the rendered value is not ASCII")
            if len(v) > MAX_HEADER:
                raise InputError(f"header {k}: the rendered value is {len(v)} characters "
                                 f"(at most {MAX_HEADER})")
        body = render(p.get("json"), trigger, False, action.credentials)
        if body is not None and len(json.dumps(body)) > MAX_JSON:
            raise InputError(f"the rendered JSON body is over {MAX_JSON} bytes")
        return p["method"], url, headers, body

    def prepare(self, action: Action, trigger: Trigger) -> None:
        self.request(action, trigger)

    async def run(self, action: Action, trigger: Trigger) -> Outcome:
        method, url, headers, body = self.request(action, trigger)
        async with httpx.AsyncClient(timeout=action.timeout_s,
                                     verify=bool(action.params.get("verify_tls", True))) as client:
            try:
                resp = await client.request(method, url, headers=headers, json=body)
            except httpx.HTTPError as exc:
                return Outcome(False, f"{method} {url}: {type(exc).__name__}: {exc}")
        expect = action.params.get("expect")
        ok = resp.status_code in expect if expect else 200 <= resp.status_code < 300
        return Outcome(ok, f"{method} {url} -> {resp.status_code}", resp.text[:_MAX_BODY],
                       {"status": resp.status_code})
