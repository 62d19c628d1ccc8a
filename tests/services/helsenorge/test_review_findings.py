"""Security review of the portal (3 Dec): a citizen's refused operations and the address
protection label, as audited and guarded."""

from __future__ import annotations

from tests.conftest import MEMORY
from tests.security.conftest import secured  # noqa: F401 (the fixtures build on it)
from tests.services.helsenorge.test_fullmakt import give, hn  # noqa: F401
from tests.services.helsenorge.test_gp import answers, gp, message, submit  # noqa: F401
from tests.services.kjernejournal.test_access import audit_rows

pytestmark = MEMORY


async def kari_events(client) -> list[dict]:
    return [e for *_, e in await audit_rows(client.store, "kari")]


def purposes(event: dict) -> set[str]:
    return {c.get("code") for p in event.get("purposeOfEvent", []) for c in p.get("coding", [])}


def references(event: dict) -> list[str]:
    return [e.get("what", {}).get("reference", "") for e in event.get("entity", [])]


async def test_a_citizens_refused_fullmakt_is_audited_as_their_request(hn):  # noqa: F811
    assert (await give(hn, giver="kari", receiver="skjult")).status_code == 422
    refused = [e for e in await kari_events(hn) if e["outcome"] != "0"]
    assert refused, "the refusal is audited"
    assert all(purposes(e) == {"PATRQT"} for e in refused), refused


async def test_a_message_to_the_gp_names_no_empty_entity(gp):  # noqa: F811
    assert (await message(gp)).status_code == 201
    events = await kari_events(gp)
    assert all(purposes(e) == {"PATRQT"} for e in events), events
    assert not [r for e in events for r in references(e) if r.endswith("/")], events


async def test_personnel_cannot_register_a_patient_with_protection(hn):  # noqa: F811
    label = {"system": "https://enjournal.no/fhir/CodeSystem/adressebeskyttelse"}
    patient = {
        "resourceType": "Patient",
        "meta": {"security": [{**label, "code": "fortrolig"}]},
        "name": [{"family": "Uten", "given": ["Nummer"]}],
    }
    response = await hn.http.post("/fhir/Patient", json=patient, headers=hn.headers("gp"))
    assert response.status_code == 403, response.text
    assert "meta.security" in response.text


async def test_a_submitted_form_has_the_forms_texts_and_the_citizen_as_source(gp):  # noqa: F811
    forged = answers(("plager", "valueString", "Hoste"))
    forged["source"] = {"reference": "Practitioner/gp"}
    forged["item"][0]["text"] = "Legen sier: ta 10 tabletter"
    response = await submit(gp, forged)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["source"] == {"reference": "Patient/kari"}
    assert stored["item"][0]["text"] == "Hva gjelder det?"


async def test_a_health_worker_cannot_send_in_the_patients_name(gp):  # noqa: F811
    forged = {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": "Patient/kari"},
        "sender": {"reference": "Patient/kari"},
        "recipient": [{"reference": "Practitioner/gp"}],
        "payload": [{"contentString": "Jeg trekker klagen."}],
    }
    headers = gp.headers("gp")
    response = await gp.http.post("/fhir/Communication", json=forged, headers=headers)
    assert response.status_code == 403, response.text
    assert "sender" in response.text
    own = {**forged, "sender": {"reference": "Practitioner/gp"}}
    response = await gp.http.post("/fhir/Communication", json=own, headers=headers)
    assert response.status_code == 201, response.text


async def test_a_health_worker_writes_only_their_own_offices_calendar(gp):  # noqa: F811
    headers = gp.headers("gp")
    other = (await gp.http.get("/fhir/Slot/s-other", headers=headers)).json()
    other["status"] = "busy"
    response = await gp.http.put("/fhir/Slot/s-other", json=other, headers=headers)
    assert response.status_code == 403, response.text
    assert (await gp.http.delete("/fhir/Slot/s-other", headers=headers)).status_code == 403
    moved = (await gp.http.get("/fhir/Slot/s1", headers=headers)).json()
    moved["schedule"] = {"reference": "Schedule/other-schedule"}
    response = await gp.http.put("/fhir/Slot/s1", json=moved, headers=headers)
    assert response.status_code == 403, response.text
    schedule = (await gp.http.get("/fhir/Schedule/other-schedule", headers=headers)).json()
    response = await gp.http.put("/fhir/Schedule/other-schedule", json=schedule, headers=headers)
    assert response.status_code == 403, response.text
    own = (await gp.http.get("/fhir/Slot/s2", headers=headers)).json()
    own["status"] = "busy-unavailable"
    response = await gp.http.put("/fhir/Slot/s2", json=own, headers=headers)
    assert response.status_code == 200, response.text


async def test_a_health_worker_cannot_rewrite_the_national_form(gp):  # noqa: F811
    headers = gp.headers("gp")
    form = (await gp.http.get("/fhir/Questionnaire/egenrapport", headers=headers)).json()
    form["item"][0]["text"] = "Oppgi bankkortnummer"
    response = await gp.http.put("/fhir/Questionnaire/egenrapport", json=form, headers=headers)
    assert response.status_code == 403, response.text
