"""The register export policy as every register export reads it: ``$export``
(``bulk_runner``), ``$viewdefinition-run`` (``views_api``) and ``$viewdefinition-export``
(``views_export``) build it here, once per job or run, so none of them forgets an input.

- ``read_policy(tx)``: the citizen's controls (``security.exports``) from the store in three
  indexed queries: the protected addresses, the register and kjernejournal Consents, and
  the national ids of the patients the policy protects, which find them outside their own
  Patient (a ``Reference.identifier``, a contained Patient, free text: attack A-3);
- ``view_policy(policy)``: the same policy as the plain values the PostgreSQL view engine
  over the store applies in SQL (``storage.views.postgres.ViewPolicy``: storage does not
  import security).
"""

from __future__ import annotations

import re

import orjson

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

# A reference to a patient in the stored JSON as orjson writes it (relative or absolute).
_PATIENT_REFERENCE = re.compile(rb'"reference":"(?:[^"]*/)?Patient/([^"/]+)"')

# A patient's RelatedPersons lose only these of the elements their Patient loses.
RELATED_ELEMENTS = frozenset({"address", "telecom"})


async def read_policy(tx) -> ExportPolicy:
    """The register export policy, read through ``tx`` (an unguarded repository: the policy
    decides what an export holds, not the caller's access)."""
    protected = await db.protected_patients(tx, ADDRESS_PROTECTION)
    consents = await db.consents_of_category(tx, CONSENT_SYSTEMS)
    patients = sorted(export_policy(protected, consents).protected)
    ids = await tx.identifier_values("Patient", patients, sorted(NATIONAL_IDS)) if patients else {}
    return export_policy(protected, consents, ids)


def view_policy(policy: ExportPolicy) -> ViewPolicy:
    """``policy`` as the SQL of the view engine applies it: the rules of
    ``ExportPolicy.apply`` and ``drops``, where a patient's RelatedPersons lose only their
    address and telecom, and a row holding a national id of an excluded patient, or of one
    reserved against disclosure with it, is left out (``ViewPolicy``: $export would scrub
    the latter; the view is stricter, docs/registers.md)."""
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


def exported_line(content: bytes, policy: ExportPolicy) -> bytes | None:
    """A stored resource as ``$export`` writes it, as one NDJSON line, or None when it is
    left out: the policy's rules, and (as bulk's reader does in SQL) nothing that is, or
    refers to, a patient excluded from exports."""
    if policy.drops(content):
        return None
    resource = orjson.loads(content)
    type_, id_ = resource.get("resourceType", ""), resource.get("id", "")
    if _of_excluded(type_, id_, content, policy.excluded):
        return None
    if policy.touches(type_, id_, content):
        changed = policy.apply(resource)
        if changed is None:
            return None
        content = orjson.dumps(changed)
    return content + b"\n"


def _of_excluded(type_: str, id_: str, content: bytes, excluded: frozenset[str]) -> bool:
    if not excluded:
        return False
    if type_ == "Patient" and id_ in excluded:
        return True
    return any(m.decode() in excluded for m in _PATIENT_REFERENCE.findall(content))
