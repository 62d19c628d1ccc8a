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

A pass reads only candidates, through two search parameters the service adds
(``SEARCH_PARAMETERS``: validity end, and when it ended), so its cost follows what is due,
not how many prescriptions are held.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from enjournal.fhir import jsonio
from enjournal.fhir.datetime import date_range
from enjournal.fhir.errors import Gone, NotFound
from enjournal.services.eresept import rules
from enjournal.services.eresept.reports import REPORT_KIND
from enjournal.services.eresept.rules import Prescription
from enjournal.storage.lookup_specs import DateBefore, Referencing

BATCH = 500
# What is purged with a prescription: the types above, as one constant [unverified].
PURGED_WITH = ("MedicationDispense", "Communication")


# The job finds its candidates through two search parameters of the service's own, so a
# pass costs what is due (and a month of ended prescriptions), not every prescription held.
SEARCH_PARAMETERS = (
    {
        "resourceType": "SearchParameter",
        "url": "https://enjournal.no/fhir/SearchParameter/MedicationRequest-validity-end",
        "name": "validity-end",
        "status": "active",
        "description": "When the prescription's validity period ends",
        "code": "validity-end",
        "base": ["MedicationRequest"],
        "type": "date",
        "expression": "MedicationRequest.dispenseRequest.validityPeriod.end",
    },
    {
        "resourceType": "SearchParameter",
        "url": "https://enjournal.no/fhir/SearchParameter/MedicationRequest-resept-ended",
        "name": "resept-ended",
        "status": "active",
        "description": "When the prescription was withdrawn or fully dispensed",
        "code": "resept-ended",
        "base": ["MedicationRequest"],
        "type": "date",
        "expression": f"MedicationRequest.extension.where(url='{rules.ENDED_EXT}').value",
    },
)
# Ended prescriptions are candidates from this many days on: a month is never shorter.
ENDED_CANDIDATE_DAYS = 27


def define_search_parameters(parameters) -> None:
    """Add the job's search parameters to a platform's (``SearchParameters``)."""
    for resource in SEARCH_PARAMETERS:
        parameters.add(resource)


async def delete_prescriptions(store, now: datetime) -> int:
    """One pass: read the candidates in batches (by surrogate key) through the two date
    indexes, delete those due, each re-checked under its row lock so a concurrent dispensing
    is never lost.  Idempotent."""
    deleted, after = 0, 0
    while True:
        async with store.transaction(write=False) as tx:
            rows = await candidates(tx, now, after)
        if not rows:
            return deleted
        after = rows[-1][0]
        due = []
        for _rid, id_, content in rows:
            if content is None:
                continue
            p = Prescription(jsonio.loads(content))
            if p.issued_here and rules.due_for_deletion(p, now):
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


async def candidates(tx, now: datetime, after: int = 0) -> list[tuple[int, str, bytes]]:
    """``(position, id, content)`` of the next ``BATCH`` current MedicationRequests past
    position ``after`` that may be due: validity ended before today, or ended (withdrawn,
    fully dispensed) at least ``ENDED_CANDIDATE_DAYS`` ago.  The batch is chosen in the date
    index (``Transaction.date_before``: two range scans) before any resource row is read, so
    the plan cannot turn into a walk of the resources table."""
    # Bounds in the indexer's own conversion (date_range: the first instant, epoch ms).
    today_ms, _ = date_range(now.date().isoformat())
    ended_before, _ = date_range((now - timedelta(days=ENDED_CANDIDATE_DAYS)).isoformat())
    conditions = [
        DateBefore("validity-end", today_ms),
        DateBefore("resept-ended", ended_before, ends=False),
    ]
    found = await tx.date_before("MedicationRequest", conditions, after, BATCH)
    return [(position, f.id, f.content) for position, f in found]


async def belonging_to(tx, p: Prescription) -> list[tuple[str, str]]:
    """(type, id) of the resources purged with the prescription: its MedicationDispenses
    (search parameter ``prescription``) and the reports (M6, M8) about it, found among the
    patient's Communications by the ``subject`` index."""
    ref = f"MedicationRequest/{p.id}"
    dispenses, communications = await tx.combined(
        [
            Referencing("MedicationDispense", "prescription", "MedicationRequest", p.id),
            Referencing("Communication", "subject", "Patient", p.patient_id),
        ]
    )
    out = []
    for found in (*dispenses, *communications):
        if found.type not in PURGED_WITH:
            continue
        if found.type == "Communication" and not _report_about(jsonio.loads(found.content), ref):
            continue
        out.append((found.type, found.id))
    return out


def _report_about(resource: dict, ref: str) -> bool:
    """One of this service's reports (M6, M8) about the prescription."""
    ours = any(
        c.get("system") == REPORT_KIND
        for category in resource.get("category", [])
        for c in category.get("coding", [])
    )
    return ours and any(a.get("reference") == ref for a in resource.get("about", []))
