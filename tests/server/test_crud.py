"""CRUD, versioning and conditional interactions over HTTP (http.html), on both backends."""

from __future__ import annotations

FHIR = "application/fhir+json"


def patient(family="Nordmann", **extra):
    return {"resourceType": "Patient", "name": [{"family": family, "given": ["Kari"]}], **extra}


async def test_create_returns_201_location_etag(client):
    r = await client.post("/fhir/Patient", json=patient())
    assert r.status_code == 201
    body = r.json()
    assert r.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["content-type"].startswith(FHIR)
    assert "last-modified" in r.headers


async def test_read_vread_update_delete_cycle(client):
    pid = (await client.post("/fhir/Patient", json=patient())).json()["id"]
    r = await client.put(f"/fhir/Patient/{pid}", json=patient("Hansen", id=pid))
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"
    assert (await client.get(f"/fhir/Patient/{pid}/_history/1")).json()["name"][0][
        "family"
    ] == "Nordmann"
    assert (await client.get(f"/fhir/Patient/{pid}")).json()["name"][0]["family"] == "Hansen"
    assert (await client.delete(f"/fhir/Patient/{pid}")).status_code == 200
    gone = await client.get(f"/fhir/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    history = (await client.get(f"/fhir/Patient/{pid}/_history")).json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT", "POST"]


async def test_update_as_create_with_client_id(client):
    r = await client.put("/fhir/Patient/kari-1", json=patient(id="kari-1"))
    assert r.status_code == 201
    assert (await client.get("/fhir/Patient/kari-1")).status_code == 200


async def test_if_match_stale_version_gives_412(client):
    pid = (await client.post("/fhir/Patient", json=patient())).json()["id"]
    ok = await client.put(
        f"/fhir/Patient/{pid}", json=patient(id=pid), headers={"If-Match": 'W/"1"'}
    )
    assert ok.status_code == 200
    stale = await client.put(
        f"/fhir/Patient/{pid}", json=patient(id=pid), headers={"If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412


async def test_conditional_read_gives_304(client):
    pid = (await client.post("/fhir/Patient", json=patient())).json()["id"]
    r = await client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304
    modified = (await client.get(f"/fhir/Patient/{pid}")).headers["last-modified"]
    r = await client.get(f"/fhir/Patient/{pid}", headers={"If-Modified-Since": modified})
    assert r.status_code == 304


async def test_json_patch(client):
    pid = (await client.post("/fhir/Patient", json=patient())).json()["id"]
    r = await client.patch(
        f"/fhir/Patient/{pid}",
        content=b'[{"op": "replace", "path": "/name/0/family", "value": "Berg"}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"][0]["family"] == "Berg" and r.json()["meta"]["versionId"] == "2"
    bad = await client.patch(
        f"/fhir/Patient/{pid}",
        content=b'[{"op": "replace", "path": "/gender", "value": "mann"}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert bad.status_code == 422


async def test_prefer_return(client):
    r = await client.post("/fhir/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b""
    r = await client.post(
        "/fhir/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"}
    )
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_errors_are_operation_outcomes(client):
    cases = [
        (await client.post("/fhir/Patient", content=b"{not json"), 400),
        (await client.get("/fhir/Nonsense/1"), 404),
        (await client.get("/fhir/Patient/missing"), 404),
        (await client.post("/fhir/Patient", json={"resourceType": "Patient", "foo": 1}), 422),
        (await client.post("/fhir/Observation", json=patient()), 400),
        (await client.delete("/fhir/metadata"), 405),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert response.json()["resourceType"] == "OperationOutcome"


async def test_wrong_fodselsnummer_check_digit_is_rejected(client):
    bad = patient(identifier=[{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "02013299998"}])
    r = await client.post("/fhir/Patient", json=bad)
    assert r.status_code == 422
    good = patient(identifier=[{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "02013299997"}])
    assert (await client.post("/fhir/Patient", json=good)).status_code == 201


async def test_metadata_lists_resources_and_search_params(client):
    statement = (await client.get("/fhir/metadata")).json()
    assert statement["fhirVersion"] == "4.0.1"
    patient_entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    names = {p["name"] for p in patient_entry["searchParam"]}
    assert {"name", "birthdate", "identifier", "_id"} <= names


async def test_health_and_metrics(client):
    assert (await client.get("/health")).json()["status"] == "pass"
    await client.get("/fhir/metadata")
    metrics = (await client.get("/metrics")).text
    assert "enjournal_http_requests_total" in metrics
    assert "enjournal_db_pool_connections" in metrics
