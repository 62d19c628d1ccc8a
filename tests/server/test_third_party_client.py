"""A third-party FHIR client (fhirpy) against the real server over HTTP, on both backends."""

from __future__ import annotations

import uuid

import pytest
from fhirpy import AsyncFHIRClient, SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound


def fhir_client(base: str) -> AsyncFHIRClient:
    return AsyncFHIRClient(f"{base}/fhir", extra_headers={"Content-Type": "application/fhir+json"})


async def test_crud_and_search_with_fhirpy(live_server):
    client = fhir_client(live_server)
    family = f"Fhirpy{uuid.uuid4().hex[:8]}"
    patient = client.resource(
        "Patient",
        name=[{"family": family, "given": ["Kari"]}],
        gender="female",
        birthDate="1980-02-03",
        identifier=[{"system": "urn:test:fhirpy", "value": "p-1"}],
    )
    await patient.save()
    assert patient.id
    assert patient["meta"]["versionId"] == "1"

    read = await client.resources("Patient").search(_id=patient.id).get()
    assert read["name"][0]["family"] == family
    assert read["birthDate"] == "1980-02-03"
    fetched = await client.get("Patient", patient.id)
    assert fetched["gender"] == "female"

    patient["gender"] = "other"
    await patient.save()
    assert patient["meta"]["versionId"] == "2"
    assert (await client.get("Patient", patient.id))["gender"] == "other"

    other = client.resource("Patient", name=[{"family": f"{family}x"}], gender="male")
    await other.save()
    found = await client.resources("Patient").search(family=family).fetch_all()
    # family is a "starts with" string search: both match, but only one has exactly this name
    assert {p.id for p in found} == {patient.id, other.id}
    exact = await client.resources("Patient").search(**{"family:exact": family}).fetch_all()
    assert [p.id for p in exact] == [patient.id]
    by_identifier = client.resources("Patient").search(identifier="urn:test:fhirpy|p-1")
    assert [p.id for p in await by_identifier.fetch_all()] == [patient.id]
    males = await client.resources("Patient").search(family=family, gender="male").fetch_all()
    assert [p.id for p in males] == [other.id]

    await patient.delete()
    with pytest.raises(ResourceNotFound):
        await client.get("Patient", patient.id)
    remaining = await client.resources("Patient").search(family=family).fetch_all()
    assert [p.id for p in remaining] == [other.id]


async def test_transaction_bundle_with_fhirpy(live_server):
    client = fhir_client(live_server)
    tag = uuid.uuid4().hex[:8]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": {"resourceType": "Patient", "name": [{"family": f"Tx{tag}"}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                    "valueQuantity": {
                        "value": 72,
                        "unit": "/min",
                        "system": "http://unitsofmeasure.org",
                        "code": "/min",
                    },
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = await client.execute("/", method="post", data=bundle)
    assert response["resourceType"] == "Bundle"
    assert response["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert all(s.startswith("201") for s in statuses), statuses
    location = response["entry"][0]["response"]["location"]
    patient_id = location.split("Patient/")[1].split("/")[0]

    observations = client.resources("Observation").search(subject=f"Patient/{patient_id}")
    found = await observations.fetch_all()
    assert len(found) == 1
    assert found[0]["subject"]["reference"] == f"Patient/{patient_id}"
    assert found[0]["valueQuantity"]["value"] == 72
    patient = await client.get("Patient", patient_id)
    assert patient["name"][0]["family"] == f"Tx{tag}"


async def test_fhirpy_count(live_server):
    """fhirpy's count() sends _count=0&_totalMethod=count (an unknown parameter)."""
    client = fhir_client(live_server)
    await client.resource("Patient", gender="male").save()
    assert await client.resources("Patient").search(gender="male").count() == 1


async def test_unknown_search_parameter_is_ignored_with_warning(client):
    """search.html#errors: lenient handling ignores an unknown parameter (no 500)."""
    await client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"})
    r = await client.get("/fhir/Patient", params={"gender": "male", "_totalMethod": "count"})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 1
    outcomes = [
        e["resource"]
        for e in r.json()["entry"]
        if e["resource"]["resourceType"] == "OperationOutcome"
    ]
    assert len(outcomes) == 1
    assert outcomes[0]["issue"][0]["severity"] == "warning"
    assert "_totalMethod" in outcomes[0]["issue"][0]["diagnostics"]


def test_sync_client_roundtrip(live_server):
    client = SyncFHIRClient(
        f"{live_server}/fhir", extra_headers={"Content-Type": "application/fhir+json"}
    )
    org = client.resource("Organization", name="Fhirpy sykehus", active=True)
    org.save()
    assert client.get("Organization", org.id)["name"] == "Fhirpy sykehus"
    page = client.resources("Organization").search(name="fhirpy").limit(5).fetch()
    assert [o.id for o in page] == [org.id]
    client.delete("Organization", org.id)
    with pytest.raises(ResourceNotFound):
        client.get("Organization", org.id)
