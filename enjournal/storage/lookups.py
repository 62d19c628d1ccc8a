"""Small indexed lookups over the store's tables, each answering one FHIR question.

The access guard (``enjournal.security.guard``) asks these to learn who the caller is in the
data and how they relate to a patient; keeping the SQL here keeps every statement over the
store's tables in ``enjournal.storage``.  Each is one or two statements on an index (the
reference index by target, the token index by value, the resource row by type and id) and
sees only current resources: a deleted one has no index rows and is never returned.

Like ``Transaction.read``, these read what the database holds: rows a write in the same
transaction has not yet flushed are not seen.
"""

from __future__ import annotations

from collections.abc import Sequence

from enjournal.storage.base import Connection


class Lookups:
    """Indexed lookups on one open transaction's connection (``Transaction`` inherits them)."""

    conn: Connection

    async def ids_by_identifier(self, type_: str, systems: Sequence[str], value) -> list[str]:
        """The current ``type_`` resources with the identifier ``value`` in one of ``systems``
        (``Practitioner?identifier=<HPR>|<value>``)."""
        if not value or not systems:
            return []
        rows = await self.conn.fetch(
            "SELECT r.id FROM idx_token t JOIN resources r ON r.rid = t.rid "
            "WHERE t.type = ? AND t.param = 'identifier' AND t.code = ? "
            f"AND t.system IN ({_marks(systems)}) AND NOT r.deleted",
            type_,
            value,
            *systems,
        )
        return [r[0] for r in rows]

    async def contents_by_identifier(self, type_: str, value: str) -> list[bytes]:
        """The content of the current ``type_`` resources with an identifier ``value`` in any
        system (``RelatedPerson?identifier=<value>``)."""
        rows = await self.conn.fetch(
            "SELECT r.content FROM idx_token t JOIN resources r ON r.rid = t.rid "
            "WHERE t.type = ? AND t.param = 'identifier' AND t.code = ? "
            "AND NOT r.deleted",
            type_,
            value,
        )
        return [r[0] for r in rows]

    async def referencing(
        self, type_: str, param: str, target_type: str, target_ids: Sequence[str]
    ) -> list[str]:
        """The ids of current ``type_`` resources whose reference ``param`` points at any of
        ``target_type``/``target_ids`` (``PractitionerRole?practitioner=Practitioner/a,b``)."""
        if not target_ids:
            return []
        rows = await self.conn.fetch(
            "SELECT r.id FROM idx_reference f JOIN resources r ON r.rid = f.rid "
            "WHERE f.type = ? AND f.param = ? "
            f"AND f.target_type = ? AND f.target_id IN ({_marks(target_ids)}) "
            "AND NOT r.deleted",
            type_,
            param,
            target_type,
            *target_ids,
        )
        return [r[0] for r in rows]

    async def contents_referencing(
        self, type_: str, param: str, target_type: str, target_id: str
    ) -> list[bytes]:
        """The content of current ``type_`` resources whose reference ``param`` points at
        ``target_type/target_id`` (``Consent?patient=Patient/<id>``: a patient's Consents)."""
        rows = await self.conn.fetch(
            "SELECT r.content FROM resources r WHERE r.type = ? AND NOT r.deleted "
            "AND r.rid IN (SELECT rid FROM idx_reference WHERE target_id = ? AND "
            "target_type = ? AND type = ? AND param = ?)",
            type_,
            target_id,
            target_type,
            type_,
            param,
        )
        return [r[0] for r in rows]

    async def references_of(self, type_: str, id_: str, param: str) -> list[tuple[str, str]] | None:
        """The (target type, id) pairs the reference ``param`` of the current ``type_/id_``
        holds (a Patient's ``general-practitioner``); None if no such current resource."""
        row = await self.conn.fetchrow(
            "SELECT rid FROM resources WHERE type = ? AND id = ? AND NOT deleted", type_, id_
        )
        if row is None:
            return None
        rows = await self.conn.fetch(
            "SELECT target_type, target_id FROM idx_reference WHERE rid = ? AND param = ?",
            row[0],
            param,
        )
        return [(r[0], r[1]) for r in rows]

    async def content_of(self, type_: str, id_: str) -> bytes | None:
        """The current content of ``type_/id_``; None if never stored or deleted.  Unlike
        ``Transaction.read``, a miss is an answer, not an error."""
        row = await self.conn.fetchrow(
            "SELECT content FROM resources WHERE type = ? AND id = ? AND NOT deleted", type_, id_
        )
        return None if row is None else row[0]

    async def linked(
        self,
        type_: str,
        patient_param: str,
        patient_id: str,
        link_param: str,
        link_targets: Sequence[str],
    ) -> bool:
        """Is there a ``type_`` resource whose ``patient_param`` names Patient/``patient_id``
        and whose ``link_param`` names one of ``link_targets`` (ids, of any type)?  The care
        link: an Encounter of the patient at the caller's organisation, say."""
        if not link_targets:
            return False
        hit = await self.conn.fetchrow(
            "SELECT 1 FROM idx_reference a JOIN idx_reference b ON b.rid = a.rid "
            "WHERE a.target_id = ? AND a.target_type = 'Patient' AND a.type = ? "
            f"AND a.param = ? AND b.param = ? AND b.target_id IN ({_marks(link_targets)}) "
            "LIMIT 1",
            patient_id,
            type_,
            patient_param,
            link_param,
            *link_targets,
        )
        return hit is not None

    async def same_resource_links(
        self,
        type_: str,
        param: str,
        target_ids: Sequence[str],
        other_param: str,
        other_ids: Sequence[str],
    ) -> bool:
        """Is there a ``type_`` resource whose ``param`` names one of ``target_ids`` and whose
        ``other_param`` names one of ``other_ids`` (ids, of any type)?  "The patient's GP
        works at the caller's office": a PractitionerRole with that practitioner and
        organisation."""
        if not target_ids or not other_ids:
            return False
        hit = await self.conn.fetchrow(
            "SELECT 1 FROM idx_reference a JOIN idx_reference b ON b.rid = a.rid "
            "WHERE a.type = ? AND a.param = ? "
            f"AND a.target_id IN ({_marks(target_ids)}) "
            f"AND b.param = ? AND b.target_id IN ({_marks(other_ids)}) LIMIT 1",
            type_,
            param,
            *target_ids,
            other_param,
            *other_ids,
        )
        return hit is not None


def _marks(values: Sequence) -> str:
    return ", ".join("?" for _ in values)
