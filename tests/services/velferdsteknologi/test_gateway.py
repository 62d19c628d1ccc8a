"""A gateway that speaks HTTP: a FHIR batch Bundle of Observations in HL7 Norway's VKP form
(subject as a logical identifier by national id, a LOINC coding), each entry's response in
its place; a resend is found by its identifier; the follow-up job evaluates the readings."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from enjournal.rest.message import FhirRequest
from enjournal.security.principal import Principal
from enjournal.services.velferdsteknologi import jobs
from enjournal.services.velferdsteknologi.followup import FollowUp
from enjournal.services.velferdsteknologi.hub import Hub

from .conftest import PATIENTS
from .test_followup import NOW, resources

pytestmark = pytest.mark.backends("memory", "postgres")
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
GATEWAY = Principal(
    "system", "gw-1", "gw-1", frozenset({"system/Observation.cr", "system/Patient.r"}), "Gateway 1"
)


def vkp_observation(n: int, value, device="dev-oxi-1", fnr=PATIENTS["vkp-pas-1"]) -> dict:
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.999.gw-1", "value": f"m-{n}"}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2708-6"}]},
        "subject": {"identifier": {"system": FNR, "value": fnr}},
        "effectiveDateTime": NOW.isoformat(),
        "valueQuantity": {
            "value": value,
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        },
        "device": {"reference": f"Device/{device}"},
    }


def entry(obs: dict, n: int) -> dict:
    key = obs["identifier"][0]
    return {
        "fullUrl": f"urn:uuid:00000000-0000-0000-0000-{n:012d}",
        "resource": obs,
        "request": {
            "method": "POST",
            "url": "Observation",
            "ifNoneExist": f"identifier={key['system']}|{key['value']}",
        },
    }


async def post_batch(platform, observations: list[dict]) -> list[str]:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [entry(o, n) for n, o in enumerate(observations)],
    }
    request = FhirRequest(
        "POST",
        [],
        [],
        {"content-type": "application/fhir+json"},
        orjson.dumps(bundle),
        "http://test/fhir",
    )
    response = await platform.handle(request, GATEWAY)
    assert response.status == 200, response.body
    return [e["response"]["status"][:3] for e in orjson.loads(response.body)["entry"]]


async def test_a_gateways_batch_answers_entry_by_entry(planned):
    statuses = await post_batch(
        planned,
        [
            vkp_observation(1, 88),
            vkp_observation(2, 140),  # impossible SpO2
            vkp_observation(3, 95, fnr=PATIENTS["vkp-pas-2"]),  # not dev-oxi-1's patient
            vkp_observation(4, 96, device="dev-unknown"),
        ],
    )
    assert statuses == ["201", "422", "403", "422"]
    assert await post_batch(planned, [vkp_observation(1, 88)]) == ["200"]  # a resend
    (stored,) = await resources(planned, "Observation")
    assert stored["subject"]["reference"] == "Patient/vkp-pas-1"  # the logical id resolved
    hub = Hub(planned)
    raised = await jobs.evaluate_gateway_readings(hub, FollowUp(hub), NOW + timedelta(seconds=5))
    assert raised == 2  # the Goal (SpO2 under 92) and NEWS2 (SpO2 88 scores 3)
    again = await jobs.evaluate_gateway_readings(hub, FollowUp(hub), NOW + timedelta(seconds=20))
    assert again == 0
