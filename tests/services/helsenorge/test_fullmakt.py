"""Representation on the FHIR API (helsenorge/fullmakt.py and the guard's facts): giving,
listing, using, changing and revoking a fullmakt; parents of a 5- and a 13-year-old;
``$represented``; who may do what, and the audit trail.

The world of tests/security/conftest.py (kari with lise (8) and per (13) at her address,
siri with no relation to anyone), plus, with birth dates (and fødselsnumre) relative to
today: mia (5) at kari's address, "ung" (17), "tor" (16), and "skjult", an adult with a
strengt fortrolig address.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from enjournal.fhir import norwegian_ids as ids
from enjournal.security import representation as rules
from enjournal.security.provider import DemoUser
from enjournal.services.helsenorge.jobs import end_fullmakts
from tests.conftest import MEMORY
from tests.security.conftest import FNR, PIDS, SCOPES, patient, secured  # noqa: F401
from tests.services.kjernejournal.test_access import audit_rows

pytestmark = MEMORY

TODAY = date.today()


def born(years: int, days: int = 30) -> date:
    """A birth date ``years`` years (and ``days`` days) before today."""
    try:
        anniversary = TODAY.replace(year=TODAY.year - years)
    except ValueError:  # 29 February
        anniversary = TODAY.replace(year=TODAY.year - years, day=28)
    return anniversary - timedelta(days=days)


def synthetic_fnr(birth: date) -> str:
    """A valid synthetic fødselsnummer (Tenor: month + 80) for ``birth``."""
    individuals = range(500, 1000) if birth.year >= 2000 else range(0, 500)
    for individual in individuals:
        number = ids._with_controls(
            f"{birth.day:02d}{birth.month + 80:02d}{birth.year % 100:02d}{individual:03d}"
        )
        if number:
            return number
    raise AssertionError("no number")


PEOPLE = {"mia": born(5), "ung": born(17), "tor": born(16, days=1), "skjult": born(40)}
NUMBERS = {name: synthetic_fnr(birth) for name, birth in PEOPLE.items()}
ALL = {**PIDS, **NUMBERS}


def person(id_: str) -> dict:
    resource = {
        **patient("kari", PEOPLE[id_].isoformat(), "Practitioner/gp"),
        "id": id_,
        "identifier": [{"system": FNR, "value": NUMBERS[id_]}],
        "name": [{"given": [id_.capitalize()], "family": "Test"}],
    }
    if id_ == "skjult":
        resource["meta"] = {
            "security": [{"system": rules.ADDRESS_PROTECTION, "code": "strengt-fortrolig"}]
        }
        resource.pop("address")
    return resource


def mother_of(child: str) -> dict:
    return {
        "resourceType": "RelatedPerson",
        "id": f"{child}-mother",
        "patient": {"reference": f"Patient/{child}"},
        "identifier": [{"system": FNR, "value": PIDS["kari"]}],
        "relationship": [{"coding": [{"system": rules.ROLE_SYSTEM, "code": "MTH"}]}],
    }


def observation(id_: str, patient_id: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


@pytest.fixture
async def hn(secured):  # noqa: F811 (the fixture imported above)
    async with secured.store.transaction() as tx:
        for id_ in PEOPLE:
            await tx.update(person(id_), id_)
        await tx.update(mother_of("mia"), "mia-mother")
        await tx.update(observation("mia-obs", "mia"), "mia-obs")
        await tx.update(
            {
                "resourceType": "Condition",
                "id": "kari-cond",
                "subject": {"reference": "Patient/kari"},
                "code": {"text": "Migrene"},
            },
            "kari-cond",
        )
    return secured


def token(client, who: str) -> dict:
    user = DemoUser(who, "citizen", who.capitalize(), pid=ALL[who])
    return {
        "Authorization": f"Bearer {client.provider.issue_token(user, scopes=SCOPES['citizen'])}"
    }


async def get(client, who: str, url: str):
    return await client.http.get(f"/fhir/{url}", headers=token(client, who))


async def post(client, who: str, url: str, *parts: tuple[str, str, object]):
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": name, kind: value} for name, kind, value in parts],
    }
    return await client.http.post(f"/fhir/{url}", json=body, headers=token(client, who))


async def give(
    client, giver="kari", receiver="siri", areas=("1",), start=None, end=None, family=None
):
    family = family or ("Test" if receiver in PEOPLE else receiver)
    parts = [("receiver", "valueString", ALL[receiver]), ("receiver-family", "valueString", family)]
    parts += [("area", "valueCode", a) for a in areas]
    if start:
        parts.append(("start", "valueDate", start))
    if end:
        parts.append(("end", "valueDate", end))
    return await post(client, giver, f"Patient/{giver}/$fullmakt", *parts)


async def revoke(client, who: str, giver: str, ref: str):
    return await post(client, who, f"Patient/{giver}/$fullmakt", ("revoke", "valueString", ref))


async def events(client, patient_id: str) -> list[tuple[str, str, str]]:
    """(subtype, action, outcome) of the patient's audit events."""
    return [
        (e["subtype"][-1]["code"], e["action"], e["outcome"])
        for *_, e in await audit_rows(client.store, patient_id)
    ]


