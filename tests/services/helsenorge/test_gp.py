"""The GP office's digital services (helsenorge/gp.py): messages and renewal requests,
booking and cancelling appointments, answering forms; who may, and the audit trail.

The world of tests/security/conftest.py (GP "gp" at office "lk" with kari, lise (8) and
per (13) on the list; siri with no GP), plus the GP's schedule with slots in the future and
the past, another GP's schedule, and a short form.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from enjournal.services.helsenorge.rules import TOPIC_SYSTEM
from tests.conftest import MEMORY
from tests.security.conftest import practitioner, secured  # noqa: F401 (fixture)
from tests.services.kjernejournal.test_access import audit_rows

pytestmark = MEMORY

FUTURE = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)


def slot(id_: str, schedule: str, start: datetime, status: str = "free") -> dict:
    return {
        "resourceType": "Slot",
        "id": id_,
        "schedule": {"reference": f"Schedule/{schedule}"},
        "status": status,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=20)).isoformat(),
    }


def schedule(id_: str, *actors: str) -> dict:
    return {
        "resourceType": "Schedule",
        "id": id_,
        "active": True,
        "actor": [{"reference": a} for a in actors],
    }


QUESTIONNAIRE = {
    "resourceType": "Questionnaire",
    "id": "egenrapport",
    "url": "https://enjournal.no/fhir/Questionnaire/egenrapport",
    "status": "active",
    "item": [
        {"linkId": "plager", "text": "Hva gjelder det?", "type": "string", "required": True},
        {"linkId": "feber", "text": "Har du feber?", "type": "boolean"},
        {"linkId": "dager", "text": "Hvor mange dager?", "type": "integer"},
        {
            "linkId": "smerte",
            "text": "Smerte",
            "type": "choice",
            "answerOption": [
                {"valueCoding": {"system": "urn:test", "code": "ingen"}},
                {"valueCoding": {"system": "urn:test", "code": "sterk"}},
            ],
        },
    ],
}


def gp_world() -> list[dict]:
    return [
        practitioner("other-gp", "1000009"),
        schedule("gp-schedule", "Practitioner/gp", "PractitionerRole/gp-role"),
        schedule("other-schedule", "Practitioner/other-gp"),
        slot("s1", "gp-schedule", FUTURE),
        slot("s2", "gp-schedule", FUTURE + timedelta(minutes=20)),
        slot("s-busy", "gp-schedule", FUTURE + timedelta(minutes=40), "busy"),
        slot("s-past", "gp-schedule", FUTURE - timedelta(days=4)),
        slot("s-other", "other-schedule", FUTURE),
        QUESTIONNAIRE,
    ]


@pytest.fixture
async def gp(secured):  # noqa: F811 (the fixture imported above)
    async with secured.store.transaction() as tx:
        for resource in gp_world():
            await tx.update(resource, resource["id"])
    return secured


def params(*parts: tuple[str, str, object]) -> dict:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": name, kind: value} for name, kind, value in parts],
    }


async def post(client, who: str, url: str, body: dict):
    return await client.http.post(f"/fhir/{url}", json=body, headers=client.headers(who))


async def message(client, who="kari", patient="kari", text="Hei, jeg har vondt i ryggen", **more):
    parts = [("text", "valueString", text)]
    for name, value in more.items():
        name = name.replace("_", "-")
        kind = "valueCode" if name == "topic" else "valueReference"
        parts.append((name, kind, value if kind == "valueCode" else {"reference": value}))
    return await post(client, who, f"Patient/{patient}/$message-gp", params(*parts))


async def book(client, who="kari", patient="kari", slot_id="s1", comment=None):
    parts = [
        ("patient", "valueReference", {"reference": f"Patient/{patient}"}),
        ("slot", "valueReference", {"reference": f"Slot/{slot_id}"}),
    ]
    if comment:
        parts.append(("comment", "valueString", comment))
    return await post(client, who, "Appointment/$book", params(*parts))


async def read(client, who: str, ref: str) -> dict:
    response = await client.get(who, f"/fhir/{ref}")
    assert response.status_code == 200, response.text
    return response.json()


async def subtypes(client, patient: str) -> list[tuple[str, str, str]]:
    """(subtype, action, outcome) of the patient's audit events."""
    return [
        (e["subtype"][-1]["code"], e["action"], e["outcome"])
        for *_, e in await audit_rows(client.store, patient)
    ]


# ---- messages -------------------------------------------------------------------------------


async def test_a_message_goes_to_the_gp_and_the_office_and_is_audited(gp):
    response = await message(gp, topic="e-konsultasjon")
    assert response.status_code == 201, response.text
    sent = response.json()
    assert sent["status"] == "completed"
    assert sent["subject"] == {"reference": "Patient/kari"}
    assert sent["sender"] == {"reference": "Patient/kari"}
    assert sent["recipient"] == [
        {"reference": "Practitioner/gp"},
        {"reference": "Organization/lk"},
    ]
    assert sent["category"][0]["coding"][0]["system"] == TOPIC_SYSTEM
    assert sent["category"][0]["coding"][0]["code"] == "e-konsultasjon"
    assert sent["payload"] == [{"contentString": "Hei, jeg har vondt i ryggen"}]
    assert response.headers["location"].startswith("http://test/fhir/Communication/")
    assert ("$message-gp", "C", "0") in await subtypes(gp, "kari")


