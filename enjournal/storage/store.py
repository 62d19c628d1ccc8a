"""The resource store: FHIR's persistence semantics on top of a SQL backend.

``Store.transaction()`` is the unit of work.  Everything inside one ``async with`` block -
resource rows, their version history and their search index rows: commits together or not
at all (see http://hl7.org/fhir/R4/http.html for the interactions served from here).
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from enjournal.fhir import jsonio
from enjournal.fhir.datetime import format_instant
from enjournal.fhir.errors import FhirError, Gone, Invalid, NotFound, PreconditionFailed
from enjournal.storage.base import Connection, SearchResult, StoredResource, StoreOpenError
from enjournal.storage.lookups import Lookups
from enjournal.storage.schema import INDEX_COLUMNS, INDEX_TABLES

Indexer = Callable[[dict], dict[str, list[tuple]]]

# Keyed by the indexer's kinds of row (search parameter types), each into its table.
_INSERT = {
    kind: f"INSERT INTO {table} (rid, type, {', '.join(INDEX_COLUMNS[table])}) "
    f"VALUES (?, ?, {', '.join('?' for _ in INDEX_COLUMNS[table])})"
    for kind, table in INDEX_TABLES.items()
}
_INSERT["resource_versions"] = (
    "INSERT INTO resource_versions (rid, type, id, version, last_updated, method, content) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


_DELETE_INDEX_ROWS = (
    "WITH "
    + ", ".join(
        f"d{n} AS (DELETE FROM {table} WHERE rid = ANY(?::bigint[]))"
        for n, table in enumerate(INDEX_COLUMNS)
    )
    + " SELECT 1"
)


# http://hl7.org/fhir/R4/datatypes.html#id; an id outside it names nothing stored, and some
# (a NUL) PostgreSQL could not even compare.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
MAX_VERSION = 2**31 - 1  # the version columns are 32-bit INTEGERs
MAX_SEQUENCE = 2**63 - 1  # resource_versions.seq is a BIGINT on PostgreSQL


def is_fhir_id(text: str) -> bool:
    return _FHIR_ID.fullmatch(text) is not None


def _known_id(type_: str, id_: str) -> None:
    """NotFound for an id that cannot have been stored (checked before the database sees it)."""
    if not is_fhir_id(id_):
        raise NotFound(f"{type_}/{id_[:64]!r} is not known: not a FHIR id")


def _new_id(id_: str) -> str:
    """Invalid for an id a write must not store."""
    if not is_fhir_id(id_):
        raise Invalid(f"{id_[:64]!r} is not a FHIR id (1-64 of A-Z a-z 0-9 - .)")
    return id_


def _default_indexer(search_parameters: Any) -> Indexer:
    """The indexer of ``search_parameters``: rows keyed by kind (search parameter type)."""
    from enjournal.fhir.indexing import Indexer as ParameterIndexer

    return ParameterIndexer(search_parameters)


def _official_search_parameters() -> Any:
    from enjournal.fhir.definitions import official_search_parameters

    return official_search_parameters()


def new_id() -> str:
    return str(uuid.uuid4())


class Transaction(Lookups):
    """FHIR storage operations on one open database transaction (and the guard's indexed
    lookups, ``enjournal.storage.lookups``)."""

    def __init__(
        self, conn: Connection, indexer: Indexer, write: bool, checks=(), search_parameters=None
    ):
        self._conn = conn
        self.indexer = indexer
        # The store's SearchParameters (enjournal.fhir.definitions): what the indexer indexes,
        # so what a search of this transaction may ask for.
        self.search_parameters = search_parameters or _official_search_parameters()
        self.write = write
        self.checks = checks
        self._clock_ms = 0
        # Version and index rows wait here and go to the database in one executemany per
        # table: before any read in this transaction, and before commit.
        self._pending: dict[str, list[tuple]] = {}
        self._pending_deletes: list[int] = []
        # Rows this transaction locked with read_for_update and has not written since:
        # (type, id) -> (rid, version, last_updated, deleted, content).
        self._locked: dict[tuple[str, str], tuple] = {}

    async def flush(self) -> None:
        """Write the pending version and index rows (the store calls this before commit)."""
        if self._pending_deletes:
            rids, self._pending_deletes = self._pending_deletes, []
            if self._conn.dialect == "postgres":
                # One round trip for every index table (an update used to cost nine).
                await self._conn.execute(_DELETE_INDEX_ROWS, *[rids] * len(INDEX_COLUMNS))
            else:
                for table in INDEX_COLUMNS:
                    await self._conn.executemany(
                        f"DELETE FROM {table} WHERE rid = ?", [(rid,) for rid in rids]
                    )
        pending, self._pending = self._pending, {}
        for table, rows in pending.items():
            await self._conn.executemany(_INSERT[table], rows)

    # ---- reads ---------------------------------------------------------------------------

    async def read(self, type_: str, id_: str) -> StoredResource:
        """The current version; NotFound if it never existed, Gone if deleted."""
        return await self._read(type_, id_, lock=False)

    async def read_for_update(self, type_: str, id_: str) -> StoredResource:
        """Read the current version and lock it until the transaction ends, so a
        read-check-write (take a prescription, dispense a repeat) cannot interleave with
        another worker's.  SQLite's single writer already serialises write transactions.
        One statement; the following ``update`` of the same resource needs no second lock,
        and skips rewriting index rows its change leaves as they were."""
        if not self.write:
            raise RuntimeError("read_for_update needs a write transaction")
        stored = await self._read(type_, id_, lock=True)
        self._locked[(type_, id_)] = (
            stored.rid,
            stored.version,
            stored.last_updated,
            False,
            stored.content,
        )
        return stored

    async def _read(self, type_: str, id_: str, *, lock: bool) -> StoredResource:
        _known_id(type_, id_)
        for_update = " FOR UPDATE" if lock and self._conn.dialect == "postgres" else ""
        row = await self._conn.fetchrow(
            "SELECT rid, version, last_updated, deleted, content FROM resources "
            f"WHERE type = ? AND id = ?{for_update}",
            type_,
            id_,
        )
        if row is None:
            raise NotFound(f"{type_}/{id_} is not known")
        if row[3]:
            raise Gone(f"{type_}/{id_} was deleted")
        return StoredResource(row[0], type_, id_, row[1], row[2], bytes(row[4]))

    async def read_many(self, type_: str, ids: Sequence[str]) -> list[StoredResource]:
        """The current versions of those of ``ids`` that exist and are not deleted, in the
        order of ``ids`` (each once): one statement per 500 ids."""
        wanted = list(dict.fromkeys(i for i in ids if is_fhir_id(i)))
        found: dict[str, StoredResource] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = await self._conn.fetch(
                "SELECT rid, id, version, last_updated, content FROM resources "
                f"WHERE type = ? AND id IN ({', '.join('?' for _ in chunk)}) AND NOT deleted",
                type_,
                *chunk,
            )
            for r in rows:
                found[r[1]] = StoredResource(r[0], type_, r[1], r[2], r[3], bytes(r[4]))
        return [found[i] for i in wanted if i in found]

    async def exists(self, type_: str, id_: str) -> bool:
        if not is_fhir_id(id_):
            return False
        row = await self._conn.fetchrow(
            "SELECT deleted FROM resources WHERE type = ? AND id = ?", type_, id_
        )
        return row is not None and not row[0]

    async def vread(self, type_: str, id_: str, version: int) -> StoredResource:
        _known_id(type_, id_)
        if not 1 <= version <= MAX_VERSION:
            raise NotFound(f"{type_}/{id_} has no version {str(version)[:20]}")
        await self.flush()
        row = await self._conn.fetchrow(
            "SELECT rid, last_updated, method, content FROM resource_versions "
            "WHERE type = ? AND id = ? AND version = ?",
            type_,
            id_,
            version,
        )
        if row is None:
            raise NotFound(f"{type_}/{id_} has no version {version}")
        if row[3] is None:
            raise Gone(f"version {version} of {type_}/{id_} is a deletion")
        return StoredResource(row[0], type_, id_, version, row[1], bytes(row[3]), row[2])

    async def history(
        self,
        type_: str | None = None,
        id_: str | None = None,
        *,
        since_ms: int | None = None,
        before_seq: int | None = None,
        count: int = 20,
    ) -> tuple[list[StoredResource], int | None]:
        """Versions newest first, and the cursor (a sequence number) for the next page."""
        if id_ is not None and not is_fhir_id(id_):
            return [], None
        if before_seq is not None:
            before_seq = min(before_seq, MAX_SEQUENCE)  # "before" a larger one: before all
        await self.flush()
        where: list[str] = []
        args: list[object] = []
        if type_ is not None:
            where.append("type = ?")
            args.append(type_)
        if id_ is not None:
            where.append("id = ?")
            args.append(id_)
        if since_ms is not None:
            where.append("last_updated >= ?")
            args.append(since_ms)
        if before_seq is not None:
            where.append("seq < ?")
            args.append(before_seq)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._conn.fetch(
            "SELECT seq, rid, type, id, version, last_updated, method, content "
            f"FROM resource_versions {clause} ORDER BY seq DESC LIMIT ?",
            *args,
            count + 1,
        )
        entries = [
            StoredResource(
                r[1], r[2], r[3], r[4], r[5], None if r[7] is None else bytes(r[7]), r[6]
            )
            for r in rows[:count]
        ]
        cursor = rows[count - 1][0] if len(rows) > count else None
        return entries, cursor

    async def search(self, query: Any) -> SearchResult:
        from enjournal.storage.search_sql import run_search

        await self.flush()
        return await run_search(self._conn, query)

    async def includes(self, query: Any, matches: list, keep=None) -> list[StoredResource]:
        """The resources ``query``'s ``_include``/``_revinclude`` reach from ``matches``;
        ``keep`` filters each round before it is followed further."""
        from enjournal.storage.search_sql import includes

        await self.flush()
        return await includes(self._conn, query, matches, keep)

    # ---- writes --------------------------------------------------------------------------

    async def create(self, resource: dict, *, id_: str | None = None) -> StoredResource:
        """Store a new resource with a server-assigned id (or ``id_``, for update-as-create)."""
        type_ = resource["resourceType"]
        for check in self.checks:
            await check(self, resource)
        id_ = _new_id(id_) if id_ else new_id()
        now = self._now()
        content = self._stamp(resource, id_, 1, now)
        row = await self._conn.fetchrow(
            "INSERT INTO resources (type, id, version, last_updated, deleted, content) "
            "VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT (type, id) DO NOTHING RETURNING rid",
            type_,
            id_,
            now,
            False,
            content,
        )
        if row is None:
            # The id exists (perhaps deleted, or created concurrently): this is an update.
            return await self.update(resource, id_)
        stored = StoredResource(row[0], type_, id_, 1, now, content, "POST")
        await self._append_version(stored)
        await self._write_index(stored.rid, type_, resource, replace=False)
        return stored

    async def create_many(
        self, resources: list[dict], ids: list[str | None] | None = None
    ) -> list[StoredResource]:
        """``create`` for each resource, with the ``resources`` rows written by one statement
        (PostgreSQL: one round trip per call instead of one per resource).

        Each resource passes the write checks, gets its id (``ids[i]``, or a server-assigned
        one) and its meta stamped; version and index rows join the pending batches.  An id
        that already exists (or repeats within the call) becomes an ``update``, like
        ``create``.  All resources of one call share one lastUpdated: they are written at
        one instant.  Returns the stored resources in input order; a FhirError raised for
        one resource carries its position as ``error.index``."""
        if ids is None:
            ids = [None] * len(resources)
        if len(ids) != len(resources):
            raise ValueError("create_many needs one id (or None) per resource")
        for n, resource in enumerate(resources):
            with _blame(n):
                for check in self.checks:
                    await check(self, resource)
        now = self._now()
        keys: list[tuple[str, str]] = []
        contents: list[bytes] = []
        fresh: dict[tuple[str, str], int] = {}  # the first resource per key gets inserted
        for n, (resource, given) in enumerate(zip(resources, ids, strict=True)):
            with _blame(n):
                key = (resource["resourceType"], _new_id(given) if given else new_id())
            contents.append(self._stamp(resource, key[1], 1, now))
            keys.append(key)
            fresh.setdefault(key, n)
        inserted = await self._insert_resources(
            [keys[n] for n in fresh.values()], [contents[n] for n in fresh.values()], now
        )
        results: list[StoredResource | None] = [None] * len(resources)
        for n, (key, content) in enumerate(zip(keys, contents, strict=True)):
            rid = inserted.get(key) if fresh[key] == n else None
            if rid is None:
                continue
            stored = StoredResource(rid, key[0], key[1], 1, now, content, "POST")
            await self._append_version(stored)
            await self._write_index(rid, key[0], resources[n], replace=False)
            results[n] = stored
        for n, stored in enumerate(results):
            if stored is None:
                # The id exists (perhaps deleted, created concurrently, or earlier in this
                # call): this is an update, checked again like ``create``'s fallback.
                with _blame(n):
                    results[n] = await self.update(resources[n], keys[n][1])
        return results  # type: ignore[return-value]

    async def update(
        self, resource: dict, id_: str, *, if_match: int | None = None
    ) -> StoredResource:
        """Store a new version; creates the resource when the id is new (update-as-create)."""
        type_ = resource["resourceType"]
        _new_id(id_)
        locked = self._locked.pop((type_, id_), None)
        current = locked[:4] if locked else await self._lock(type_, id_)
        if current is None:
            if if_match is not None:
                raise PreconditionFailed(f"{type_}/{id_} does not exist (If-Match given)")
            return await self.create(resource, id_=id_)
        for check in self.checks:
            await check(self, resource)
        rid, version, last_updated, _deleted = current
        if if_match is not None and if_match != version:
            raise PreconditionFailed(f"{type_}/{id_} is at version {version}, not {if_match}")
        now = max(self._now(), last_updated + 1)
        content = self._stamp(resource, id_, version + 1, now)
        await self._conn.execute(
            "UPDATE resources SET version = ?, last_updated = ?, deleted = ?, content = ? "
            "WHERE rid = ?",
            version + 1,
            now,
            False,
            content,
            rid,
        )
        stored = StoredResource(rid, type_, id_, version + 1, now, content, "PUT")
        await self._append_version(stored)
        if locked is None or self.indexer(jsonio.loads(locked[4])) != self.indexer(resource):
            await self._write_index(rid, type_, resource, replace=True)
        return stored

    async def delete(self, type_: str, id_: str, *, if_match: int | None = None) -> int | None:
        """Delete; returns the deletion's version, or None if there was nothing to delete."""
        if not is_fhir_id(id_):
            return None
        current = await self._lock(type_, id_)
        if current is None or current[3]:
            return None
        rid, version, last_updated, _ = current
        if if_match is not None and if_match != version:
            raise PreconditionFailed(f"{type_}/{id_} is at version {version}, not {if_match}")
        now = max(self._now(), last_updated + 1)
        await self._conn.execute(
            "UPDATE resources SET version = ?, last_updated = ?, deleted = ?, content = NULL "
            "WHERE rid = ?",
            version + 1,
            now,
            True,
            rid,
        )
        await self._append_version(
            StoredResource(rid, type_, id_, version + 1, now, None, "DELETE")
        )
        await self._delete_index(rid)
        return version + 1

    async def purge(self, type_: str, id_: str) -> bool:
        """Remove a resource for good: its row, every version and its index rows (unlike
        ``delete``, which keeps the history).  For deletions the law requires, e.g. a
        kjernejournal 30 days after the patient reserved against having one."""
        if not is_fhir_id(id_):
            return False
        current = await self._lock(type_, id_)
        if current is None:
            return False
        if self._pending:
            await self.flush()  # pending version/index rows of this resource go first
        rid = current[0]
        await self._conn.execute(
            "DELETE FROM resource_versions WHERE type = ? AND id = ?", type_, id_
        )
        await self._conn.execute("DELETE FROM resources WHERE rid = ?", rid)
        # Its index rows go with the transaction's other index deletes, at the next flush
        # (one statement for all of them on PostgreSQL): purging many costs 3 round trips
        # each, not 12.
        self._pending_deletes.append(rid)
        return True

    async def lock_criteria(self, type_: str, criteria: str) -> None:
        """Serialise conditional operations on the same criteria across workers."""
        await self.lock_all_criteria([(type_, criteria)])

    async def lock_all_criteria(self, conditions: Sequence[tuple[str, str]]) -> None:
        """``lock_criteria`` for each (type, criteria), in one statement, taken in the order
        of their keys (so two transactions locking overlapping sets cannot deadlock)."""
        if self._conn.dialect != "postgres" or not conditions:
            return  # SQLite: the single writer lock already serialises write transactions
        keys = sorted({_lock_key(type_, criteria) for type_, criteria in conditions})
        if len(keys) == 1:
            await self._conn.execute("SELECT pg_advisory_xact_lock(?)", keys[0])
            return
        await self._conn.execute(
            "SELECT count(pg_advisory_xact_lock(k)) FROM "
            "(SELECT unnest(?::bigint[]) AS k ORDER BY 1) AS sorted_keys",
            keys,
        )

    # ---- internals -----------------------------------------------------------------------

    async def _lock(self, type_: str, id_: str) -> tuple | None:
        self._locked.pop((type_, id_), None)  # about to be written: the copy goes stale
        lock = " FOR UPDATE" if self._conn.dialect == "postgres" else ""
        return await self._conn.fetchrow(
            "SELECT rid, version, last_updated, deleted FROM resources "
            f"WHERE type = ? AND id = ?{lock}",
            type_,
            id_,
        )

    async def _insert_resources(
        self, keys: list[tuple[str, str]], contents: list[bytes], now: int
    ) -> dict[tuple[str, str], int]:
        """Insert new ``resources`` rows, skipping keys that exist; (type, id) -> rid of
        those inserted."""
        if not keys:
            return {}
        if self._conn.dialect == "postgres":
            # One statement for the whole batch: the arrays travel as parameters.
            rows = await self._conn.fetch(
                "INSERT INTO resources (type, id, version, last_updated, deleted, content) "
                "SELECT t, i, 1, ?::bigint, FALSE, c FROM unnest(?::text[], ?::text[], ?::bytea[]) "
                "AS u(t, i, c) ON CONFLICT (type, id) DO NOTHING RETURNING rid, type, id",
                now,
                [k[0] for k in keys],
                [k[1] for k in keys],
                contents,
            )
            return {(r[1], r[2]): r[0] for r in rows}
        # SQLite runs in-process: a statement per row costs no round trip.
        inserted = {}
        for key, content in zip(keys, contents, strict=True):
            row = await self._conn.fetchrow(
                "INSERT INTO resources (type, id, version, last_updated, deleted, content) "
                "VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT (type, id) DO NOTHING RETURNING rid",
                key[0],
                key[1],
                now,
                False,
                content,
            )
            if row is not None:
                inserted[key] = row[0]
        return inserted

    def _now(self) -> int:
        now = int(time.time() * 1000)
        self._clock_ms = max(now, self._clock_ms + 1)
        return self._clock_ms

    @staticmethod
    def _stamp(resource: dict, id_: str, version: int, now: int) -> bytes:
        resource["id"] = id_
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = format_instant(now)
        resource["meta"] = meta
        return jsonio.dumps(resource)

    async def _append_version(self, stored: StoredResource) -> None:
        self._pending.setdefault("resource_versions", []).append(
            (
                stored.rid,
                stored.type,
                stored.id,
                stored.version,
                stored.last_updated,
                stored.method,
                stored.content,
            )
        )

    async def _write_index(self, rid: int, type_: str, resource: dict, *, replace: bool) -> None:
        if replace:
            await self._delete_index(rid)
        for table, rows in self.indexer(resource).items():
            if rows:
                self._pending.setdefault(table, []).extend((rid, type_, *row) for row in rows)

    async def _delete_index(self, rid: int) -> None:
        # Flush first: rows for this rid may be pending from earlier in the transaction.
        await self.flush()
        self._pending_deletes.append(rid)


