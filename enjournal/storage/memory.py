"""The store in pure Python: a ``storage.repository.Repository`` without a database.

``open_store("memory://")`` returns a ``MemoryStore``.  It keeps what the SQL backends keep
(current rows, every version, the indexer's rows per resource) in dicts, with the same
semantics as ``storage.store.Transaction``: ids and their checks, versions and meta stamping
(``Transaction._stamp``), the store's write checks, If-Match, update-as-create, delete that
keeps history, purge, history paged by sequence number, search (``storage.memory_search``)
and the guard's lookups.  ``tests/storage/test_contract.py`` holds it to the same suite as
SQLite and PostgreSQL.

Transactions: a write transaction works on a copy of the state (``_State.fork``: shallow
copies of the dicts, and of an index set only when it changes) and installs it on commit,
so a failed block leaves nothing, and readers see the last committed state (a snapshot).
Write transactions run one at a time (an ``asyncio.Lock``), like SQLite's single writer;
writing in a read transaction is a RuntimeError.  Nothing is persisted: data lives as long
as the store object.  Indexes kept for lookups and search: rids per type, per token
(type, param, code) and per reference target id; everything else scans a type's resources.

The audit log (``storage.audit_log`` asks ``MemoryTransaction.audit_log``) is part of the state:
its rows and head fork and commit with the resources, so a failed write leaves no events.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

from enjournal.fhir.errors import Gone, NotFound, NotSupported, PreconditionFailed
from enjournal.storage.base import SearchResult, StoredResource
from enjournal.storage.lookup_specs import (
    Current,
    DateBefore,
    Found,
    Referencing,
    ReferencingIdentified,
    Spec,
)
from enjournal.storage.store import (
    MAX_SEQUENCE,
    MAX_VERSION,
    Store,
    Transaction,
    _blame,
    _known_id,
    _new_id,
    is_fhir_id,
    new_id,
)

_EMPTY: frozenset[int] = frozenset()


class Row(NamedTuple):
    """A resource's current row (``resources`` in SQL)."""

    rid: int
    type: str
    id: str
    version: int
    last_updated: int
    content: bytes | None  # None: deleted

    def stored(self, method: str = "PUT") -> StoredResource:
        return StoredResource(
            self.rid, self.type, self.id, self.version, self.last_updated, self.content, method
        )


class Version(NamedTuple):
    """One entry of the history (``resource_versions``)."""

    seq: int
    row: Row
    method: str


class _Sets:
    """key -> set of rids.  A fork shares the sets until it changes one (copy on write)."""

    def __init__(self, sets: dict | None = None):
        self.sets: dict[Any, set[int]] = dict(sets or {})
        self._owned: set = set()

    def fork(self) -> _Sets:
        return _Sets(self.sets)

    def get(self, key: Any) -> Iterable[int]:
        return self.sets.get(key, _EMPTY)

    def add(self, key: Any, rid: int) -> None:
        self._own(key).add(rid)

    def discard(self, key: Any, rid: int) -> None:
        found = self._own(key)
        found.discard(rid)
        if not found:
            del self.sets[key]
            self._owned.discard(key)

    def _own(self, key: Any) -> set[int]:
        if key not in self._owned:
            self.sets[key] = set(self.sets.get(key, ()))
            self._owned.add(key)
        return self.sets[key]


