"""history at each level, $validate, _summary on read, logs (http.html#history)."""

from __future__ import annotations

import json
import logging


async def test_type_and_system_history_with_since_and_paging(client):
    first = (await client.post("/fhir/Patient", json={"resourceType": "Patient"})).json()
    since = first["meta"]["lastUpdated"]
    for _ in range(4):
        await client.post("/fhir/Patient", json={"resourceType": "Patient"})
    await client.post("/fhir/Organization", json={"resourceType": "Organization", "name": "X"})

    page = (await client.get("/fhir/Patient/_history", params={"_count": "3"})).json()
    assert page["type"] == "history" and len(page["entry"]) == 3
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    rest = (await client.get(next_url.removeprefix("http://test"))).json()
    assert len(rest["entry"]) == 2
    ids = [e["resource"]["id"] for e in page["entry"] + rest["entry"]]
    assert len(set(ids)) == 5

    system = (await client.get("/fhir/_history")).json()
    assert system["entry"][0]["resource"]["resourceType"] == "Organization"
    after = (await client.get("/fhir/_history", params={"_since": since})).json()
    assert len(after["entry"]) == 6  # the first patient is included (>= _since)
    bad = await client.get("/fhir/_history", params={"_since": "yesterday"})
    assert bad.status_code == 400


async def test_validate_operation_reports_without_storing(client):
    ok = await client.post("/fhir/Patient/$validate", json={"resourceType": "Patient"})
    assert ok.status_code == 200
    assert ok.json()["issue"][0]["severity"] == "information"
    bad = await client.post(
        "/fhir/Observation/$validate", json={"resourceType": "Observation", "status": "final"}
    )
    assert bad.status_code == 200
    problems = bad.json()["issue"]
    assert any(i["severity"] == "error" and "code" in i["diagnostics"] for i in problems)
    assert (await client.get("/fhir/Observation")).json()["total"] == 0


async def test_summary_on_read_marks_subsetted(client):
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "Berg"}],
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
        "contact": [{"name": {"family": "Berg"}}],
    }
    pid = (await client.post("/fhir/Patient", json=patient)).json()["id"]
    summary = (await client.get(f"/fhir/Patient/{pid}", params={"_summary": "true"})).json()
    assert "name" in summary and "contact" not in summary and "text" not in summary
    assert summary["meta"]["tag"][0]["code"] == "SUBSETTED"
    text = (await client.get(f"/fhir/Patient/{pid}", params={"_summary": "text"})).json()
    assert "text" in text and "name" not in text


async def test_request_id_is_echoed_and_logged_as_json(client, caplog):
    from enjournal.server.observability import JsonFormatter

    with caplog.at_level(logging.INFO, logger="enjournal.server"):
        r = await client.get("/fhir/metadata", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    lines = [JsonFormatter().format(rec) for rec in caplog.records if rec.msg == "request"]
    entry = json.loads(lines[-1])
    assert entry["request_id"] == "abc-123" and entry["status"] == 200


async def test_unhandled_errors_give_operation_outcome_without_trace(client, monkeypatch):
    import enjournal.rest.interactions.capabilities as capabilities

    def boom(base_url):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(capabilities, "_statement_bytes", boom)
    r = await client.get("/fhir/metadata")
    assert r.status_code == 500
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "secret" not in r.text and "Traceback" not in r.text


async def test_oversized_body_is_refused(store):
    import httpx

    from enjournal.server.app import create_app
    from enjournal.settings import Settings

    app = create_app(Settings(database_url="unused", max_body_bytes=100, auth=False), store)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        r = await http.post("/fhir/Patient", content=b"{" + b" " * 200 + b"}")
    assert r.status_code == 413
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_extensible_bindings_warn_in_validate_but_do_not_refuse_writes(client):
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "pulse"},
        "interpretation": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "ZZZ",
                    }
                ]
            }
        ],
    }
    report = (await client.post("/fhir/Observation/$validate", json=obs)).json()
    warnings = [i for i in report["issue"] if i["severity"] == "warning"]
    assert warnings and "extensible value set" in warnings[0]["diagnostics"]
    assert warnings[0]["expression"] == ["Observation.interpretation[0].coding"]
    assert not [i for i in report["issue"] if i["severity"] == "error"]
    assert (await client.post("/fhir/Observation", json=obs)).status_code == 201
