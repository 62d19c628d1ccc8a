"""Who may read a kjernejournal, on which access basis (domain.md 2.3), and how it is logged."""

from __future__ import annotations

from tests import probes
from tests.conftest import EVERY_BACKEND, MEMORY
from tests.services.kjernejournal import ips
from tests.services.kjernejournal.conftest import allergy

pytestmark = MEMORY


async def audit_rows(store, patient: str) -> list[tuple]:
    import orjson

    found = await probes.audit_rows(store)
    rows = [
        (r.actor, r.outcome, r.purpose, r.emergency, r.event)
        for r in found
        if r.patient_id == patient
    ]

    return [(r[0], r[1], r[2], bool(r[3]), orjson.loads(bytes(r[4]))) for r in rows]


def basis_of(event: dict) -> str | None:
    for concept in event.get("purposeOfEvent", []):
        for coding in concept.get("coding", []):
            if coding["system"].endswith("access-basis"):
                return coding["code"]
    return None


async def test_gp_reads_on_unntak_and_it_is_audited_with_the_basis(kj):
    response = await kj.summary("gp", "kari", "UNNTAK")
    assert response.status_code == 200, response.text
    rows = [r for r in await audit_rows(kj.store, "kari") if r[0] == "hpr:1000001"]
    assert [basis_of(r[4]) for r in rows] == ["UNNTAK"]
    assert rows[0][1] == "0" and not rows[0][3]


async def test_unntak_is_only_for_the_patients_gp(kj):
    response = await kj.summary("hdoc", "kari", "UNNTAK")
    assert response.status_code == 403
    rows = [r for r in await audit_rows(kj.store, "kari") if r[0] == "hpr:1000003"]
    assert [(r[1], basis_of(r[4])) for r in rows] == [("4", "UNNTAK")]


async def test_consent_needs_a_care_relationship(kj):
    assert (await kj.summary("hdoc", "kari", "SAMTYKKE")).status_code == 200
    assert (await kj.summary("hdoc", "siri", "SAMTYKKE")).status_code == 403


async def test_emergency_access_is_allowed_and_flagged(kj):
    response = await kj.summary("hdoc", "siri", "AKUTT", "Bevisstlos i akuttmottak")
    assert response.status_code == 200, response.text
    rows = [r for r in await audit_rows(kj.store, "siri") if r[0] == "hpr:1000003"]
    assert len(rows) == 1
    _actor, outcome, purpose, emergency, event = rows[0]
    assert (outcome, purpose, emergency, basis_of(event)) == ("0", "ETREAT", True, "AKUTT")
    patient_entity = next(e for e in event["entity"] if e["role"]["code"] == "1")
    assert patient_entity["detail"][0]["valueString"] == "Bevisstlos i akuttmottak"


async def test_basis_is_required_and_emergency_needs_a_reason(kj):
    assert (await kj.summary("gp", "kari")).status_code == 400
    assert (await kj.summary("gp", "kari", "KANSKJE")).status_code == 400
    assert (await kj.summary("hdoc", "siri", "AKUTT")).status_code == 400


async def test_pharmacist_is_refused(kj):
    assert (await kj.summary("farm", "kari", "SAMTYKKE")).status_code == 403


async def test_blocked_doctor_is_refused_even_in_an_emergency(kj):
    assert (await kj.summary("bdoc", "kari", "SAMTYKKE")).status_code == 200
    response = await kj.privacy("kari", "kari", block=["1000005"])
    assert response.status_code == 200, response.text
    assert (await kj.summary("bdoc", "kari", "SAMTYKKE")).status_code == 403
    emergency = await kj.summary("bdoc", "kari", "AKUTT", "Hjertestans")
    assert emergency.status_code == 403
    assert "blocked" in emergency.text
    # Others are not affected.
    assert (await kj.summary("hdoc", "kari", "SAMTYKKE")).status_code == 200


