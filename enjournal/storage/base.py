"""The storage interface: what the FHIR server needs from a database, and nothing more.

Backends (``sqlite``, ``postgres``) implement ``Connection``: a thin, dialect-neutral wrapper
over a driver connection: and the shared logic in ``enjournal.storage.store`` does the rest.
SQL is written once with ``?`` placeholders; the PostgreSQL adapter rewrites them to ``$n``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from enjournal.fhir.errors import Busy, Invalid, Issue


class StoreOpenError(ValueError):
    """The database a URL names cannot be opened: a bad URL, a folder, a missing parent
    folder, an unreachable server.  The CLI prints it as one line (exit code 2)."""


class Connection(Protocol):
    """One database connection, inside a transaction when used by the store."""

    dialect: str  # "sqlite" or "postgres"

    async def fetch(self, sql: str, *args: Any) -> list[tuple]: ...

    async def fetchrow(self, sql: str, *args: Any) -> tuple | None: ...

    async def execute(self, sql: str, *args: Any) -> None: ...

    async def executemany(self, sql: str, rows: list[tuple]) -> None: ...


@dataclass(slots=True)
class StoredResource:
    """One version of a resource as stored: ``content`` is its JSON (bytes), meta included."""

    rid: int
    type: str
    id: str
    version: int
    last_updated: int  # epoch milliseconds
    content: bytes | None  # None for a deletion
    method: str = "PUT"  # for history entries: POST | PUT | PATCH | DELETE

    @property
    def deleted(self) -> bool:
        return self.content is None


@dataclass(slots=True)
class SearchResult:
    matches: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None  # opaque; pass back to get the next page
    previous_cursor: str | None = None
    # The cursor of a page that starts right after ``matches[i]`` (so a caller that uses only
    # part of a page can go on from there), or None where the paging mode cannot say.
    cursor_after: Any = None


def unavailable(message: str, retry_after: int) -> Busy:
    """Busy (503) with the seconds a client should wait (the Retry-After header)."""
    error = Busy(message)
    error.retry_after = retry_after  # type: ignore[attr-defined]
    return error


def too_large() -> Invalid:
    """A statement past a database's limits (SQLite's 32,766 variables or expression depth
    1,000, PostgreSQL's 32,767 arguments, class 54): 400, too-costly.  A backstop: the
    search parser's limits (docs/architecture.md, Limits) keep searches well inside them."""
    message = "the request needs a statement larger than the database allows; make it smaller"
    return Invalid(message, issues=[Issue("error", "too-costly", message)])


def out_of_range() -> Invalid:
    """A value the database cannot take (an integer beyond 64 bits): 400.  Callers should
    check their input first; this keeps a missed check from becoming a 500."""
    return Invalid("a value in the request is out of the range the database can store")


def too_costly() -> Busy:
    """A statement ran past the store's time limit (``Settings.read_timeout_ms``,
    ``write_timeout_ms``): 503 with the issue code too-costly."""
    message = (
        "the query took longer than this server allows; narrow it (fewer parameters or "
        "values, a more selective criterion) or try again later"
    )
    error = unavailable(message, 5)
    error.issues = [Issue("error", "too-costly", message)]
    return error


def storage_unavailable(error: BaseException) -> bool:
    """Whether ``error`` is the store's "try again later": ``Busy``, which the backends
    make of a lost connection, a server going away, a locked, full or unreadable database
    or a deadlock (``storage_error`` in sqlite.py and postgres.py), or a connection refused
    before any statement.  Not a statement or data that was wrong: a worker waits and tries
    again instead of giving up on the work in hand."""
    return isinstance(error, Busy | OSError | TimeoutError)


def database_error(error: BaseException) -> str | None:
    """The database that raised ``error`` ("PostgreSQL", "SQLite"), or None for an error
    that is not a database's own (so a command can name it without importing a driver)."""
    import sqlite3

    import asyncpg

    if isinstance(error, asyncpg.PostgresError):
        return "PostgreSQL"
    if isinstance(error, sqlite3.Error):
        return "SQLite"
    return None