class AuditLog:
    """The audit log's rows in seq order and its head (``audit_log`` and ``audit_head``).

    Rows are tuples in the SQL table's column order: (seq, recorded, patient_id, actor,
    action, outcome, purpose, emergency, event, prev_hash, hash).  They are append-only, so
    every state shares one list (and one position list per patient) and knows how many rows
    are its own (``length``); a fork appends after its length, first cutting off what a
    failed transaction left there, which no committed state counts.  The functions of
    ``storage.audit_log`` call these methods on a memory transaction."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.of_patient: dict[str, list[int]] = {}  # patient id -> positions in rows
        self.length = 0
        self.head: tuple[int, bytes] = (0, bytes(32))

    def fork(self) -> AuditLog:
        copy = AuditLog.__new__(AuditLog)
        copy.rows, copy.of_patient = self.rows, self.of_patient
        copy.length, copy.head = self.length, self.head
        return copy

    def insert_events(self, rows: list[tuple]) -> None:
        """Append chained rows; a seq not after the last one fails (the SQL primary key)."""
        self._cut_uncommitted()
        last = self.rows[-1][0] if self.rows else 0
        for row in rows:
            if row[0] <= last:
                raise ValueError(f"audit_log: seq {row[0]} is already taken")
            last = row[0]
            if row[2] is not None:
                self.of_patient.setdefault(row[2], []).append(len(self.rows))
            self.rows.append(tuple(row))
        self.length = len(self.rows)

    def move_head(self, seq: int, digest: bytes) -> None:
        if seq < self.head[0]:
            raise ValueError("audit_head only moves forward")
        self.head = (seq, bytes(digest))

    def rows_after(self, seq: int, limit: int) -> list[tuple]:
        start = bisect.bisect_right(self.rows, seq, hi=self.length, key=_seq)
        return self.rows[start : min(start + limit, self.length)]

    def seq_linked_to(self, prev_hash: bytes, other_than: int) -> int | None:
        rows = (self.rows[n] for n in range(self.length))
        return next((r[0] for r in rows if r[9] == prev_hash and r[0] != other_than), None)

    def patient_rows(
        self,
        patient_id: str,
        count: int,
        before_seq: int | None,
        since: int | None = None,
        until: int | None = None,
        skip_actors: frozenset[str] = frozenset(),
        containing: bytes | None = None,
    ) -> list[tuple]:
        """Newest first: (seq, recorded, action, outcome, purpose, emergency, event, actor),
        filtered as ``storage.audit_log.patient_rows`` says."""
        page: list[tuple] = []
        for n in reversed(self.of_patient.get(patient_id, ())):
            row = self.rows[n]
            if n >= self.length or (before_seq is not None and row[0] >= before_seq):
                continue
            if len(page) == count:
                break
            if _audit_row_matches(row, since, until, skip_actors, containing):
                page.append((row[0], row[1], *row[4:9], row[3]))
        return page

    def _cut_uncommitted(self) -> None:
        """Drop rows past this state's length: a failed transaction's, never committed."""
        while len(self.rows) > self.length:
            patient_id = self.rows.pop()[2]
            if patient_id is not None:
                self.of_patient[patient_id].pop()


def _seq(row: tuple) -> int:
    return row[0]


def _audit_row_matches(row: tuple, since, until, skip_actors, containing) -> bool:
    """The filters of ``AuditLog.patient_rows`` (the SQL WHERE clause of the databases)."""
    if (since is not None and row[1] < since) or (until is not None and row[1] > until):
        return False
    return row[3] not in skip_actors and (not containing or containing in row[8])


class _State:
    """Everything the store holds; a write transaction changes a fork of it."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}  # (type, id) -> current row
        self.keys: dict[int, tuple[str, str]] = {}  # rid -> (type, id)
        self.versions: dict[int, Version] = {}  # seq -> version, in seq order
        self.versions_of: dict[tuple[str, str], tuple[int, ...]] = {}  # key -> seqs
        self.index: dict[int, dict[str, tuple]] = {}  # rid -> kind -> rows (current only)
        self.by_type = _Sets()  # type -> rids of current resources
        self.by_code = _Sets()  # (type, param, code) -> rids with such a token row
        self.by_target = _Sets()  # reference target id -> rids pointing at it
        self.audit = AuditLog()
        self.next_rid = 1
        self.next_seq = 1

    def fork(self) -> _State:
        copy = _State.__new__(_State)
        for name in ("rows", "keys", "versions", "versions_of", "index"):
            setattr(copy, name, dict(getattr(self, name)))
        for name in ("by_type", "by_code", "by_target"):
            setattr(copy, name, getattr(self, name).fork())
        copy.audit = self.audit.fork()
        copy.next_rid, copy.next_seq = self.next_rid, self.next_seq
        return copy

    def current(self, rid: int) -> Row | None:
        """The current, not deleted row of ``rid``."""
        key = self.keys.get(rid)
        row = self.rows.get(key) if key else None
        return row if row is not None and row.content is not None else None

    def set_index(self, row: Row, rows: dict[str, tuple]) -> None:
        """Replace the index rows of ``row`` (empty ``rows``: remove them)."""
        self._drop_index(row)
        if row.content is None:
            return  # deleted: no index rows, like the SQL tables
        self.index[row.rid] = rows
        self.by_type.add(row.type, row.rid)
        for param, _, code, _ in rows.get("token", ()):
            if code is not None:
                self.by_code.add((row.type, param, code), row.rid)
        for _, _, target_id, _ in rows.get("reference", ()):
            if target_id is not None:
                self.by_target.add(target_id, row.rid)

    def _drop_index(self, row: Row) -> None:
        old = self.index.pop(row.rid, None)
        self.by_type.discard(row.type, row.rid)
        if not old:
            return
        for param, _, code, _ in old.get("token", ()):
            if code is not None:
                self.by_code.discard((row.type, param, code), row.rid)
        for _, _, target_id, _ in old.get("reference", ()):
            if target_id is not None:
                self.by_target.discard(target_id, row.rid)

    def index_rows(self, rid: int, kind: str) -> tuple:
        return self.index.get(rid, {}).get(kind, ())


