"""Following files as they grow: appends, files that appear later, rename and copytruncate
rotation, held and released partial lines, bytes passed through, stop and heartbeats. Most
tests call `poll()` (one read, never blocking), so they need no clock but the partial timeout."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from detector.sources.files import LineBatch
from detector.sources.follow import FollowSource


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "app.jsonl"


@pytest.fixture
def follow(log: Path) -> Iterator[FollowSource]:
    with FollowSource([log], poll_s=0.01) as src:
        yield src


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


def lines(n: int, tag: str, start: int = 0) -> bytes:
    return b"".join(b'{"n": %d, "tag": "%s"}\n' % (i, tag.encode()) for i in range(start, start + n))


def read_all(src: FollowSource) -> list[tuple[bytes, int]]:
    """Poll until a poll finds nothing: every (line, number) given out, in order."""
    got: list[tuple[bytes, int]] = []
    while batches := src.poll():
        for b in batches:
            got.extend(zip(b.lines, b.line_numbers, strict=True))
    return got


def test_appended_lines_arrive_in_order_with_their_numbers(log: Path, follow: FollowSource) -> None:
    append(log, b'{"a": 1}\n\n  \n{"a": 2}\r\n')
    assert read_all(follow) == [(b'{"a": 1}', 1), (b'{"a": 2}', 4)]
    assert follow.poll() == []
    append(log, b'{"a": 3}\n')
    assert read_all(follow) == [(b'{"a": 3}', 5)]
    assert follow.stats.lines == 3


def test_a_file_created_later_is_picked_up_from_its_start(log: Path) -> None:
    with FollowSource([log], from_end=True, poll_s=0.01) as src:
        assert src.poll() == []
        log.write_bytes(b'{"late": 1}\n')
        assert read_all(src) == [(b'{"late": 1}', 1)]


def test_from_end_skips_what_is_there_but_reads_the_line_being_written(log: Path) -> None:
    log.write_bytes(lines(100, "old") + b'{"n": 100, "ta')
    with FollowSource([log], from_end=True, poll_s=0.01) as src:
        assert read_all(src) == []
        append(log, b'g": "old"}\n' + lines(2, "new"))
        assert [n for _, n in read_all(src)] == [101, 102, 103]


def test_rename_rotation_loses_no_line(log: Path, follow: FollowSource) -> None:
    append(log, lines(500, "a"))
    assert len(read_all(follow)) == 500
    append(log, lines(500, "a", start=500))  # written, not read yet, when the file is rotated
    log.rename(log.with_name("app.jsonl.1"))
    append(log.with_name("app.jsonl.1"), lines(10, "a", start=1000))  # writer not reopened yet
    log.write_bytes(lines(300, "b"))
    got = read_all(follow)
    append(log, lines(300, "b", start=300))
    got += read_all(follow)
    a = [(line, n) for line, n in got if b'"a"' in line]
    b = [(line, n) for line, n in got if b'"b"' in line]
    assert a == [(f'{{"n": {i}, "tag": "a"}}'.encode(), i + 1) for i in range(500, 1010)]
    assert b == [(f'{{"n": {i}, "tag": "b"}}'.encode(), i + 1) for i in range(600)]
    assert got.index(a[-1]) < got.index(b[0])  # the old file is read to its end first
    assert (follow.stats.rotations, follow.stats.truncations) == (1, 0)


def test_a_rotated_file_is_still_read_within_the_grace_then_closed(log: Path) -> None:
    with FollowSource([log], poll_s=0.01, rotate_grace_s=0.2) as src:
        log.write_bytes(lines(1, "a"))
        read_all(src)
        old = log.with_name("app.jsonl.1")
        log.rename(old)
        log.write_bytes(lines(1, "b"))
        assert [n for _, n in read_all(src)] == [1]
        append(old, lines(1, "a", start=1))
        assert read_all(src) == [(b'{"n": 1, "tag": "a"}', 2)]
        time.sleep(0.25)
        src.poll()
        append(old, lines(1, "a", start=2))  # after the grace: no longer read
        append(log, lines(1, "b", start=1))
        assert read_all(src) == [(b'{"n": 1, "tag": "b"}', 2)]
        assert src.stats.opened == 2


def test_the_path_missing_after_a_rename_keeps_the_old_file_read(log: Path, follow: FollowSource
                                                                 ) -> None:
    append(log, lines(1, "a"))
    read_all(follow)
    log.rename(log.with_name("app.jsonl.1"))
    append(log.with_name("app.jsonl.1"), lines(1, "a", start=1))
    assert [n for _, n in read_all(follow)] == [2]
    assert follow.stats.rotations == 0


def test_copytruncate_reads_the_file_again_from_its_start(log: Path, follow: FollowSource) -> None:
    append(log, lines(50, "a"))
    assert len(read_all(follow)) == 50
    with log.open("r+b") as fh:  # what logrotate's copytruncate does after copying
        fh.truncate(0)
    append(log, lines(3, "b"))
    assert read_all(follow) == [(f'{{"n": {i}, "tag": "b"}}'.encode(), i + 1) for i in range(3)]
    assert (follow.stats.truncations, follow.stats.rotations) == (1, 0)


def test_a_partial_line_is_held_until_its_newline(log: Path, follow: FollowSource) -> None:
    append(log, b'{"a": 1}\n{"b": ')
    assert read_all(follow) == [(b'{"a": 1}', 1)]
    append(log, b"2")
    assert read_all(follow) == []
    append(log, b"}\n")
    assert read_all(follow) == [(b'{"b": 2}', 2)]
    assert follow.stats.partials_released == 0


def test_a_stale_partial_line_is_released_after_the_timeout(log: Path) -> None:
    with FollowSource([log], poll_s=0.01, partial_timeout_s=0.1) as src:
        log.write_bytes(b'{"no": "newline"}')
        assert read_all(src) == []
        time.sleep(0.15)
        assert read_all(src) == [(b'{"no": "newline"}', 1)]
        append(log, b'\n{"next": 1}\n')  # its newline, late: ends it, gives nothing more
        assert read_all(src) == [(b'{"next": 1}', 2)]
        assert src.stats.partials_released == 1


def test_a_line_past_max_line_bytes_comes_out_in_pieces_under_one_number(log: Path) -> None:
    with FollowSource([log], poll_s=0.01, max_line_bytes=1000) as src:
        log.write_bytes(b'{"ok": 1}\n' + b"x" * 1500)
        got = read_all(src)
        assert [(len(line), n) for line, n in got] == [(9, 1), (1500, 2)]
        append(log, b"y" * 10 + b'\n{"ok": 2}\n')
        assert read_all(src) == [(b"y" * 10, 2), (b'{"ok": 2}', 3)]
        assert src.stats.long_lines_split == 1


def test_invalid_utf8_and_binary_pass_through_untouched(log: Path, follow: FollowSource) -> None:
    junk = [b'{"msg": "caf\xe9"}', b"\x00\x01\xff\xfe\x80binary", b"\xef\xbb\xbf{}"]
    append(log, b"\n".join(junk) + b"\n")
    assert [line for line, _ in read_all(follow)] == junk


def test_batches_hold_at_most_batch_size_lines_of_one_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(lines(25, "a"))
    b.write_bytes(lines(5, "b"))
    with FollowSource([a, b], poll_s=0.01, batch_size=10) as src:
        got: list[LineBatch] = []
        while found := src.poll():
            got += found
    assert [(x.source, len(x.lines)) for x in got] == [
        (str(a), 10), (str(b), 5), (str(a), 10), (str(a), 5)]
    assert [n for x in got if x.source == str(a) for n in x.line_numbers] == list(range(1, 26))


def test_idle_polls_yield_heartbeats_and_stop_ends_promptly_giving_out_held_lines(log: Path
                                                                                 ) -> None:
    stop = threading.Event()
    src = FollowSource([log], poll_s=0.05, partial_timeout_s=60)
    got: list[LineBatch] = []
    heartbeats = 0
    t0 = time.monotonic()
    for batch in src.batches(stop):
        if not batch.lines:
            heartbeats += 1
            if heartbeats == 2:
                log.write_bytes(b'{"a": 1}\n{"held": ')
            elif heartbeats == 4:
                stop.set()
                t_stop = time.monotonic()
        got.append(batch)
    assert time.monotonic() - t_stop < 0.5
    assert time.monotonic() - t0 < 3
    assert [(x.lines, list(x.line_numbers)) for x in got if x.lines] == [
        ([b'{"a": 1}'], [1]), ([b'{"held":'], [2])]
    assert not src._gens[str(log)]  # closed


def test_a_stop_from_another_thread_ends_an_idle_follow_within_a_poll(log: Path) -> None:
    stop = threading.Event()
    src = FollowSource([log], poll_s=0.1)
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    t0 = time.monotonic()
    n = sum(1 for _ in src.batches(stop))
    assert 0.25 < time.monotonic() - t0 < 1.0
    assert n >= 2


def test_a_path_that_is_not_a_regular_file_is_reported_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with FollowSource([fifo, tmp_path], poll_s=0.01) as src:
        assert src.poll() == []  # returns at once: a FIFO does not block it
    assert src.stats.open_errors == 2 and "not a regular file" in src.stats.last_error


def test_rotations_under_a_live_writer_that_reopens_late_lose_no_line(log: Path) -> None:
    """logrotate's order: rename, create, then the writer reopens (here 300 lines later, so the
    follower sees the new file while lines still go to the old one). Rotations come about
    0.4 s apart: two within one poll would lose the file between them, for any poller."""
    total = 8000

    def write() -> None:
        fh = log.open("ab", buffering=0)
        reopen_at = -1
        for i in range(total):
            fh.write(b'{"n": %d}\n' % i)
            if i % 2000 == 1999:
                log.rename(log.with_name(f"app.jsonl.{i}"))
                log.touch()
                reopen_at = i + 300
            if i == reopen_at:
                fh.close()
                fh = log.open("ab", buffering=0)
            if i % 20 == 0:
                time.sleep(0.004)
        fh.close()

    writer = threading.Thread(target=write)
    stop = threading.Event()
    src = FollowSource([log], poll_s=0.01, batch_size=1000, rotate_grace_s=1.0)

    def stop_after_the_writer() -> None:
        writer.join()
        time.sleep(0.3)
        stop.set()

    writer.start()
    threading.Thread(target=stop_after_the_writer).start()
    got = [int(line[6:-1]) for b in src.batches(stop) for line in b.lines]
    assert got == list(range(total))
    assert src.stats.rotations == 4
