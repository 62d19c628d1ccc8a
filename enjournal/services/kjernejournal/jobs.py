"""Kjernejournal's scheduled job: delete the kjernejournal of a patient who reserved against
having one, 30 days after the reservation unless it was withdrawn (domain.md 2.3,
https://kj-opplaering.nhn.no/hjelp/reservasjon-mot-kjernejournal/).  What is deleted is
the kjernejournal's own content (resources with its tag: critical information and the
patient's own registrations), with all versions and index rows; the record's other data
(prescriptions, visits) is not the kjernejournal's to delete.  The reservation itself stays
until the patient withdraws it; then a new kjernejournal starts empty from that moment
(``Privacy.started_at``): the summary leaves out older medicines, vaccines and visits, and
this job purges any entry from before the start that a pass had not yet removed.
"""

from __future__ import annotations

from datetime import datetime

from enjournal.fhir import jsonio
from enjournal.fhir.datetime import format_instant
from enjournal.services.kjernejournal import records
from enjournal.services.kjernejournal.privacy import from_consent
from enjournal.services.kjernejournal.rules import Privacy

PRIVACY_PREFIX = "kj-privacy-"  # privacy.consent_id: the patient's one privacy Consent
OWNED_TYPES = (
    "AllergyIntolerance",
    "Condition",
    "Procedure",
    "Device",
    "Flag",
    "RelatedPerson",
    "Communication",
)


async def delete_reserved(store, now: datetime) -> int:
    """One pass: purge what is due; returns the number of resources removed."""
    async with store.transaction(write=False) as tx:
        consents = await tx.with_id_prefix("Consent", PRIVACY_PREFIX)
    # Due: reserved for 30 days, or started anew (withdrawn after the 30 days, perhaps
    # before a pass ran): what is from before the new start goes.
    due = [
        c.id.removeprefix(PRIVACY_PREFIX)
        for c in consents
        if _due(from_consent(jsonio.loads(c.content)), now)
    ]
    removed = 0
    for patient_id in due:
        async with store.transaction() as tx:
            # Re-check inside the write: the reservation may have been withdrawn meanwhile.
            privacy, _ = await records.privacy(tx, patient_id)
            if not _due(privacy, now):
                continue
            for row in await records.patient_rows(tx, patient_id, OWNED_TYPES):
                if not records.is_kj(row.content) or not _old(privacy, row, now):
                    continue
                if await tx.purge(row.type, row.id):
                    removed += 1
    return removed


def _due(privacy: Privacy, now: datetime) -> bool:
    return privacy.deletion_due(now) or privacy.started_at is not None


def _old(privacy: Privacy, row: records.Row, now: datetime) -> bool:
    """Part of the kjernejournal to delete: everything while reserved, else what was
    registered before the new start."""
    if privacy.deletion_due(now):
        return True
    return privacy.before_start(format_instant(row.last_updated))
