"""Small indexed lookups over the store's tables, each answering one FHIR question.

The access guard (``enjournal.security.guard``) asks these to learn who the caller is in the
data and how they relate to a patient; keeping the SQL here keeps every statement over the
store's tables in ``enjournal.storage``.  Each is one or two statements on an index (the
reference index by target, the token index by value, the resource row by type and id) and
sees only current resources: a deleted one has no index rows and is never returned.

The national services ask them too (a patient by national id and its prescriptions, a
patient's kjernejournal entries, the FEST catalogue's pages), so nothing outside
``enjournal.storage`` holds SQL over the store's tables.  Statements that answer several
questions in one round trip (docs/performance.md, E-resept) are asked through ``combined``
with small specs (``enjournal.storage.lookup_specs``).

Like ``Transaction.read``, these read what the database holds: rows a write in the same
transaction has not yet flushed are not seen.  Every lookup returns current resources only:
a deleted (or purged) one is never returned.
"""

from __future__ import annotations

from collections.abc import Sequence

from enjournal.storage.base import Connection
from enjournal.storage.lookup_specs import (
    Current,
    DateBefore,
    Found,
    Referencing,
    ReferencingIdentified,
    Spec,
)


class Lookups:
    """Indexed lookups on one open transaction's connection (``Transaction`` inherits them)."""

    _conn: Connection

    async def ids_by_identifier(self, type_: str, systems: Sequence[str], value) -> list[str]:
        """The current ``type_`` resources with the identifier ``value`` in one of ``systems``
        (``Practitioner?identifier=<HPR>|<value>``)."""
        if not value or not systems:
            return []
        rows = await self._conn.fetch(
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
        rows = await self._conn.fetch(
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
        rows = await self._conn.fetch(
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
        rows = await self._conn.fetch(
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
        row = await self._conn.fetchrow(
            "SELECT rid FROM resources WHERE type = ? AND id = ? AND NOT deleted", type_, id_
        )
        if row is None:
            return None
        rows = await self._conn.fetch(
            "SELECT target_type, target_id FROM idx_reference WHERE rid = ? AND param = ?",
            row[0],
            param,
        )
        return [(r[0], r[1]) for r in rows]

    async def content_of(self, type_: str, id_: str) -> bytes | None:
        """The current content of ``type_/id_``; None if never stored or deleted.  Unlike
        ``Transaction.read``, a miss is an answer, not an error."""
        row = await self._conn.fetchrow(
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
        hit = await self._conn.fetchrow(
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
        hit = await self._conn.fetchrow(
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

    # ---- lookups the national services ask ------------------------------------------------

    async def ping(self) -> None:
        """Ask the database the smallest question (the health check); raises if it cannot
        answer."""
        await self._conn.fetchrow("SELECT 1")

    async def by_identifier(
        self, type_: str, systems: Sequence[str], value: str, limit: int | None = None
    ) -> list[Found]:
        """The current ``type_`` resources with the identifier ``value`` in one of
        ``systems`` (``Organization?identifier=<orgnr-system>|<value>``), in no particular
        order; at most ``limit`` (which ones, if more match, is unspecified)."""
        if not value or not systems:
            return []
        rows = await self._conn.fetch(
            "SELECT r.type, r.id, r.last_updated, r.content FROM idx_token t "
            "JOIN resources r ON r.rid = t.rid "
            "WHERE t.type = ? AND t.param = 'identifier' AND t.code = ? "
            f"AND t.system IN ({_marks(systems)}) AND NOT r.deleted{_limit(limit)}",
            type_,
            value,
            *systems,
        )
        return [_found(r) for r in rows]

    async def identifier_values(
        self, type_: str, ids: Sequence[str], systems: Sequence[str]
    ) -> dict[str, list[str]]:
        """The identifier values in one of ``systems`` of the current ``type_`` resources
        ``ids``: id -> its values (sorted, each once); an id with none, or not current, is
        absent (the national ids of the patients a register export protects).  Asked in
        statements of at most ``IDS_PER_STATEMENT`` ids."""
        found: dict[str, set[str]] = {}
        if not systems:
            return {}
        for start in range(0, len(ids), IDS_PER_STATEMENT):
            chunk = ids[start : start + IDS_PER_STATEMENT]
            rows = await self._conn.fetch(
                "SELECT r.id, t.code FROM resources r JOIN idx_token t ON t.rid = r.rid "
                f"WHERE r.type = ? AND r.id IN ({_marks(chunk)}) AND NOT r.deleted "
                f"AND t.param = 'identifier' AND t.system IN ({_marks(systems)}) "
                "AND t.code IS NOT NULL",
                type_,
                *chunk,
                *systems,
            )
            for id_, code in rows:
                found.setdefault(id_, set()).add(code)
        return {id_: sorted(values) for id_, values in found.items()}

    async def referencing_target(
        self,
        target_type: str,
        target_id: str,
        types: Sequence[str],
        param: str | None = None,
        limit: int | None = None,
    ) -> list[Found]:
        """The current resources of ``types`` with a reference to ``target_type/target_id``
        in search parameter ``param``, or in any reference parameter if None (a patient's
        entries of these types), each once, oldest first (in the order they were created);
        at most ``limit``."""
        if not types:
            return []
        by_param = "" if param is None else " AND param = ?"
        rows = await self._conn.fetch(
            "SELECT type, id, last_updated, content FROM resources WHERE rid IN ("
            "SELECT rid FROM idx_reference WHERE target_id = ? AND target_type = ? "
            f"AND type IN ({_marks(types)}){by_param}) AND NOT deleted "
            f"ORDER BY rid{_limit(limit)}",
            target_id,
            target_type,
            *types,
            *([] if param is None else [param]),
        )
        return [_found(r) for r in rows]

    async def with_id_prefix(
        self, type_: str, prefix: str = "", after: str = "", limit: int | None = None
    ) -> list[Found]:
        """The current ``type_`` resources whose id starts with ``prefix`` (exactly, case
        included) and sorts after ``after``, in id order (the backend's text order), at most
        ``limit``: page on by passing the last id as ``after``; a short page is the last."""
        rows = await self._conn.fetch(
            "SELECT type, id, last_updated, content FROM resources WHERE type = ? "
            "AND id > ? AND substr(id, 1, ?) = ? AND NOT deleted "
            f"ORDER BY id{_limit(limit)}",
            type_,
            after,
            len(prefix),
            prefix,
        )
        return [_found(r) for r in rows]

    async def latest_change(self, type_: str) -> int | None:
        """A number that changes whenever a ``type_`` resource is created, updated or
        deleted (the newest version's sequence number; None if the type has no versions), so
        a cache built from the type's resources can tell it is stale in one indexed probe."""
        row = await self._conn.fetchrow(
            "SELECT MAX(seq) FROM resource_versions WHERE type = ?", type_
        )
        return None if row is None else row[0]

    async def date_before(
        self, type_: str, conditions: Sequence[DateBefore], after: int = 0, limit: int = 500
    ) -> list[tuple[int, Found]]:
        """The current ``type_`` resources with a date meeting any of ``conditions``, as
        ``(position, found)`` in order of position (the order resources were created), past
        position ``after``, at most ``limit``: page on by passing the last position.  The
        page is chosen in the date index before any resource row is read (range scans), so a
        large type is never walked.  A page shorter than ``limit`` is the last."""
        if not conditions:
            return []
        parts, args = [], []
        for c in conditions:
            ends = " AND high < ?" if c.ends else ""
            parts.append(
                "SELECT rid FROM idx_date WHERE type = ? AND param = ? AND low < ?"
                f"{ends} AND rid > ?"
            )
            args += [type_, c.param, c.before, *([c.before] if c.ends else []), after]
        rows = await self._conn.fetch(
            f"WITH c AS ({' UNION '.join(parts)} ORDER BY rid LIMIT ?) "
            "SELECT c.rid, r.type, r.id, r.last_updated, r.content "
            "FROM c JOIN resources r ON r.rid = c.rid WHERE NOT r.deleted ORDER BY c.rid",
            *args,
            limit,
        )
        return [(r[0], _found(r[1:])) for r in rows]

    async def combined(self, specs: Sequence[Spec]) -> list[list[Found]]:
        """The answers to several small lookups (``lookup_specs``: ``Current``,
        ``Referencing``, ``ReferencingIdentified``) in ONE statement, one list per spec in
        the specs' order: on PostgreSQL every statement is a round trip, and round trips
        bound the e-resept cycle (docs/performance.md)."""
        if not specs:
            return []
        ctes, selects, args, cte_args = [], [], [], []
        owner: list[int] = []
        for n, spec in enumerate(specs):
            part = len(owner)
            if isinstance(spec, Current):
                selects.append(_current_sql(part))
                args += [spec.type, spec.id]
                owner.append(n)
            elif isinstance(spec, Referencing):
                selects.append(_referencing_sql(part))
                args += [spec.target_id, spec.target_type, spec.type, spec.param]
                owner.append(n)
            elif isinstance(spec, ReferencingIdentified):
                if not spec.value or not spec.systems:
                    continue  # no identifier: nothing to find
                ctes.append(_identified_cte(part, spec.systems))
                cte_args += [spec.target_type, spec.value, *spec.systems]
                selects.append(f"SELECT {part}, type, id, last_updated, content FROM p{part}")
                selects.append(_referencing_identified_sql(part + 1, f"p{part}"))
                args += [spec.target_type, spec.type, spec.param]
                owner += [n, n]
            else:
                raise TypeError(f"not a lookup spec: {spec!r}")
        if not selects:
            return [[] for _ in specs]
        with_ = f"WITH {', '.join(ctes)} " if ctes else ""
        rows = await self._conn.fetch(with_ + " UNION ALL ".join(selects), *cte_args, *args)
        answers: list[list[Found]] = [[] for _ in specs]
        for row in sorted(rows, key=lambda r: r[0]):  # stable: keeps each part's own order
            answers[owner[row[0]]].append(_found(row[1:]))
        return answers


IDS_PER_STATEMENT = 500  # well under SQLite's and PostgreSQL's limits on parameters


def _marks(values: Sequence) -> str:
    return ", ".join("?" for _ in values)


def _limit(limit: int | None) -> str:
    return "" if limit is None else f" LIMIT {int(limit)}"


def _found(row: Sequence) -> Found:
    return Found(row[0], row[1], row[2], bytes(row[3]))


def _current_sql(part: int) -> str:
    return (
        f"SELECT {part}, type, id, last_updated, content FROM resources "
        "WHERE type = ? AND id = ? AND NOT deleted"
    )


def _referencing_sql(part: int) -> str:
    """Resources of a type referencing a target by one parameter.  Parameters: target id,
    target type, type, param."""
    return (
        f"SELECT {part}, r.type, r.id, r.last_updated, r.content FROM idx_reference f "
        "JOIN resources r ON r.rid = f.rid WHERE f.target_id = ? "
        "AND f.target_type = ? AND f.type = ? AND f.param = ? AND NOT r.deleted"
    )


def _referencing_identified_sql(part: int, cte: str) -> str:
    """Resources of a type referencing the one resource in ``cte`` by one parameter.
    Parameters: target type, type, param."""
    return (
        f"SELECT {part}, r.type, r.id, r.last_updated, r.content FROM {cte} "
        f"JOIN idx_reference f ON f.target_id = {cte}.id AND f.target_type = ? "
        "AND f.type = ? AND f.param = ? JOIN resources r ON r.rid = f.rid WHERE NOT r.deleted"
    )


def _identified_cte(part: int, systems: Sequence[str]) -> str:
    """``p<part>``: the one resource of a type with an identifier value in some systems.
    Parameters: type, value, *systems."""
    return (
        f"p{part} AS (SELECT r.type, r.id, r.last_updated, r.content FROM idx_token t "
        "JOIN resources r ON r.rid = t.rid WHERE t.type = ? AND t.param = 'identifier' "
        f"AND t.code = ? AND t.system IN ({_marks(systems)}) AND NOT r.deleted LIMIT 1)"
    )
