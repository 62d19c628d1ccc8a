"""The register export policy as every register export reads it: ``$export``
(``bulk_runner``), ``$viewdefinition-run`` (``views_api``) and ``$viewdefinition-export``
(``views_export``) build it here, once per job or run, so none of them forgets an input.

- ``read_policy(tx)``: the citizen's controls (``security.exports``) from the store in three
  indexed queries: the protected addresses, the register and kjernejournal Consents, and
  the national ids of the patients the policy protects, which find them outside their own
  Patient (a ``Reference.identifier``, a contained Patient, free text: attack A-3);
- ``exported_lines(rows, type_, policy)``: one page of the export reader's rows as
  ``$export`` writes them (the bulk runner's, and the views' of a system client, which read
  what ``$export`` would write: ``exported_pages``);
- ``view_policy(policy)``: the same policy as the plain values the PostgreSQL view engine
  over the store applies in SQL (``storage.views.postgres.ViewPolicy``: storage does not
  import security); exact only when ``protects_nobody(policy)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import orjson

from enjournal.fhir.summary import apply_elements
from enjournal.security.exports import (
    ADDRESS_PROTECTION,
    CONSENT_SYSTEMS,
    KJ,
    NATIONAL_IDS,
    PRIVACY_LOCK,
    REDACTED,
    ExportPolicy,
    export_policy,
)
from enjournal.storage import exports as db
from enjournal.storage.views.postgres import ViewPolicy

ROWS = 1000  # rows per page of the export reader; its bytes bound it first

# A patient's RelatedPersons lose only these of the elements their Patient loses.
RELATED_ELEMENTS = frozenset({"address", "telecom"})


async def read_policy(tx) -> ExportPolicy:
    """The register export policy, read through ``tx`` (an unguarded repository: the policy
    decides what an export holds, not the caller's access)."""
    protected = await db.protected_patients(tx, ADDRESS_PROTECTION)
    consents = await db.consents_of_category(tx, CONSENT_SYSTEMS)
    policy = export_policy(protected, consents)
    if not policy.protected:
        return policy
    ids = await tx.identifier_values("Patient", sorted(policy.protected), sorted(NATIONAL_IDS))
    # the same policy, knowing the national ids of those it protects (read once: the
    # Consents are not parsed again)
    return replace(policy, national_ids={p: frozenset(v) for p, v in ids.items() if v})


def view_policy(policy: ExportPolicy) -> ViewPolicy:
    """``policy`` as the SQL of the view engine applies it: the rules of
    ``ExportPolicy.apply`` and ``drops``, where a patient's RelatedPersons lose only their
    address and telecom, and a row holding a national id of an excluded patient, or of one
    reserved against disclosure with it, is left out (``ViewPolicy``: $export would scrub
    the latter).  Not exact (no Reference ``display`` scrub, no contained persons, no
    non-indexed references): the services use it only where ``protects_nobody``."""
    related = {p: removed & RELATED_ELEMENTS for p, removed in policy.redactions.items()}
    return ViewPolicy(
        excluded=policy.excluded,
        kj_hidden=policy.kj_hidden,
        kj_tag=KJ,
        locks=(("MedicationRequest", PRIVACY_LOCK),),
        redactions={"Patient": policy.redactions, "RelatedPerson": related},
        national_ids=NATIONAL_IDS,
        redacted_label=REDACTED,
        hidden_numbers=_hidden_numbers(policy),
    )


def _hidden_numbers(policy: ExportPolicy) -> frozenset[str]:
    """The national ids no row may hold: of the excluded patients, and of those whose
    identity is redacted (reserved against disclosure with the number)."""
    hiding = {p for p, removed in policy.redactions.items() if "identifier" in removed}
    hiding |= policy.excluded
    return frozenset(n for p in hiding for n in policy.national_ids.get(p, ()))


def protects_nobody(policy: ExportPolicy) -> bool:
    """Whether the policy changes no patient's data (nobody excluded, redacted or with
    kjernejournal entries hidden, no national id to look for): then ``view_policy`` in SQL
    is exact (it leaves out only locked prescriptions, as ``drops`` does)."""
    return not (policy.excluded or policy.redactions or policy.kj_hidden or policy.national_ids)


async def exported_pages(
    store, selection: db.Selection, policy: ExportPolicy, max_bytes: int
) -> AsyncIterator[list[bytes]]:
    """``selection``'s resources as ``$export`` writes them, a page (at most ``max_bytes``
    of stored JSON, one read transaction) at a time: the bulk export's reader and lines."""
    after = 0
    while True:
        async with store.transaction(write=False) as tx:
            rows = await db.read_batch(tx, selection, after, max_bytes, ROWS)
        if not rows:
            return
        after = rows[-1][0]
        yield exported_lines(rows, selection.type, policy)
        await asyncio.sleep(0)  # SQLite calls never suspend: let requests through


def exported_lines(
    rows: list, type_: str, policy: ExportPolicy, elements: Sequence[str] = ()
) -> list[bytes]:
    """The NDJSON lines of one page of the export reader (``(rid, id, stored JSON)``, no
    newline): stored JSON as it is, except rows the policy changes or drops and, with
    ``_elements``, the trimmed resources."""
    lines = []
    for _rid, id_, content in rows:
        if policy.drops(content):
            continue
        if elements or policy.touches(type_, id_, content):
            resource = policy.apply(orjson.loads(content))
            if resource is None:
                continue
            if elements:
                resource = apply_elements(resource, list(elements))
            content = orjson.dumps(resource)
        lines.append(content)
    return lines
