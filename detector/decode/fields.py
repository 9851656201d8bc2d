"""Field mapping: which top-level JSON keys can supply each `LogEvent` field, and how to dig.

A dotted path `a.b.c` may arrive flat (`{"a.b.c": v}`), nested (`{"a": {"b": {"c": v}}}`) or
half-way (`{"a": {"b.c": v}}`); OTLP JSON adds KeyValue lists and `{"stringValue": v}` wrappers.
Both decoders share this module so they agree on what a record means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from detector.config import FieldMapping

LOGICAL_FIELDS = (
    "timestamp", "service", "level", "message", "request_id", "span_id", "parent_id",
    "latency_ms", "status",
)


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """Candidates per field as (top-level key, path below it), in priority order."""

    alternatives: dict[str, list[tuple[str, tuple[str, ...]]]]
    leaf_owners: dict[str, frozenset[str]]  # key -> fields it can hold whole
    prefix_keys: frozenset[str]  # keys that can hold an object to dig into
    attr_keys: tuple[str, ...]

    @property
    def keys(self) -> list[str]:
        """Every top-level key worth decoding, each once, in a stable order."""
        seen = [k for alts in self.alternatives.values() for k, _ in alts]
        return list(dict.fromkeys([*seen, *self.attr_keys]))

    @classmethod
    def from_mapping(cls, mapping: FieldMapping) -> FieldPlan:
        alternatives: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        leaf: dict[str, set[str]] = {}
        prefix: set[str] = set()
        for fname in LOGICAL_FIELDS:
            alts: list[tuple[str, tuple[str, ...]]] = []
            for path in getattr(mapping, fname):
                parts = path.split(".")
                for k in range(len(parts), 0, -1):
                    key, rest = ".".join(parts[:k]), tuple(parts[k:])
                    alts.append((key, rest))
                    if rest:
                        prefix.add(key)
                    else:
                        leaf.setdefault(key, set()).add(fname)
            alternatives[fname] = alts
        return cls(
            alternatives=alternatives,
            leaf_owners={k: frozenset(v) for k, v in leaf.items()},
            prefix_keys=frozenset(prefix),
            attr_keys=tuple(dict.fromkeys(mapping.attrs)),
        )


# OpenTelemetry span status names, as an HTTP-like code: an error is 500, OK 200, UNSET absent.
OTEL_STATUS = {
    "ERROR": 500, "STATUS_CODE_ERROR": 500, "OK": 200, "STATUS_CODE_OK": 200,
    "UNSET": -1, "STATUS_CODE_UNSET": -1,
}
# OTLP's numeric span status codes, where a record has the status object ({"code": 2}).
OTEL_STATUS_NUMBERS = {0: -1, 1: 200, 2: 500}

_ANY_VALUE_KEYS = ("stringValue", "intValue", "doubleValue", "boolValue")


def unwrap(v: Any) -> Any:
    """OTLP JSON wraps values as {"stringValue": ...}; return the plain value.

    >>> unwrap({"intValue": "42"}), unwrap("x")
    (42, 'x')
    """
    if isinstance(v, dict) and len(v) == 1:
        for k in _ANY_VALUE_KEYS:
            if k in v:
                inner = v[k]
                # OTLP JSON encodes 64-bit ints as strings.
                if k == "intValue" and isinstance(inner, str) and inner.lstrip("-").isdigit():
                    return int(inner)
                return inner
    return v


def dig(obj: Any, rest: tuple[str, ...]) -> Any:
    """Follow `rest` into nested objects, accepting dotted keys at any level and OTLP KeyValue lists.

    >>> dig({"service": {"name": "cart"}}, ("service", "name"))
    'cart'
    >>> dig({"service.name": "cart"}, ("service", "name"))
    'cart'
    >>> dig([{"key": "service.name", "value": {"stringValue": "cart"}}], ("service", "name"))
    'cart'
    """
    if not rest:
        return obj
    if isinstance(obj, dict):
        for k in range(len(rest), 0, -1):
            key = ".".join(rest[:k])
            if key in obj:
                found = dig(obj[key], rest[k:])
                if found is not None:
                    return found
        return None
    if isinstance(obj, list):
        for k in range(len(rest), 0, -1):
            key = ".".join(rest[:k])
            for item in obj:
                if isinstance(item, dict) and item.get("key") == key:
                    found = dig(unwrap(item.get("value")), rest[k:])
                    if found is not None:
                        return found
    return None


def json_kind(v: Any) -> str:
    """How a value reads in an error message: 'a string 'abc'', 'an object', ..."""
    names: dict[type, str] = {
        dict: "an object", list: "an array", str: "a string", bool: "a boolean",
        int: "a number", float: "a number", type(None): "null",
    }
    kind = names.get(type(v), type(v).__name__)
    if isinstance(v, str | int | float) and not isinstance(v, bool):
        return f"{kind} {str(v)[:40]!r}"
    return kind
