"""What a policy plans (`Action`), what a hook did (`Outcome`), and what was decided (`Verdict`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    """The decision recorded for one (trigger episode, rule, rung)."""

    ACTED = "acted"  # the hook ran and succeeded
    DRY_RUN = "dry_run"  # would have acted; dry-run is on
    SUPPRESSED = "suppressed"  # a guard said no (the record names the guard)
    FAILED = "failed"  # the hook ran and failed (after retries)
    # The alert's own data cannot make this step (a missing, oversized, non-ASCII or path-climbing
    # value): audited, not retried, and never a failure of the target (its breaker ignores it).
    INPUT_ERROR = "input_error"
    PENDING_APPROVAL = "pending_approval"
    REJECTED = "rejected"  # a person rejected it, or the approval expired
    VERIFIED = "verified"  # after acting, the signal cleared
    NOT_BETTER = "not_better"  # after acting and waiting, it did not: climb the ladder
    ESCALATED = "escalated"  # the ladder ran out or a restart loop: a person was paged
    # The engine died while this step's hook ran (its claim had no outcome on the next start):
    # outcome unknown; then retried (idempotent step) or escalated, and recorded as such.
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"  # the trigger resolved before the action ran
    RESOLVED = "resolved"  # the alert resolved: the trigger's record is closed


@dataclass(slots=True)
class Action:
    """One rung of one rule, resolved against one trigger: the hook, its rendered params, and
    the target it acts on (cooldowns, budgets and breakers count per target)."""

    rule: str
    rung: int
    rung_name: str
    hook: str
    target: str
    params: dict[str, Any]
    timeout_s: float
    wait_s: float
    episode: str
    secrets: frozenset[str] = frozenset()  # param keys whose values are redacted in the audit
    restart: bool = False  # counts towards restart-loop protection
    # `${credentials.NAME}` values the params use, read from their files or environment when the
    # action was built; hooks render with them, nothing that is stored ever holds them.
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)


class InputError(ValueError):
    """The trigger's own data cannot be used for an action: a value that is missing, too large,
    not ASCII where a header needs it, or a path segment that would climb. Raised by a hook's
    `prepare` or `run`; the engine audits it as `input_error` and the target's circuit breaker
    does not count it (anyone who can send alerts could otherwise open it)."""


@dataclass(slots=True)
class Outcome:
    ok: bool
    detail: str = ""
    output: str = ""  # bounded capture (stdout/stderr, response body)
    data: dict[str, Any] = field(default_factory=dict)
    input_error: bool = False  # failed because of the trigger's data, not the target


_SECRET_WORDS = ("token", "password", "passwd", "secret", "authorization", "api_key", "apikey",
                 "api-key", "cookie", "credential", "private_key")


def is_secret_key(key: Any, secrets: frozenset[str] = frozenset()) -> bool:
    """Whether a param, label or annotation named `key` holds a secret: its name looks like one
    (token, password, authorization, api_key, cookie, ...) or it is listed in `secrets`.

    >>> is_secret_key("X-Gateway-Token"), is_secret_key("summary"), is_secret_key("k", {"k"})
    (True, False, True)
    """
    return key in secrets or any(w in str(key).lower() for w in _SECRET_WORDS)


def scrub(text: str, values: Any) -> str:
    """`text` with every occurrence of the given secret values replaced by '***'.

    >>> scrub("GET https://gw/x?k=abc123 -> 200", ["abc123"])
    'GET https://gw/x?k=*** -> 200'
    """
    for v in sorted((v for v in values if v), key=len, reverse=True):
        text = text.replace(v, "***")
    return text


def redact(value: Any, secrets: frozenset[str] = frozenset()) -> Any:
    """A copy with secret-looking keys (and `secrets`) replaced by '***'.

    >>> redact({"url": "u", "headers": {"Authorization": "Bearer x"}, "token": "t"})
    {'url': 'u', 'headers': {'Authorization': '***'}, 'token': '***'}
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            secret = is_secret_key(k, secrets)
            out[k] = "***" if secret and v not in (None, "") else redact(v, secrets)
        return out
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    return value
