"""Reading a patient's kjernejournal content from the shared store (small indexed queries)."""

from __future__ import annotations

from dataclasses import dataclass

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Gone, NotFound
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR
from enjournal.services.kjernejournal.privacy import consent_id, from_consent
from enjournal.services.kjernejournal.rules import KJ, Privacy

#: The types a summary draws on, besides the Patient.
SUMMARY_TYPES = (
    "AllergyIntolerance",
    "Condition",
    "Procedure",
    "Device",
    "Flag",
    "MedicationRequest",
    "MedicationDispense",
    "Immunization",
    "Encounter",
    "RelatedPerson",
)
#: Types a summary's entries refer to that live outside the patient's compartment.
SHARED_TYPES = ("Practitioner", "PractitionerRole", "Organization", "Medication", "Location")
MARKER = f'"system":"{KJ}"'.encode()


@dataclass
class Row:
    type: str
    id: str
    last_updated: int
    content: bytes


async def privacy(tx, patient_id: str) -> tuple[Privacy, dict | None]:
    try:
        stored = await tx.read("Consent", consent_id(patient_id))
    except (NotFound, Gone):
        return Privacy(), None
    consent = jsonio.loads(stored.content)
    return from_consent(consent), consent


async def patient_rows(tx, patient_id: str, types: tuple[str, ...] = SUMMARY_TYPES) -> list[Row]:
    """Current resources of these types that refer to the patient (any reference)."""
    marks = ", ".join("?" for _ in types)
    rows = await tx.conn.fetch(
        "SELECT type, id, last_updated, content FROM resources WHERE rid IN ("
        "SELECT rid FROM idx_reference WHERE target_id = ? AND target_type = 'Patient' "
        f"AND type IN ({marks})) AND NOT deleted",
        patient_id,
        *types,
    )
    return [Row(r[0], r[1], r[2], bytes(r[3])) for r in rows]


def is_kj(content: bytes | dict) -> bool:
    if isinstance(content, bytes | bytearray):
        return MARKER in content
    return any(t.get("system") == KJ for t in (content.get("meta") or {}).get("tag", []))


def kj_tag(resource: dict) -> str | None:
    for tag in (resource.get("meta") or {}).get("tag", []):
        if tag.get("system") == KJ:
            return tag.get("code")
    return None


async def shared(tx, refs: set[tuple[str, str]], parse=jsonio.loads) -> dict[tuple[str, str], dict]:
    """Resources outside the compartment by (type, id), one query per type (``parse`` turns
    the stored bytes into the dict)."""
    out: dict[tuple[str, str], dict] = {}
    by_type: dict[str, list[str]] = {}
    for type_, id_ in refs:
        by_type.setdefault(type_, []).append(id_)
    for type_, ids in by_type.items():
        marks = ", ".join("?" for _ in ids)
        rows = await tx.conn.fetch(
            f"SELECT id, content FROM resources WHERE type = ? AND id IN ({marks}) AND NOT deleted",
            type_,
            *ids,
        )
        for id_, content in rows:
            out[(type_, id_)] = parse(bytes(content))
    return out


async def patient_by_nin(tx, nin: str) -> str | None:
    row = await tx.conn.fetchrow(
        "SELECT r.id FROM idx_token t JOIN resources r ON r.rid = t.rid "
        "WHERE t.type = 'Patient' AND t.param = 'identifier' AND t.code = ? "
        "AND t.system IN (?, ?) AND NOT r.deleted",
        nin,
        OID_FNR,
        OID_DNR,
    )
    return row[0] if row else None


async def organisation_name(tx, org_nr: str | None) -> str | None:
    if not org_nr:
        return None
    from enjournal.fhir.norwegian_ids import OID_ORGNR

    row = await tx.conn.fetchrow(
        "SELECT r.content FROM idx_token t JOIN resources r ON r.rid = t.rid "
        "WHERE t.type = 'Organization' AND t.param = 'identifier' AND t.code = ? "
        "AND t.system = ? AND NOT r.deleted",
        org_nr,
        OID_ORGNR,
    )
    return jsonio.loads(bytes(row[0])).get("name") if row else None
