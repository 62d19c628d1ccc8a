"""The storage interface: what the FHIR server needs from a database, and nothing more.

Backends (``sqlite``, ``postgres``) implement ``Connection``: a thin, dialect-neutral wrapper
over a driver connection: and the shared logic in ``enjournal.storage.store`` does the rest.
SQL is written once with ``?`` placeholders; the PostgreSQL adapter rewrites them to ``$n``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


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