def people(parameters: dict) -> dict[str, dict]:
    """$represented as {patient id: {"relation":, "area": [...], "age":, "display":}}."""
    found = {}
    for person_ in parameters["parameter"]:
        parts = person_["part"]
        ref = next(p["valueReference"] for p in parts if p["name"] == "patient")
        found[ref["reference"].removeprefix("Patient/")] = {
            "display": ref.get("display"),
            "relation": next(p["valueCode"] for p in parts if p["name"] == "relation"),
            "area": [p["valueCode"] for p in parts if p["name"] == "area"],
            "age": next((p["valueInteger"] for p in parts if p["name"] == "age"), None),
        }
    return found


# ---- giving, listing, using -----------------------------------------------------------------


async def test_a_fullmakt_is_given_listed_and_used_for_reading(hn):
    assert (await get(hn, "siri", "Observation/kari-obs")).status_code == 404
    response = await give(hn, areas=("1",))
    assert response.status_code == 201, response.text
    given = response.json()
    assert given["patient"] == {"reference": "Patient/kari"}
    assert given["identifier"] == [{"system": FNR, "value": PIDS["siri"]}]
    assert given["relationship"][0]["coding"][0]["code"] == "HPOWATT"
    assert given["active"] is True and given["period"] == {"start": TODAY.isoformat()}
    assert rules.areas_of(given) == {"1"}
    assert given["name"] == [{"family": "siri"}]
    assert response.headers["location"].endswith(f"RelatedPerson/{given['id']}/_history/1")

    listed = (await get(hn, "kari", "Patient/kari/$fullmakt")).json()["parameter"]
    assert [(p["part"][0]["valueCode"], p["part"][1]["valueCode"]) for p in listed] == [
        ("given", "active")
    ]
    held = (await get(hn, "siri", "Patient/siri/$fullmakt")).json()["parameter"]
    assert [p["part"][0]["valueCode"] for p in held] == ["received"]
    assert held[0]["part"][2]["resource"]["id"] == given["id"]

    for url in ("Patient/kari", "Observation/kari-obs", "Condition/kari-cond"):
        assert (await get(hn, "siri", url)).status_code == 200, url
    found = await get(hn, "siri", "Condition?patient=kari")
    assert found.status_code == 200 and found.json()["total"] == 1
    # Never more than kari has: she cannot change her record, nor can siri.
    changed = {**observation("kari-obs", "kari"), "status": "amended"}
    put = await hn.http.put("/fhir/Observation/kari-obs", json=changed, headers=token(hn, "siri"))
    assert put.status_code == 403
    message = {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": "Patient/kari"},
        "payload": [{"contentString": "Hei"}],
    }
    sent = await hn.http.post("/fhir/Communication", json=message, headers=token(hn, "siri"))
    assert sent.status_code == 403  # area 1 reads; writing to the GP office is area 3
    assert ("$fullmakt", "C", "0") in await events(hn, "kari")
    assert ("$fullmakt", "R", "0") in await events(hn, "siri")


