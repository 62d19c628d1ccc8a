"""Every e-resept operation refuses a body of the wrong shape and a missing required
parameter with 400, before anything is written (a MedicationDispense posted to $dispense
once dispensed the default quantity)."""

from __future__ import annotations

import pytest

from tests.conftest import MEMORY
from tests.services.eresept.conftest import PIDS, params, part
from tests.services.eresept.test_chain import REMAINING, ext

pytestmark = MEMORY

DISPENSE = {"resourceType": "MedicationDispense", "status": "completed"}
WRONG_BODIES = (
    DISPENSE,
    {"resourceType": "Parameters", "parameter": {"name": "quantity", "valueDecimal": 1}},
    {"resourceType": "Parameters", "parameter": ["quantity"]},
    {"resourceType": "Parameters", "parameter": [{"valueDecimal": 1}]},
    [{"resourceType": "Parameters", "parameter": []}],
)


async def taken(eresept) -> dict:
    mr = part(await eresept.prescribe(quantity=30, repeats=1), "prescription")[0]
    assert (await eresept.step("farm1", mr["id"], "take")).status_code == 200
    return mr


@pytest.mark.parametrize(
    "body", WRONG_BODIES, ids=["dispense", "object", "strings", "no-name", "list"]
)
async def test_dispense_refuses_a_body_that_is_not_parameters(eresept, body):
    mr = await taken(eresept)
    response = await eresept.post("farm1", f"MedicationRequest/{mr['id']}/$dispense", body)
    assert response.status_code == 400, response.text
    after = (await eresept.get("gp", f"MedicationRequest/{mr['id']}")).json()
    assert ext(after, REMAINING)["valueDecimal"] == 60  # nothing dispensed
    dispenses = await eresept.get("gp", "MedicationDispense?patient=Patient/kari")
    assert not dispenses.json().get("entry")


async def test_every_operation_refuses_a_wrong_body(eresept):
    mr = await taken(eresept)
    instance = f"MedicationRequest/{mr['id']}"
    calls = [
        ("gp", "MedicationRequest/$prescribe", DISPENSE),
        ("farm1", "MedicationRequest/$dispensable", DISPENSE),
        ("farm1", f"{instance}/$take", DISPENSE),
        ("farm1", f"{instance}/$release", DISPENSE),
        ("farm1", f"{instance}/$dispense", DISPENSE),
        ("gp", f"{instance}/$withdraw", DISPENSE),
        ("kari", f"{instance}/$privacy-lock", DISPENSE),
        ("gp", "Patient/kari/$medication-list", DISPENSE),
        ("kari", "Patient/kari/$reserve-gp-reports", DISPENSE),
    ]
    for who, path, body in calls:
        response = await eresept.post(who, path, body)
        assert response.status_code == 400, (path, response.text)
    # Nothing changed: still under dispensing at apotek1, not locked, not withdrawn.
    after = (await eresept.get("kari", f"MedicationRequest/{mr['id']}")).json()
    assert after["status"] == "active" and "privacy-lock" not in str(after)
    consent = await eresept.get("kari", "Consent/m8-reservation-kari")
    assert consent.status_code == 404


async def test_every_operation_refuses_a_missing_required_parameter(eresept):
    mr = await taken(eresept)
    instance = f"MedicationRequest/{mr['id']}"
    calls = [
        ("gp", "MedicationRequest/$prescribe"),
        ("farm1", "MedicationRequest/$dispensable"),
        ("gp", f"{instance}/$withdraw"),
        ("gp", "Patient/kari/$medication-list"),
        ("kari", "Patient/kari/$reserve-gp-reports"),
    ]
    for who, path in calls:
        response = await eresept.post(who, path, params())
        assert response.status_code == 400, (path, response.text)
    bad = await eresept.post("kari", "Patient/kari/$reserve-gp-reports", params(reserve="perhaps"))
    assert bad.status_code == 400
    assert (await eresept.get("kari", "Consent/m8-reservation-kari")).status_code == 404
    lookup = await eresept.post(
        "farm1", "MedicationRequest/$dispensable", params(patient=PIDS["kari"])
    )
    assert lookup.status_code == 200


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "1e999"])
async def test_dispense_refuses_a_quantity_that_is_not_a_finite_count(eresept, value):
    mr = await taken(eresept)
    body = {"resourceType": "Parameters", "parameter": [{"name": "quantity", "valueString": value}]}
    response = await eresept.post("farm1", f"MedicationRequest/{mr['id']}/$dispense", body)
    assert response.status_code == 400, response.text
    after = (await eresept.get("gp", f"MedicationRequest/{mr['id']}")).json()
    assert ext(after, REMAINING)["valueDecimal"] == 60  # nothing dispensed
