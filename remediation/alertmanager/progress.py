"""What the engine process has finished of the inbox: a watermark (every alert id at or below it
is finished) and the finished ids above it (ladders end out of order). Its own SQLite file,
written only by the engine process, so marking progress never takes the inbox's write lock.

>>> p = Progress(":memory:")
>>> p.save([1, 2, 5], watermark=2)
>>> p.load()
(2, {5})
>>> p.pending([(1, "a"), (3, "b"), (5, "c"), (6, "d")])
[(3, 'b'), (6, 'd')]
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from remediation.private import connect_private

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS watermark (k INTEGER PRIMARY KEY CHECK (k = 0), id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS finished (id INTEGER PRIMARY KEY);
INSERT OR IGNORE INTO watermark VALUES (0, 0);
"""


def progress_path(inbox_db: Path) -> Path:
    return inbox_db.with_name(inbox_db.name + ".progress")


class Progress:
    def __init__(self, path: Path | str) -> None:
        # One flush at a time, from the engine's worker threads.
        self._db = connect_private(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.watermark, self.finished = self.load()

    def load(self) -> tuple[int, set[int]]:
        mark = int(self._db.execute("SELECT id FROM watermark").fetchone()[0])
        done = {int(i) for (i,) in self._db.execute("SELECT id FROM finished WHERE id > ?", (mark,))}
        return mark, done

    def save(self, finished: Iterable[int], watermark: int) -> None:
        """Record finished ids and the new watermark in one transaction."""
        watermark = max(watermark, self.watermark)
        fresh = [i for i in finished if i > watermark]
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("INSERT OR IGNORE INTO finished VALUES (?)", [(i,) for i in fresh])
        if watermark > self.watermark:
            self._db.execute("UPDATE watermark SET id = ?", (watermark,))
            self._db.execute("DELETE FROM finished WHERE id <= ?", (watermark,))
        self._db.execute("COMMIT")
        self.watermark = watermark
        self.finished = {i for i in self.finished if i > watermark} | set(fresh)

    def pending(self, rows: Sequence[tuple[int, T]]) -> list[tuple[int, T]]:
        """The rows (id first) not finished yet."""
        return [r for r in rows if r[0] > self.watermark and r[0] not in self.finished]

    def close(self) -> None:
        self._db.close()


def read_progress(path: Path) -> tuple[int, int]:
    """(watermark, finished ids above it) as last saved, read without writing (0, 0 if none)."""
    if not path.exists():
        return 0, 0
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        try:
            mark = int(db.execute("SELECT id FROM watermark").fetchone()[0])
            above = int(db.execute("SELECT COUNT(*) FROM finished WHERE id > ?", (mark,)
                                   ).fetchone()[0])
        except sqlite3.OperationalError:  # not created yet
            return 0, 0
    return mark, above