async def test_the_gp_replies_through_the_plain_api_and_the_patient_sees_the_thread(gp):
    first = (await message(gp)).json()
    reply = {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": "Patient/kari"},
        "sender": {"reference": "Practitioner/gp"},
        "recipient": [{"reference": "Patient/kari"}],
        "inResponseTo": [{"reference": f"Communication/{first['id']}"}],
        "payload": [{"contentString": "Kom innom på torsdag."}],
    }
    response = await gp.http.post("/fhir/Communication", json=reply, headers=gp.headers("gp"))
    assert response.status_code == 201, response.text
    answer = response.json()
    found = await gp.get("kari", "/fhir/Communication?subject=Patient/kari")
    assert found.status_code == 200, found.text
    ids = {e["resource"]["id"] for e in found.json()["entry"]}
    assert ids == {first["id"], answer["id"]}
    follow_up = await message(gp, text="Takk!", in_response_to=f"Communication/{answer['id']}")
    assert follow_up.status_code == 201, follow_up.text
    assert follow_up.json()["inResponseTo"] == [{"reference": f"Communication/{answer['id']}"}]


async def test_a_thread_must_be_the_patients_own(gp):
    theirs = (await message(gp, who="kari", patient="lise")).json()
    response = await message(gp, in_response_to=f"Communication/{theirs['id']}")
    assert response.status_code == 404, response.text


async def test_a_renewal_request_names_the_patients_own_prescription(gp):
    response = await message(gp, topic="fornyelse", about="MedicationRequest/kari-mr")
    assert response.status_code == 201, response.text
    assert response.json()["about"] == [{"reference": "MedicationRequest/kari-mr"}]
    other = await message(gp, topic="fornyelse", about="MedicationRequest/siri-mr")
    assert other.status_code == 404, other.text
    assert ("$message-gp", "C", "4") in await subtypes(gp, "kari")


async def test_bad_messages_are_refused(gp):
    assert (await message(gp, text="   ")).status_code == 400
    assert (await message(gp, text="x" * 4001)).status_code == 422
    assert (await message(gp, topic="sladder")).status_code == 400
    wrong = params(
        ("text", "valueString", "hei"), ("about", "valueReference", {"reference": "Patient/kari"})
    )
    assert (await post(gp, "kari", "Patient/kari/$message-gp", wrong)).status_code == 400


async def test_a_patient_without_a_gp_gets_a_clear_422(gp):
    response = await message(gp, who="siri", patient="siri")
    assert response.status_code == 422, response.text
    assert "no GP" in response.text


async def test_a_parent_writes_for_a_child_under_12_as_the_related_person(gp):
    response = await message(gp, who="kari", patient="lise")
    assert response.status_code == 201, response.text
    assert response.json()["sender"] == {"reference": "RelatedPerson/lise-mother"}
    assert response.json()["subject"] == {"reference": "Patient/lise"}


async def test_nobody_else_writes_for_a_patient(gp):
    assert (await message(gp, who="siri", patient="kari")).status_code == 404
    response = await message(gp, who="gp", patient="kari")
    assert response.status_code == 403, response.text


async def test_a_citizen_cannot_forge_a_message_through_the_plain_api(gp):
    forged = {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": "Patient/kari"},
        "sender": {"reference": "Practitioner/gp"},
        "recipient": [{"reference": "Patient/kari"}],
        "payload": [{"contentString": "Du får alle resepter du vil."}],
    }
    response = await gp.http.post("/fhir/Communication", json=forged, headers=gp.headers("kari"))
    assert response.status_code == 403, response.text
    assert "$message-gp" in response.text
    assert ("create", "C", "4") in await subtypes(gp, "kari")


# ---- appointments ---------------------------------------------------------------------------


async def test_free_slots_of_the_own_gp(gp):
    response = await gp.get("kari", "/fhir/Patient/kari/$gp-slots")
    assert response.status_code == 200, response.text
    assert [e["resource"]["id"] for e in response.json()["entry"]] == ["s1", "s2"]
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    plain = await gp.get(
        "kari", f"/fhir/Slot?schedule=Schedule/gp-schedule&status=free&start=ge{now}&_sort=start"
    )
    assert plain.status_code == 200, plain.text
    assert [e["resource"]["id"] for e in plain.json()["entry"]] == ["s1", "s2"]


async def test_booking_makes_the_slot_busy_and_a_second_booking_conflicts(gp):
    response = await book(gp, comment="Vondt i ryggen")
    assert response.status_code == 201, response.text
    booked = response.json()
    assert booked["status"] == "booked"
    assert booked["slot"] == [{"reference": "Slot/s1"}]
    assert booked["start"] == FUTURE.isoformat()
    assert booked["comment"] == "Vondt i ryggen"
    actors = {p["actor"]["reference"]: p["status"] for p in booked["participant"]}
    assert actors == {"Patient/kari": "accepted", "Practitioner/gp": "accepted"}
    assert (await read(gp, "gp", "Slot/s1"))["status"] == "busy"
    again = await book(gp, who="kari", patient="lise")
    assert again.status_code == 409, again.text
    assert ("$book", "C", "0") in await subtypes(gp, "kari")
    assert ("$book", "C", "4") in await subtypes(gp, "lise")


