"""The patient's own registrations (domain.md 2.1): contacts, communication needs and up to
30 diseases from a fixed list; by the patient (or a parent of a child under 12), never by
health personnel, who read them marked as patient-reported."""

from __future__ import annotations

from enjournal.services.kjernejournal.own import CONDITION_SYSTEM, CONDITIONS
from tests.conftest import MEMORY
from tests.services.kjernejournal import ips
from tests.services.kjernejournal.conftest import KJ, condition
from tests.services.kjernejournal.test_access import audit_rows

pytestmark = MEMORY

OWN_SECTION = "egne-registreringer"


def disease(code: str = "epilepsi", text: str | None = None) -> dict:
    concept: dict = {"coding": [{"system": CONDITION_SYSTEM, "code": code}]}
    if text:
        concept["text"] = text
    return {"resourceType": "Condition", "code": concept}


def contact() -> dict:
    return {
        "resourceType": "RelatedPerson",
        "name": [{"text": "Ole Nordmann"}],
        "telecom": [{"system": "phone", "value": "+4791234567"}],
        "relationship": [{"text": "Ektefelle"}],
    }


def need(text: str = "Trenger tolk (polsk)") -> dict:
    return {"resourceType": "Flag", "code": {"text": text}}


def own_section(bundle: dict) -> dict | None:
    return next(
        (
            s
            for s in bundle["entry"][0]["resource"]["section"]
            if s["code"]["coding"][0]["code"] == OWN_SECTION
        ),
        None,
    )


async def test_patient_registers_a_disease_tagged_and_asserted_by_herself(kj):
    response = await kj.own("kari", "kari", disease("diabetes-type-1", "Diabetes siden 1995"))
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["meta"]["tag"][0]["system"] == KJ
    assert stored["meta"]["tag"][0]["code"] == "egen-registrering"
    assert stored["subject"] == {"reference": "Patient/kari"}
    assert stored["recorder"] == stored["asserter"] == {"reference": "Patient/kari"}
    assert stored["code"]["coding"][0]["display"] == CONDITIONS["diabetes-type-1"]
    assert stored["code"]["text"] == "Diabetes siden 1995"
    events = [e for *_, e in await audit_rows(kj.store, "kari")]
    mine = [e for e in events if e["subtype"][-1]["code"] == "$kj-own-registration"]
    assert [e["action"] for e in mine] == ["C"]
    assert f"Condition/{stored['id']}" in str(mine[0]["entity"])


async def test_codes_outside_the_fixed_list_are_refused(kj):
    for body in (
        disease("forkjolelse"),
        {"resourceType": "Condition", "code": {"text": "Noe annet"}},
        condition("G40", "Epilepsi"),  # ICD-10: not the patient's list
    ):
        response = await kj.own("kari", "kari", body)
        assert response.status_code == 422, body
        assert "fixed list" in response.text


async def test_a_31st_disease_is_refused(kj):
    codes = list(CONDITIONS)
    for n in range(30):
        response = await kj.own("kari", "kari", disease(codes[n % len(codes)], f"nr {n}"))
        assert response.status_code == 201, (n, response.text)
    response = await kj.own("kari", "kari", disease("astma"))
    assert response.status_code == 422
    assert "at most 30" in response.text


async def test_changing_and_removing_keep_the_limit_right(kj):
    ids = []
    for n in range(30):
        response = await kj.own("kari", "kari", disease("kreft", f"kreft {n}"))
        assert response.status_code == 201
        ids.append(response.json()["id"])
    changed = disease("hjertesykdom") | {"id": ids[0]}
    response = await kj.own("kari", "kari", changed)
    assert response.status_code == 200, response.text
    assert response.json()["code"]["coding"][0]["code"] == "hjertesykdom"
    assert (await kj.own("kari", "kari", remove=f"Condition/{ids[1]}")).status_code == 200
    assert (await kj.own("kari", "kari", disease("astma"))).status_code == 201
    assert (await kj.own("kari", "kari", disease("migrene"))).status_code == 422


async def test_health_personnel_cannot_write_them(kj):
    for who in ("gp", "hdoc", "nurse"):
        response = await kj.own(who, "kari", disease())
        assert response.status_code == 403, who
    assert (await kj.own("kari", "kari", disease())).status_code == 201


