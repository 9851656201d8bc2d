"""Raw-line parsers for the Loghub HDFS and BGL layouts (for `vigil eval lines`); the layouts
themselves are `detector.decode.layouts`', which `parsing.preset` reads too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from detector.decode.layouts import BGL, HDFS
from detector.events import LEVEL_NAMES, LEVEL_UNKNOWN

BLOCK_RE = re.compile(r"blk_-?\d+")


@dataclass(slots=True)
class LogLine:
    line_id: int  # 1-based line number in the file
    ts: float  # epoch seconds (UTC); 0 when the line has none
    level: int  # OpenTelemetry severity number
    component: str
    content: str
    sessions: list[str] = field(default_factory=list)  # HDFS block ids named in the line
    parsed: bool = True  # False: the line did not match the layout (content is the whole line)


def parse_hdfs(line: str, line_id: int) -> LogLine:
    """`yyMMdd HHmmss pid LEVEL component: content`; sessions are the block ids in the content.

    >>> p = parse_hdfs("081109 203518 143 INFO dfs.DataNode$DataXceiver: Receiving block "
    ...                "blk_-1608999687919862906 src: /10.250.19.102:54106", 1)
    >>> p.level, p.component, p.sessions, p.ts
    (9, 'dfs.DataNode$DataXceiver', ['blk_-1608999687919862906'], 1226262918.0)
    """
    m = HDFS.regex.match(line)
    if m is None:
        return LogLine(line_id, 0.0, LEVEL_UNKNOWN, "", line, BLOCK_RE.findall(line), parsed=False)
    stamp, level, component, content = m.group("timestamp", "level", "service", "message")
    try:
        assert HDFS.ts_format is not None
        ts = datetime.strptime(stamp, HDFS.ts_format).replace(tzinfo=UTC).timestamp()
    except ValueError:
        ts = 0.0
    return LogLine(line_id, ts, LEVEL_NAMES.get(level.lower(), LEVEL_UNKNOWN), component, content,
                   list(dict.fromkeys(BLOCK_RE.findall(content))))


def parse_bgl(line: str, line_id: int) -> LogLine:
    """`epoch date node time noderepeat type component level content` (the unlabeled layout; a
    leading label token, as in Loghub's labeled file, is skipped).

    >>> p = parse_bgl("1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 "
    ...               "R02-M1-N0-C:J12-U11 RAS KERNEL INFO instruction cache parity error corrected", 1)
    >>> p.level, p.component, p.content, p.ts
    (9, 'KERNEL', 'instruction cache parity error corrected', 1117838570.0)
    """
    m = BGL.regex.match(line)  # a labeled line ("- 1117838570 ...", "KERNDTLB ...") too
    if m is None:
        return LogLine(line_id, 0.0, LEVEL_UNKNOWN, "", line, parsed=False)
    epoch, component, level, content = m.group("timestamp", "service", "level", "message")
    return LogLine(line_id, float(epoch), LEVEL_NAMES.get(level.lower(), LEVEL_UNKNOWN), component,
                   content)


PARSERS = {"hdfs": parse_hdfs, "bgl": parse_bgl}


def read_lines(path: Path, fmt: str) -> Iterator[LogLine]:
    """Parsed lines of a raw log file (undecodable bytes replaced, never fatal)."""
    if fmt not in PARSERS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(PARSERS)}")
    parse = PARSERS[fmt]
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for i, raw in enumerate(fh, start=1):
            yield parse(raw.rstrip("\r\n"), i)
