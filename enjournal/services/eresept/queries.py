"""The few indexed reads the prescription flow needs, as plain SQL over the index tables
(see docs/architecture.md, storage design): a patient by national identity number, a
patient's prescriptions, an organisation by organisation number, the patient's current
medicines (for the interaction check)."""

from __future__ import annotations

import time

from enjournal.fhir import jsonio
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR, OID_ORGNR

ORG_TTL = 60.0
_orgs: dict[str, tuple[float, dict | None]] = {}


async def patient_by_pid(tx, pid: str) -> str | None:
    """The Patient id with this fødselsnummer or D-nummer."""
    row = await tx.conn.fetchrow(
        "SELECT r.id FROM idx_token t JOIN resources r ON r.rid = t.rid "
        "WHERE t.type = 'Patient' AND t.param = 'identifier' AND t.code = ? "
        "AND t.system IN (?, ?) AND NOT r.deleted LIMIT 1",
        pid,
        OID_FNR,
        OID_DNR,
    )
    return row[0] if row else None


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