async def test_only_own_record_or_a_child_under_12(kj):
    assert (await kj.own("siri", "kari", disease())).status_code == 403
    assert (await kj.own("kari", "per", disease())).status_code == 403  # per is 13
    response = await kj.own("kari", "lise", disease("astma"))  # lise is 8, same address
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["recorder"] == {"reference": "#registrant"}
    assert stored["asserter"] == {"reference": "Patient/lise"}
    registrant = stored["contained"][0]
    assert registrant["identifier"][0]["value"] == "02818029236"  # kari's
    assert (await kj.own("per", "per", need())).status_code == 201  # per himself


async def test_contacts_and_communication_needs_are_shown_to_personnel_as_patient_reported(
    kj,
):
    for body in (contact(), need(), disease("epilepsi")):
        response = await kj.own("kari", "kari", body)
        assert response.status_code == 201, response.text
    bundle = (await kj.summary("gp", "kari", "UNNTAK")).json()
    assert ips.problems(bundle) == []
    section = own_section(bundle)
    types = sorted(r["resourceType"] for r in ips.section_resources(bundle, OWN_SECTION))
    assert types == ["Condition", "Flag", "RelatedPerson"]
    div = section["text"]["div"]
    assert div.count("Pasientregistrert") == 3
    assert "Ole Nordmann" in div and "Trenger tolk (polsk)" in div and "Epilepsi" in div
    # Not critical information: the status call does not count them.
    status = (await kj.status("gp", "02818029236")).json()
    values = {p["name"]: p.get("valueBoolean") for p in status["parameter"]}
    assert values["hasCriticalInformation"] is False


async def test_removing_takes_it_out_of_the_summary_and_only_own_entries(kj):
    created = (await kj.own("kari", "kari", need())).json()
    critical = (await kj.register("gp", "kari", condition())).json()
    response = await kj.own("kari", "kari", remove=f"Condition/{critical['id']}")
    assert response.status_code == 404  # a physician's entry is not the patient's to remove
    response = await kj.own("kari", "kari", remove=f"Flag/{created['id']}")
    assert response.status_code == 200, response.text
    bundle = (await kj.summary("gp", "kari", "UNNTAK")).json()
    assert own_section(bundle) is None
    events = [e for *_, e in await audit_rows(kj.store, "kari")]
    actions = [e["action"] for e in events if e["subtype"][-1]["code"] == "$kj-own-registration"]
    assert actions == ["C", "D"]


async def test_updates_name_an_existing_own_registration(kj):
    response = await kj.own("kari", "kari", need() | {"id": "no-such"})
    assert response.status_code == 404
    siri = (await kj.own("siri", "siri", need())).json()
    response = await kj.own("kari", "kari", need() | {"id": siri["id"]})
    assert response.status_code == 404


async def test_bad_input_is_refused_without_a_write(kj):
    cases = [
        ({"resourceType": "Observation"}, 400),
        ({"resourceType": "RelatedPerson", "telecom": [{"value": "1"}]}, 422),
        ({"resourceType": "Flag", "code": {"coding": []}}, 422),
        (disease() | {"subject": {"reference": "Patient/siri"}}, 400),
    ]
    for body, status in cases:
        response = await kj.own("kari", "kari", body)
        assert response.status_code == status, (body, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    bundle = (await kj.summary("gp", "kari", "UNNTAK")).json()
    assert own_section(bundle) is None


async def test_no_registrations_while_reserved(kj):
    assert (await kj.privacy("kari", "kari", reserve=True)).status_code == 200
    assert (await kj.own("kari", "kari", disease())).status_code == 409


async def test_the_general_api_cannot_write_them(kj):
    created = (await kj.own("kari", "kari", disease())).json()
    created["code"]["text"] = "endret"
    for who in ("kari", "gp"):
        response = await kj.http.put(
            f"/fhir/Condition/{created['id']}", json=created, headers=kj.headers(who)
        )
        assert response.status_code == 403, who
    assert "$kj-own-registration" in response.text  # the GP is told where they are changed
    response = await kj.http.get(f"/fhir/Condition/{created['id']}", headers=kj.headers("gp"))
    assert response.status_code == 200  # personnel read them
    assert response.json()["code"].get("text") != "endret"


async def test_the_fixed_list_is_served_as_a_code_system(kj):
    response = await kj.http.get("/fhir/$kj-own-condition-codes", headers=kj.headers("kari"))
    assert response.status_code == 200
    system = response.json()
    assert system["resourceType"] == "CodeSystem" and system["url"] == CONDITION_SYSTEM
    assert [c["code"] for c in system["concept"]] == list(CONDITIONS)
    assert system["count"] == len(CONDITIONS) == 24
