"""The few indexed reads the prescription flow needs, as plain SQL over the index tables
(see docs/architecture.md, storage design): a patient by national identity number, a
patient's prescriptions, an organisation by organisation number, the patient's current
medicines (for the interaction check).

Each step of the pharmacy cycle reads what it needs about the patient in one statement
(``patient_and_prescriptions`` for the lookup, ``patient_record`` for a dispensing): on
PostgreSQL every statement is a network round trip, and round trips, not data size, bound
the cycle's throughput (docs/performance.md, E-resept).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from enjournal.fhir import jsonio
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR, OID_ORGNR

ORG_TTL = 60.0
_orgs: dict[str, tuple[float, dict | None]] = {}


async def patient_and_prescriptions(tx, pid: str) -> tuple[str | None, list[dict]]:
    """The Patient id with this fødselsnummer or D-nummer and the patient's current
    MedicationRequests, in one statement (the first part finds the patient; the second its
    prescriptions through the subject reference index)."""
    rows = await tx.conn.fetch(
        "WITH p AS (SELECT r.id FROM idx_token t JOIN resources r ON r.rid = t.rid "
        "WHERE t.type = 'Patient' AND t.param = 'identifier' AND t.code = ? "
        "AND t.system IN (?, ?) AND NOT r.deleted LIMIT 1) "
        "SELECT p.id, NULL FROM p UNION ALL "
        "SELECT p.id, r.content FROM p JOIN idx_reference f ON f.target_id = p.id "
        "AND f.target_type = 'Patient' AND f.type = 'MedicationRequest' AND f.param = 'subject' "
        "JOIN resources r ON r.rid = f.rid WHERE NOT r.deleted",
        pid,
        OID_FNR,
        OID_DNR,
    )
    if not rows:
        return None, []
    return rows[0][0], [jsonio.loads(r[1]) for r in rows if r[1] is not None]


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
    rows = await tx.conn.fetch(
        "SELECT r.type, r.content FROM idx_reference f JOIN resources r ON r.rid = f.rid "
        "WHERE f.target_id = ? AND f.target_type = 'Patient' AND f.type = 'MedicationRequest' "
        "AND f.param = 'subject' AND NOT r.deleted "
        "UNION ALL SELECT type, content FROM resources "
        "WHERE type = 'List' AND id = ? AND NOT deleted "
        "UNION ALL SELECT type, content FROM resources "
        "WHERE type = 'Consent' AND id = ? AND NOT deleted "
        "UNION ALL SELECT type, content FROM resources "
        "WHERE type = 'Patient' AND id = ? AND NOT deleted",
        patient_id,
        pll_id,
        reservation_id,
        patient_id,
    )
    record = PatientRecord()
    for type_, content in rows:
        resource = jsonio.loads(content)
        if type_ == "MedicationRequest":
            record.prescriptions.append(resource)
        elif type_ == "List":
            record.pll = resource
        elif type_ == "Consent":
            record.reservation = resource
        else:
            record.patient = resource
    return record


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
    rows = await tx.conn.fetch(
        "SELECT r.content FROM idx_reference f JOIN resources r ON r.rid = f.rid "
        "WHERE f.target_id = ? AND f.target_type = 'Patient' AND f.type = 'MedicationRequest' "
        "AND f.param = 'subject' AND NOT r.deleted",
        patient_id,
    )
    return [jsonio.loads(r[0]) for r in rows]


async def organization(tx, org_nr: str | None) -> dict | None:
    """The Organization with this organisation number (cached per worker for a minute)."""
    if not org_nr:
        return None
    hit = _orgs.get(org_nr)
    if hit is not None and hit[0] + ORG_TTL > time.monotonic():
        return hit[1]
    row = await tx.conn.fetchrow(
        "SELECT r.content FROM idx_token t JOIN resources r ON r.rid = t.rid "
        "WHERE t.type = 'Organization' AND t.param = 'identifier' AND t.code = ? "
        "AND t.system = ? AND NOT r.deleted LIMIT 1",
        org_nr,
        OID_ORGNR,
    )
    found = jsonio.loads(row[0]) if row else None
    if len(_orgs) > 10_000:
        _orgs.clear()
    _orgs[org_nr] = (time.monotonic(), found)
    return found


def forget() -> None:
    _orgs.clear()


async def read_json(tx, type_: str, id_: str) -> dict:
    return jsonio.loads((await tx.read(type_, id_)).content)
