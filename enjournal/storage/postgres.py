"""The PostgreSQL backend, on asyncpg with a connection pool.

Several API worker processes may share one database: write transactions lock the rows they
change (``SELECT ... FOR UPDATE``) and conditional operations take a transaction-level
advisory lock on their criteria, so concurrent writers never lose an update or create a
duplicate.  SQL arrives with ``?`` placeholders and is rewritten to ``$n`` once per statement.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg

from enjournal.fhir.errors import Busy, Conflict
from enjournal.storage.schema import MIGRATIONS


@lru_cache(maxsize=4096)
def _numbered(sql: str) -> str:
    parts = sql.split("?")
    out = [parts[0]]
    for n, part in enumerate(parts[1:], start=1):
        out.append(f"${n}{part}")
    return "".join(out)


class PostgresConnection:
    dialect = "postgres"

    def __init__(self, raw: asyncpg.Connection):
        self.raw = raw

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        async with _translate_errors():
            return await self.raw.fetch(_numbered(sql), *args)

    async def fetchrow(self, sql: str, *args: Any) -> tuple | None:
        async with _translate_errors():
            return await self.raw.fetchrow(_numbered(sql), *args)

    async def execute(self, sql: str, *args: Any) -> None:
        async with _translate_errors():
            await self.raw.execute(_numbered(sql), *args)

    async def executemany(self, sql: str, rows: list[tuple]) -> None:
        async with _translate_errors():
            await self.raw.executemany(_numbered(sql), rows)


class _translate_errors:
    """Map asyncpg errors to FHIR errors at this one boundary."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, kind, error, tb):
        if isinstance(error, asyncpg.UniqueViolationError):
            raise Conflict(f"conflicting write: {error}") from error
        if isinstance(error, (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)):
            raise Busy("concurrent update; try again") from error
        return False


async def _no_reset(connection: asyncpg.Connection) -> None:
    return None


class PostgresBackend:
    dialect = "postgres"

    def __init__(self, dsn: str, *, min_size: int = 2, max_size: int = 10):
        self.dsn = dsn
        self._min, self._max = min_size, max_size
        self.pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self._min,
            max_size=self._max,
            statement_cache_size=1024,
            # Search SQL is prepared and cached; a generic plan ignores which criterion is
            # selective (the patient reference) and can be 100x slower, so always plan for
            # the actual values.  See docs/performance.md.
            server_settings={"plan_cache_mode": "force_custom_plan"},
            # enjournal never changes session state outside a transaction, so the reset
            # asyncpg runs on every release (a round trip) is not needed.
            reset=_no_reset,
        )

    async def migrate(self) -> list[int]:
        async with self.transaction(write=True) as conn:
            # One migrator at a time, even with several workers starting together.
            await conn.execute("SELECT pg_advisory_xact_lock(727274)")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TIMESTAMPTZ NOT NULL)"
            )
            done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            applied = []
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                await conn.raw.execute(migration.postgres)
                await conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, now())",
                    migration.version,
                    migration.name,
                )
                applied.append(migration.version)
            return applied

    @asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[PostgresConnection]:
        assert self.pool is not None, "call open() first"
        async with self.pool.acquire() as raw:
            if write:
                async with raw.transaction():
                    yield PostgresConnection(raw)
            else:
                # Reads run without BEGIN/COMMIT, two round trips fewer per request.  Each
                # statement sees the latest committed state; a search's page and its
                # includes may see two such states, never a half-written one.
                yield PostgresConnection(raw)

    def pool_stats(self) -> dict[str, int]:
        if self.pool is None:
            return {"size": 0, "idle": 0}
        return {"size": self.pool.get_size(), "idle": self.pool.get_idle_size()}

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