async def test_services_only_opens_no_record(hn):
    assert (await give(hn, areas=("3",))).status_code == 201
    assert (await get(hn, "siri", "Patient/kari")).status_code == 200  # whom she acts for
    assert (await get(hn, "siri", "Observation/kari-obs")).status_code == 404
    found = await get(hn, "siri", "Observation?patient=kari")
    assert found.status_code == 403
    assert ("search-type", "R", "4") in await events(hn, "kari")


async def test_a_revoked_fullmakt_opens_nothing_at_once(hn):
    given = (await give(hn, areas=("1", "3"))).json()
    assert (await get(hn, "siri", "Observation/kari-obs")).status_code == 200
    response = await revoke(hn, "kari", "kari", f"RelatedPerson/{given['id']}")
    assert response.status_code == 200, response.text
    revoked = response.json()
    assert revoked["active"] is False and revoked["period"]["end"][:10] == TODAY.isoformat()
    assert (await get(hn, "siri", "Observation/kari-obs")).status_code == 404
    assert (await get(hn, "siri", "Patient/kari")).status_code == 404
    again = await revoke(hn, "kari", "kari", f"RelatedPerson/{given['id']}")
    assert again.status_code == 200 and again.json()["meta"]["versionId"] == "2"  # idempotent
    listed = (await get(hn, "kari", "Patient/kari/$fullmakt")).json()["parameter"]
    assert listed[0]["part"][1]["valueCode"] == "revoked"
    assert ("$fullmakt", "U", "0") in await events(hn, "kari")


async def test_an_ended_fullmakt_opens_nothing_and_the_job_marks_it(hn):
    given = (await give(hn)).json()
    async with hn.store.transaction() as tx:
        ended = {**given, "period": {"start": "2020-01-01", "end": "2021-01-01"}}
        await tx.update(ended, given["id"])
    assert (await get(hn, "siri", "Observation/kari-obs")).status_code == 404
    now = datetime.now(UTC)
    assert await end_fullmakts(hn.store, now) == 1
    assert await end_fullmakts(hn.store, now) == 0  # idempotent
    async with hn.store.transaction(write=False) as tx:
        stored = await tx.read("RelatedPerson", given["id"])
    assert b'"active":false' in stored.content


async def test_a_fullmakt_in_the_future_waits(hn):
    later = (TODAY + timedelta(days=3)).isoformat()
    response = await give(hn, start=later, end=(TODAY + timedelta(days=30)).isoformat())
    assert response.status_code == 201, response.text
    assert (await get(hn, "siri", "Observation/kari-obs")).status_code == 404
    listed = (await get(hn, "kari", "Patient/kari/$fullmakt")).json()["parameter"]
    assert listed[0]["part"][1]["valueCode"] == "pending"


async def test_change_revokes_and_gives_anew(hn):
    old = (await give(hn, areas=("1",))).json()
    assert (await give(hn, areas=("3",))).status_code == 409  # one in force per receiver
    response = await post(
        hn,
        "kari",
        "Patient/kari/$fullmakt",
        ("change", "valueString", f"RelatedPerson/{old['id']}"),
        ("area", "valueCode", "3"),
    )
    assert response.status_code == 201, response.text
    new = response.json()
    assert new["id"] != old["id"] and rules.areas_of(new) == {"3"}
    assert new["identifier"][0]["value"] == PIDS["siri"]
    assert (await get(hn, "siri", "Observation/kari-obs")).status_code == 404
    listed = (await get(hn, "kari", "Patient/kari/$fullmakt")).json()["parameter"]
    assert sorted(p["part"][1]["valueCode"] for p in listed) == ["active", "revoked"]