@contextmanager
def _blame(index: int) -> Iterator[None]:
    """Tag a FhirError with the position of the resource it is about (``create_many``)."""
    try:
        yield
    except FhirError as error:
        error.index = index  # type: ignore[attr-defined]
        raise


class Store:
    """The store a server holds: opens transactions on its backend."""

    def __init__(self, backend: Any, indexer: Indexer | None = None, search_parameters: Any = None):
        """``search_parameters``: the platform's ``SearchParameters`` (None: the official R4
        ones alone); ``indexer`` (default: theirs) turns a resource into index rows keyed by
        kind (``enjournal.fhir.indexing.ROW_COLUMNS``)."""
        self.backend = backend
        self.search_parameters = search_parameters or _official_search_parameters()
        self.indexer: Indexer = indexer or _default_indexer(self.search_parameters)
        # Async checks run on every resource before it is written, inside the write's
        # transaction (e.g. the terminology service's check of codes): each raises a
        # FhirError to refuse.  The composition root (app, importer) installs them.
        self.checks: list = []

    @property
    def dialect(self) -> str:
        return self.backend.dialect

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[Transaction]:
        async with self.backend.transaction(write=write) as conn:
            tx = Transaction(conn, self.indexer, write, self.checks, self.search_parameters)
            yield tx
            await tx.flush()

    async def migrate(self) -> list[int]:
        return await self.backend.migrate()

    async def close(self) -> None:
        await self.backend.close()

    # Conveniences for callers that need one operation in its own transaction.
    async def read(self, type_: str, id_: str) -> StoredResource:
        async with self.transaction(write=False) as tx:
            return await tx.read(type_, id_)

    async def create(self, resource: dict) -> StoredResource:
        async with self.transaction() as tx:
            return await tx.create(resource)

    async def update(self, resource: dict, id_: str, **kw: Any) -> StoredResource:
        async with self.transaction() as tx:
            return await tx.update(resource, id_, **kw)

    async def delete(self, type_: str, id_: str) -> int | None:
        async with self.transaction() as tx:
            return await tx.delete(type_, id_)

    async def search(self, query: Any) -> SearchResult:
        async with self.transaction(write=query.needs_write) as tx:
            return await tx.search(query)


