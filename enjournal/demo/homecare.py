"""The demo's home follow-up (velferdsteknologi, docs/velferdsteknologi.md): a municipal
home-care service with its nurse (the ``homecare`` demo user), and six of the population's
older patients followed at home, each with an episode of care at the service, home devices
(pulse oximeter, blood-pressure monitor, scale), a care plan with NEWS2 and a daily weight,
and individual thresholds (SpO2 under 92, systolic over 160, 2 kg in 3 days).

Fixed ids, stored only when missing; then a week of readings through the hub, once.
"""

from __future__ import annotations

from datetime import datetime

from enjournal.fhir import jsonio
from enjournal.fhir.norwegian_ids import OID_HPR, OID_ORGNR

SERVICE_ID, NURSE_ID, TEAM_ID = "hjemmetjenesten-demo", "hjemmesykepleier-1", "hjemmesykepleien"
SERVICE_ORG_NR = "974760673"  # the demo's municipality's home-care service (made up)
NURSE_HPR = "7778001"
FOLLOWED = 6
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
HOME_DEVICE = "urn:enjournal:vkp:device"


def service_resources() -> list[dict]:
    return [
        {
            "resourceType": "Organization",
            "id": SERVICE_ID,
            "identifier": [{"system": OID_ORGNR, "value": SERVICE_ORG_NR}],
            "name": "Hjemmetjenesten, demokommunen",
            "active": True,
        },
        {
            "resourceType": "Practitioner",
            "id": NURSE_ID,
            "identifier": [{"system": OID_HPR, "value": NURSE_HPR}],
            "name": [{"family": "Hjemmesykepleier", "given": ["Hanne"]}],
        },
        {
            "resourceType": "CareTeam",
            "id": TEAM_ID,
            "status": "active",
            "name": "Hjemmesykepleien, demokommunen",
            "managingOrganization": [{"reference": f"Organization/{SERVICE_ID}"}],
            "participant": [{"member": {"reference": f"Practitioner/{NURSE_ID}"}}],
        },
    ]


def patient_resources(patient_id: str, start: str) -> list[dict]:
    """Everything one followed patient needs: episode, devices, goals, plan."""
    short = patient_id[-6:]
    kinds = ("oksymeter", "blodtrykk", "vekt")
    devices = [_device(f"{kind}-{short}", patient_id) for kind in kinds]
    goals = [
        _goal(f"spo2-{short}", patient_id, "2708-6", detailRange={"low": _q(92, "%")}),
        _goal(f"bt-{short}", patient_id, "8480-6", detailRange={"high": _q(160, "mm[Hg]")}),
        _goal(f"vekt-{short}", patient_id, "29463-7", extension=[_weight_rise()]),
    ]
    episode = {
        "resourceType": "EpisodeOfCare",
        "id": f"hjemmeoppfolging-{short}",
        "status": "active",
        "patient": {"reference": f"Patient/{patient_id}"},
        "managingOrganization": {"reference": f"Organization/{SERVICE_ID}"},
        "period": {"start": start},
    }
    return [episode, *devices, *goals, _plan(short, patient_id, goals, start)]


def _device(device_id: str, patient_id: str) -> dict:
    return {
        "resourceType": "Device",
        "id": device_id,
        "status": "active",
        "identifier": [{"system": HOME_DEVICE, "value": device_id}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "owner": {
            "reference": f"Organization/{SERVICE_ID}",
            "identifier": {"system": OID_ORGNR, "value": SERVICE_ORG_NR},
            "display": "Hjemmetjenesten, demokommunen",
        },
    }


def _q(value: float, unit: str) -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _goal(goal_id: str, patient_id: str, loinc: str, **target) -> dict:
    return {
        "resourceType": "Goal",
        "id": goal_id,
        "lifecycleStatus": "active",
        "description": {"text": f"Individuell terskel ({loinc})"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "target": [{"measure": {"coding": [{"system": LOINC, "code": loinc}]}, **target}],
    }


def _weight_rise() -> dict:
    return {
        "url": "https://enjournal.no/fhir/StructureDefinition/vkp-threshold-change",
        "extension": [
            {"url": "rise", "valueQuantity": _q(2, "kg")},
            {"url": "within", "valueDuration": _q(3, "d")},
        ],
    }


def _plan(short: str, patient_id: str, goals: list[dict], start: str) -> dict:
    news2 = {"system": "http://snomed.info/sct", "code": "1104051000000101", "display": "NEWS2"}
    weight = {"system": LOINC, "code": "29463-7", "display": "Body weight"}
    daily = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}
    return {
        "resourceType": "CarePlan",
        "id": f"plan-{short}",
        "status": "active",
        "intent": "plan",
        "title": "Digital hjemmeoppfølging",
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": start},
        "careTeam": [{"reference": f"CareTeam/{TEAM_ID}", "display": "Hjemmesykepleien"}],
        "goal": [{"reference": f"Goal/{g['id']}"} for g in goals],
        "activity": [
            {"detail": {"status": "in-progress", "code": {"coding": [news2]}}},
            {
                "detail": {
                    "status": "in-progress",
                    "code": {"coding": [weight]},
                    "scheduledTiming": daily,
                }
            },
        ],
    }


async def followed_patients(tx, count: int = FOLLOWED) -> list[str]:
    """The oldest-looking patients of the population's first page (born before 1955)."""
    found = await tx.with_id_prefix("Patient", limit=400)
    old = [f.id for f in found if (jsonio.loads(f.content).get("birthDate") or "9") < "1955"]
    return old[:count]


async def load_homecare(store, now: datetime) -> tuple[int, list[str]]:
    """Store what is missing; (how many were added, the followed patients)."""
    added = 0
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).isoformat()
    async with store.transaction() as tx:
        patients = await followed_patients(tx)
        wanted = service_resources() + [r for p in patients for r in patient_resources(p, start)]
        for resource in wanted:
            if not await tx.exists(resource["resourceType"], resource["id"]):
                await tx.update(resource, resource["id"])
                added += 1
    return added, patients
