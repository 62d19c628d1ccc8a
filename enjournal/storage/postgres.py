"""The PostgreSQL backend, on asyncpg with a connection pool.

Several API worker processes may share one database: write transactions lock the rows they
change (``SELECT ... FOR UPDATE``) and conditional operations take a transaction-level
advisory lock on their criteria, so concurrent writers never lose an update or create a
duplicate.  SQL arrives with ``?`` placeholders and is rewritten to ``$n`` once per statement.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg

from enjournal.fhir.errors import Busy, Conflict
from enjournal.storage.base import (
    StoreOpenError,
    out_of_range,
    too_costly,
    too_large,
    unavailable,
)
from enjournal.storage.schema import MIGRATIONS


@lru_cache(maxsize=4096)
def _numbered(sql: str) -> str:
    parts = sql.split("?")
    out = [parts[0]]
    for n, part in enumerate(parts[1:], start=1):
        out.append(f"${n}{part}")
    return "".join(out)


class PostgresConnection:
    """One pooled connection.  A read (``retry``) that finds its connection dropped (the
    server restarted, a failover, an idle-session killer) runs its statement once more on a
    fresh connection: reads run outside a transaction, so nothing is lost or doubled.  Any
    lost connection expires the rest of the pool, which was most likely dropped with it."""

    dialect = "postgres"

    def __init__(self, raw: asyncpg.Connection, pool: asyncpg.Pool | None = None, *, retry=False):
        self.raw = raw
        self._pool = pool
        self._retry = retry and pool is not None

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        return await self._run("fetch", sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> tuple | None:
        return await self._run("fetchrow", sql, args)

    async def execute(self, sql: str, *args: Any) -> None:
        await self._run("execute", sql, args)

    async def executemany(self, sql: str, rows: list[tuple]) -> None:
        await self._run("executemany", sql, (rows,))

    async def _run(self, method: str, sql: str, args: tuple) -> Any:
        try:
            return await getattr(self.raw, method)(_numbered(sql), *args)
        except Exception as error:
            mapped = storage_error(error, self.raw)
            if mapped is None:
                raise
            if not _lost(error, self.raw):
                raise mapped from error
            if self._pool is not None:
                await self._pool.expire_connections()
            if not self._retry:
                raise mapped from error
        await self._reconnect()
        async with _translated(self.raw):
            return await getattr(self.raw, method)(_numbered(sql), *args)

    async def _reconnect(self) -> None:
        pool, self._retry = self._pool, False  # once per request
        assert pool is not None
        raw, self.raw = self.raw, None
        with contextlib.suppress(asyncpg.InterfaceError):  # already closed and detached
            raw.terminate()  # whatever state it is in, it is not used again
        await pool.release(raw)
        async with _translated(None):
            self.raw = await pool.acquire()


@asynccontextmanager
async def _translated(raw: asyncpg.Connection | None) -> AsyncIterator[None]:
    """Map driver errors to FHIR errors at this one boundary (see ``storage_error``)."""
    try:
        yield
    except Exception as error:
        mapped = storage_error(error, raw)
        if mapped is None:
            raise
        raise mapped from error


def storage_error(error: BaseException, raw: asyncpg.Connection | None = None):
    """The FHIR error a driver error means, or None for a bug (which stays a 500):
    a unique violation is a conflict; a deadlock, a serialization failure, a lost
    connection, a full disk or exhausted server resources are Busy (503, try again later);
    a statement cancelled by ``statement_timeout`` is Busy with the issue code too-costly."""
    if isinstance(error, asyncpg.UniqueViolationError):
        return Conflict(f"conflicting write: {error}")
    if isinstance(error, (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)):
        return Busy("concurrent update; try again")
    if isinstance(error, asyncpg.QueryCanceledError):
        return too_costly()
    if isinstance(error, asyncpg.DiskFullError):
        return unavailable("the database server is out of disk space; try again later", 60)
    if isinstance(error, asyncpg.InsufficientResourcesError):
        return unavailable("the database server is out of resources; try again later", 10)
    if isinstance(error, asyncpg.ProgramLimitExceededError) or (
        isinstance(error, asyncpg.InterfaceError) and "number of query arguments" in str(error)
    ):
        return too_large()
    if isinstance(error, asyncpg.DataError) and "invalid input for query argument" in str(error):
        return out_of_range()  # e.g. an integer beyond 64 bits
    if _lost(error, raw):
        return unavailable("the connection to the database was lost; try again", 1)
    return None


def _lost(error: BaseException, raw: asyncpg.Connection | None) -> bool:
    """Whether ``error`` says the connection (or the server) went away."""
    if isinstance(error, asyncpg.QueryCanceledError):
        return False  # the statement timeout: the connection is fine
    if isinstance(error, _LOST):
        return True
    closed = raw is not None and raw.is_closed()
    return isinstance(error, asyncpg.InterfaceError) and (closed or "closed" in str(error))


_LOST = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.OperatorInterventionError,  # 57: admin shutdown, crash shutdown, cannot connect now
    ConnectionError,  # OSError: reset, refused, aborted
    TimeoutError,  # connecting took too long
    # A connection whose server process was terminated while idle: asyncpg has read the
    # FATAL notice but not yet the close, and refuses the next statement with this.
    asyncpg.InternalClientError,
)


def _without_password(dsn: str) -> str:
    """The DSN to name in a message: ``user:secret@host`` becomes ``user@host``."""
    head, at, tail = dsn.rpartition("@")
    if not at:
        return dsn.split("?")[0]
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.split(':')[0]}@{tail.split('?')[0]}"


async def _no_reset(connection: asyncpg.Connection) -> None:
    return None


@asynccontextmanager
async def _write_transaction(conn: PostgresConnection, timeout_ms: int) -> AsyncIterator[None]:
    """BEGIN with this transaction's own statement timeout, in one round trip like a plain
    BEGIN; COMMIT, or ROLLBACK on any exception (cancellation included).  A connection
    lost after BEGIN is Busy (503): the client repeats the write, the server never does."""
    conn._retry = True  # nothing is done yet: a dropped connection is simply replaced
    await conn.execute(f"BEGIN; SET LOCAL statement_timeout = {int(timeout_ms)}")
    conn._retry = False
    try:
        yield
    except BaseException:
        if not conn.raw.is_closed():
            with contextlib.suppress(Exception):
                await conn.raw.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


class PostgresBackend:
    dialect = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        read_timeout_ms: int = 0,
        write_timeout_ms: int = 0,
    ):
        self.dsn = dsn
        self._min, self._max = min_size, max_size
        self.read_timeout_ms, self.write_timeout_ms = read_timeout_ms, write_timeout_ms
        self.pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Open the pool; StoreOpenError (one line, no password) if the server cannot be
        reached or refuses."""
        try:
            self.pool = await self._create_pool()
        except (TimeoutError, OSError, ValueError, asyncpg.PostgresError) as error:
            where = _without_password(self.dsn)
            reason = str(error) or type(error).__name__
            raise StoreOpenError(f"cannot open PostgreSQL at {where}: {reason}") from None

    async def _create_pool(self) -> asyncpg.Pool:
        return await asyncpg.create_pool(
            self.dsn,
            min_size=self._min,
            max_size=self._max,
            statement_cache_size=1024,
            server_settings={
                # Search SQL is prepared and cached; a generic plan ignores which criterion
                # is selective (the patient reference) and can be 100x slower, so always
                # plan for the actual values.  See docs/performance.md.
                "plan_cache_mode": "force_custom_plan",
                # The session's default bounds every read (reads run outside a transaction,
                # so this costs no round trip); write transactions set their own.
                "statement_timeout": str(self.read_timeout_ms),
            },
            # enjournal never changes session state outside a transaction, so the reset
            # asyncpg runs on every release (a round trip) is not needed.
            reset=_no_reset,
        )

    async def migrate(self) -> list[int]:
        async with self.transaction(write=True, timeout_ms=0) as conn:
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
    async def transaction(
        self, *, write: bool, timeout_ms: int | None = None
    ) -> AsyncIterator[PostgresConnection]:
        assert self.pool is not None, "call open() first"
        async with _translated(None):
            raw = await self.pool.acquire()
        conn = PostgresConnection(raw, self.pool, retry=not write)
        try:
            if write:
                limit = self.write_timeout_ms if timeout_ms is None else timeout_ms
                async with _write_transaction(conn, limit):
                    yield conn
            else:
                # Reads run without BEGIN/COMMIT, two round trips fewer per request.  Each
                # statement sees the latest committed state; a search's page and its
                # includes may see two such states, never a half-written one.
                yield conn
        finally:
            # A cancelled request (the client went away) gets here too: release rolls back
            # a transaction left open, or drops a connection in an unknown state.
            if conn.raw is not None:
                await self.pool.release(conn.raw)

    def pool_stats(self) -> dict[str, int]:
        if self.pool is None:
            return {"size": 0, "idle": 0}
        return {"size": self.pool.get_size(), "idle": self.pool.get_idle_size()}

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
