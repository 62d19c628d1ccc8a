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