async def open_store(
    url: str,
    *,
    migrate: bool = True,
    pool_size: int = 10,
    read_timeout_ms: int = 0,
    write_timeout_ms: int = 0,
    search_parameters: Any = None,
) -> Store:
    """Open the store a database URL names: ``sqlite:///PATH``, ``sqlite://`` (in memory),
    ``postgresql://...`` or ``memory://`` (pure Python, ``storage.memory``; nothing to
    migrate, no timeouts).  A statement of a read transaction may run ``read_timeout_ms``,
    one of a write transaction ``write_timeout_ms`` (0, the default: no limit, for batch
    commands; the server passes its Settings; migrations have none); then it is cancelled
    and Busy (503, too-costly) raised.  ``search_parameters``: what the store indexes and
    searches (the platform's; None: the official R4 ones).  StoreOpenError (a ValueError)
    when the database cannot be opened."""
    limits = {"read_timeout_ms": read_timeout_ms, "write_timeout_ms": write_timeout_ms}
    if url.startswith("memory:"):
        from enjournal.storage.memory import MemoryStore

        return MemoryStore(search_parameters=search_parameters)
    if url.startswith("sqlite:"):
        from enjournal.storage.sqlite import SqliteBackend

        backend: Any = SqliteBackend(sqlite_path(url), **limits)
    elif url.startswith(("postgresql:", "postgres:")):
        from enjournal.storage.postgres import PostgresBackend

        backend = PostgresBackend(url, max_size=pool_size, **limits)
        await backend.open()
    else:
        raise StoreOpenError(
            f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://"
        )
    store = Store(backend, search_parameters=search_parameters)
    if migrate:
        await store.migrate()
    return store


def sqlite_path(url: str) -> str:
    """``sqlite:///data/db.sqlite`` -> ``data/db.sqlite``; ``sqlite:////abs`` -> ``/abs``;
    ``sqlite://`` or ``sqlite:///:memory:`` -> in memory."""
    path = url.removeprefix("sqlite:").removeprefix("//").removeprefix("/")
    return path or ":memory:"


def _lock_key(type_: str, criteria: str) -> int:
    """The advisory lock key of a conditional operation's criteria."""
    digest = hashlib.blake2b(f"{type_}?{criteria}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
