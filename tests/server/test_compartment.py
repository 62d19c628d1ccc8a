"""Patient compartment searches and Patient/$everything (patient-operation-everything.html)."""

from __future__ import annotations


async def seed(client):
    org = {"resourceType": "Organization", "id": "legekontor", "name": "Legekontoret"}
    await client.put("/fhir/Organization/legekontor", json=org)
    med = {
        "resourceType": "Medication",
        "id": "metformin",
        "code": {"coding": [{"system": "http://www.whocc.no/atc", "code": "A10BA02"}]},
    }
    await client.put("/fhir/Medication/metformin", json=med)
    ids = {}
    for name in ("kari", "ola"):
        patient = {
            "resourceType": "Patient",
            "id": name,
            "managingOrganization": {"reference": "Organization/legekontor"},
        }
        await client.put(f"/fhir/Patient/{name}", json=patient)
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{name}"},
        }
        ids[name] = (await client.post("/fhir/Observation", json=obs)).json()["id"]
    request = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "Medication/metformin"},
        "subject": {"reference": "Patient/kari"},
    }
    await client.post("/fhir/MedicationRequest", json=request)
    return ids


async def test_compartment_search_only_returns_that_patients_resources(client):
    ids = await seed(client)
    bundle = (await client.get("/fhir/Patient/kari/Observation")).json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == [ids["kari"]]
    coded = await client.get("/fhir/Patient/kari/Observation", params={"code": "8867-4"})
    assert coded.json()["total"] == 1
    assert (await client.get("/fhir/Patient/nobody/Observation")).status_code == 404


async def test_everything_returns_patient_compartment_and_referenced(client):
    ids = await seed(client)
    bundle = (await client.get("/fhir/Patient/kari/$everything")).json()
    found = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]}
    assert ("Patient", "kari") in found
    assert ("Observation", ids["kari"]) in found
    assert ("Medication", "metformin") in found
    assert ("Organization", "legekontor") in found
    assert ("Patient", "ola") not in found and ("Observation", ids["ola"]) not in found
