"""The embedded SQLite backend: one writer, several readers, WAL journal.

SQLite allows one writer at a time, so write transactions take an asyncio lock and run on
the single writer connection (``BEGIN IMMEDIATE``); reads run on a small pool of reader
connections that see the last committed state.  Calls are synchronous: SQLite answers an
indexed query in microseconds, which is cheaper than handing each call to a thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from enjournal.fhir.errors import Busy, Conflict
from enjournal.storage.base import (
    StoreOpenError,
    out_of_range,
    too_costly,
    too_large,
    unavailable,
)
from enjournal.storage.schema import MIGRATIONS


class SqliteConnection:
    """One connection in a transaction; each statement may run ``timeout_ms`` (0: no limit).
    SQLite runs in the server's thread, so a runaway query would stall every request: a
    progress handler interrupts it ("interrupted": Busy, too-costly), like PostgreSQL's
    ``statement_timeout``.  ``executemany`` (bulk loads, one statement per row on
    PostgreSQL) is not limited."""

    dialect = "sqlite"

    def __init__(self, raw: sqlite3.Connection, timeout_ms: int = 0):
        self.raw = raw
        self._timeout = timeout_ms / 1000
        self._deadline = float("inf")
        if timeout_ms > 0:
            raw.set_progress_handler(self._too_late, _PROGRESS_STEPS)

    def _too_late(self) -> bool:
        return time.monotonic() > self._deadline

    @contextmanager
    def _statement(self) -> Iterator[None]:
        self._deadline = time.monotonic() + self._timeout
        try:
            with _translated():
                yield
        finally:
            self._deadline = float("inf")

    def release(self) -> None:
        self.raw.set_progress_handler(None, 0)

    async def fetch(self, sql: str, *args: Any) -> list[tuple]:
        with self._statement():
            return self.raw.execute(sql, args).fetchall()

    async def fetchrow(self, sql: str, *args: Any) -> tuple | None:
        with self._statement():
            return self.raw.execute(sql, args).fetchone()

    async def execute(self, sql: str, *args: Any) -> None:
        with self._statement():
            self.raw.execute(sql, args)

    async def executemany(self, sql: str, rows: list[tuple]) -> None:
        with _translated():
            self.raw.executemany(sql, rows)


_PROGRESS_STEPS = 20_000  # SQLite VM instructions between two looks at the clock


@contextmanager
def _translated() -> Iterator[None]:
    """Map sqlite3 errors to FHIR errors at this one boundary (see ``storage_error``)."""
    try:
        yield
    except OverflowError as error:  # "Python int too large to convert to SQLite INTEGER"
        raise out_of_range() from error
    except sqlite3.Error as error:
        mapped = storage_error(error)
        if mapped is None:
            raise
        raise mapped from error


def storage_error(error: sqlite3.Error):
    """The FHIR error a sqlite3 error means, or None for a bug (which stays a 500)."""
    code = getattr(error, "sqlite_errorcode", None)
    text = str(error)
    if isinstance(error, sqlite3.IntegrityError):
        return Conflict(f"conflicting write: {error}")
    if code == sqlite3.SQLITE_FULL or "database or disk is full" in text:
        return unavailable("the database is full (disk or size limit); try again later", 60)
    if code == sqlite3.SQLITE_INTERRUPT or text == "interrupted":
        return too_costly()
    if code == sqlite3.SQLITE_TOOBIG or text.startswith(_TOO_LARGE):
        return too_large()
    if isinstance(error, sqlite3.OperationalError) and "locked" in text:
        return Busy("the database is busy; try again")
    if code is not None and code & 0xFF in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        return unavailable("the database file cannot be read or written; try again later", 10)
    return None


_TOO_LARGE = ("too many SQL variables", "Expression tree is too large", "too many terms")


class SqliteBackend:
    dialect = "sqlite"

    def __init__(
        self,
        path: str,
        readers: int = 4,
        *,
        read_timeout_ms: int = 0,
        write_timeout_ms: int = 0,
    ):
        if path in ("", ":memory:"):
            # A shared-cache in-memory database, so readers and the writer see one database.
            self._target = f"file:enjournal-{uuid.uuid4().hex}?mode=memory&cache=shared"
        else:
            self._target = f"file:{database_file(path)}"
        self.read_timeout_ms, self.write_timeout_ms = read_timeout_ms, write_timeout_ms
        self._writer = self._connect()
        self._write_lock = asyncio.Lock()
        self._readers = [self._connect() for _ in range(readers)]
        self._free: asyncio.Queue[sqlite3.Connection] = asyncio.Queue()
        for reader in self._readers:
            self._free.put_nowait(reader)

    def _connect(self) -> sqlite3.Connection:
        try:
            raw = sqlite3.connect(
                self._target, uri=True, isolation_level=None, check_same_thread=False, timeout=30
            )
            raw.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as error:
            where = self._target.removeprefix("file:")
            raise StoreOpenError(f"cannot open the SQLite database {where}: {error}") from None
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("PRAGMA foreign_keys=ON")
        raw.execute("PRAGMA busy_timeout=30000")
        return raw

    async def migrate(self) -> list[int]:
        async with self.transaction(write=True, timeout_ms=0) as conn:
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
    async def transaction(
        self, *, write: bool, timeout_ms: int | None = None
    ) -> AsyncIterator[SqliteConnection]:
        if write:
            limit = self.write_timeout_ms if timeout_ms is None else timeout_ms
            async with self._write_lock, _write_transaction(self._writer, limit) as conn:
                yield conn
        else:
            raw = await self._free.get()
            conn = SqliteConnection(raw, self.read_timeout_ms)
            try:
                raw.execute("BEGIN")
                try:
                    yield conn
                finally:
                    raw.execute("COMMIT")
            finally:
                conn.release()
                self._free.put_nowait(raw)

    def pool_stats(self) -> dict[str, int]:
        return {"size": len(self._readers) + 1, "idle": self._free.qsize()}

    async def close(self) -> None:
        for raw in [*self._readers, self._writer]:
            raw.close()


@asynccontextmanager
async def _write_transaction(
    raw: sqlite3.Connection, timeout_ms: int
) -> AsyncIterator[SqliteConnection]:
    """BEGIN IMMEDIATE ... COMMIT; ROLLBACK on any exception (a cancelled request, a full
    disk at COMMIT included)."""
    conn = SqliteConnection(raw, timeout_ms)
    try:
        with _translated():
            raw.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            with _translated():
                raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:  # a failed COMMIT leaves the transaction open
                raw.execute("ROLLBACK")
            raise
    finally:
        conn.release()


def database_file(path: str) -> str:
    """Check the folder of a database file before SQLite creates anything: the path must not
    be a folder, and its parent must exist, except under the current directory, where it is
    created (``sqlite:///data/enjournal.sqlite`` works in a fresh checkout).  StoreOpenError
    (a ValueError) otherwise, so a typo never creates folders elsewhere."""
    file = Path(path)
    if file.is_dir():
        raise StoreOpenError(f"{path} is a folder; give the path of a database file in it")
    parent = file.parent
    if not parent.is_dir():
        here = Path.cwd().resolve()
        if parent.exists() or not parent.resolve().is_relative_to(here):
            raise StoreOpenError(f"the folder {parent} does not exist; create it first")
        parent.mkdir(parents=True, exist_ok=True)
    return path


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