def _kinds(indexed: dict[str, list[tuple]]) -> dict[str, tuple]:
    """The indexer's rows keyed by kind (``"token"``; older indexers say ``"idx_token"``)."""
    return {kind.removeprefix("idx_"): tuple(found) for kind, found in indexed.items() if found}


class _ServiceLookups:
    """The lookups the national services ask (``Lookups.by_identifier`` ... ``combined``),
    answered from a memory transaction's state."""

    state: _State
    _tokens: Any
    _refs: Any

    async def ping(self) -> None:
        """Nothing to ask: the data is in this process."""

    async def by_identifier(
        self, type_: str, systems: Sequence[str], value: str, limit: int | None = None
    ) -> list[Found]:
        if not value or not systems:
            return []
        hits = [
            row for row, token in self._tokens(type_, "identifier", value) if token[1] in systems
        ]
        return [_found(row) for row in hits[:limit]]

    async def identifier_values(
        self, type_: str, ids: Sequence[str], systems: Sequence[str]
    ) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for id_ in dict.fromkeys(ids):
            row = self.state.rows.get((type_, id_))
            if row is None or row.content is None:
                continue
            tokens = self.state.index_rows(row.rid, "token")
            values = {t[2] for t in tokens if t[0] == "identifier" and t[1] in systems}
            if values - {None}:
                found[id_] = sorted(values - {None})
        return found

    async def referencing_target(
        self,
        target_type: str,
        target_id: str,
        types: Sequence[str],
        param: str | None = None,
        limit: int | None = None,
    ) -> list[Found]:
        found: dict[int, Row] = {}
        for row, ref in self._refs(target_id):
            if ref[1] == target_type and row.type in types and param in (None, ref[0]):
                found[row.rid] = row
        return [_found(found[rid]) for rid in sorted(found)][:limit]

    async def with_id_prefix(
        self, type_: str, prefix: str = "", after: str = "", limit: int | None = None
    ) -> list[Found]:
        rows = (self.state.current(rid) for rid in self.state.by_type.get(type_))
        hits = [r for r in rows if r and r.id > after and r.id.startswith(prefix)]
        return [_found(r) for r in sorted(hits, key=lambda r: r.id)][:limit]

    async def latest_change(self, type_: str) -> int | None:
        versions = self.state.versions
        return next((s for s in reversed(versions) if versions[s].row.type == type_), None)

    async def date_before(
        self, type_: str, conditions: Sequence[DateBefore], after: int = 0, limit: int = 500
    ) -> list[tuple[int, Found]]:
        rids = sorted(r for r in self.state.by_type.get(type_) if r > after)
        hits = [rid for rid in rids if self._dated_before(rid, conditions)][:limit]
        return [(rid, _found(self.state.current(rid))) for rid in hits]  # type: ignore[arg-type]

    def _dated_before(self, rid: int, conditions: Sequence[DateBefore]) -> bool:
        return any(
            r[0] == c.param and r[1] < c.before and (not c.ends or r[2] < c.before)
            for r in self.state.index_rows(rid, "date")
            for c in conditions
        )

    async def combined(self, specs: Sequence[Spec]) -> list[list[Found]]:
        return [self._answer(spec) for spec in specs]

    def _answer(self, spec: Spec) -> list[Found]:
        if isinstance(spec, Current):
            row = self.state.rows.get((spec.type, spec.id))
            return [] if row is None or row.content is None else [_found(row)]
        if isinstance(spec, Referencing):
            return self._referencing_found(spec.type, spec.param, spec.target_type, spec.target_id)
        if isinstance(spec, ReferencingIdentified):
            if not spec.value or not spec.systems:
                return []
            hits = self._tokens(spec.target_type, "identifier", spec.value)
            target = next((row for row, t in hits if t[1] in spec.systems), None)
            if target is None:
                return []
            refs = self._referencing_found(spec.type, spec.param, target.type, target.id)
            return [_found(target), *refs]
        raise TypeError(f"not a lookup spec: {spec!r}")

    def _referencing_found(
        self, type_: str, param: str, target_type: str, target_id: str
    ) -> list[Found]:
        """One per matching reference row, as the SQL join gives them."""
        return [
            _found(row)
            for row, ref in self._refs(target_id)
            if row.type == type_ and ref[0] == param and ref[1] == target_type
        ]


