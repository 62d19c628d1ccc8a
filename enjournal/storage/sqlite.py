"""The embedded SQLite backend: one writer, several readers, WAL journal.

SQLite allows one writer at a time, so write transactions take an asyncio lock and run on
the single writer connection (``BEGIN IMMEDIATE``); reads run on a small pool of reader
connections that see the last committed state.  Calls are synchronous: SQLite answers an
indexed query in microseconds, which is cheaper than handing each call to a thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from enjournal.fhir.errors import Busy, Conflict
from enjournal.storage.schema import MIGRATIONS


class SqliteConnection:
    dialect = "sqlite"

    def __init__(self, raw: sqlite3.Connection):
        self.raw = raw

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        with _translate_errors():
            return self.raw.execute(sql, args).fetchall()

    async def fetchrow(self, sql: str, *args: Any) -> tuple | None:
        with _translate_errors():
            return self.raw.execute(sql, args).fetchone()

    async def execute(self, sql: str, *args: Any) -> None:
        with _translate_errors():
            self.raw.execute(sql, args)

    async def executemany(self, sql: str, rows: list[tuple]) -> None:
        with _translate_errors():
            self.raw.executemany(sql, rows)


class _translate_errors:
    """Map sqlite3 errors to FHIR errors at this one boundary."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if isinstance(error, sqlite3.IntegrityError):
            raise Conflict(f"conflicting write: {error}") from error
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            raise Busy("the database is busy; try again") from error
        return False


class SqliteBackend:
    dialect = "sqlite"

    def __init__(self, path: str, readers: int = 4):
        if path in ("", ":memory:"):
            # A shared-cache in-memory database, so readers and the writer see one database.
            self._target = f"file:enjournal-{uuid.uuid4().hex}?mode=memory&cache=shared"
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._target = f"file:{path}"
        self._writer = self._connect()
        self._write_lock = asyncio.Lock()
        self._readers = [self._connect() for _ in range(readers)]
        self._free: asyncio.Queue[sqlite3.Connection] = asyncio.Queue()
        for reader in self._readers:
            self._free.put_nowait(reader)

    def _connect(self) -> sqlite3.Connection:
        raw = sqlite3.connect(
            self._target, uri=True, isolation_level=None, check_same_thread=False, timeout=30
        )
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("PRAGMA foreign_keys=ON")
        raw.execute("PRAGMA busy_timeout=30000")
        return raw

    async def migrate(self) -> list[int]:
        async with self.transaction(write=True) as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied INTEGER NOT NULL)"
            )
            done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            applied = []
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                for statement in _statements(migration.sqlite):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, strftime('%s','now'))",
                    migration.version,
                    migration.name,
                )
                applied.append(migration.version)
            return applied

    @asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[SqliteConnection]:
        if write:
            async with self._write_lock:
                self._writer.execute("BEGIN IMMEDIATE")
                try:
                    yield SqliteConnection(self._writer)
                except BaseException:
                    self._writer.execute("ROLLBACK")
                    raise
                self._writer.execute("COMMIT")
        else:
            raw = await self._free.get()
            try:
                raw.execute("BEGIN")
                try:
                    yield SqliteConnection(raw)
                finally:
                    raw.execute("COMMIT")
            finally:
                self._free.put_nowait(raw)

    def pool_stats(self) -> dict[str, int]:
        return {"size": len(self._readers) + 1, "idle": self._free.qsize()}

    async def close(self) -> None:
        for raw in [*self._readers, self._writer]:
            raw.close()


def _statements(script: str) -> list[str]:
    """Split a migration script into statements; a trigger body (``BEGIN ...; END``) stays
    whole, because a piece is only cut off once ``sqlite3.complete_statement`` accepts it."""
    statements, current = [], ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n\t;"):
                statements.append(current.strip().removesuffix(";").strip())
            current = ""
    if current.strip(" \n\t;"):
        statements.append(current.strip().removesuffix(";").strip())
    return statements
