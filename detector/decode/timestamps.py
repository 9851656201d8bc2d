"""Timestamp parsing: RFC 3339 strings and epoch numbers in s, ms, µs or ns, to epoch seconds.

The unit of an epoch number is inferred from its magnitude, which is unambiguous for any date
between 1973 and 5138: below 1e11 it is seconds, below 1e14 ms, below 1e17 µs, else ns.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


class TimestampError(ValueError):
    """A value that is not a timestamp Vigil can read."""


def epoch_seconds(value: object) -> float:
    """Epoch seconds from an RFC 3339 string, an epoch number or a string of digits.

    >>> epoch_seconds("2026-11-23T12:00:00Z")
    1795435200.0
    >>> epoch_seconds(1795435200123)  # milliseconds
    1795435200.123
    >>> epoch_seconds("1795435200000000000")  # OTLP JSON sends nanoseconds as a string
    1795435200.0
    >>> epoch_seconds("1795435200.5")
    1795435200.5
    """
    if isinstance(value, bool):
        raise TimestampError("a boolean is not a timestamp")
    if isinstance(value, int | float):
        return _from_number(float(value))
    if isinstance(value, str):
        s = value.strip()
        if not s:
            raise TimestampError("empty timestamp")
        if _NUMBER.fullmatch(s):
            return _from_number(float(s))
        return _from_rfc3339(s)
    raise TimestampError(f"a {type(value).__name__} is not a timestamp")


def _from_number(v: float) -> float:
    if v != v or v in (float("inf"), float("-inf")):
        raise TimestampError("timestamp is not finite")
    a = abs(v)
    if a < 1e11:
        return v
    if a < 1e14:
        return v / 1e3
    if a < 1e17:
        return v / 1e6
    return v / 1e9


def _from_rfc3339(s: str) -> float:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        # fromisoformat takes at most 6 fractional digits; RFC 3339 allows nanoseconds.
        dt = _with_trimmed_fraction(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _with_trimmed_fraction(s: str) -> datetime:
    dot = s.find(".")
    if dot < 0:
        raise TimestampError(f"{s[:40]!r} is neither RFC 3339 nor an epoch number")
    end = dot + 1
    while end < len(s) and s[end].isdigit():
        end += 1
    trimmed = s[: min(end, dot + 7)] + s[end:]
    try:
        return datetime.fromisoformat(trimmed)
    except ValueError as exc:
        raise TimestampError(f"{s[:40]!r} is neither RFC 3339 nor an epoch number") from exc
