"""Logfmt: `key=value key2="quoted \\"text\\""` lines to flat dicts of text, as Go's logfmt and
Heroku write them. Only splits lines; which key is which field is `decode.text`'s business.

A line is split by one C-level `findall` into a dict; quoted values keep their quotes there and
are unquoted by `unquote` a column at a time, only for the keys a field or attr reads. A bare key
(`flag`, no `=`) has no value, so it reads as absent.
"""

from __future__ import annotations

import re

# key=value, the value quoted (escapes inside) or bare; the decoder runs the same pattern in
# Rust (polars), which reads it alike, without the groups.
LOGFMT_PAIR = r'[^\s="]+=(?:"[^"\\]*(?:\\.[^"\\]*)*"|[^\s"]*)'
_PAIR = re.compile(r'([^\s="]+)=("[^"\\]*(?:\\.[^"\\]*)*"|[^\s"]*)')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_ESCAPE = re.compile(r"\\(.)")


class LogfmtError(ValueError):
    """A line that is not logfmt (no key=value pair at all, or an unterminated quote)."""


def split_logfmt(line: str) -> dict[str, str] | None:
    """The pairs of one logfmt line, quoted values still quoted, or None when it is not logfmt
    (`not_logfmt` says why); the last of a repeated key wins.

    >>> split_logfmt('ts=2026-11-23T12:00:00Z level=warn msg="disk \\\\"sda\\\\" full" ok')
    {'ts': '2026-11-23T12:00:00Z', 'level': 'warn', 'msg': '"disk \\\\"sda\\\\" full"'}
    """
    pairs = dict(_PAIR.findall(line))
    if not pairs:
        return None
    if '"' in line and not quotes_balanced(line):
        return None
    return pairs


def quotes_balanced(line: str) -> bool:
    """Whether every quoted value is closed: an even count of quotes not escaped (`\\\\"` is an
    escaped backslash and a quote)."""
    plain = line.replace("\\\\", "") if "\\\\" in line else line
    return (plain.count('"') - plain.count('\\"')) % 2 == 0


def not_logfmt(line: str) -> str:
    """Why `split_logfmt` refused a line."""
    return "no key=value pair" if not _PAIR.search(line) else "an unterminated quoted value"


def unquote(value: str) -> str:
    """A value as written, without its quotes and escapes.

    >>> unquote('"disk \\\\"sda\\\\"\\\\n full"'), unquote("bare")
    ('disk "sda"\\n full', 'bare')
    """
    if value[:1] != '"':
        return value
    value = value[1:-1]
    return _ESCAPE.sub(_unescape, value) if "\\" in value else value


def parse_logfmt(line: str) -> dict[str, str]:
    """The pairs of one logfmt line, unquoted (for tests and notebooks; the decoder unquotes
    only the columns it reads).

    >>> parse_logfmt('a= b="" c="x \\\\"y\\\\"" flag')
    {'a': '', 'b': '', 'c': 'x "y"'}
    """
    pairs = split_logfmt(line)
    if pairs is None:
        raise LogfmtError(not_logfmt(line))
    return {k: unquote(v) for k, v in pairs.items()}


def _unescape(m: re.Match[str]) -> str:
    c = m.group(1)
    return _ESCAPES.get(c, "\\" + c)
