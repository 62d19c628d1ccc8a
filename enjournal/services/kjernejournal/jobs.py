"""Kjernejournal's scheduled job: delete the kjernejournal of a patient who reserved against
having one, 30 days after the reservation unless it was withdrawn (domain.md 2.3,
https://kj-opplaering.nhn.no/hjelp/reservasjon-mot-kjernejournal/).  What is deleted is
the kjernejournal's own content (resources with its tag: critical information and the
patient's own registrations), with all versions and index rows; the record's other data
(prescriptions, visits) is not the kjernejournal's to delete.  The reservation itself stays,
so a new kjernejournal starts empty only when the patient withdraws it.
"""

from __future__ import annotations

from datetime import datetime

from enjournal.fhir import jsonio
from enjournal.services.kjernejournal import records
from enjournal.services.kjernejournal.privacy import from_consent

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
        rows = await tx.conn.fetch(
            "SELECT id, content FROM resources WHERE type = 'Consent' "
            "AND id LIKE 'kj-privacy-%' AND NOT deleted"
        )
    due = [
        id_.removeprefix("kj-privacy-")
        for id_, content in rows
        if from_consent(jsonio.loads(bytes(content))).deletion_due(now)
    ]
    removed = 0
    for patient_id in due:
        async with store.transaction() as tx:
            # Re-check inside the write: the reservation may have been withdrawn meanwhile.
            privacy, _ = await records.privacy(tx, patient_id)
            if not privacy.deletion_due(now):
                continue
            for row in await records.patient_rows(tx, patient_id, OWNED_TYPES):
                if records.is_kj(row.content) and await tx.purge(row.type, row.id):
                    removed += 1
    return removed
