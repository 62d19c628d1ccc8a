"""batch and transaction Bundles (http.html#transaction), on both backends."""

from __future__ import annotations


def entry(method, url, resource=None, full_url=None, **request):
    e = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        e["resource"] = resource
    if full_url:
        e["fullUrl"] = full_url
    return e


def bundle(kind, *entries):
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


FNR = "urn:oid:2.16.578.1.12.4.1.4.1"


def observation(subject_ref, value=7.2):
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "subject": {"reference": subject_ref},
        "valueQuantity": {
            "value": value,
            "unit": "%",
            "system": "http://unitsofmeasure.org",
            "code": "%",
        },
    }


async def test_transaction_resolves_urn_uuid_references(client):
    patient = {"resourceType": "Patient", "name": [{"family": "Hansen"}]}
    r = await client.post(
        "/fhir",
        json=bundle(
            "transaction",
            entry("POST", "Observation", observation("urn:uuid:p1")),
            entry("POST", "Patient", patient, "urn:uuid:p1"),
        ),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created", "201 Created"]
    obs_location = body["entry"][0]["response"]["location"]
    patient_location = body["entry"][1]["response"]["location"]
    obs = (await client.get("/fhir/" + obs_location.split("/_history")[0])).json()
    assert obs["subject"]["reference"] == patient_location.split("/_history")[0]


async def test_transaction_is_all_or_nothing(client):
    good = {"resourceType": "Patient", "id": "tx-good"}
    bad = {"resourceType": "Patient", "gender": "not-a-gender"}
    r = await client.post(
        "/fhir",
        json=bundle(
            "transaction",
            entry("PUT", "Patient/tx-good", good),
            entry("POST", "Patient", bad),
        ),
    )
    assert r.status_code == 422
    assert "Bundle.entry[1]" in r.json()["issue"][0]["diagnostics"]
    assert (await client.get("/fhir/Patient/tx-good")).status_code == 404


async def test_transaction_conditional_create_and_reference(client):
    ident = {"system": FNR, "value": "02013299997"}
    patient = {"resourceType": "Patient", "identifier": [ident]}
    first = await client.post(
        "/fhir",
        json=bundle(
            "transaction",
            entry(
                "POST",
                "Patient",
                patient,
                "urn:uuid:a",
                ifNoneExist=f"identifier={FNR}|02013299997",
            ),
        ),
    )
    assert first.json()["entry"][0]["response"]["status"] == "201 Created"
    second = await client.post(
        "/fhir",
        json=bundle(
            "transaction",
            entry(
                "POST",
                "Patient",
                patient,
                "urn:uuid:a",
                ifNoneExist=f"identifier={FNR}|02013299997",
            ),
            entry("POST", "Observation", observation("urn:uuid:a")),
            entry("POST", "Observation", observation(f"Patient?identifier={FNR}|02013299997")),
        ),
    )
    assert second.status_code == 200, second.text
    entries = second.json()["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    pid = entries[0]["response"]["location"].split("/")[1]
    search = (await client.get(f"/fhir/Observation?subject=Patient/{pid}")).json()
    assert search["total"] == 2
    patients = (await client.get(f"/fhir/Patient?identifier={FNR}|02013299997")).json()
    assert patients["total"] == 1


async def test_transaction_processing_order_delete_before_create(client):
    await client.put("/fhir/Patient/old", json={"resourceType": "Patient", "id": "old"})
    r = await client.post(
        "/fhir",
        json=bundle(
            "transaction",
            entry("GET", "Patient?_id=old"),
            entry("POST", "Patient", {"resourceType": "Patient"}),
            entry("DELETE", "Patient/old"),
        ),
    )
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    # GET runs last, after the DELETE: it no longer finds the deleted patient.
    assert statuses == ["200 OK", "201 Created", "200 OK"]
    assert r.json()["entry"][0]["resource"]["total"] == 0


async def test_batch_entries_fail_independently(client):
    r = await client.post(
        "/fhir",
        json=bundle(
            "batch",
            entry("POST", "Patient", {"resourceType": "Patient"}),
            entry("POST", "Patient", {"resourceType": "Patient", "gender": "x"}),
            entry("GET", "Patient/nope"),
        ),
    )
    assert r.status_code == 200
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0] == "201 Created" and statuses[1] == "422" and statuses[2] == "404"
    assert r.json()["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"


async def test_bad_bundles_are_rejected(client):
    assert (await client.post("/fhir", json={"resourceType": "Patient"})).status_code == 400
    assert (await client.post("/fhir", json=bundle("collection"))).status_code == 400
    r = await client.post("/fhir", json=bundle("transaction", {"resource": {}}))
    assert r.status_code == 400
    r = await client.post(
        "/fhir",
        json=bundle("transaction", entry("POST", "Observation", observation("urn:uuid:missing"))),
    )
    assert r.status_code == 404


# Without a guard, a transaction's plain creates are written together (create_many): these
# check that nothing a client can see changes.


async def test_transaction_conditional_reference_finds_a_create_of_the_same_bundle(client):
    ident = {"system": FNR, "value": "13031353453"}
    r = await client.post(
        "/fhir",
        json=bundle(
            "transaction",
            entry("POST", "Patient", {"resourceType": "Patient", "identifier": [ident]}),
            entry("POST", "Observation", observation(f"Patient?identifier={FNR}|13031353453")),
        ),
    )
    assert r.status_code == 200, r.text
    patient_id, obs_location = (e["response"]["location"] for e in r.json()["entry"])
    obs = (await client.get("/fhir/" + obs_location.split("/_history")[0])).json()
    assert obs["subject"]["reference"] == patient_id.split("/_history")[0]


async def test_transaction_refused_create_names_its_entry_and_writes_nothing(client, store):
    from enjournal.fhir.errors import Unprocessable

    async def refuse(tx, resource):
        if resource.get("name", [{}])[0].get("family") == "Refused":
            raise Unprocessable("this family is refused")

    store.checks.append(refuse)
    r = await client.post(
        "/fhir",
        json=bundle(
            "transaction",
            entry("PUT", "Patient/kept", {"resourceType": "Patient", "id": "kept"}),
            entry("POST", "Patient", {"resourceType": "Patient"}, "urn:uuid:p"),
            entry("POST", "Observation", observation("urn:uuid:p")),
            entry("POST", "Patient", {"resourceType": "Patient", "name": [{"family": "Refused"}]}),
        ),
    )
    assert r.status_code == 422, r.text
    assert "Bundle.entry[3]: this family is refused" in r.json()["issue"][0]["diagnostics"]
    assert (await client.get("/fhir/Patient/kept")).status_code == 404
    for type_ in ("Patient", "Observation"):
        assert (await client.get(f"/fhir/{type_}?_summary=count")).json()["total"] == 0


async def test_transaction_mixed_entries_keep_their_responses(client):
    r = await client.post(
        "/fhir",
        json=bundle(
            "transaction",
            entry("GET", "Patient/put-1"),
            entry("POST", "Observation", observation("urn:uuid:p")),
            entry("PUT", "Patient/put-1", {"resourceType": "Patient", "id": "put-1"}),
            entry("POST", "Patient", {"resourceType": "Patient"}, "urn:uuid:p"),
        ),
    )
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["200 OK", *["201 Created"] * 3]
    assert entries[0]["resource"]["id"] == "put-1"
    locations = [e["response"]["location"] for e in entries[1:]]
    assert locations[0].startswith("Observation/") and locations[2].startswith("Patient/")
    assert "Patient/put-1/_history/1" in locations[1]
    assert all(e["response"]["lastModified"] for e in entries[1:])
    obs = (await client.get("/fhir/" + entries[1]["fullUrl"])).json()
    assert obs["subject"]["reference"] == entries[3]["fullUrl"]


async def test_concurrent_transactions_with_one_condition_create_once(client):
    """Transactions racing on the same ifNoneExist (a redelivered reading handled by two
    workers at once) store one resource: the condition is locked as a single conditional
    create's is."""
    import asyncio

    reading = {"system": "urn:enjournal:test:reading", "value": "r-1"}
    obs = {**observation("Patient/p-race"), "identifier": [reading]}
    one = bundle(
        "transaction",
        entry("POST", "Observation", obs, ifNoneExist="identifier=urn:enjournal:test:reading|r-1"),
    )
    answers = await asyncio.gather(*(client.post("/fhir", json=one) for _ in range(6)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    statuses = sorted(a.json()["entry"][0]["response"]["status"] for a in answers)
    assert statuses == ["200 OK"] * 5 + ["201 Created"]
    found = await client.get("/fhir/Observation?identifier=urn:enjournal:test:reading|r-1")
    assert found.json()["total"] == 1


async def test_a_transactions_identifier_conditions_are_looked_up_together(client):
    """Many ``identifier=system|value`` conditions (a gateway's readings) are found in one
    search per type: each entry still gets its own answer, and a value that needs escaping
    takes the general path."""
    system = "urn:enjournal:test:reading"

    def one(value: str) -> dict:
        obs = {**observation("Patient/p-bulk"), "identifier": [{"system": system, "value": value}]}
        escaped = value.replace(",", "\\,")  # a comma in a search value is escaped
        return entry("POST", "Observation", obs, ifNoneExist=f"identifier={system}|{escaped}")

    first = await client.post("/fhir", json=bundle("transaction", one("b-2")))
    assert first.status_code == 200, first.text
    values = ["b-1", "b-2", "b-3", "b,4"]  # b-2 exists; "b,4" holds a comma
    answer = await client.post("/fhir", json=bundle("transaction", *map(one, values)))
    assert answer.status_code == 200, answer.text
    statuses = [e["response"]["status"] for e in answer.json()["entry"]]
    assert statuses == ["201 Created", "200 OK", "201 Created", "201 Created"]
    again = await client.post("/fhir", json=bundle("transaction", *map(one, values)))
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["200 OK"] * 4
    found = await client.get(f"/fhir/Observation?identifier={system}|&_count=100")
    assert found.json()["total"] == 4
