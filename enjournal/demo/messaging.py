"""The demo's address register (domain.md section 5): which of the demo population's
organisations receive which messages.

GP offices receive discharge summaries (EPIKRISE), dialogue messages and receipts; health
trusts and their departments referrals (HENVIS), dialogue messages and receipts, and
each trust has an outpatient clinic ('Poliklinikk', a HealthcareService with its own
HER-id); pharmacies dialogue messages and receipts.  Each party gets one Endpoint at
``urn:her:<HER-id>``; the first trust's answers every message it accepts with an
automatic receipt.  Regional trusts and municipalities receive nothing here.
"""

from __future__ import annotations

import copy

from enjournal.fhir.norwegian_ids import OID_HER_ID

# The values services/messaging reads (addresses.py, register_file.py, rules.py), spelled out:
# the demo sits below the services (security.setup reads the demo's users) and imports none.
AUTOMATIC_RECEIPT = "http://enjournal.no/fhir/StructureDefinition/automatic-receipt"
CONNECTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
CONNECTION = "hl7-fhir-msg"
FUNCTION_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.8279"  # kodeverk 8279, Meldingens funksjon
APPREC = "APPREC"

DIALOG = ("DIALOG_HELSEFAGLIG", "DIALOG_FORESPORSEL", "DIALOG_SVAR", "DIALOG_NOTAT")
RECEIVES = {
    "Legekontor": ("EPIKRISE", *DIALOG, APPREC),
    "Helseforetak": ("HENVIS", *DIALOG, APPREC),
    "Avdeling": ("HENVIS", *DIALOG, APPREC),
    "Apotek": (*DIALOG, APPREC),
}
# The population's HER-ids lie in 100,000-9,999,999: the clinics' start above them.
CLINIC_HER_BASE = 10_000_000


def address_register(resources: list[dict]) -> list[dict]:
    """The Endpoints and HealthcareServices of the register, and updated copies of the
    Organizations that now name their Endpoints (replace the originals by id)."""
    out: list[dict] = []
    trusts = 0
    for org in sorted(_parties(resources), key=lambda o: o["id"]):
        kind = _kind(org) or ""
        her_id = her_id_of(org) or ""
        first_trust = kind == "Helseforetak" and trusts == 0
        endpoint = _endpoint(org["id"], her_id, RECEIVES[kind], org["id"], first_trust)
        out += [endpoint, _naming(org, endpoint)]
        if kind == "Helseforetak":
            trusts += 1
            out += _clinic(org, str(CLINIC_HER_BASE + trusts))
    return out


def with_address_register(resources: list[dict]) -> list[dict]:
    """``resources`` with the register: the Organizations replaced by their copies that
    name Endpoints, the Endpoints and services added at the end."""
    register = address_register(resources)
    updated = {r["id"]: r for r in register if r["resourceType"] == "Organization"}
    kept = [
        updated.get(r["id"], r) if r.get("resourceType") == "Organization" else r for r in resources
    ]
    return kept + [r for r in register if r["resourceType"] != "Organization"]


def _parties(resources: list[dict]) -> list[dict]:
    return [
        r
        for r in resources
        if r.get("resourceType") == "Organization" and her_id_of(r) and _kind(r) in RECEIVES
    ]


def _kind(org: dict) -> str | None:
    types = org.get("type") or [{}]
    return types[0].get("text")


def _endpoint(
    id_: str, her_id: str, receives: tuple[str, ...], org_id: str, automatic: bool
) -> dict:
    endpoint: dict = {
        "resourceType": "Endpoint",
        "id": f"{id_}-endpoint",
        "status": "active",
        "connectionType": {"system": CONNECTION_SYSTEM, "code": CONNECTION},
        "name": f"Meldinger til HER-id {her_id}",
        "managingOrganization": {"reference": f"Organization/{org_id}"},
        "payloadType": [{"coding": [{"system": FUNCTION_SYSTEM, "code": c}]} for c in receives],
        "payloadMimeType": ["application/fhir+json"],
        "address": f"urn:her:{her_id}",
    }
    if automatic:
        endpoint["extension"] = [{"url": AUTOMATIC_RECEIPT, "valueBoolean": True}]
    return endpoint


def _naming(resource: dict, endpoint: dict) -> dict:
    named = copy.deepcopy(resource)
    named["endpoint"] = [{"reference": f"Endpoint/{endpoint['id']}"}]
    return named


def _clinic(trust: dict, her_id: str) -> list[dict]:
    """The trust's outpatient clinic: a service with its own HER-id and Endpoint."""
    id_ = f"{trust['id']}-poliklinikk"
    endpoint = _endpoint(id_, her_id, RECEIVES["Helseforetak"], trust["id"], False)
    service = {
        "resourceType": "HealthcareService",
        "id": id_,
        "identifier": [{"system": OID_HER_ID, "value": her_id}],
        "active": True,
        "providedBy": {"reference": f"Organization/{trust['id']}", "display": trust["name"]},
        "name": f"{trust['name']}, Poliklinikk",
        "endpoint": [{"reference": f"Endpoint/{endpoint['id']}"}],
    }
    return [endpoint, service]


def her_id_of(resource: dict) -> str | None:
    """The HER-id among ``resource``'s identifiers."""
    for ident in resource.get("identifier") or []:
        if ident.get("system") == OID_HER_ID:
            return ident.get("value")
    return None
