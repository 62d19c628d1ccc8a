"""The guarded repository: the store as one request's caller may use it.

Every read and write of health data a request makes goes through here, so the access policy
(``enjournal.security.guard``) is applied, and audited, at one boundary: the REST
interactions and the services ask for resources, and get only what the caller may have.
One rule holds on every path: what the caller may not read does not exist for them (404,
never a status, precondition or message that tells a hidden resource is there).

``trusted`` is the unguarded repository of the same transaction, for what the platform reads
for its own rules (a service's privacy settings, the guard's facts), never to answer the
caller with.  Without security (``guard`` None: core tests, benchmarks) every method is the
plain store's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from enjournal.fhir import jsonio
from enjournal.fhir.errors import FhirError, Gone, Invalid, NotFound
from enjournal.security.search_guard import guarded_search
from enjournal.storage import SearchResult, StoredResource

# With a guard, matches the caller may not read are dropped before counting; this many are
# looked at, so hidden matches cannot crowd out the visible ones.
GUARDED_LOOKAHEAD = 100
# Types whose new resources no access check reads (the guard's facts read care links,
# Consents, people and organisations; the services' hooks their own types): many of them
# can be checked first and written together.  Add a type only with that certainty.
INDEPENDENT_TYPES = frozenset({"Observation"})


def independent(resource: dict) -> bool:
    return resource.get("resourceType") in INDEPENDENT_TYPES


class GuardedRepository:
    """One transaction, seen through one request's guard (or none)."""

    def __init__(self, trusted: Any, guard: Any = None):
        self.trusted = trusted
        self.guard = guard

    @property
    def search_parameters(self) -> Any:
        """The platform's search parameters (what a search may name)."""
        return self.trusted.search_parameters

    # ---- reads ---------------------------------------------------------------------------

    async def read(self, type_: str, id_: str, interaction: str = "read") -> StoredResource:
        """The current version, read (and audited) for the caller."""
        stored = await self.current(type_, id_, interaction)
        if self.guard is not None:
            await self.guard.check_stored(self.trusted, stored, "r", interaction)
        return stored

    async def current(self, type_: str, id_: str, interaction: str) -> StoredResource:
        """The current version, not yet checked; a deletion is Gone only to a caller who
        could read what was deleted, and NotFound to anyone else."""
        try:
            return await self.trusted.read(type_, id_)
        except Gone:
            if self.guard is not None:
                newest = await self.newest_content(type_, id_)
                if newest is None or not await self._visible(newest, interaction):
                    raise NotFound(f"{type_}/{id_} is not known") from None
            raise

    async def readable(self, type_: str, id_: str, interaction: str) -> StoredResource:
        """The current version, for a caller who may read it (not audited: the write that
        asks this records its own check).  Hidden answers exactly as missing (404)."""
        stored = await self.current(type_, id_, interaction)
        if not await self._visible(stored, interaction):
            raise NotFound(f"{type_}/{id_} is not known")
        return stored

    async def vread(self, type_: str, id_: str, version: int) -> StoredResource:
        """An old version: readable only while the resource is, since a rule on the current
        version (a privacy lock, a move out of a record) holds for its history too."""
        if self.guard is not None:
            newest = await self.newest_content(type_, id_)
            if newest is None or not await self._visible(newest, "vread"):
                raise NotFound(f"{type_}/{id_} is not known")
        stored = await self.trusted.vread(type_, id_, version)
        if self.guard is not None:
            await self.guard.check_stored(self.trusted, stored, "r", "vread")
        return stored

    async def check_read(self, stored: StoredResource, interaction: str = "read") -> None:
        """Audit the caller's read of ``stored``, found by a search that already dropped what
        they may not read (a conditional create answering with what exists)."""
        if self.guard is not None:
            await self.guard.check_stored(self.trusted, stored, "r", interaction)

    async def reads_record(self, patient_id: str) -> bool:
        """May the caller read this patient's record (care relationship, own record, or the
        emergency stated)?  For a service that may act without it (a prescriber may
        prescribe for anyone) but must not then show what the record holds."""
        if self.guard is None:
            return True
        return await self.guard.reads_record(self.trusted, patient_id)

    async def consent_hides(self, patient_id: str, ref: str) -> bool:
        """Does a Consent of the patient deny the caller ``ref`` (``provision.data``)?  For a
        service that shows a resource by its own rule, outside the role's types."""
        if self.guard is None:
            return False
        facts = await self.guard.facts(self.trusted, patient_id)
        return ref in facts.blocked_refs

    async def newest_content(self, type_: str, id_: str) -> StoredResource | None:
        """The newest version that has content, or None: the current one, or for a deleted
        resource the one before its deletion (only then is the history read)."""
        try:
            return await self.trusted.read(type_, id_)
        except NotFound:
            return None
        except Gone:
            entries, _ = await self.trusted.history(type_, id_, count=50)
            return next((e for e in entries if e.content is not None), None)

    async def history(
        self, type_: str | None, id_: str | None, **page: Any
    ) -> tuple[list[StoredResource], int | None]:
        """A page of history (``Transaction.history``'s paging), less what the caller may not
        read.  Across resources it is for system clients only."""
        if self.guard is not None:
            await self._check_history(type_, id_)
        entries, next_seq = await self.trusted.history(type_, id_, **page)
        if self.guard is not None:  # a version the caller may not read (a lock) is left out
            newest: dict[tuple[str, str], bool] = {}
            entries = [e for e in entries if e.content is None or await self._old(e, newest)]
        return entries, next_seq

    async def search(
        self, query: Any, interaction: str = "search-type", *, scoped: bool = True
    ) -> SearchResult:
        """A page of matches the caller may read; ``scoped``: the search is first narrowed
        or refused by the caller's reach (``Guard.scope_search``)."""
        if self.guard is None:
            return await self.trusted.search(query)
        if scoped:
            await self.guard.scope_search(self.trusted, query)
        return await guarded_search(self.guard, self.trusted, query, interaction)

    async def matches(self, type_: str, criteria: str, *, limit: int) -> list[StoredResource]:
        """Up to ``limit`` current ``type_`` resources that ``criteria`` (a query string)
        match, among those the caller may read: a conditional create, update, patch or
        delete (or reference) behaves as if what the caller may not read did not exist."""
        from enjournal.fhir.search import parse_search

        pairs = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
        if not pairs:
            raise Invalid("conditional criteria are empty")
        fetch = limit if self.guard is None else max(limit, GUARDED_LOOKAHEAD)
        extra = [("_count", str(fetch)), ("_total", "none")]
        query = parse_search(
            type_, [*pairs, *extra], strict=True, parameters=self.search_parameters
        )
        if self.guard is not None:
            # Chains and _has test other records than those matched: the same limits as a
            # search, or a 412-versus-200 would tell what a hidden record holds.
            self.guard.check_traversal(query, "conditional")
        found = (await self.trusted.search(query)).matches
        if self.guard is None:
            return found
        return [s for s in found if await self._visible(s, "conditional")][:limit]

    # ---- writes --------------------------------------------------------------------------

    async def create(
        self,
        resource: dict,
        interaction: str = "create",
        *,
        id_: str | None = None,
        checked: bool = False,
    ) -> StoredResource:
        """Store a new resource (with ``id_``: a transaction's allocated id); ``checked``:
        ``check_create`` already passed it (a conditional create checks before it looks at
        what its criteria match)."""
        if not checked:
            await self.check_create(resource, interaction)
        return await self.trusted.create(resource, id_=id_)

    async def create_many(
        self, resources: list[dict], ids: list[str | None] | None = None
    ) -> list[StoredResource]:
        """``create`` for each (``Transaction.create_many``: one statement for the batch).
        With a guard each is checked, and written, before the next is checked: the checks
        read the store and must see the earlier ones; except for types no check reads
        (``independent``), which are all checked, then written together."""
        if self.guard is None:
            return await self.trusted.create_many(resources, ids)
        ids = ids or [None] * len(resources)
        if all(independent(r) for r in resources):
            for n, resource in enumerate(resources):
                try:
                    await self.check_create(resource)
                except FhirError as error:
                    error.index = n  # type: ignore[attr-defined]  # which one, for its caller
                    raise
            return await self.trusted.create_many(resources, ids)
        return [await self.create(r, id_=i) for r, i in zip(resources, ids, strict=True)]

    async def check_create(self, resource: dict, interaction: str = "create") -> None:
        """May the caller create ``resource``?  (Forbidden if not; audited.)"""
        if self.guard is not None:
            await self.guard.check_write(self.trusted, resource, "c", interaction)

    async def check_change(self, resource: dict, interaction: str) -> None:
        """May the caller write this new content of a resource (an operation that decided
        on the current version itself)?  Forbidden if not; audited."""
        if self.guard is not None:
            await self.guard.check_write(self.trusted, resource, "u", interaction)

    async def for_update(self, type_: str, id_: str, interaction: str) -> StoredResource:
        """The current version, for a caller who may read and change it."""
        stored = await self.readable(type_, id_, interaction)
        if self.guard is not None:
            await self.guard.check_stored(self.trusted, stored, "u", interaction)
        return stored

    async def update(
        self,
        resource: dict,
        id_: str,
        *,
        if_match: int | None = None,
        interaction: str = "update",
        current: StoredResource | None = None,
        checked: bool = False,
    ) -> StoredResource:
        """Store a new version (or create, for update-as-create).  ``current``: the version
        ``for_update`` already checked, so only the new content is checked; ``checked``:
        ``check_update`` already passed (a conditional update decides before it writes)."""
        if self.guard is not None and not checked:
            if current is None:
                await self.check_update(resource["resourceType"], id_, resource, interaction)
            else:
                await self.guard.check_write(self.trusted, resource, "u", interaction)
        return await self.trusted.update(resource, id_, if_match=if_match)

    async def check_update(
        self, type_: str, id_: str, resource: dict, interaction: str = "update"
    ) -> None:
        """Both the current version (whose record it is now) and the new content are checked,
        so nobody can move a resource into or out of a record they cannot reach.

        A resource the caller may not read answers 404, as a missing one does; so update-as-
        create (a client-chosen id) is for system clients only: for anyone else a 201 for a
        free id against a 404 for a hidden one would tell which ids exist."""
        guard, tx = self.guard, self.trusted
        if guard is None:
            return
        if await tx.exists(type_, id_):
            await self.for_update(type_, id_, interaction)
            await guard.check_write(tx, resource, "u", interaction)
        elif guard.principal.kind != "system":
            raise NotFound(f"{type_}/{id_} is not known")  # word for word as for a hidden one
        else:
            await guard.check_write(tx, resource, "c", "create")

    async def delete(self, type_: str, id_: str, *, if_match: int | None = None) -> int | None:
        """Delete; the deletion's version, or None if there was nothing to delete.  With a
        guard, missing and hidden alike are NotFound, and an earlier deletion the caller
        could read is Gone."""
        if self.guard is not None:
            current = await self.readable(type_, id_, "delete")
            await self.guard.check_stored(self.trusted, current, "d", "delete")
        return await self.trusted.delete(type_, id_, if_match=if_match)

    async def delete_found(self, found: list[StoredResource]) -> None:
        """Delete what a conditional delete's criteria found: each is checked before any
        is deleted, so a refusal leaves every one in place."""
        if self.guard is not None:
            for stored in found:
                await self.guard.check_stored(self.trusted, stored, "d", "delete")
        for stored in found:
            await self.trusted.delete(stored.type, stored.id)

    async def lock_criteria(self, type_: str, criteria: str) -> None:
        await self.trusted.lock_criteria(type_, criteria)

    async def lock_all_criteria(self, conditions: Sequence[tuple[str, str]]) -> None:
        await self.trusted.lock_all_criteria(conditions)

    # ---- internals -----------------------------------------------------------------------

    async def _visible(self, stored: StoredResource, interaction: str) -> bool:
        return self.guard is None or await self.guard.visible(self.trusted, stored, interaction)

    async def _check_history(self, type_: str | None, id_: str | None) -> None:
        if id_ is None:
            self.guard.check_bulk("history-type" if type_ else "history-system")
            return
        latest = await self.newest_content(type_, id_)  # a deletion has no content
        if latest is None:
            raise NotFound(f"{type_}/{id_} is not known")
        content = jsonio.loads(latest.content)
        await self.guard.check_content(self.trusted, content, "history-instance")

    async def _old(self, version: StoredResource, newest: dict) -> bool:
        """Each version is checked on its own (an old one may have been in another record,
        before a move) and through the resource's newest version, whose rules hold for its
        whole history: a privacy-locked prescription's earlier versions stay hidden too,
        even in a system client's type or system history."""
        if not await self._visible(version, "history"):
            return False
        key = (version.type, version.id)
        if key not in newest:
            latest = await self.newest_content(version.type, version.id)
            same = latest is None or latest.version == version.version
            newest[key] = same or await self._visible(latest, "history")
        return newest[key]
