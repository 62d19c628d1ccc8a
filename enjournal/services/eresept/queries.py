"""The few indexed reads the prescription flow needs, asked of the store's lookups
(``enjournal.storage.lookups``, over the index tables): a patient by national identity number, a
patient's prescriptions, an organisation by organisation number, the patient's current
medicines (for the interaction check).

Each step of the pharmacy cycle reads what it needs about the patient in one statement
(``patient_and_prescriptions`` for the lookup, ``patient_record`` for a dispensing): on
PostgreSQL every statement is a network round trip, and round trips, not data size, bound
the cycle's throughput (docs/performance.md, E-resept).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from enjournal.fhir import jsonio
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR, OID_ORGNR
from enjournal.services.eresept.state import current
from enjournal.storage.lookup_specs import Current, Referencing, ReferencingIdentified


async def patient_and_prescriptions(tx, pid: str) -> tuple[str | None, list[dict]]:
    """The Patient id with this fødselsnummer or D-nummer and the patient's current
    MedicationRequests, in one statement (the first part finds the patient; the second its
    prescriptions through the subject reference index)."""
    spec = ReferencingIdentified("MedicationRequest", "subject", "Patient", (OID_FNR, OID_DNR), pid)
    (found,) = await tx.combined([spec])
    if not found:
        return None, []
    return found[0].id, [jsonio.loads(f.content) for f in found[1:]]


@dataclass
class PatientRecord:
    """What a prescribing or dispensing needs about the patient: the Patient, its current
    prescriptions, its medication list (PLL) and its reservation against GP reports."""

    patient: dict | None = None
    prescriptions: list[dict] = field(default_factory=list)
    pll: dict | None = None
    reservation: dict | None = None


async def patient_record(tx, patient_id: str, pll_id: str, reservation_id: str) -> PatientRecord:
    """The patient's ``PatientRecord`` in one statement (each part by an index)."""
    prescriptions, pll, reservation, patient = await tx.combined(
        [
            Referencing("MedicationRequest", "subject", "Patient", patient_id),
            Current("List", pll_id),
            Current("Consent", reservation_id),
            Current("Patient", patient_id),
        ]
    )
    return PatientRecord(
        patient=_first(patient),
        prescriptions=[jsonio.loads(f.content) for f in prescriptions],
        pll=_first(pll),
        reservation=_first(reservation),
    )


def _first(found: list) -> dict | None:
    return jsonio.loads(found[0].content) if found else None


async def patient_pids(tx, patient_id: str) -> set[str]:
    """The patient's national identity numbers (to match a citizen's token)."""
    stored = await tx.read("Patient", patient_id)
    patient = jsonio.loads(stored.content)
    return {
        i.get("value")
        for i in patient.get("identifier", [])
        if i.get("system") in (OID_FNR, OID_DNR)
    }


async def prescriptions_of(tx, patient_id: str) -> list[dict]:
    """Every current MedicationRequest whose subject is the patient."""
    found = await tx.referencing_target("Patient", patient_id, ("MedicationRequest",), "subject")
    return [jsonio.loads(f.content) for f in found]


async def organization(tx, org_nr: str | None) -> dict | None:
    """The Organization with this organisation number (cached for a minute in the serving
    platform's state)."""
    if not org_nr:
        return None
    return await current().organizations.get(org_nr, lambda: _organization(tx, org_nr))


async def _organization(tx, org_nr: str) -> dict | None:
    hits = await tx.by_identifier("Organization", (OID_ORGNR,), org_nr, limit=1)
    return jsonio.loads(hits[0].content) if hits else None


async def read_json(tx, type_: str, id_: str) -> dict:
    return jsonio.loads((await tx.read(type_, id_)).content)
