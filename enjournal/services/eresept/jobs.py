"""The e-resept service's scheduled job: deleting prescriptions the intermediary may no
longer keep (domain 3.3, reseptformidlerforskriften kap. 6): expired ones at once, fully
dispensed ones one month after (withdrawn ones likewise [unverified]).

Deletion is deletion: the prescription is purged (``Transaction.purge``: the row, every
version, the index rows), not FHIR-deleted, which would keep its history.  With it go the
resources that exist only as the intermediary's record of that prescription
(``PURGED_WITH``): its dispensings (MedicationDispense, RF's copy of the M10 report) and
the M6/M8 reports forwarded about it (Communication).  [unverified] We read kap. 6 as
covering all the intermediary holds about the prescription; the pharmacy's own dispensing
record and the prescriber's and GP's received reports live in their own systems under their
own retention rules (apotek, journal), outside this store.  DetectedIssues raised when it
was prescribed or dispensed stay: they are clinical warnings that also implicate the
patient's other medicines (their reference to the purged prescription then dangles).
"""

from __future__ import annotations

from datetime import datetime

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Gone, NotFound
from enjournal.services.eresept import rules
from enjournal.services.eresept.reports import REPORT_KIND
from enjournal.services.eresept.rules import Prescription

BATCH = 500
# What is purged with a prescription: the types above, as one constant [unverified].
PURGED_WITH = ("MedicationDispense", "Communication")


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
            if (p := Prescription(resource)).issued_here and rules.due_for_deletion(p, now):
                due.append(id_)
        if due:
            async with store.transaction(write=True) as tx:
                for id_ in due:
                    try:
                        stored = await tx.read_for_update("MedicationRequest", id_)
                    except (NotFound, Gone):
                        continue
                    prescription = Prescription(jsonio.loads(stored.content))
                    if rules.due_for_deletion(prescription, now):
                        for type_, dependent in await belonging_to(tx, prescription):
                            await tx.purge(type_, dependent)
                        await tx.purge("MedicationRequest", id_)
                        deleted += 1


async def belonging_to(tx, p: Prescription) -> list[tuple[str, str]]:
    """(type, id) of the resources purged with the prescription: its MedicationDispenses
    (search parameter ``prescription``) and the reports (M6, M8) about it, found among the
    patient's Communications by the ``subject`` index."""
    ref = f"MedicationRequest/{p.id}"
    rows = await tx.conn.fetch(
        "SELECT r.type, r.id, r.content FROM idx_reference f JOIN resources r ON r.rid = f.rid "
        "WHERE f.target_id = ? AND f.target_type = 'MedicationRequest' "
        "AND f.type = 'MedicationDispense' AND f.param = 'prescription' "
        "UNION ALL SELECT r.type, r.id, r.content FROM idx_reference f "
        "JOIN resources r ON r.rid = f.rid WHERE f.target_id = ? AND f.target_type = 'Patient' "
        "AND f.type = 'Communication' AND f.param = 'subject'",
        p.id,
        p.patient_id,
    )
    out = []
    for type_, id_, content in rows:
        if type_ not in PURGED_WITH or content is None:
            continue
        if type_ == "Communication" and not _report_about(jsonio.loads(content), ref):
            continue
        out.append((type_, id_))
    return out


def _report_about(resource: dict, ref: str) -> bool:
    """One of this service's reports (M6, M8) about the prescription."""
    ours = any(
        c.get("system") == REPORT_KIND
        for category in resource.get("category", [])
        for c in category.get("coding", [])
    )
    return ours and any(a.get("reference") == ref for a in resource.get("about", []))
