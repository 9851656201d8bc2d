"""Params rendered from a trigger, safe by construction: values land in data fields only.

`${labels.service}`, `${annotations.summary}`, `${trigger.fingerprint}`, `${trigger.root_cause}`
are replaced inside strings of a JSON-like structure. The result is still data: nothing is ever
parsed as a shell command, and in URLs (`render_url`) the values are percent-encoded, `/`
included, and a value that would make a path segment `.` or `..` is refused, so no value can
climb the path. A missing value is an error, not an empty string.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from remediation.actions import InputError
from remediation.trigger import Trigger

_REF = re.compile(r"\$\{([a-z_]+)\.([A-Za-z0-9_.\-/]+)\}")


class TemplateError(InputError):
    """A reference that the trigger cannot fill (at run time, an input error)."""


TRIGGER_FIELDS = ("fingerprint", "status", "source", "episode", "service", "root_cause", "kind",
                  "severity")
ALERT_SCOPES = ("labels", "annotations", "trigger")  # references to the alert's own data


class _Shown(Mapping[str, str]):
    """Every credential as '***': what the audit and `vigil policy test` show."""

    def __getitem__(self, key: str) -> str:
        return "***"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


SHOWN: Mapping[str, str] = _Shown()  # pass as `credentials=` to render for display


def check_reference(scope: str, name: str) -> None:
    """Raise TemplateError unless `${scope.name}` names something a trigger can have.

    >>> check_reference("labels", "service"), check_reference("trigger", "episode")
    (None, None)
    """
    if scope in ("labels", "annotations", "credentials") or (
            scope == "trigger" and name in TRIGGER_FIELDS):
        return
    raise TemplateError(f"unknown reference ${{{scope}.{name}}}: use labels.X, annotations.X, "
                        f"credentials.X or trigger.{'|'.join(TRIGGER_FIELDS)}")


def lookup(trigger: Trigger, scope: str, name: str,
           credentials: Mapping[str, str] | None = None) -> str:
    check_reference(scope, name)
    if scope == "credentials":
        if credentials is None:
            raise TemplateError(f"${{credentials.{name}}}: no credentials were given to render")
        if name not in credentials and credentials is not SHOWN:
            raise TemplateError(f"${{credentials.{name}}} was not read for this action")
        return credentials[name]
    if scope == "labels":
        value = trigger.labels.get(name)
    elif scope == "annotations":
        value = trigger.annotations.get(name)
    else:
        value = getattr(trigger, name)
    if value is None or value == "":
        raise TemplateError(f"${{{scope}.{name}}} is empty for this trigger")
    return str(value)


def render(value: Any, trigger: Trigger, encode: bool = False,
           credentials: Mapping[str, str] | None = None) -> Any:
    """`value` with references filled; with `encode`, each filled value is percent-encoded as a
    URL path segment (`/` included). `${credentials.X}` is filled from `credentials` (a hook
    passes `action.credentials`; `SHOWN` shows each as '***').

    >>> t = Trigger("manual", "f", "firing", 0.0, labels={"service": "a/../b; rm -rf $(x)"})
    >>> render({"body": {"svc": "${labels.service}"}}, t)
    {'body': {'svc': 'a/../b; rm -rf $(x)'}}
    >>> render("/admin/${labels.service}/limit", t, encode=True)
    '/admin/a%2F..%2Fb%3B%20rm%20-rf%20%24%28x%29/limit'
    """
    if isinstance(value, str):
        def fill(m: re.Match[str]) -> str:
            v = lookup(trigger, m.group(1), m.group(2), credentials)
            return quote(v, safe="") if encode else v
        return _REF.sub(fill, value)
    if isinstance(value, dict):
        return {k: render(v, trigger, encode, credentials) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, trigger, encode, credentials) for v in value]
    return value


def render_url(url: str, trigger: Trigger, credentials: Mapping[str, str] | None = None) -> str:
    """`url` with references filled and percent-encoded (scheme and host stay literal); a path
    segment that a filled value makes `.` or `..` (percent-encoded or not) raises TemplateError,
    since clients and servers remove dot segments (`/a/../b` is `/b`).

    >>> t = Trigger("manual", "f", "firing", 0.0, labels={"service": "..", "ok": "a/../b"})
    >>> render_url("https://gw/admin/${labels.ok}/limit?s=${labels.ok}", t)
    'https://gw/admin/a%2F..%2Fb/limit?s=a%2F..%2Fb'
    >>> try:
    ...     render_url("https://gw/admin/services/${labels.service}/restart", t)
    ... except TemplateError as exc:
    ...     print(exc)
    ${labels.service} makes the path segment '..' (a dot segment climbs the path); refused
    """
    parts = urlsplit(url)
    filled: list[str] = []

    def mark(m: re.Match[str]) -> str:
        filled.append(m.group(0))
        return f"\x00{len(filled) - 1}\x00"
    segments = []
    for seg in _REF.sub(mark, parts.path).split("/"):
        if "\x00" not in seg:
            segments.append(seg)
            continue
        pieces = seg.split("\x00")  # literal, index, literal, index, ..., literal
        out = "".join(p if k % 2 == 0 else str(render(filled[int(p)], trigger, True, credentials))
                      for k, p in enumerate(pieces))
        if unquote(out) in (".", ".."):
            names = ", ".join(filled[int(p)] for k, p in enumerate(pieces) if k % 2)
            raise TemplateError(f"{names} makes the path segment {unquote(out)!r} (a dot segment "
                                "climbs the path); refused")
        segments.append(out)
    return urlunsplit((parts.scheme, parts.netloc, "/".join(segments),
                       str(render(parts.query, trigger, True, credentials)),
                       str(render(parts.fragment, trigger, True, credentials))))


def references(value: Any) -> list[str]:
    """Every `${scope.name}` in a structure (for policy checks)."""
    if isinstance(value, str):
        return [f"{m.group(1)}.{m.group(2)}" for m in _REF.finditer(value)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in references(v)]
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    return []


def promql_string(value: str) -> str:
    r"""`value` escaped for the inside of a double-quoted PromQL string (a label value): a
    backslash, a double quote and line breaks are escaped, so the value stays one string.

    >>> print(promql_string('cart"} or vector(1) #'))
    cart\"} or vector(1) #
    >>> print(promql_string("a\\b\nc"))
    a\\b\nc
    """
    return (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            .replace("\r", "\\r"))


def _promql_refs_outside_strings(query: str) -> list[str]:
    """The `${...}` references of `query` that are not inside a double-quoted string (PromQL's
    single-quoted and backtick strings do not escape a double quote, so they do not count; a
    quote in a `#` comment opens nothing)."""
    outside: list[str] = []
    i, n, quote_char = 0, len(query), ""
    while i < n:
        c = query[i]
        if quote_char:
            if c == "\\" and quote_char != "`":
                i += 2
                continue
            if c == quote_char:
                quote_char = ""
            elif quote_char != '"' and (m := _REF.match(query, i)):
                outside.append(m.group(0))
                i = m.end()
                continue
        elif c in "\"'`":
            quote_char = c
        elif c == "#":  # a comment, to the end of the line
            end = query.find("\n", i)
            end = n if end < 0 else end
            outside += [m.group(0) for m in _REF.finditer(query, i, end)]
            i = end
            continue
        elif m := _REF.match(query, i):
            outside.append(m.group(0))
            i = m.end()
            continue
        i += 1
    return outside


def check_promql(query: str) -> None:
    """Raise TemplateError unless every `${...}` in a PromQL query sits inside a double-quoted
    string (a label value), where `render_promql` escapes it: alert data then cannot change the
    query's shape, only the value it compares.

    >>> check_promql('rate(http_errors_total{service="${trigger.service}"}[30s]) < 0.1')
    >>> try:
    ...     check_promql('${labels.metric} > 0')
    ... except TemplateError as exc:
    ...     print(exc)  # doctest: +ELLIPSIS
    ${labels.metric} is outside a double-quoted label value: alert data may only fill ...
    """
    if outside := _promql_refs_outside_strings(query):
        raise TemplateError(f"{outside[0]} is outside a double-quoted label value: alert data "
                            'may only fill a value, like {service="${trigger.service}"}')
    for ref in references(query):
        scope, _, name = ref.partition(".")
        check_reference(scope, name)
        if scope == "credentials":
            raise TemplateError(f"${{{ref}}}: a credential cannot go into a query (queries are "
                                "audited)")


def render_promql(query: str, trigger: Trigger) -> str:
    """`query` with references filled, each value escaped as PromQL string content
    (`promql_string`); TemplateError if a reference is outside a double-quoted string or the
    trigger cannot fill it.

    >>> t = Trigger("manual", "f", "firing", 0.0, labels={"service": 'cart"} or vector(1) #'})
    >>> print(render_promql('up{service="${trigger.service}"} == 0', t))
    up{service="cart\\"} or vector(1) #"} == 0
    """
    check_promql(query)
    return _REF.sub(lambda m: promql_string(lookup(trigger, m.group(1), m.group(2))), query)
