"""Blocks the citizen cannot lift alone (domain.md 2.3: "lifting only via non-blocked HP or
helpline"), and the new, empty kjernejournal after a reservation's deletion ("new KJ
starts empty from new date")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from enjournal.services.kjernejournal import rules
from enjournal.services.kjernejournal.jobs import delete_reserved
from enjournal.services.kjernejournal.privacy import consent_id, from_consent, to_consent
from tests.conftest import MEMORY
from tests.services.kjernejournal.conftest import allergy, condition
from tests.services.kjernejournal.test_access import audit_rows
from tests.services.kjernejournal.test_status_privacy import params

pytestmark = MEMORY

BDOC = "1000005"


async def lift(kj, who: str, hpr: str | None = BDOC, reason: str | None = "Pasienten ba om det"):
    parts = []
    if hpr is not None:
        parts.append({"name": "hpr", "valueString": hpr})
    if reason is not None:
        parts.append({"name": "reason", "valueString": reason})
    return await kj.http.post(
        "/fhir/Patient/kari/$kj-lift-block",
        json={"resourceType": "Parameters", "parameter": parts},
        headers=kj.headers(who),
    )


async def blocked(kj) -> set[str]:
    async with kj.store.transaction(write=False) as tx:
        stored = await tx.read("Consent", consent_id("kari"))
    return set(from_consent(orjson.loads(stored.content)).blocked)


async def test_the_citizen_adds_blocks_but_cannot_lift_them(kj):
    assert (await kj.privacy("kari", "kari", block=[BDOC])).status_code == 200
    for lifted in ([{"name": "block"}], [{"name": "block", "valueString": ""}]):
        response = await kj.http.post(
            "/fhir/Patient/kari/$kj-privacy",
            json={"resourceType": "Parameters", "parameter": lifted},
            headers=kj.headers("kari"),
        )
        assert response.status_code == 403, response.text
    response = await kj.privacy("kari", "kari", block=["1000006"])
    assert response.status_code == 403, response.text
    assert await blocked(kj) == {BDOC}
    refusals = [r for r in await audit_rows(kj.store, "kari") if r[1] == "4"]
    assert any("$kj-privacy" in str(r[4]["subtype"]) for r in refusals)
    # Adding one keeps the others; other settings leave blocks alone.
    assert (await kj.privacy("kari", "kari", block=[BDOC, "1000006"])).status_code == 200
    assert (await kj.privacy("kari", "kari", restrict=["vaksiner"])).status_code == 200
    assert await blocked(kj) == {BDOC, "1000006"}
    assert (await kj.summary("bdoc", "kari", "AKUTT", "Hjertestans")).status_code == 403


async def test_a_health_worker_not_blocked_lifts_a_block_with_a_reason(kj):
    await kj.privacy("kari", "kari", block=[BDOC])
    assert (await lift(kj, "bdoc")).status_code == 403  # the blocked one
    assert (await lift(kj, "kari")).status_code == 403  # the citizen
    assert (await lift(kj, "hdoc", reason=None)).status_code == 400
    assert (await lift(kj, "hdoc", hpr="1000009")).status_code == 422  # no such block
    assert await blocked(kj) == {BDOC}
    response = await lift(kj, "hdoc", reason="Pasienten ba om det ved innleggelse")
    assert response.status_code == 200, response.text
    assert "block" not in {p["name"] for p in response.json()["parameter"]}
    assert await blocked(kj) == set()
    assert (await kj.summary("bdoc", "kari", "SAMTYKKE")).status_code == 200
    # Shown in kari's access log, as who lifted it; without the free-text reason.
    log = await kj.http.get("/fhir/Patient/kari/$access-log", headers=kj.headers("kari"))
    lifted = [
        e["resource"]
        for e in log.json()["entry"]
        if any(c.get("code") == "$kj-lift-block" for c in e["resource"]["subtype"])
    ]
    done = [e for e in lifted if e["outcome"] == "0"]
    assert len(done) == 1 and len(lifted) == 2  # and bdoc's refused attempt
    lifted = done
    assert "1000003" in str(lifted[0]["agent"]) and BDOC in lifted[0]["outcomeDesc"]
    assert "innleggelse" not in log.text


async def test_a_blocked_health_worker_lifts_no_block(kj):
    await kj.privacy("kari", "kari", block=[BDOC, "1000003"])
    assert (await lift(kj, "hdoc")).status_code == 403  # hdoc is blocked too
    assert await blocked(kj) == {BDOC, "1000003"}
    refusals = [r for r in await audit_rows(kj.store, "kari") if r[1] == "4"]
    assert any("$kj-lift-block" in str(r[4]["subtype"]) for r in refusals)


def test_lift_block_rule():
    privacy = rules.Privacy(blocked=frozenset({"1", "2"}))
    assert rules.lift_block(privacy, "1", "3", "why").blocked == {"2"}
    for caller in ("2", None):
        try:
            rules.lift_block(privacy, "1", caller, "why")
        except rules.Forbidden:
            pass
        else:
            raise AssertionError(f"{caller} lifted a block")


# ---- a new kjernejournal after a reservation ------------------------------------------------


async def reserve_long_ago(kj, days: int = 31) -> datetime:
    """Kari reserved ``days`` ago (written as the service writes it)."""
    now = datetime.now(UTC)
    then = now - timedelta(days=days)
    consent = to_consent("kari", rules.Privacy(reserved_at=then), then)
    async with kj.store.transaction() as tx:
        await tx.update(consent, consent_id("kari"))
    return now


def old_medicines_and_visits() -> list[dict]:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="seconds")
    return [
        {
            "resourceType": "MedicationDispense",
            "id": "kari-old-dispense",
            "status": "completed",
            "medicationCodeableConcept": {"text": "Gammel medisin"},
            "subject": {"reference": "Patient/kari"},
            "whenHandedOver": yesterday,
        },
        {
            "resourceType": "MedicationRequest",
            "id": "kari-old-mr",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "Gammel resept"},
            "subject": {"reference": "Patient/kari"},
            "authoredOn": yesterday,
        },
        {
            "resourceType": "Immunization",
            "id": "kari-old-vaccine",
            "status": "completed",
            "vaccineCode": {"text": "Gammel vaksine"},
            "patient": {"reference": "Patient/kari"},
            "occurrenceDateTime": yesterday,
        },
    ]


async def test_a_new_kjernejournal_starts_empty_after_the_deletion(kj):
    entry = (await kj.register("gp", "kari", allergy())).json()
    async with kj.store.transaction() as tx:
        for resource in old_medicines_and_visits():
            await tx.update(resource, resource["id"])
    await reserve_long_ago(kj)
    assert await delete_reserved(kj.store, datetime.now(UTC)) == 1
    withdrawn = await kj.privacy("kari", "kari", reserve=False)
    assert withdrawn.status_code == 200 and params(withdrawn)["reserved"] is False

    summary = await kj.summary("gp", "kari", "UNNTAK")
    assert summary.status_code == 200, summary.text
    text = summary.text
    for old in ("Gammel medisin", "Gammel resept", "Gammel vaksine", "kari-enc", "kari-mr"):
        assert old not in text, old
    kinds = {e["resource"]["resourceType"] for e in summary.json()["entry"]}
    assert not kinds & {"MedicationStatement", "MedicationRequest", "Immunization", "Encounter"}
    assert entry["id"] not in text
    status = params(await kj.status("gp", "02818029236"))
    assert status["hasCriticalInformation"] is False

    # What is registered or dispensed after the new start is there.
    new = (await kj.register("gp", "kari", condition())).json()
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat(timespec="seconds")
    async with kj.store.transaction() as tx:
        dispense = {**old_medicines_and_visits()[0], "id": "kari-new-dispense"}
        dispense["whenHandedOver"] = later
        dispense["medicationCodeableConcept"] = {"text": "Ny medisin"}
        await tx.update(dispense, dispense["id"])
    text = (await kj.summary("gp", "kari", "UNNTAK")).text
    assert "Ny medisin" in text and new["id"] in text and "Gammel medisin" not in text


async def test_withdrawn_after_30_days_before_the_job_ran(kj):
    entry = (await kj.register("gp", "kari", allergy())).json()
    await reserve_long_ago(kj)
    assert (await kj.privacy("kari", "kari", reserve=False)).status_code == 200
    # The old entry is out of the new kjernejournal at once, and the next pass deletes it.
    ref = f"/fhir/AllergyIntolerance/{entry['id']}"
    assert (await kj.http.get(ref, headers=kj.headers("gp"))).status_code == 404
    assert entry["id"] not in (await kj.summary("gp", "kari", "UNNTAK")).text
    assert await delete_reserved(kj.store, datetime.now(UTC) + timedelta(hours=1)) == 1
    async with kj.store.transaction(write=False) as tx:
        assert not await tx.exists("AllergyIntolerance", entry["id"])


async def test_withdrawn_within_30_days_keeps_everything(kj):
    entry = (await kj.register("gp", "kari", allergy())).json()
    await reserve_long_ago(kj, days=10)
    assert (await kj.privacy("kari", "kari", reserve=False)).status_code == 200
    assert entry["id"] in (await kj.summary("gp", "kari", "UNNTAK")).text
    assert "kari-enc" in (await kj.summary("gp", "kari", "UNNTAK")).text