# ---- refusals -------------------------------------------------------------------------------


async def test_who_cannot_receive_reads_the_same(hn):
    unknown = synthetic_fnr(born(50))
    hidden = await give(hn, receiver="skjult")
    response = await post(
        hn,
        "kari",
        "Patient/kari/$fullmakt",
        ("receiver", "valueString", unknown),
        ("receiver-family", "valueString", "Test"),
        ("area", "valueCode", "1"),
    )
    assert hidden.status_code == response.status_code == 422
    assert hidden.json()["issue"][0]["diagnostics"] == response.json()["issue"][0]["diagnostics"]
    assert "cannot receive" in hidden.json()["issue"][0]["diagnostics"]
    assert ("$fullmakt", "C", "4") in await events(hn, "kari")


async def test_ages_of_giver_and_receiver(hn):
    young = await give(hn, receiver="ung")
    assert young.status_code == 422 and "18" in young.text
    assert (await give(hn, giver="per", receiver="siri")).status_code == 422  # 13
    sixteen = await give(hn, giver="tor", receiver="siri")
    assert sixteen.status_code == 201, sixteen.text
    assert (await get(hn, "siri", "Observation?patient=tor")).status_code == 200


async def test_a_confidential_giver_cannot_give(hn):
    response = await give(hn, giver="skjult", receiver="siri")
    assert response.status_code == 422 and "confidential" in response.text


@pytest.mark.parametrize(
    "parts",
    [
        [("area", "valueCode", "1")],  # no receiver
        [("receiver", "valueString", "12345678901"), ("area", "valueCode", "1")],
        [("receiver", "valueString", PIDS["siri"])],  # no area
        [("receiver", "valueString", PIDS["siri"]), ("area", "valueCode", "2")],
        [
            ("receiver", "valueString", PIDS["siri"]),
            ("area", "valueCode", "1"),
            ("end", "valueDate", "soon"),
        ],
        [("revoke", "valueString", "Patient/kari")],
    ],
)
async def test_bad_input_is_400(hn, parts):
    response = await post(hn, "kari", "Patient/kari/$fullmakt", *parts)
    assert response.status_code == 400, response.text


async def test_only_the_giver_lists_gives_and_revokes(hn):
    given = (await give(hn, areas=("1", "3"))).json()
    # siri does not know nora: as if she did not exist
    assert (await get(hn, "siri", "Patient/nora/$fullmakt")).status_code == 404
    parts = [("receiver", "valueString", PIDS["siri"]), ("area", "valueCode", "1")]
    assert (await post(hn, "siri", "Patient/nora/$fullmakt", *parts)).status_code == 404
    # siri sees kari (she holds a fullmakt) but is not kari
    assert (await get(hn, "siri", "Patient/kari/$fullmakt")).status_code == 403
    assert (await revoke(hn, "siri", "kari", f"RelatedPerson/{given['id']}")).status_code == 403
    # a fullmakt of another giver is not kari's to revoke
    other = (await give(hn, giver="siri", receiver="kari")).json()
    response = await revoke(hn, "kari", "kari", f"RelatedPerson/{other['id']}")
    assert response.status_code == 404
    assert ("$fullmakt", "R", "4") in await events(hn, "kari")
    assert ("$fullmakt", "U", "4") in await events(hn, "kari")
    # personnel neither give nor list one, through the operation or plain REST
    listed = await hn.http.get("/fhir/Patient/kari/$fullmakt", headers=hn.headers("gp"))
    assert listed.status_code == 403
    forged = {k: v for k, v in given.items() if k not in ("id", "meta")}
    forged["identifier"] = [{"system": FNR, "value": PIDS["nora"]}]
    made = await hn.http.post("/fhir/RelatedPerson", json=forged, headers=hn.headers("gp"))
    assert made.status_code == 403 and "fullmakt" in made.text, made.text
    widened = {**given, "extension": [*given["extension"], *given["extension"]]}
    put = await hn.http.put(
        f"/fhir/RelatedPerson/{given['id']}", json=widened, headers=hn.headers("gp")
    )
    assert put.status_code == 403, put.text