def _found(row: Row) -> Found:
    return Found(row.type, row.id, row.last_updated, row.content)  # type: ignore[arg-type]


class _NoSql:
    """The ``_conn`` of a memory transaction: a method inherited from ``Transaction`` that this
    store does not implement (one that runs SQL) fails with a clear error."""

    dialect = "memory"

    def __getattr__(self, name: str) -> Any:
        raise NotSupported(
            "the memory store runs no SQL: this operation is not implemented for memory://"
        )


class MemoryTransaction(_ServiceLookups, Transaction):
    """One unit of work on a ``MemoryStore``: ``Transaction``'s operations over ``_State``.

    It inherits ``Transaction`` only for the helpers both share (the clock, meta stamping);
    every public method is overridden here, none runs SQL."""

    def __init__(self, store: MemoryStore, state: _State, write: bool):
        super().__init__(_NoSql(), store.indexer, write, store.checks, store.search_parameters)
        self.store = store
        self.state = state

    def audit_log(self, write: bool = False) -> AuditLog:
        """The audit log as this transaction sees it (``storage.audit_log`` asks it here);
        ``write``: to append, only in a write transaction."""
        if write:
            self._writable()
        return self.state.audit

    async def flush(self) -> None:
        """Nothing is buffered: the state is changed as each write runs."""

    # ---- reads ---------------------------------------------------------------------------

    async def read(self, type_: str, id_: str) -> StoredResource:
        _known_id(type_, id_)
        row = self.state.rows.get((type_, id_))
        if row is None:
            raise NotFound(f"{type_}/{id_} is not known")
        if row.content is None:
            raise Gone(f"{type_}/{id_} was deleted")
        return row.stored()

    async def read_for_update(self, type_: str, id_: str) -> StoredResource:
        """``read``; the store's one writer at a time already serialises read-check-write."""
        if not self.write:
            raise RuntimeError("read_for_update needs a write transaction")
        return await self.read(type_, id_)

    async def read_many(self, type_: str, ids: Sequence[str]) -> list[StoredResource]:
        rows = (self.state.rows.get((type_, i)) for i in dict.fromkeys(ids))
        return [row.stored() for row in rows if row is not None and row.content is not None]

    async def exists(self, type_: str, id_: str) -> bool:
        row = self.state.rows.get((type_, id_))
        return row is not None and row.content is not None

    async def vread(self, type_: str, id_: str, version: int) -> StoredResource:
        _known_id(type_, id_)
        seqs = self.state.versions_of.get((type_, id_), ())
        if not 1 <= version <= min(MAX_VERSION, len(seqs)):
            raise NotFound(f"{type_}/{id_} has no version {str(version)[:20]}")
        found = self.state.versions[seqs[version - 1]]
        if found.row.content is None:
            raise Gone(f"version {version} of {type_}/{id_} is a deletion")
        return found.row.stored(found.method)

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
        before = MAX_SEQUENCE if before_seq is None else min(before_seq, MAX_SEQUENCE)
        found = [v for v in self._versions(type_, id_, before) if _since(v, since_ms)]
        page = found[: count + 1]
        cursor = page[count - 1].seq if len(page) > count else None
        return [v.row.stored(v.method) for v in page[:count]], cursor

    def _versions(self, type_: str | None, id_: str | None, before: int) -> Iterable[Version]:
        """Versions newest first with a sequence number below ``before``."""
        if type_ is not None and id_ is not None:
            seqs = reversed(self.state.versions_of.get((type_, id_), ()))
            return (self.state.versions[s] for s in seqs if s < before)
        every = (self.state.versions[s] for s in reversed(self.state.versions) if s < before)
        return (v for v in every if _names_version(v, type_, id_))

    async def search(self, query: Any) -> SearchResult:
        from enjournal.storage.memory_search import run_search

        return await run_search(self, query)

    async def includes(self, query: Any, matches: list, keep=None) -> list[StoredResource]:
        from enjournal.storage.memory_search import includes

        if not query.includes or not matches:
            return []
        return await includes(self, query, matches, keep)

    # ---- writes --------------------------------------------------------------------------

    async def create(self, resource: dict, *, id_: str | None = None) -> StoredResource:
        """Store a new resource with a server-assigned id (or ``id_``, for update-as-create)."""
        self._writable()
        for check in self.checks:
            await check(self, resource)
        id_ = _new_id(id_) if id_ else new_id()
        if (resource["resourceType"], id_) in self.state.rows:
            return await self.update(resource, id_)
        return self._insert(resource, id_, self._now())

    async def create_many(
        self, resources: list[dict], ids: list[str | None] | None = None
    ) -> list[StoredResource]:
        """``create`` for each resource, all at one instant (see ``Transaction.create_many``)."""
        self._writable()
        ids = [None] * len(resources) if ids is None else ids
        if len(ids) != len(resources):
            raise ValueError("create_many needs one id (or None) per resource")
        for n, resource in enumerate(resources):
            with _blame(n):
                for check in self.checks:
                    await check(self, resource)
        keys = []
        for n, (resource, given) in enumerate(zip(resources, ids, strict=True)):
            with _blame(n):
                keys.append((resource["resourceType"], _new_id(given) if given else new_id()))
        return await self._create_keys(resources, keys, self._now())

    async def _create_keys(
        self, resources: list[dict], keys: list[tuple[str, str]], now: int
    ) -> list[StoredResource]:
        """Insert each new key; an existing one (or a repeat) becomes an update, afterwards."""
        results: list[StoredResource | None] = []
        for resource, key in zip(resources, keys, strict=True):
            fresh = key not in self.state.rows
            results.append(self._insert(resource, key[1], now) if fresh else None)
        for n, stored in enumerate(results):
            if stored is None:
                with _blame(n):
                    results[n] = await self.update(resources[n], keys[n][1])
        return results  # type: ignore[return-value]

    async def update(
        self, resource: dict, id_: str, *, if_match: int | None = None
    ) -> StoredResource:
        """Store a new version; creates the resource when the id is new (update-as-create)."""
        self._writable()
        type_ = resource["resourceType"]
        _new_id(id_)
        current = self.state.rows.get((type_, id_))
        if current is None:
            if if_match is not None:
                raise PreconditionFailed(f"{type_}/{id_} does not exist (If-Match given)")
            return await self.create(resource, id_=id_)
        for check in self.checks:
            await check(self, resource)
        _check_version(current, if_match)
        now = max(self._now(), current.last_updated + 1)
        content = self._stamp(resource, id_, current.version + 1, now)
        row = current._replace(version=current.version + 1, last_updated=now, content=content)
        self._put(row, "PUT")
        self.state.set_index(row, _kinds(self.indexer(resource)))
        return row.stored("PUT")

    async def delete(self, type_: str, id_: str, *, if_match: int | None = None) -> int | None:
        """Delete; returns the deletion's version, or None if there was nothing to delete."""
        self._writable()
        current = self.state.rows.get((type_, id_)) if is_fhir_id(id_) else None
        if current is None or current.content is None:
            return None
        _check_version(current, if_match)
        now = max(self._now(), current.last_updated + 1)
        row = current._replace(version=current.version + 1, last_updated=now, content=None)
        self._put(row, "DELETE")
        self.state.set_index(row, {})
        return row.version

    async def purge(self, type_: str, id_: str) -> bool:
        """Remove a resource for good: its row, every version and its index rows."""
        self._writable()
        key = (type_, id_)
        row = self.state.rows.get(key) if is_fhir_id(id_) else None
        if row is None:
            return False
        self.state.set_index(row, {})
        del self.state.rows[key], self.state.keys[row.rid]
        for seq in self.state.versions_of.pop(key, ()):
            del self.state.versions[seq]
        return True

    async def lock_criteria(self, type_: str, criteria: str) -> None:
        """Nothing to do: write transactions already run one at a time."""

    async def lock_all_criteria(self, conditions) -> None:
        """Nothing to do: write transactions already run one at a time."""

    # ---- internals -----------------------------------------------------------------------

    def _writable(self) -> None:
        if not self.write:
            raise RuntimeError("the memory store cannot write in a read transaction")

    def _insert(self, resource: dict, id_: str, now: int) -> StoredResource:
        type_ = resource["resourceType"]
        content = self._stamp(resource, id_, 1, now)
        row = Row(self.state.next_rid, type_, id_, 1, now, content)
        self.state.next_rid += 1
        self.state.keys[row.rid] = (type_, id_)
        self._put(row, "POST")
        self.state.set_index(row, _kinds(self.indexer(resource)))
        return row.stored("POST")

    def _put(self, row: Row, method: str) -> None:
        """Make ``row`` current and append it to the history."""
        key = (row.type, row.id)
        seq = self.state.next_seq
        self.state.next_seq += 1
        self.state.rows[key] = row
        self.state.versions[seq] = Version(seq, row, method)
        self.state.versions_of[key] = (*self.state.versions_of.get(key, ()), seq)

    # ---- the guard's lookups -------------------------------------------------------------

    def _tokens(self, type_: str, param: str, code: Any) -> Iterable[tuple[Row, tuple]]:
        """(row, token index row) of current ``type_`` resources with that param and code."""
        for rid in sorted(self.state.by_code.get((type_, param, code))):
            row = self.state.current(rid)
            for token in self.state.index_rows(rid, "token"):
                if row is not None and token[0] == param and token[2] == code:
                    yield row, token

    def _refs(self, target_id: str) -> Iterable[tuple[Row, tuple]]:
        """(row, reference index row) of current resources with a reference to ``target_id``."""
        for rid in sorted(self.state.by_target.get(target_id)):
            row = self.state.current(rid)
            for ref in self.state.index_rows(rid, "reference"):
                if row is not None and ref[2] == target_id:
                    yield row, ref

    async def ids_by_identifier(self, type_: str, systems: Sequence[str], value) -> list[str]:
        if not value or not systems:
            return []
        hits = self._tokens(type_, "identifier", value)
        return [row.id for row, token in hits if token[1] in systems]

    async def contents_by_identifier(self, type_: str, value: str) -> list[bytes]:
        return [row.content for row, _ in self._tokens(type_, "identifier", value)]  # type: ignore[misc]

    def _referencing(
        self, type_: str, param: str, target_type: str, target_ids: Iterable[str]
    ) -> list[Row]:
        found: dict[int, Row] = {}
        for target_id in target_ids:
            for row, ref in self._refs(target_id):
                if row.type == type_ and ref[0] == param and ref[1] == target_type:
                    found[row.rid] = row
        return [found[rid] for rid in sorted(found)]

    async def referencing(
        self, type_: str, param: str, target_type: str, target_ids: Sequence[str]
    ) -> list[str]:
        return [row.id for row in self._referencing(type_, param, target_type, target_ids)]

    async def contents_referencing(
        self, type_: str, param: str, target_type: str, target_id: str
    ) -> list[bytes]:
        rows = self._referencing(type_, param, target_type, [target_id])
        return [row.content for row in rows]  # type: ignore[misc]

    async def references_of(self, type_: str, id_: str, param: str) -> list[tuple[str, str]] | None:
        row = self.state.rows.get((type_, id_))
        if row is None or row.content is None:
            return None
        refs = self.state.index_rows(row.rid, "reference")
        return [(ref[1], ref[2]) for ref in refs if ref[0] == param]

    async def content_of(self, type_: str, id_: str) -> bytes | None:
        row = self.state.rows.get((type_, id_))
        return None if row is None else row.content

    async def linked(
        self,
        type_: str,
        patient_param: str,
        patient_id: str,
        link_param: str,
        link_targets: Sequence[str],
    ) -> bool:
        patients = self._referencing(type_, patient_param, "Patient", [patient_id])
        return any(self._names(row.rid, link_param, link_targets) for row in patients)

    async def same_resource_links(
        self,
        type_: str,
        param: str,
        target_ids: Sequence[str],
        other_param: str,
        other_ids: Sequence[str],
    ) -> bool:
        for target_id in target_ids:
            for row, ref in self._refs(target_id):
                hit = row.type == type_ and ref[0] == param
                if hit and self._names(row.rid, other_param, other_ids):
                    return True
        return False

    def _names(self, rid: int, param: str, target_ids: Sequence[str]) -> bool:
        """Whether ``rid``'s reference ``param`` names one of ``target_ids`` (any type)."""
        refs = self.state.index_rows(rid, "reference")
        return any(ref[0] == param and ref[2] in target_ids for ref in refs)


