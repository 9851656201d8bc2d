"""Ready regex layouts of common raw-text logs (`parsing.preset`): the pattern, the form of its
timestamp and what each named group means. Shared with `vigil eval lines`; parses nothing itself.

Group names are Vigil's field names (timestamp, service, level, message, status, ...), so they map
through `parsing.fields` as a JSON key of the same name would; other groups are kept as attrs
when `parsing.fields.attrs` names them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Layout:
    """A raw-text log layout.

    `ts_format` is a strftime format (chrono's, as polars parses whole columns with it); None
    means the timestamp is RFC 3339 or an epoch number. `yearless`: the timestamp has no year
    (RFC 3164 syslog), one is assumed (see `parsing.year`).
    """

    name: str
    pattern: str
    ts_format: str | None
    yearless: bool = False
    doc: str = ""

    @property
    def regex(self) -> re.Pattern[str]:
        return _compiled(self.pattern)


_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    rx = _CACHE.get(pattern)
    if rx is None:
        rx = _CACHE[pattern] = re.compile(pattern)
    return rx


HDFS = Layout(
    "hdfs",
    r"^(?P<timestamp>\d{6} \d{6}) (?P<pid>\d+) (?P<level>\w+) (?P<service>[^:]+): (?P<message>.*)$",
    "%y%m%d %H%M%S",
    doc="Loghub HDFS: `yyMMdd HHmmss pid LEVEL component: content`; the component is the "
    "service; times are UTC",
)
BGL = Layout(
    "bgl",
    # A leading label token (Loghub's labeled file: `-` or a category) is skipped.
    r"^(?:(?!\d+ )(?P<label>\S+) )?(?P<timestamp>\d+) (?P<date>\S+) (?P<node>\S+) (?P<time>\S+) "
    r"(?P<noderepeat>\S+) (?P<type>\S+) (?P<service>\S+) (?P<level>\S+) ?(?P<message>.*)$",
    None,
    doc="Loghub BGL: `[label] epoch date node time noderepeat type component level content`; "
    "the component (KERNEL, APP, ...) is the service, the epoch seconds the timestamp",
)
SYSLOG_RFC5424 = Layout(
    "syslog-rfc5424",
    r"^<(?P<pri>\d{1,3})>\d{1,2} (?P<timestamp>\S+) (?P<host>\S+) (?P<service>\S+) "
    r"(?P<procid>\S+) (?P<msgid>\S+) (?P<sd>-|(?:\[[^\]\\]*(?:\\.[^\]\\]*)*\])+)"
    r"(?: \ufeff?(?P<message>.*))?$",
    None,
    doc="`<PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID SD MSG`; APP-NAME is the service, the "
    "severity (PRI mod 8) the level, HOST an attr (`host`)",
)
SYSLOG_RFC3164 = Layout(
    "syslog-rfc3164",
    r"^(?:<(?P<pri>\d{1,3})>)?(?P<timestamp>[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d) (?P<host>\S+) "
    r"(?P<service>[^\s:\[]+)(?:\[(?P<pid>[^\]]*)\])?: ?(?P<message>.*)$",
    "%Y %b %d %H:%M:%S",
    yearless=True,
    doc="`[<PRI>]Mmm dd hh:mm:ss HOST TAG[PID]: MSG` (also /var/log/syslog without PRI); TAG is "
    "the service, PRI's severity the level; times are UTC and the year assumed",
)
NGINX_COMBINED = Layout(
    "nginx-combined",
    r'^(?P<host>\S+) \S+ (?P<user>\S+) \[(?P<timestamp>[^\]]+)\] "(?P<message>[^"\\]*(?:\\.[^"\\]*)*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-)(?: "(?P<referer>[^"\\]*(?:\\.[^"\\]*)*)" '
    r'"(?P<agent>[^"\\]*(?:\\.[^"\\]*)*)")?(?: (?P<latency_s>\d+(?:\.\d+)?|-))?.*$',
    "%d/%b/%Y:%H:%M:%S %z",
    doc="nginx `combined` (= Apache combined, or common without the quoted referer and agent), "
    "optionally followed by `$request_time` in seconds: the request line is the message, the "
    "status the status, the request time the latency; no service (parsing.default_service, "
    "`nginx` unless set); the client address is an attr (`host`)",
)

PRESETS: dict[str, Layout] = {
    p.name: p for p in (SYSLOG_RFC5424, SYSLOG_RFC3164, NGINX_COMBINED, HDFS, BGL)
}
DEFAULT_SERVICE = {"nginx-combined": "nginx"}  # presets whose lines name no service