# ---- parents and $represented ---------------------------------------------------------------


async def test_a_parent_reads_a_5_year_olds_record_not_a_13_year_olds(hn):
    assert (await get(hn, "kari", "Observation/mia-obs")).status_code == 200
    assert (await get(hn, "kari", "Observation?patient=mia")).json()["total"] == 1
    assert (await get(hn, "kari", "Observation/per-obs")).status_code == 404
    assert (await get(hn, "kari", "Observation?patient=per")).status_code == 403
    assert (await get(hn, "kari", "Patient/per")).status_code == 404  # nothing from 12


async def test_represented_lists_whom_one_acts_for(hn):
    listed = people((await get(hn, "kari", "Patient/$represented")).json())
    assert listed["kari"]["relation"] == "self" and listed["kari"]["area"] == ["1", "3"]
    assert listed["mia"] == {
        "display": "Mia Test",
        "relation": "parent",
        "area": ["1", "3"],
        "age": 5,
    }
    assert listed["lise"]["area"] == ["1", "3"]
    assert "per" not in listed  # 13: no digital parental access (domain.md 2.3)
    assert set(listed) == {"kari", "mia", "lise"}
    assert people((await get(hn, "siri", "Patient/$represented")).json()).keys() == {"siri"}
    await give(hn, areas=("1",))
    siri = people((await get(hn, "siri", "Patient/$represented")).json())
    assert siri["kari"]["relation"] == "fullmakt" and siri["kari"]["area"] == ["1"]
    assert siri["kari"]["age"] == rules.age("1980-01-02", TODAY)
    gp = await hn.http.get("/fhir/Patient/$represented", headers=hn.headers("gp"))
    assert gp.status_code == 403
    assert ("$represented", "R", "0") in await events(hn, "mia")
    assert ("$represented", "R", "0") in await events(hn, "kari")


async def test_a_parent_not_living_with_the_child_acts_when_the_other_parent_does(hn):
    # siri, registered as mia's father, lives elsewhere; kari lives with mia.
    async with hn.store.transaction() as tx:
        link = {**mother_of("mia"), "id": "mia-father"}
        link["identifier"] = [{"system": FNR, "value": PIDS["siri"]}]
        await tx.update(link, "mia-father")
        elsewhere = [{"line": ["Lillegata 9"], "postalCode": "5003", "city": "BERGEN"}]
        await tx.update(patient("siri", "1975-06-11", address=elsewhere), "siri")
    assert (await get(hn, "siri", "Observation/mia-obs")).status_code == 200


async def test_a_refused_change_keeps_the_old_fullmakt(hn):
    old = (await give(hn, areas=("1",))).json()
    response = await post(
        hn,
        "kari",
        "Patient/kari/$fullmakt",
        ("change", "valueString", f"RelatedPerson/{old['id']}"),
        ("receiver", "valueString", NUMBERS["ung"]),
        ("area", "valueCode", "1"),
    )
    assert response.status_code == 422
    assert (await get(hn, "siri", "Observation/kari-obs")).status_code == 200


async def test_a_national_id_alone_finds_nobody_and_shows_no_name(hn):
    wrong = await give(hn, receiver="siri", family="Nordmann")
    assert wrong.status_code == 422 and rules.NEUTRAL_REFUSAL in wrong.text
    assert "siri" not in wrong.text.replace(PIDS["siri"], "")
    # A period refusal comes before the receiver is looked up: it reads the same for a
    # person who exists and for a number nobody has.
    past = (TODAY - timedelta(days=3)).isoformat()
    known = await give(hn, receiver="siri", start=past)
    unknown = await give(hn, receiver="ung", family="Nobody", start=past)
    assert known.status_code == unknown.status_code == 422
    assert known.json()["issue"][0]["diagnostics"] == unknown.json()["issue"][0]["diagnostics"]
