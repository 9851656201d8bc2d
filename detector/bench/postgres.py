"""A real PostgreSQL for the tests and benchmarks (`vigil bench fleet`): `initdb` into a
temporary directory, `postgres` on a free loopback port (as the `postgres` OS user when we run
as root: it refuses to run as root), a fresh database per test or run. The binaries are found on PATH or in
/usr/lib/postgresql/*/bin (Debian package `postgresql`); `PostgresServer.find()` says why when
they are not."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def _binaries() -> tuple[Path, Path] | str:
    """(initdb, postgres), or why not."""
    found = [shutil.which("initdb"), shutil.which("postgres")]
    if all(found):
        return Path(found[0] or ""), Path(found[1] or "")
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        initdb, postgres = Path(bindir) / "initdb", Path(bindir) / "postgres"
        if initdb.is_file() and postgres.is_file():
            return initdb, postgres
    return ("PostgreSQL's initdb and postgres were not found on PATH nor in "
            "/usr/lib/postgresql/*/bin (Debian: apt-get install postgresql; `make debian-deps`)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """`start()`; `dsn(db)`, `new_database()`; `stop()` (and the directory is removed)."""

    def __init__(self, initdb: Path, postgres: Path) -> None:
        self.initdb, self.postgres = initdb, postgres
        self.dir = Path(tempfile.mkdtemp(prefix="vigil-pg-"))
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise RuntimeError("running as root needs a `postgres` OS user to run the server "
                                   "(the Debian package creates it)") from exc
            self.user = "postgres"
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    @classmethod
    def find(cls) -> PostgresServer | str:
        """A server ready to start, or why there cannot be one."""
        bins = _binaries()
        if isinstance(bins, str):
            return bins
        try:
            return cls(*bins)
        except RuntimeError as exc:
            return str(exc)

    def start(self, timeout_s: float = 30.0) -> PostgresServer:
        data = self.dir / "data"
        subprocess.run([str(self.initdb), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync", "--no-instructions"], check=True,
                       capture_output=True, user=self.user)
        self.proc = subprocess.Popen(
            [str(self.postgres), "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200",
             "-c", "shared_buffers=16MB"],
            user=self.user, stdout=subprocess.DEVNULL, stderr=open(self.dir / "log", "wb"),  # noqa: SIM115
            start_new_session=True)
        deadline = time.monotonic() + timeout_s
        import psycopg

        while True:
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / "log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"postgres did not start: {log}") from None
                time.sleep(0.05)

    def dsn(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def new_database(self) -> str:
        """A fresh, empty database; its DSN."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def restart(self) -> None:
        """Stop (fast: connections are cut) and start again on the same port and data."""
        self._halt()
        data = self.dir / "data"
        self.proc = subprocess.Popen(
            [str(self.postgres), "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
            user=self.user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def _halt(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        self._halt()
        self.proc = None
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)
