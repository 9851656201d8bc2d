"""Logfmt: `key=value key2="quoted \\"text\\"" flag` lines to flat dicts of text, as Go's logfmt
and Heroku write them. Only splits lines; which key is which field is `decode.text`'s business."""

from __future__ import annotations

import re

# key, then `=` and a quoted or bare value, or nothing (a bare key is a flag: "true").
_PAIR = re.compile(r'([^\s="]+)(?:(=)("(?:[^"\\]|\\.)*"?|[^\s"]*))?')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_ESCAPE = re.compile(r"\\(.)")


class LogfmtError(ValueError):
    """A line that is not logfmt (no key=value pair at all, or an unterminated quote)."""


def parse_logfmt(line: str) -> dict[str, str]:
    """The pairs of one logfmt line; the last of a repeated key wins.

    >>> parse_logfmt('ts=2026-11-23T12:00:00Z level=warn msg="disk \\\\"sda\\\\" 91% full" ok')
    {'ts': '2026-11-23T12:00:00Z', 'level': 'warn', 'msg': 'disk "sda" 91% full', 'ok': 'true'}
    >>> parse_logfmt('a= b=""')
    {'a': '', 'b': ''}
    """
    out: dict[str, str] = {}
    pairs = 0
    for key, eq, value in _PAIR.findall(line):
        if not eq:
            out[key] = "true"
            continue
        pairs += 1
        if value[:1] == '"':
            if len(value) < 2 or value[-1] != '"' or _odd_backslashes(value):
                raise LogfmtError(f"unterminated quoted value of {key!r}")
            value = value[1:-1]
            if "\\" in value:
                value = _ESCAPE.sub(_unescape, value)
        out[key] = value
    if not pairs:
        raise LogfmtError("no key=value pair")
    return out


def _odd_backslashes(quoted: str) -> bool:
    """Whether the closing quote of `"..."` is itself escaped (an odd run of backslashes)."""
    n = len(quoted) - 1 - len(quoted[:-1].rstrip("\\"))
    return n % 2 == 1


def _unescape(m: re.Match[str]) -> str:
    c = m.group(1)
    return _ESCAPES.get(c, "\\" + c)
