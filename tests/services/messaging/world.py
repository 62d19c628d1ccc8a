"""A small world for messaging tests: a GP office, a hospital with an outpatient service,
a pharmacy, their endpoints, and two patients; message builders."""

from __future__ import annotations

from enjournal.fhir.norwegian_ids import OID_FNR, OID_HER_ID, OID_ORGNR
from enjournal.services.messaging import rules, samples
from enjournal.services.messaging.addresses import AUTOMATIC_RECEIPT

GP_HER, HOSPITAL_HER, CLINIC_HER, PHARMACY_HER = "81000001", "82000001", "82000002", "83000001"
GP_ORG, HOSPITAL_ORG, PHARMACY_ORG = "974600001", "983974899", "984000003"
KARI, OLA = "02818029236", "15811893452"  # valid synthetic fødselsnumre
UNKNOWN_PERSON = "15811391023"  # valid, but not in the record
CONNECTION = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
DIALOG = ("DIALOG_HELSEFAGLIG", "DIALOG_FORESPORSEL", "DIALOG_SVAR", "DIALOG_NOTAT")


def endpoint(id_: str, her: str, types, automatic: bool = False) -> dict:
    resource = {
        "resourceType": "Endpoint",
        "id": id_,
        "status": "active",
        "connectionType": {"system": CONNECTION, "code": "hl7-fhir-msg"},
        "payloadType": [{"coding": [{"system": rules.FUNCTION_SYSTEM, "code": t}]} for t in types],
        "address": f"urn:her:{her}",
    }
    if automatic:
        resource["extension"] = [{"url": AUTOMATIC_RECEIPT, "valueBoolean": True}]
    return resource


def organization(id_: str, name: str, her: str, orgnr: str, endpoint_id: str) -> dict:
    return {
        "resourceType": "Organization",
        "id": id_,
        "active": True,
        "name": name,
        "identifier": [
            {"system": OID_HER_ID, "value": her},
            {"system": OID_ORGNR, "value": orgnr},
        ],
        "endpoint": [{"reference": f"Endpoint/{endpoint_id}"}],
    }


def patient(id_: str, number: str, family: str) -> dict:
    return {
        "resourceType": "Patient",
        "id": id_,
        "identifier": [{"system": OID_FNR, "value": number}],
        "name": [{"family": family, "given": ["Test"]}],
    }


def resources() -> list[dict]:
    return [
        endpoint("ep-gp", GP_HER, ("EPIKRISE", *DIALOG, "APPREC")),
        endpoint("ep-hospital", HOSPITAL_HER, ("HENVIS", *DIALOG, "APPREC"), automatic=True),
        endpoint("ep-clinic", CLINIC_HER, ("HENVIS", "APPREC")),
        endpoint("ep-pharmacy", PHARMACY_HER, (*DIALOG, "APPREC")),
        organization("gp", "Legekontoret Test", GP_HER, GP_ORG, "ep-gp"),
        organization("hospital", "Sykehuset Test", HOSPITAL_HER, HOSPITAL_ORG, "ep-hospital"),
        organization("pharmacy", "Apoteket Test", PHARMACY_HER, PHARMACY_ORG, "ep-pharmacy"),
        {
            "resourceType": "HealthcareService",
            "id": "clinic",
            "active": True,
            "name": "Poliklinikk Test",
            "identifier": [{"system": OID_HER_ID, "value": CLINIC_HER}],
            "providedBy": {"reference": "Organization/hospital"},
            "endpoint": [{"reference": "Endpoint/ep-clinic"}],
        },
        patient("kari", KARI, "Nordmann"),
        patient("ola", OLA, "Hansen"),
    ]


async def load(store) -> None:
    async with store.transaction() as tx:
        for resource in resources():
            await tx.create(resource, id_=resource["id"])


def message(type_: str, sender: str, receiver: str, content: list[dict], number: str | None = KARI):
    """A FHIR message of ``type_`` with a Patient (``number``) and ``content``."""
    return samples.message(type_, sender, receiver, content, number)


referral, discharge_summary, dialogue = (
    samples.referral,
    samples.discharge_summary,
    samples.dialogue,
)