def _check_version(current: Row, if_match: int | None) -> None:
    if if_match is not None and if_match != current.version:
        name = f"{current.type}/{current.id}"
        raise PreconditionFailed(f"{name} is at version {current.version}, not {if_match}")


def _names_version(version: Version, type_: str | None, id_: str | None) -> bool:
    return (type_ is None or version.row.type == type_) and (id_ is None or version.row.id == id_)


def _since(version: Version, since_ms: int | None) -> bool:
    return since_ms is None or version.row.last_updated >= since_ms


class MemoryStore(Store):
    """A store whose data lives in this object (``open_store("memory://")``)."""

    def __init__(self, indexer: Any = None, search_parameters: Any = None):
        super().__init__(None, indexer, search_parameters)
        self.backend = self  # what the app's pool statistics ask
        self._state = _State()
        self._write_lock = asyncio.Lock()
        # Sorted searches' ordered rids, by page id: (created ms, rids).  A cache outside
        # the transactions, like ``search_pages`` (which a read transaction may also write).
        self.pages: dict[str, tuple[int, list[int]]] = {}

    @property
    def dialect(self) -> str:
        return "memory"

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[MemoryTransaction]:
        if not write:
            yield MemoryTransaction(self, self._state, False)
            return
        async with self._write_lock:
            tx = MemoryTransaction(self, self._state.fork(), True)
            yield tx
            self._state = tx.state  # commit: only reached when the block did not raise

    async def migrate(self) -> list[int]:
        return []

    async def close(self) -> None:
        self._state = _State()
        self.pages.clear()

    def pool_stats(self) -> dict[str, int]:
        return {"size": 1, "idle": 1}
