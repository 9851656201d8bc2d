"""Params rendered from a trigger, safe by construction: values land in data fields only.

`${labels.service}`, `${annotations.summary}`, `${trigger.fingerprint}`, `${trigger.root_cause}`
are replaced inside strings of a JSON-like structure. The result is still data: nothing is ever
parsed as a shell command, and in URLs the values are percent-encoded (`url_path` for path
segments, so `../` cannot climb). A missing value is an error, not an empty string.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from remediation.actions import InputError
from remediation.trigger import Trigger

_REF = re.compile(r"\$\{([a-z_]+)\.([A-Za-z0-9_.\-/]+)\}")


class TemplateError(InputError):
    """A reference that the trigger cannot fill (at run time, an input error)."""


TRIGGER_FIELDS = ("fingerprint", "status", "source", "episode", "service", "root_cause", "kind",
                  "severity")


def check_reference(scope: str, name: str) -> None:
    """Raise TemplateError unless `${scope.name}` names something a trigger can have.

    >>> check_reference("labels", "service"), check_reference("trigger", "episode")
    (None, None)
    """
    if scope in ("labels", "annotations") or (scope == "trigger" and name in TRIGGER_FIELDS):
        return
    raise TemplateError(f"unknown reference ${{{scope}.{name}}}: use labels.X, annotations.X or "
                        f"trigger.{'|'.join(TRIGGER_FIELDS)}")


def lookup(trigger: Trigger, scope: str, name: str) -> str:
    check_reference(scope, name)
    if scope == "labels":
        value = trigger.labels.get(name)
    elif scope == "annotations":
        value = trigger.annotations.get(name)
    else:
        value = getattr(trigger, name)
    if value is None or value == "":
        raise TemplateError(f"${{{scope}.{name}}} is empty for this trigger")
    return str(value)


def render(value: Any, trigger: Trigger, encode: bool = False) -> Any:
    """`value` with references filled; with `encode`, each filled value is percent-encoded as a
    URL path segment (`/` included).

    >>> t = Trigger("manual", "f", "firing", 0.0, labels={"service": "a/../b; rm -rf $(x)"})
    >>> render({"body": {"svc": "${labels.service}"}}, t)
    {'body': {'svc': 'a/../b; rm -rf $(x)'}}
    >>> render("/admin/${labels.service}/limit", t, encode=True)
    '/admin/a%2F..%2Fb%3B%20rm%20-rf%20%24%28x%29/limit'
    """
    if isinstance(value, str):
        def fill(m: re.Match[str]) -> str:
            v = lookup(trigger, m.group(1), m.group(2))
            return quote(v, safe="") if encode else v
        return _REF.sub(fill, value)
    if isinstance(value, dict):
        return {k: render(v, trigger, encode) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, trigger, encode) for v in value]
    return value


def references(value: Any) -> list[str]:
    """Every `${scope.name}` in a structure (for policy checks)."""
    if isinstance(value, str):
        return [f"{m.group(1)}.{m.group(2)}" for m in _REF.finditer(value)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in references(v)]
    if isinstance(value, list):
        return [r for v in value for r in references(v)]
    return []
