"""Follows growing JSONL files like `tail -F`: rotation-safe, polling, as batches of raw lines.

Reads only: lines stay bytes (bad UTF-8 and binary garbage included) for the decoder to judge;
what runs the loop and where the lines go is the runtime's (`runtime/follow.py`).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector.sources.files import LineBatch

_CHUNK = 1 << 20  # bytes read by one call
_TAIL_PROBE = 1 << 16  # from_end: how far back to look for the start of the last line


@dataclass
class FollowStats:
    """What following has done so far, for a caller to report."""

    lines: int = 0  # non-blank lines yielded (fragments of long or stale lines counted each)
    bytes_read: int = 0
    opened: int = 0  # file generations opened (the first of each path included)
    rotations: int = 0  # a path that came to name a new file (rename-and-create)
    truncations: int = 0  # a file that shrank below what was read (copytruncate)
    partials_released: int = 0  # unterminated lines given out after partial_timeout_s unchanged
    long_lines_split: int = 0  # unterminated lines given out for passing max_line_bytes
    open_errors: int = 0  # opens that failed for another reason than a missing file
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class _Generation:
    """One open file behind a path, from its open until it is rotated away and read out."""

    fd: int
    dev: int
    ino: int
    pos: int = 0  # bytes of the file read so far
    line_no: int = 0  # newlines seen since the generation (or its last truncation) started
    held: bytes = b""  # the bytes after the last newline
    held_since: float = 0.0  # monotonic time `held` last changed
    until: float | None = None  # rotated away: read until then (monotonic); None: current
    lines: list[bytes] = field(default_factory=list)  # read, not given out yet
    numbers: list[int] = field(default_factory=list)

    def close(self) -> None:
        os.close(self.fd)


class FollowSource:
    """Follows `paths` as they grow and yields `LineBatch`es of their new, non-blank lines.

    Like `tail -F`, by polling every `poll_s` (no inotify): a path that does not exist yet is
    waited for; each path starts at its beginning, or with `from_end` at the end of the file
    there at the first poll (a file that appears later is read from its start). Good for files
    written by appending; a file rewritten in place is read as the bytes past what was read.

    Rotation: when the path comes to name another file (device or inode changed:
    rename-and-create, logrotate's default), the old descriptor is read to its end first and kept
    open `rotate_grace_s` longer, read before the new file each poll, for a writer that has not
    reopened yet; the new file is read from its start. When a file shrinks below what was read
    (copytruncate), it is read again from 0. Both count in `stats`; line numbers restart at 1
    with each new generation. Two rotations within one poll lose the generation between them;
    copytruncate loses what the writer wrote between the copy and the truncation, as for any
    reader.

    An unterminated last line is held until its newline arrives; if it stays unchanged
    `partial_timeout_s`, or grows past `max_line_bytes`, it is given out as it is (the decoder
    dead-letters what is not a record), and what follows up to the newline comes out under the
    same line number. So memory stays bounded by about `max_line_bytes` + 1 MiB per file, plus
    one batch.

    Two ways to read: `poll()` reads once what is there (never blocks); `batches(stop)` polls
    until `stop` is set. A batch holds at most `batch_size` lines of one file; a poll gives out
    what it read, so a line arrives within about `poll_s`. A batch with no lines is a
    heartbeat: a poll found nothing new, so a consumer gets control every `poll_s` while the
    files are idle. When `stop` is set, `batches` gives out what it has read, held partial lines
    included, closes the files and ends within about `poll_s`. Cost: one `stat` and one `fstat`
    per path per poll while idle; with `from_end`, the newlines before the end are counted once
    (about 1 GB/s), so line numbers stay the file's own. A path that is not a regular file (or
    not readable) is retried every poll and counted in `stats.open_errors`.

    Parameters
    ----------
    paths: the files to follow, each a `source` of its batches (as given).
    from_end: start at the current end of the files that exist at the first poll.
    poll_s: seconds between polls that found nothing new.
    batch_size: the most lines in one batch.
    partial_timeout_s: how long an unterminated line is held unchanged before it is given out.
    max_line_bytes: an unterminated line longer than this is given out at once.
    rotate_grace_s: how long a rotated-away file is still read.

    Examples
    --------
    >>> import tempfile, threading
    >>> from pathlib import Path
    >>> tmp = tempfile.TemporaryDirectory()
    >>> log = Path(tmp.name) / "app.jsonl"
    >>> src = FollowSource([log], poll_s=0.01)
    >>> src.poll()  # not there yet: waited for
    []
    >>> _ = log.write_bytes(b'{"msg": "one"}\\n\\n{"msg": "tw')
    >>> [(b.lines, list(b.line_numbers)) for b in src.poll()]
    [([b'{"msg": "one"}'], [1])]
    >>> with log.open("ab") as fh:
    ...     _ = fh.write(b'o"}\\n')
    >>> _ = log.rename(log.with_suffix(".1"))  # rotated: the old file is read to its end ...
    >>> _ = log.write_bytes(b'{"msg": "three"}\\n')  # ... then the new one from its start
    >>> [(b.lines, list(b.line_numbers)) for b in src.poll()]
    [([b'{"msg": "two"}'], [3]), ([b'{"msg": "three"}'], [1])]
    >>> src.stats.rotations
    1
    >>> stop = threading.Event()
    >>> for batch in src.batches(stop):  # an empty batch: idle, a heartbeat
    ...     stop.set()
    >>> batch.lines  # and `batches` closed the files on its way out
    []
    >>> tmp.cleanup()
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        from_end: bool = False,
        poll_s: float = 0.2,
        batch_size: int = 65536,
        partial_timeout_s: float = 2.0,
        max_line_bytes: int = 1 << 20,
        rotate_grace_s: float = 2.0,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.from_end = from_end
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.partial_timeout_s = partial_timeout_s
        self.max_line_bytes = max_line_bytes
        self.rotate_grace_s = rotate_grace_s
        self.stats = FollowStats()
        self._gens: dict[str, list[_Generation]] = {p: [] for p in self.paths}  # oldest first
        self._polled = False
        self._more = False  # the last poll left lines to read or give out

    # ---- reading --------------------------------------------------------------------------
    def poll(self) -> list[LineBatch]:
        """Read once what is new in every file (about one batch of each at most), never
        blocking; [] when there was nothing."""
        at_end = self.from_end and not self._polled
        self._polled = True
        self._more = False
        out: list[LineBatch] = []
        for path in self.paths:
            gens = self._gens[path]
            if not gens or gens[-1].until is not None:
                self._open(path, at_end)
            out.extend(self._poll_path(path, gens))
        return out

    def batches(self, stop: threading.Event) -> Iterator[LineBatch]:
        """Poll until `stop` is set: batches of new lines, an empty batch for a poll that found
        none; on stop, what was read and held is given out, then the files are closed."""
        try:
            while not stop.is_set():
                found = self.poll()
                yield from found
                if not found:
                    yield LineBatch("", [], [])
                if not self._more:
                    stop.wait(self.poll_s)
            yield from self.drain()
        finally:
            self.close()

    def drain(self) -> list[LineBatch]:
        """Everything read and not given out yet, unterminated lines included (end of input)."""
        out: list[LineBatch] = []
        for path, gens in self._gens.items():
            for gen in gens:
                self._release_held(gen)
                out.extend(self._take(path, gen, everything=True))
        return out

    def close(self) -> None:
        for gens in self._gens.values():
            for gen in gens:
                gen.close()
            gens.clear()

    def __enter__(self) -> FollowSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals ------------------------------------------------------------------------
    def _poll_path(self, path: str, gens: list[_Generation]) -> list[LineBatch]:
        """Read the generations of `path` oldest first; a newer one waits until the older ones
        have given out what they read, so each file's lines come in order."""
        out: list[LineBatch] = []
        i = 0
        while i < len(gens):
            gen = gens[i]
            eof = self._read(gen)
            if eof and gen.until is None and self._rotated(path, gen):
                gen.until = time.monotonic() + self.rotate_grace_s
                self.stats.rotations += 1
                self._open(path, at_end=False)
            done = eof and gen.until is not None and time.monotonic() >= gen.until
            if done:
                self._release_held(gen)
            else:
                self._release_stale(gen)
            out.extend(self._take(path, gen, everything=done))
            if done:
                gen.close()
                del gens[i]
                continue
            if gen.lines or not eof:
                self._more = True
                break
            i += 1
        return out

    def _open(self, path: str, at_end: bool) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the poll
        except FileNotFoundError:
            return
        except OSError as exc:  # e.g. created by a rotation with a mode we may not read yet
            self._open_failed(path, exc.strerror or str(exc))
            return
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._open_failed(path, "not a regular file")
            return
        gen = _Generation(fd, st.st_dev, st.st_ino)
        if at_end and st.st_size:
            # Start after the last newline, so a line being written is read whole.
            start = max(0, st.st_size - _TAIL_PROBE)
            tail = os.pread(fd, st.st_size - start, start)
            cut = tail.rfind(b"\n")
            gen.pos = start + cut + 1 if cut >= 0 else (st.st_size if start else 0)
            gen.line_no = _count_newlines(fd, gen.pos)  # numbers stay the file's own
            os.lseek(fd, gen.pos, os.SEEK_SET)
        self._gens[path].append(gen)
        self.stats.opened += 1

    def _open_failed(self, path: str, why: str) -> None:
        self.stats.open_errors += 1
        self.stats.last_error = f"{path}: {why}"

    def _rotated(self, path: str, gen: _Generation) -> bool:
        """Does `path` name another file than `gen` now? (Missing: renamed, not recreated yet;
        keep reading the old one.)"""
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) != (gen.dev, gen.ino)

    def _read(self, gen: _Generation) -> bool:
        """Read until end of file or a batch is ready; True at end of file."""
        if os.fstat(gen.fd).st_size < gen.pos:
            self._release_held(gen)
            os.lseek(gen.fd, 0, os.SEEK_SET)
            gen.pos = gen.line_no = 0
            self.stats.truncations += 1
        while len(gen.lines) < self.batch_size:
            chunk = os.read(gen.fd, _CHUNK)
            if not chunk:
                return True
            gen.pos += len(chunk)
            self.stats.bytes_read += len(chunk)
            self._split(gen, chunk)
        return False

    def _split(self, gen: _Generation, chunk: bytes) -> None:
        parts = (gen.held + chunk).split(b"\n")
        tail = parts.pop()
        base = gen.line_no + 1
        for i, part in enumerate(parts):
            s = part.strip()
            if s:
                gen.lines.append(s)
                gen.numbers.append(base + i)
        gen.line_no += len(parts)
        if tail != gen.held:
            gen.held_since = time.monotonic()
        gen.held = tail
        if len(tail) > self.max_line_bytes:
            self._release_held(gen)
            self.stats.long_lines_split += 1

    def _release_stale(self, gen: _Generation) -> None:
        if gen.held and time.monotonic() - gen.held_since >= self.partial_timeout_s:
            if gen.held.strip():
                self.stats.partials_released += 1
            self._release_held(gen)

    def _release_held(self, gen: _Generation) -> None:
        """Give out the unterminated line as it is; its newline, when it comes, ends it."""
        s = gen.held.strip()
        if s:
            gen.lines.append(s)
            gen.numbers.append(gen.line_no + 1)
        gen.held = b""

    def _take(self, path: str, gen: _Generation, everything: bool = False) -> list[LineBatch]:
        """The read lines as batches: one batch's worth, or all of them."""
        out: list[LineBatch] = []
        while gen.lines and (everything or not out):
            n = self.batch_size
            out.append(LineBatch(path, gen.lines[:n], gen.numbers[:n]))
            del gen.lines[:n], gen.numbers[:n]
            self.stats.lines += len(out[-1].lines)
        return out


def _count_newlines(fd: int, end: int) -> int:
    """Newlines in the first `end` bytes of `fd` (about 1 GB/s)."""
    n = pos = 0
    while pos < end:
        chunk = os.pread(fd, min(_CHUNK, end - pos), pos)
        if not chunk:
            break
        n += chunk.count(b"\n")
        pos += len(chunk)
    return n
