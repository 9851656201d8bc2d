"""State files only their owner can read: every SQLite database Vigil writes (the audit, the
webhook's inbox and progress) is opened through `connect_private`.

SQLite creates a new database 0644 (less the umask) and gives its `-wal` and `-shm` files the
database's mode, and these files hold alerts, rendered params and decisions. So the file is
created 0600 with `os.open` before SQLite opens it; a directory made for it is 0700. Existing
files keep their mode (the operator may have chosen it).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any


def create_private(path: Path | str) -> None:
    """Create `path` (and a missing parent directory, 0700) as an empty file with mode 0600 if
    it does not exist; never widens or narrows an existing file.

    >>> import stat, tempfile
    >>> p = Path(tempfile.mkdtemp()) / "new" / "state.db"
    >>> create_private(p)
    >>> oct(stat.S_IMODE(p.stat().st_mode)), oct(stat.S_IMODE(p.parent.stat().st_mode))
    ('0o600', '0o700')
    """
    p = Path(path)
    if not p.parent.exists():
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    os.close(fd)


def connect_private(path: Path | str, **options: Any) -> sqlite3.Connection:
    """`sqlite3.connect(path, **options)`, the file created 0600 first (`:memory:` as is)."""
    if str(path) != ":memory:":
        create_private(path)
    db: sqlite3.Connection = sqlite3.connect(str(path), **options)
    return db
