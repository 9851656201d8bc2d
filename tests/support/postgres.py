"""A real PostgreSQL for the tests: the server `vigil bench fleet` also starts
(`detector.bench.postgres`), one fresh database per test."""

from __future__ import annotations

from detector.bench.postgres import PostgresServer

__all__ = ["PostgresServer"]