async def test_restricted_part_needs_heightened_consent_or_emergency(kj):
    assert (await kj.register("gp", "kari", allergy())).status_code == 201
    await kj.privacy("kari", "kari", restrict=["kritisk-info"])
    plain = (await kj.summary("gp", "kari", "UNNTAK")).json()
    assert ips.problems(plain) == []
    section = ips.section(plain, "48765-2")
    assert "entry" not in section and section["emptyReason"]["coding"][0]["code"] == "withheld"
    assert not any(e["resource"]["resourceType"] == "AllergyIntolerance" for e in plain["entry"])
    # Medicines are not restricted and still shown.
    assert ips.section_resources(plain, "10160-0")
    opened = (await kj.summary("gp", "kari", "FORHOYET_SAMTYKKE")).json()
    assert [a["resourceType"] for a in ips.section_resources(opened, "48765-2")] == [
        "AllergyIntolerance"
    ]
    rows = [r for r in await audit_rows(kj.store, "kari") if r[0] == "hpr:1000001"]
    flagged = [r for r in rows if basis_of(r[4]) == "FORHOYET_SAMTYKKE"]
    entity = next(e for e in flagged[0][4]["entity"] if e["role"]["code"] == "1")
    assert {"R"} <= {label["code"] for label in entity["securityLabel"]}
    emergency = (await kj.summary("hdoc", "kari", "AKUTT", "Anafylaksi")).json()
    assert ips.section_resources(emergency, "48765-2")


async def test_whole_record_restriction_withholds_every_part(kj):
    await kj.privacy("kari", "kari", restrict=["hele"])
    bundle = (await kj.summary("gp", "kari", "SAMTYKKE")).json()
    assert ips.problems(bundle) == []
    for code in ("48765-2", "11450-4", "10160-0"):
        assert ips.section(bundle, code)["emptyReason"]["coding"][0]["code"] == "withheld"


async def test_parent_sees_child_under_12_but_not_from_12(kj):
    assert (await kj.summary("kari", "lise")).status_code == 200
    assert (await kj.summary("kari", "per")).status_code == 404
    assert (await kj.summary("kari", "kari")).status_code == 200
    assert (await kj.summary("siri", "kari")).status_code == 404
    assert (await kj.summary("per", "per")).status_code == 200


@EVERY_BACKEND
async def test_citizen_sees_who_read_on_what_basis(kj):
    await kj.summary("gp", "kari", "UNNTAK")
    # hdoc treats kari already: AKUTT opens nothing more, so it is no emergency access.
    await kj.summary("hdoc", "kari", "AKUTT", "Ulykke")
    await kj.register("gp", "kari", allergy())
    await kj.privacy("kari", "kari", restrict=["hele"])
    # Now AKUTT opens the restricted record: that access is flagged (BTG).
    assert (await kj.summary("bdoc", "kari", "AKUTT", "Bevisstlos i mottak")).status_code == 200
    response = await kj.http.get("/fhir/Patient/kari/$access-log", headers=kj.headers("kari"))
    assert response.status_code == 200
    events = [e["resource"] for e in response.json()["entry"]]
    kj_events = [e for e in events if basis_of(e)]
    seen = {
        (
            e["agent"][0]["who"]["display"],
            e["agent"][0]["role"][0]["coding"][0]["display"],
            e["agent"][1]["who"]["display"],
            basis_of(e),
            e["action"],
        )
        for e in kj_events
    }
    assert ("Gina Lege", "Lege", "lk", "UNNTAK", "R") in seen
    assert ("Hanne Overlege", "Lege", "hf", "AKUTT", "R") in seen
    assert ("Gina Lege", "Lege", "lk", "UNNTAK", "C") in seen  # something was changed
    labels = [
        (e["agent"][0]["who"]["display"], e["entity"][0].get("securityLabel", []))
        for e in kj_events
        if basis_of(e) == "AKUTT"
    ]
    flagged = [who for who, label in labels if any(x["code"] == "BTG" for x in label)]
    assert len(labels) == 2 and len(flagged) == 1 and flagged != ["Hanne Overlege"]
    assert all(e.get("recorded") for e in kj_events)


async def test_a_refused_summary_tells_nothing_of_whether_the_patient_exists(kj):
    # No care relationship with siri, and no patient "nobody-here": the same answer.
    answers = [
        (await kj.summary("hdoc", pid, "SAMTYKKE")).status_code for pid in ("siri", "nobody-here")
    ]
    assert answers == [403, 403], answers
