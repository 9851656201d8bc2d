"""Replays JSONL files through a `Pipeline` into an output directory (the `vigil replay` job)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from detector.config import VigilConfig
from detector.pipeline import BatchOutcome, Pipeline, PipelineStats
from detector.runtime.ahead import Batch, DecodeAhead
from detector.sinks.base import Outputs
from detector.sources.files import iter_batches

OUTPUT_FILES = ("anomalies.jsonl", "incidents.jsonl", "dead_letter.jsonl")


@dataclass(slots=True)
class ReplayResult:
    out_dir: Path
    stats: PipelineStats
    incidents: list[dict[str, Any]]  # the last state of each incident, in order of opening


def replay(
    files: Sequence[str | Path],
    cfg: VigilConfig,
    out_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Run every file through one pipeline (in the order given); outputs replace earlier ones.

    `progress(done_bytes, total_bytes)` is called as input is read (total 0 for stdin).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        (out_dir / name).unlink(missing_ok=True)
    pipe = Pipeline(cfg)
    outputs = Outputs.jsonl(out_dir)
    sizes = [_size(f) for f in files]
    total = sum(sizes)

    def batches() -> Iterator[Batch]:
        done_before = 0
        for f, size in zip(files, sizes, strict=True):
            def tick(pos: int, base: int = done_before) -> None:
                if progress is not None:
                    progress(base + pos, total)

            for batch in iter_batches(f, cfg.batch_size, tick):
                yield batch.lines, batch.source, batch.line_numbers
            done_before += size
    try:
        DecodeAhead(pipe).run(batches(), outputs.write)  # the next batch decodes meanwhile
        outputs.write(pipe.finish())
    finally:
        outputs.close()
    return ReplayResult(out_dir, pipe.stats, latest_incidents(out_dir / "incidents.jsonl"))


def latest_incidents(path: Path) -> list[dict[str, Any]]:
    """The last record of each incident id in an incidents.jsonl, in order of first appearance."""
    latest: dict[str, dict[str, Any]] = {}
    if path.exists():
        with path.open("rb") as fh:
            for line in fh:
                rec = orjson.loads(line)
                latest[rec["id"]] = rec
    return list(latest.values())


def input_hint(stats: PipelineStats) -> str | None:
    """What went wrong, in a person's words, when most of the input became dead letters.

    >>> from detector.decode.deadletter import DeadLetter
    >>> st = PipelineStats(lines=2000)
    >>> st.dead.add([DeadLetter("undecodable", "not valid JSON", "app.log:1",
    ...                         b"081109 203518 143 INFO dfs.DataNode: Receiving block")] * 2000)
    >>> print(input_hint(st))  # doctest: +NORMALIZE_WHITESPACE
    2000 of 2000 lines are not JSON (undecodable). Vigil reads JSON lines, one object a line;
    the first (app.log:1) reads: '081109 203518 143 INFO dfs.DataNode: Receiving block'.
    For raw text logs set parsing.format (logfmt, or regex with parsing.pattern or a preset), e.g.
    `vigil replay --preset hdfs|bgl|syslog-rfc5424|syslog-rfc3164|nginx-combined FILE`.
    """
    total = stats.dead.total
    if stats.lines == 0 or 2 * total < stats.lines:
        return None
    reason, n = max(stats.dead.counts.items(), key=lambda kv: kv[1])
    sample = stats.dead.first.get(reason)
    shown = "" if sample is None else sample.raw[:120].decode("utf-8", "replace")
    where = f" ({sample.source})" if sample is not None else ""
    what = {
        "undecodable": "are not JSON (undecodable). Vigil reads JSON lines, one object a line",
        "not_object": "are JSON but not objects (not_object). Vigil reads one JSON object a line",
        "missing_field": "lack a timestamp or a service (missing_field); map your keys under "
                         "parsing.fields",
        "wrong_type": "hold a field of the wrong type (wrong_type); see parsing.fields",
        "oversize": "are over parsing.max_record_bytes (oversize)",
        "too_late": "arrived after their window closed (too_late); is the input in time order?",
        "clock_skew": "have event times far from the stream's (clock_skew); see window.* clock "
                      "settings",
        "decoder_error": "hit a decoder bug (decoder_error); please report one of them",
        "no_match": "do not match the layout (no_match); check parsing.pattern or "
                    "parsing.preset (or the logfmt)",
        "bad_timestamp": "have a timestamp that does not read (bad_timestamp); see "
                         "parsing.timestamp_format",
    }.get(reason, f"were dead-lettered ({reason})")
    text = (f"{n} of {stats.lines} lines {what}; the first{where} reads: {shown!r}.")
    if reason == "undecodable" and sample is not None and _is_utf8(sample.raw):
        text += ("\nFor raw text logs set parsing.format (logfmt, or regex with parsing.pattern or "
                 "a preset), e.g.\n`vigil replay --preset hdfs|bgl|syslog-rfc5424|syslog-rfc3164|"
                 "nginx-combined FILE`.")
    return text.replace("; the first", ";\nthe first")


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class InputError(ValueError):
    """An input file cannot be read."""


def _size(f: str | Path) -> int:
    if str(f) == "-":
        return 0
    p = Path(f)
    if not p.is_file():
        raise InputError(f"input {p} does not exist or is not a file")
    return p.stat().st_size


def replay_lines(lines: Sequence[bytes], cfg: VigilConfig) -> list[dict[str, Any]]:
    """The last state of every incident a pipeline opens on `lines` held in memory (what
    `replay` writes to incidents.jsonl, without the files), in order of opening."""
    pipe = Pipeline(cfg)
    latest: dict[str, dict[str, Any]] = {}
    bs = cfg.batch_size

    def keep(out: BatchOutcome) -> None:
        for inc in out.incidents:
            latest[inc.id] = inc.to_dict()
    DecodeAhead(pipe).run(((lines[i:i + bs], "memory", None) for i in range(0, len(lines), bs)),
                          keep)
    keep(pipe.finish())
    return list(latest.values())
