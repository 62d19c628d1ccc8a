"""Write checks through the API: narrative XHTML, invariants, and $validate (incl. Parameters)."""

from __future__ import annotations

NS = 'xmlns="http://www.w3.org/1999/xhtml"'
SCRIPT_DIV = f"<div {NS}><p>Hello</p><script>alert('steal')</script></div>"


def with_text(resource: dict, div: str) -> dict:
    return {**resource, "text": {"status": "generated", "div": div}}


def errors(outcome: dict) -> list[dict]:
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


async def test_a_create_with_script_in_its_narrative_is_refused_and_nothing_is_stored(client):
    sent = with_text({"resourceType": "Patient", "gender": "female"}, SCRIPT_DIV)
    answer = await client.post("/fhir/Patient", json=sent)
    assert answer.status_code == 422, answer.text
    assert "<script>" in answer.text and "steal" not in answer.text
    put = await client.put("/fhir/Patient/p1", json={**sent, "id": "p1"})
    assert put.status_code == 422
    assert (await client.get("/fhir/Patient/p1")).status_code == 404
    found = (await client.get("/fhir/Patient", params={"gender": "female"})).json()
    assert found.get("total", len(found.get("entry", []))) == 0


async def test_malformed_narrative_is_400_and_a_transaction_with_script_stores_nothing(client):
    bad = with_text({"resourceType": "Patient"}, f"<div {NS}><p>unclosed</div>")
    assert (await client.post("/fhir/Patient", json=bad)).status_code == 400
    clean = {"resourceType": "Patient", "gender": "male"}
    hostile = {
        "resourceType": "Composition",
        "status": "final",
        "type": {"text": "note"},
        "date": "2024-01-01",
        "author": [{"display": "x"}],
        "title": "x",
        "section": [{"title": "s", "text": {"status": "generated", "div": SCRIPT_DIV}}],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:1",
                "resource": clean,
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:2",
                "resource": hostile,
                "request": {"method": "POST", "url": "Composition"},
            },
        ],
    }
    answer = await client.post("/fhir", json=bundle)
    assert answer.status_code in (400, 422), answer.text
    found = (await client.get("/fhir/Patient", params={"gender": "male"})).json()
    assert not found.get("entry")


async def test_validate_reports_narrative_and_invariant_issues(client):
    not_xhtml = with_text({"resourceType": "Patient"}, "<div>no namespace</div>")
    report = (await client.post("/fhir/Patient/$validate", json=not_xhtml)).json()
    assert [i["expression"] for i in errors(report)] == [["Patient.text.div"]]
    period = {"start": "2024-02-01", "end": "2024-01-01"}
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "period": period,
    }
    report = (await client.post("/fhir/Encounter/$validate", json=encounter)).json()
    assert any("per-1" in i["diagnostics"] for i in errors(report)), report
    encounter["period"] = {"start": "2024-01-01", "end": "2024-02-01"}
    report = (await client.post("/fhir/Encounter/$validate", json=encounter)).json()
    assert errors(report) == []


async def test_parameters_validate_checks_the_posted_parameters_itself(client):
    plain = {"resourceType": "Parameters", "parameter": [{"name": "x", "valueString": "y"}]}
    report = (await client.post("/fhir/Parameters/$validate", json=plain)).json()
    assert errors(report) == [], report
    # inv-1: a parameter has one of value[x], resource or part, and this one has none
    broken = {"resourceType": "Parameters", "parameter": [{"name": "resource"}]}
    report = (await client.post("/fhir/Parameters/$validate", json=broken)).json()
    assert any("inv-1" in i["diagnostics"] for i in errors(report)), report
    unknown = {"resourceType": "Parameters", "parameter": [{"name": "x", "bogus": 1}]}
    report = (await client.post("/fhir/Parameters/$validate", json=unknown)).json()
    assert any("bogus" in i["diagnostics"] for i in errors(report)), report
    # the operation's own wrapper around a Parameters still works
    wrapper = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": unknown}],
    }
    report = (await client.post("/fhir/Parameters/$validate", json=wrapper)).json()
    assert any("bogus" in i["diagnostics"] for i in errors(report)), report
    # and at another type, a Parameters body is the wrapper, as before
    patient = {"resourceType": "Patient", "gender": "nope"}
    wrapped = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": patient}],
    }
    report = (await client.post("/fhir/Patient/$validate", json=wrapped)).json()
    assert any(i["expression"] == ["Patient.gender"] for i in errors(report)), report
