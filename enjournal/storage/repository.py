"""The one seam between FHIR logic and persistence: what a unit of work offers, as Protocols.

``Repository`` is one open transaction: FHIR reads and writes, search, and the named,
indexed lookups the access guard asks.  ``RepositoryStore`` opens them.  Three classes
implement it: ``storage.store.Transaction`` on SQLite and on PostgreSQL, and
``storage.memory.MemoryTransaction`` in pure Python (``open_store("memory://")``).
``tests/storage/test_contract.py`` runs one suite on all three, so code written against
these Protocols behaves the same on each.

Errors are the FHIR ones (``enjournal.fhir.errors``): NotFound for what never existed (or
an id that cannot be one), Gone for a deletion, PreconditionFailed for a failed If-Match,
Invalid for a bad id on write or a bad search cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, runtime_checkable

from enjournal.storage.base import SearchResult, StoredResource
from enjournal.storage.lookup_specs import DateBefore, Found, Spec


@runtime_checkable
class Repository(Protocol):
    """FHIR persistence on one unit of work: everything done through it commits together when
    its ``async with store.transaction()`` block ends, or not at all if the block raises."""

    write: bool  # whether this unit of work may write
    checks: Sequence[Any]  # async checks (tx, resource) run before every write

    # ---- reads ---------------------------------------------------------------------------

    async def read(self, type_: str, id_: str) -> StoredResource:
        """The current version; NotFound if it never existed, Gone if deleted."""
        ...

    async def read_many(self, type_: str, ids: Sequence[str]) -> list[StoredResource]:
        """The current versions of those of ``ids`` that exist and are not deleted, in the
        order of ``ids`` (each once); unknown, deleted and malformed ids are left out."""
        ...

    async def read_for_update(self, type_: str, id_: str) -> StoredResource:
        """``read``, and lock the resource until the unit of work ends, so a
        read-check-write cannot interleave with another; RuntimeError outside a write."""
        ...

    async def exists(self, type_: str, id_: str) -> bool:
        """Whether a current (not deleted) ``type_/id_`` exists."""
        ...

    async def vread(self, type_: str, id_: str, version: int) -> StoredResource:
        """One version; NotFound if there is no such version, Gone if it is a deletion."""
        ...

    async def history(
        self,
        type_: str | None = None,
        id_: str | None = None,
        *,
        since_ms: int | None = None,
        before_seq: int | None = None,
        count: int = 20,
    ) -> tuple[list[StoredResource], int | None]:
        """Versions (deletions included, ``content`` None) newest first, of one resource,
        one type or all; and the cursor (``before_seq``) of the next page, or None."""
        ...

    async def search(self, query: Any) -> SearchResult:
        """Run a parsed ``fhir.search.SearchQuery``: one page of matches, their includes,
        the total and the page cursors."""
        ...

    async def includes(
        self, query: Any, matches: list[StoredResource], keep: Any = None
    ) -> list[StoredResource]:
        """The resources ``query``'s ``_include``/``_revinclude`` reach from ``matches``;
        ``keep`` (an async filter) runs on each round before it is followed further."""
        ...

    # ---- writes --------------------------------------------------------------------------

    async def create(self, resource: dict, *, id_: str | None = None) -> StoredResource:
        """Store a new resource (stamping id and meta into ``resource``) with a new id, or
        ``id_``; an existing ``id_`` makes it an ``update``."""
        ...

    async def create_many(
        self, resources: list[dict], ids: list[str | None] | None = None
    ) -> list[StoredResource]:
        """``create`` for each resource at one instant; a FhirError for one carries its
        position as ``error.index``."""
        ...

    async def update(
        self, resource: dict, id_: str, *, if_match: int | None = None
    ) -> StoredResource:
        """Store a new version (update-as-create for a new id); PreconditionFailed when
        ``if_match`` is not the current version."""
        ...

    async def delete(self, type_: str, id_: str, *, if_match: int | None = None) -> int | None:
        """Delete, keeping the history; the deletion's version, or None if nothing to delete."""
        ...

    async def purge(self, type_: str, id_: str) -> bool:
        """Remove a resource and every version for good; False if there was none."""
        ...

    async def lock_criteria(self, type_: str, criteria: str) -> None:
        """Serialise conditional operations on the same criteria until the unit of work ends."""
        ...

    async def lock_all_criteria(self, conditions: Sequence[tuple[str, str]]) -> None:
        """``lock_criteria`` for each (type, criteria) at once, in a fixed order."""
        ...

    async def flush(self) -> None:
        """Send buffered writes to the backend (the store does this before commit)."""
        ...

    # ---- the guard's indexed lookups (current resources only) -----------------------------

    async def ids_by_identifier(self, type_: str, systems: Sequence[str], value: Any) -> list[str]:
        """Ids of ``type_`` resources with identifier ``value`` in one of ``systems``."""
        ...

    async def contents_by_identifier(self, type_: str, value: str) -> list[bytes]:
        """Contents of ``type_`` resources with an identifier ``value`` in any system."""
        ...

    async def referencing(
        self, type_: str, param: str, target_type: str, target_ids: Sequence[str]
    ) -> list[str]:
        """Ids of ``type_`` resources whose ``param`` points at one of the targets."""
        ...

    async def contents_referencing(
        self, type_: str, param: str, target_type: str, target_id: str
    ) -> list[bytes]:
        """Contents of ``type_`` resources whose ``param`` points at the target."""
        ...

    async def references_of(self, type_: str, id_: str, param: str) -> list[tuple[str, str]] | None:
        """The (target type, id) pairs of ``param`` of ``type_/id_``; None if not current."""
        ...

    async def content_of(self, type_: str, id_: str) -> bytes | None:
        """The current content of ``type_/id_``, or None (a miss is not an error)."""
        ...

    async def linked(
        self,
        type_: str,
        patient_param: str,
        patient_id: str,
        link_param: str,
        link_targets: Sequence[str],
    ) -> bool:
        """Is there a ``type_`` naming Patient/``patient_id`` and one of ``link_targets``?"""
        ...

    async def same_resource_links(
        self,
        type_: str,
        param: str,
        target_ids: Sequence[str],
        other_param: str,
        other_ids: Sequence[str],
    ) -> bool:
        """Is there a ``type_`` whose ``param`` names one of ``target_ids`` and whose
        ``other_param`` names one of ``other_ids``?"""
        ...

    # ---- the national services' lookups (current resources only) --------------------------

    async def ping(self) -> None:
        """Ask the backend the smallest question (the health check); raises if it cannot."""
        ...

    async def by_identifier(
        self, type_: str, systems: Sequence[str], value: str, limit: int | None = None
    ) -> list[Found]:
        """``type_`` resources with identifier ``value`` in one of ``systems``, at most
        ``limit``, in no particular order."""
        ...

    async def identifier_values(
        self, type_: str, ids: Sequence[str], systems: Sequence[str]
    ) -> dict[str, list[str]]:
        """id -> the identifier values in one of ``systems`` of the current ``type_/ids``
        (sorted, each once; ids with none are absent)."""
        ...

    async def referencing_target(
        self,
        target_type: str,
        target_id: str,
        types: Sequence[str],
        param: str | None = None,
        limit: int | None = None,
    ) -> list[Found]:
        """Resources of ``types`` referencing the target (by ``param``, or any), each once,
        oldest first, at most ``limit``."""
        ...

    async def with_id_prefix(
        self, type_: str, prefix: str = "", after: str = "", limit: int | None = None
    ) -> list[Found]:
        """``type_`` resources whose id starts with ``prefix`` and sorts after ``after``, in
        id order, at most ``limit``."""
        ...

    async def latest_change(self, type_: str) -> int | None:
        """A number that changes whenever a ``type_`` resource is written (None: never)."""
        ...

    async def date_before(
        self, type_: str, conditions: Sequence[DateBefore], after: int = 0, limit: int = 500
    ) -> list[tuple[int, Found]]:
        """``(position, found)`` of ``type_`` resources with a date meeting any condition,
        past position ``after``, in position order, at most ``limit``."""
        ...

    async def combined(self, specs: Sequence[Spec]) -> list[list[Found]]:
        """The answers to several ``lookup_specs`` at once, one list per spec."""
        ...


@runtime_checkable
class RepositoryStore(Protocol):
    """What holds the data and opens units of work on it."""

    checks: list[Any]  # the write checks every transaction it opens runs

    @property
    def dialect(self) -> str:
        """``"sqlite"``, ``"postgres"`` or ``"memory"``."""
        ...

    def transaction(self, *, write: bool = True) -> AbstractAsyncContextManager[Repository]:
        """A unit of work: commits when the block ends, rolls back if it raises."""
        ...

    async def migrate(self) -> list[int]:
        """Bring the schema up to date; the versions applied."""
        ...

    async def close(self) -> None:
        """Release connections (or memory)."""
        ...


def protocol_methods(protocol: type = Repository) -> list[str]:
    """The public methods a Protocol asks for (the contract suite checks each backend)."""
    return sorted(
        name
        for name, value in vars(protocol).items()
        if callable(value) and not name.startswith("_")
    )