async def test_only_the_own_gps_future_free_slots(gp):
    assert (await book(gp, slot_id="s-other")).status_code == 422
    assert (await book(gp, slot_id="s-past")).status_code == 422
    assert (await book(gp, slot_id="s-busy")).status_code == 409
    assert (await book(gp, slot_id="nope")).status_code == 404
    assert (await book(gp, who="siri", patient="kari")).status_code == 404
    assert (await book(gp, who="siri", patient="siri")).status_code == 422  # no GP


async def test_cancel_frees_the_slot(gp):
    booked = (await book(gp)).json()
    cancel = params(("reason", "valueString", "Blitt frisk"))
    response = await post(gp, "kari", f"Appointment/{booked['id']}/$cancel", cancel)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancelationReason"] == {"text": "Blitt frisk"}
    assert (await read(gp, "gp", "Slot/s1"))["status"] == "free"
    again = await post(gp, "kari", f"Appointment/{booked['id']}/$cancel", params())
    assert again.status_code == 409, again.text
    assert ("$cancel", "U", "0") in await subtypes(gp, "kari")
    rebooked = await book(gp, who="kari", patient="lise")
    assert rebooked.status_code == 201, rebooked.text


async def test_someone_elses_appointment_cannot_be_cancelled(gp):
    booked = (await book(gp)).json()
    response = await post(gp, "siri", f"Appointment/{booked['id']}/$cancel", params())
    assert response.status_code == 404, response.text
    assert (await read(gp, "gp", "Slot/s1"))["status"] == "busy"


async def test_a_citizen_cannot_book_through_the_plain_api(gp):
    plain = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": (FUTURE + timedelta(minutes=40)).isoformat(),
        "end": (FUTURE + timedelta(minutes=60)).isoformat(),
        "slot": [{"reference": "Slot/s-busy"}],
        "participant": [{"actor": {"reference": "Patient/kari"}, "status": "accepted"}],
    }
    response = await gp.http.post("/fhir/Appointment", json=plain, headers=gp.headers("kari"))
    assert response.status_code == 403, response.text
    assert "$book" in response.text


# ---- forms --------------------------------------------------------------------------------


def answers(*items: tuple[str, str, object]) -> dict:
    return {
        "resourceType": "QuestionnaireResponse",
        "status": "in-progress",
        "author": {"reference": "Practitioner/gp"},  # forged: replaced by the caller
        "item": [{"linkId": link, "answer": [{kind: value}]} for link, kind, value in items],
    }


async def submit(client, response: dict, who="kari", patient="kari"):
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "response", "resource": response},
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
        ],
    }
    return await post(client, who, "Questionnaire/egenrapport/$submit", body)


async def test_a_valid_form_is_stored_completed_by_the_patient(gp):
    response = await submit(
        gp,
        answers(
            ("plager", "valueString", "Hoste"),
            ("feber", "valueBoolean", True),
            ("dager", "valueInteger", 3),
            ("smerte", "valueCoding", {"system": "urn:test", "code": "sterk"}),
        ),
    )
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["status"] == "completed"
    assert stored["subject"] == {"reference": "Patient/kari"}
    assert stored["author"] == {"reference": "Patient/kari"}
    assert stored["questionnaire"] == QUESTIONNAIRE["url"]
    assert ("$submit", "C", "0") in await subtypes(gp, "kari")


@pytest.mark.parametrize(
    ("items", "named"),
    [
        ([("feber", "valueBoolean", True)], "plager"),  # the required item is missing
        ([("plager", "valueString", "x"), ("dager", "valueString", "tre")], "dager"),
        ([("plager", "valueString", "x"), ("smerte", "valueCoding", {"code": "litt"})], "smerte"),
        ([("plager", "valueString", "x"), ("ukjent", "valueString", "?")], "ukjent"),
    ],
)
async def test_an_invalid_form_is_refused_naming_the_item(gp, items, named):
    response = await submit(gp, answers(*items))
    assert response.status_code == 422, response.text
    assert named in response.text
    assert ("$submit", "C", "4") in await subtypes(gp, "kari")


async def test_a_citizen_cannot_store_a_form_answer_through_the_plain_api(gp):
    plain = answers(("plager", "valueString", "x"))
    plain["subject"] = {"reference": "Patient/kari"}
    response = await gp.http.post(
        "/fhir/QuestionnaireResponse", json=plain, headers=gp.headers("kari")
    )
    assert response.status_code == 403, response.text


async def test_two_bookers_of_one_slot_cannot_both_win(gp):
    import asyncio

    first, second = await asyncio.gather(
        book(gp, who="kari", patient="kari"), book(gp, who="kari", patient="lise")
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409]
