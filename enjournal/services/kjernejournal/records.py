"""Reading a patient's kjernejournal content from the shared store (the store's small
indexed lookups, ``enjournal.storage.lookups``)."""

from __future__ import annotations

from dataclasses import dataclass

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Gone, NotFound
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR, OID_ORGNR
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
    found = await tx.referencing_target("Patient", patient_id, types)
    return [Row(f.type, f.id, f.last_updated, f.content) for f in found]


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
        for stored in await tx.read_many(type_, ids):
            out[(type_, stored.id)] = parse(stored.content)
    return out


async def patient_by_nin(tx, nin: str) -> str | None:
    found = await tx.ids_by_identifier("Patient", (OID_FNR, OID_DNR), nin)
    return found[0] if found else None


async def organisation_name(tx, org_nr: str | None) -> str | None:
    if not org_nr:
        return None
    found = await tx.by_identifier("Organization", (OID_ORGNR,), org_nr, limit=1)
    return jsonio.loads(found[0].content).get("name") if found else None
