"""The e-resept service's scheduled job: deleting prescriptions the intermediary may no
longer keep (domain 3.3, reseptformidlerforskriften kap. 6): expired ones at once, fully
dispensed ones one month after (withdrawn ones likewise [unverified])."""

from __future__ import annotations

from datetime import datetime

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Gone, NotFound
from enjournal.services.eresept import rules
from enjournal.services.eresept.rules import Prescription

BATCH = 500


def _issued_here(resource: dict) -> bool:
    """Only prescriptions the service issued (with a reseptID), never other
    MedicationRequests in the store (hospital medication orders, imported records)."""
    return any(i.get("system") == rules.RESEPT_ID for i in resource.get("identifier", []))


async def delete_prescriptions(store, now: datetime) -> int:
    """One pass: scan prescriptions in batches (by surrogate key), delete those due, each
    re-checked under its row lock so a concurrent dispensing is never lost.  Idempotent."""
    deleted, after = 0, 0
    while True:
        async with store.transaction(write=False) as tx:
            rows = await tx.conn.fetch(
                "SELECT rid, id, content FROM resources WHERE type = 'MedicationRequest' "
                "AND NOT deleted AND rid > ? ORDER BY rid LIMIT ?",
                after,
                BATCH,
            )
        if not rows:
            return deleted
        after = rows[-1][0]
        due = []
        for _rid, id_, content in rows:
            resource = jsonio.loads(content)
            if _issued_here(resource) and rules.due_for_deletion(Prescription(resource), now):
                due.append(id_)
        if due:
            async with store.transaction(write=True) as tx:
                for id_ in due:
                    try:
                        stored = await tx.read_for_update("MedicationRequest", id_)
                    except (NotFound, Gone):
                        continue
                    if rules.due_for_deletion(Prescription(jsonio.loads(stored.content)), now):
                        await tx.delete("MedicationRequest", id_)
                        deleted += 1
