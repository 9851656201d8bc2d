"""A real PostgreSQL for the remediation tests that share an audit across engines: started once
per session (skipped with the reason when its binaries are missing), a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'vigil[postgres]')")
    server = PostgresServer.find()
    if isinstance(server, str):
        pytest.skip(server)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> str:
    """The DSN of a new, empty database on the session's server."""
    return postgres.new_database()
