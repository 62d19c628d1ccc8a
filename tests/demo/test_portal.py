"""The demo's citizen-portal world (enjournal/demo/portal.py): families, a fullmakt, a
confidential address, a form and the GPs' slots, all relative to the load date; and the demo
users who meet them, through the secured API."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import httpx
import orjson
import pytest

from enjournal.demo import portal
from enjournal.demo.population import generate_population
from enjournal.demo.users import SCOPES, demo_users
from enjournal.fhir.norwegian_ids import OID_FNR
from enjournal.rest.interactions.common import validate_for_write
from enjournal.services.helsenorge import rules
from tests.conftest import MEMORY

TODAY = date(2026, 12, 3)  # a Thursday
SEED, PATIENTS = 3, 30


def by_id(resources: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in resources}


def age(birth: str, today: date = TODAY) -> int:
    born = date.fromisoformat(birth)
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def test_the_portal_world_is_deterministic_and_valid():
    first = portal.portal_resources(SEED, TODAY)
    assert orjson.dumps(first) == orjson.dumps(portal.portal_resources(SEED, TODAY))
    assert orjson.dumps(first) != orjson.dumps(portal.portal_resources(SEED + 1, TODAY))
    ids = [(r["resourceType"], r["id"]) for r in first]
    assert len(ids) == len(set(ids))
    for resource in first:
        validate_for_write(resource)


def test_a_parent_with_children_of_5_and_13_at_her_address():
    world = by_id(portal.portal_resources(SEED, TODAY))
    parent = world["demo-forelder"]
    small, teen = world["demo-barn-5"], world["demo-barn-13"]
    assert (age(small["birthDate"]), age(teen["birthDate"])) == (5, 13)
    assert age(parent["birthDate"]) >= 18
    assert small["address"] == teen["address"] == parent["address"]
    fnr = parent["identifier"][0]["value"]
    for child in ("demo-barn-5", "demo-barn-13"):
        link = world[f"{child}-mor"]
        assert link["patient"] == {"reference": f"Patient/{child}"}
        assert link["identifier"] == [{"system": OID_FNR, "value": fnr}]
        assert link["relationship"][0]["coding"][0]["code"] == "MTH"
    kinds = Counter(r["resourceType"] for r in world.values() if "demo-barn-5" in str(r))
    assert kinds["AllergyIntolerance"] >= 1 and kinds["Immunization"] >= 1


def test_the_fullmakt_and_the_confidential_address():
    world = by_id(portal.portal_resources(SEED, TODAY))
    fullmakt, holder = world["demo-fullmakt"], world["demo-fullmektig"]
    assert fullmakt["patient"] == {"reference": "Patient/demo-fullmaktsgiver"}
    assert fullmakt["identifier"] == holder["identifier"]
    assert fullmakt["relationship"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
        "code": "HPOWATT",
        "display": "healthcare power of attorney",
    }
    assert fullmakt["active"] is True and "end" not in fullmakt["period"]
    areas = [
        e["valueCoding"]["code"] for e in fullmakt["extension"] if e["url"] == portal.AREA_EXTENSION
    ]
    assert areas == ["1", "3"]
    hidden = world["demo-fortrolig"]
    assert hidden["meta"]["security"] == [
        {"system": portal.ADDRESS_PROTECTION, "code": "strengt-fortrolig"}
    ]
    assert "address" not in hidden
    for id_ in portal.PORTAL_USERS.values():
        assert world[id_]["generalPractitioner"] == [{"reference": portal.GP}]


def test_the_slots_lie_ahead_on_weekdays_in_office_hours():
    resources = portal.slot_resources(PATIENTS, SEED, TODAY)
    schedules = {f"Schedule/{r['id']}" for r in resources if r["resourceType"] == "Schedule"}
    slots = [r for r in resources if r["resourceType"] == "Slot"]
    assert f"Schedule/timebok-{portal.GP_ID}" in schedules
    assert len({s["id"] for s in slots}) == len(slots)
    statuses = Counter(s["status"] for s in slots)
    assert statuses["free"] > statuses["busy"] > 0
    now = datetime(2026, 12, 3, 23, 59, tzinfo=UTC)
    for s in slots[:400]:
        start, end = rules.parse_instant(s["start"]), rules.parse_instant(s["end"])
        assert start is not None and end is not None and start > now
        assert end - start == timedelta(minutes=20)
        assert start.weekday() < 5 and start.hour >= 8 and end.hour * 60 + end.minute <= 15 * 60
        assert s["schedule"]["reference"] in schedules
        validate_for_write(s)
    last = max(rules.parse_instant(s["start"]) for s in slots)
    assert last.date() <= TODAY + timedelta(days=portal.SLOT_DAYS)


def test_the_questionnaire_takes_a_valid_answer_and_names_a_missing_one():
    form = portal.questionnaire()
    validate_for_write(form)
    types = {i["type"] for i in form["item"]}
    assert {"string", "boolean", "choice", "integer"} <= types
    assert any(i.get("required") for i in form["item"])
    option = form["item"][3]["answerOption"][1]["valueCoding"]
    good = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [
            {"linkId": "arsak", "answer": [{"valueString": "Hoste"}]},
            {"linkId": "varighet", "answer": [{"valueInteger": 4}]},
            {"linkId": "feber", "answer": [{"valueBoolean": False}]},
            {"linkId": "smerte", "answer": [{"valueCoding": option}]},
        ],
    }
    rules.check_answers(form, good)
    with pytest.raises(Exception, match="arsak"):
        rules.check_answers(form, {**good, "item": good["item"][1:]})


# ---- loaded, and used through the secured API -------------------------------------------------


async def load(store, today: date = TODAY) -> int:
    shared = next(iter(generate_population(PATIENTS, SEED)))
    async with store.transaction() as tx:
        for entry in shared["entry"]:
            resource = entry["resource"]
            if not await tx.exists(resource["resourceType"], resource["id"]):
                await tx.update(resource, resource["id"])
    return await portal.load_portal(store, PATIENTS, SEED, today)


@MEMORY
async def test_loading_again_keeps_bookings_and_adds_the_new_days(store):
    assert await load(store) > 1000
    slot_id = f"time-{portal.GP_ID}-20261204-0800"
    async with store.transaction() as tx:
        from enjournal.fhir import jsonio

        slot = jsonio.loads((await tx.read("Slot", slot_id)).content)
        slot["status"] = "busy-tentative"
        await tx.update(slot, slot_id)
    added = await portal.load_portal(store, PATIENTS, SEED, TODAY + timedelta(days=7))
    assert 0 < added < 1000  # a week of new slots, nothing else
    async with store.transaction(write=False) as tx:
        assert b"busy-tentative" in (await tx.read("Slot", slot_id)).content


@MEMORY
async def test_the_portal_users_meet_their_data(store):
    await load(store, date.today())
    users = {u.name: u for u in await demo_users(store)}
    patients = by_id(portal.portal_resources(SEED, date.today()))
    for name, patient_id in portal.PORTAL_USERS.items():
        user = users[name]
        assert user.kind == "citizen" and user.fhir_user == f"Patient/{patient_id}"
        assert user.pid == patients[patient_id]["identifier"][0]["value"]
        assert "patient/Communication.c" in SCOPES[name]


@pytest.fixture
async def portal_api(store):
    from enjournal.security.keys import generate
    from enjournal.security.provider import Provider, ProviderConfig
    from enjournal.security.ratelimit import MemoryLimiter
    from enjournal.security.setup import Security
    from enjournal.security.tokens import TokenVerifier
    from enjournal.server.app import create_app
    from enjournal.settings import Settings

    await load(store, date.today())
    users = await demo_users(store)
    provider = Provider(ProviderConfig(issuer="http://test/oidc", key=generate(), users=users))
    security = Security(
        verifier=TokenVerifier([provider.issuer_config()]),
        provider=provider,
        limiter=MemoryLimiter(),
    )
    await security.start(store)
    app = create_app(Settings(database_url="unused", public_url="http://test"), store, security)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:

        async def call(who: str, method: str, path: str, body=None):
            user = provider.users[who]
            token = provider.issue_token(user, scopes=SCOPES[who])
            headers = {"Authorization": f"Bearer {token}"}
            return await http.request(method, f"/fhir/{path}", json=body, headers=headers)

        yield call
    await security.stop()


@MEMORY
async def test_the_parent_acts_for_the_5_year_old_and_books_a_slot(portal_api):
    assert (await portal_api("parent", "GET", "Patient/demo-barn-5")).status_code == 200
    teen = await portal_api("parent", "GET", "AllergyIntolerance?patient=demo-barn-13")
    assert teen.status_code == 403, teen.text  # 13: the record is cut off from the parents
    slots = (await portal_api("parent", "GET", "Patient/demo-barn-5/$gp-slots")).json()
    assert slots["total"] > 0
    first = slots["entry"][0]["resource"]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": "Patient/demo-barn-5"}},
            {"name": "slot", "valueReference": {"reference": f"Slot/{first['id']}"}},
        ],
    }
    booked = await portal_api("parent", "POST", "Appointment/$book", body)
    assert booked.status_code == 201, booked.text


@MEMORY
async def test_the_thread_with_the_gp_is_there_for_the_patient_and_the_gp(portal_api):
    mine = await portal_api("parent", "GET", "Communication?subject=Patient/demo-forelder")
    assert mine.status_code == 200, mine.text
    messages = [e["resource"] for e in mine.json()["entry"]]
    assert {m["sender"]["reference"] for m in messages} == {"Patient/demo-forelder", portal.GP}
    gp = await portal_api("gp", "GET", "Communication?subject=Patient/demo-fullmaktsgiver")
    assert gp.status_code == 200 and gp.json()["entry"], gp.text
    form = await portal_api("confidential", "GET", f"Questionnaire/{portal.QUESTIONNAIRE_ID}")
    assert form.status_code == 200, form.text


@MEMORY
async def test_the_holder_of_the_fullmakt_writes_to_the_givers_gp(portal_api):
    pytest.importorskip("enjournal.security.representation")  # the fullmakt's areas
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "text", "valueString": "Kan far få time neste uke?"},
            {"name": "topic", "valueCode": "dialog"},
        ],
    }
    sent = await portal_api("proxy", "POST", "Patient/demo-fullmaktsgiver/$message-gp", body)
    assert sent.status_code == 201, sent.text
    assert sent.json()["sender"] == {"reference": "RelatedPerson/demo-fullmakt"}
    other = await portal_api("proxy", "POST", "Patient/demo-forelder/$message-gp", body)
    assert other.status_code == 404, other.text


@MEMORY
async def test_the_portal_citizens_have_e_prescriptions_one_dispensed(platform):
    from enjournal.demo.prescriptions import PLANS, load_prescriptions, planned
    from enjournal.services.eresept.fest.catalogue import DEMO_FILE, load_file
    from enjournal.services.eresept.rules import RESEPT_ID

    store = platform.store
    await load_file(store, DEMO_FILE)
    await load(store, date.today())
    users = {u.name: u for u in await demo_users(store)}
    plans = planned(users)
    assert await load_prescriptions(platform) == sum(len(items) for items in plans.values())
    assert await load_prescriptions(platform) == 0  # a reused database gets no duplicates
    for patient, items in plans.items():
        async with store.transaction(write=False) as tx:
            found = await tx.referencing_target(
                "Patient", patient, ("MedicationRequest", "MedicationDispense"), "subject"
            )
        resources = [orjson.loads(f.content) for f in found]
        ours = [r for r in resources if RESEPT_ID in str(r.get("identifier"))]
        assert len(ours) == len(items), patient
        assert all(r["resourceType"] == "MedicationRequest" for r in ours)
        dispensed = [r for r in resources if r["resourceType"] == "MedicationDispense"]
        assert len(dispensed) == sum(i.dispensed for i in items), patient
        statuses = {r["status"] for r in ours}
        assert statuses == ({"active", "completed"} if dispensed else {"active"}), patient
        assert any(r["dispenseRequest"]["numberOfRepeatsAllowed"] > 0 for r in ours)
    for who in ("citizen", "demo-forelder"):
        assert any(i.dispensed for i in PLANS[who])
