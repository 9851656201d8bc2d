"""The `http` hook: call an endpoint (an admin API to set a rate limit, a deploy API to restart or
roll back) with a JSON body rendered from the trigger."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from remediation.actions import Action, Outcome
from remediation.hooks.base import HookParamError
from remediation.templating import TemplateError, references, render
from remediation.trigger import Trigger

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_MAX_BODY = 4096  # response bytes kept for the audit


class HttpHook:
    """Params: `url` (scheme and host literal; `${...}` only in the path or query, where values are
    percent-encoded), `method` (POST), `headers` (values may use `${...}`; an Authorization header
    is redacted in the audit), `json` (a body template), `expect` (status codes that mean success;
    default any 2xx), `verify_tls` (true)."""

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

    async def run(self, action: Action, trigger: Trigger) -> Outcome:
        p = action.params
        try:
            url = render(p["url"], trigger, encode=True)
            headers = render(p.get("headers", {}), trigger)
            body = render(p.get("json"), trigger)
        except TemplateError as exc:
            return Outcome(False, f"params: {exc}")
        if any("\n" in v or "\r" in v for v in headers.values()):
            return Outcome(False, "a rendered header value holds a line break; refused")
        async with httpx.AsyncClient(timeout=action.timeout_s,
                                     verify=bool(p.get("verify_tls", True))) as client:
            try:
                resp = await client.request(p["method"], url, headers=headers, json=body)
            except httpx.HTTPError as exc:
                return Outcome(False, f"{p['method']} {url}: {type(exc).__name__}: {exc}")
        expect = p.get("expect")
        ok = resp.status_code in expect if expect else 200 <= resp.status_code < 300
        return Outcome(ok, f"{p['method']} {url} -> {resp.status_code}", resp.text[:_MAX_BODY],
                       {"status": resp.status_code})
