"""The status call, the citizen's privacy settings, and the deletion 30 days after a
reservation (driven by the job with a controllable clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from enjournal.services.kjernejournal.jobs import delete_reserved
from tests.conftest import EVERY_BACKEND, MEMORY
from tests.probes import audit_rows, reference_index_rows, versions_with_id
from tests.security.conftest import PIDS
from tests.services.kjernejournal.conftest import allergy, condition

pytestmark = MEMORY


def params(response) -> dict:
    out: dict = {}
    for p in response.json()["parameter"]:
        value = next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
        out.setdefault(p["name"], []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


async def audit_count(store) -> int:
    return len(await audit_rows(store))


async def test_status_reveals_no_content_and_is_not_logged(kj):
    before = await kj.status("hdoc", PIDS["kari"])
    assert before.status_code == 200, before.text
    assert params(before)["hasCriticalInformation"] is False
    assert "lastChanged" not in params(before)
    await kj.register("gp", "kari", allergy())
    await kj.register("gp", "kari", condition())
    count = await audit_count(kj.store)
    after = params(await kj.status("hdoc", PIDS["kari"]))
    assert await audit_count(kj.store) == count
    assert after["hasCriticalInformation"] is True
    assert after["lastChanged"]
    categories = {p[0]["valueCode"] for p in after["changed"]}
    assert categories == {"legemiddelreaksjon", "kritisk-tilstand"}
    assert after["restricted"] is False and after["reserved"] is False
    assert after["callerBlocked"] is False
    assert "entry" not in (await kj.status("hdoc", PIDS["kari"])).text


async def test_status_needs_personnel_and_a_known_patient(kj):
    assert (await kj.status("kari", PIDS["kari"])).status_code == 403
    assert (await kj.status("hdoc", "15811893461")).status_code == 404
    response = await kj.http.post(
        "/fhir/$kj-status", headers=kj.headers("hdoc", **{"nhn-patient-nin": PIDS["siri"]})
    )
    assert response.status_code == 200 and params(response)["hasCriticalInformation"] is False


async def test_status_shows_restriction_and_a_blocked_caller(kj):
    await kj.privacy("kari", "kari", restrict=["legemidler"], block=["1000005"])
    seen_by_bdoc = params(await kj.status("bdoc", PIDS["kari"]))
    assert seen_by_bdoc["callerBlocked"] is True
    assert seen_by_bdoc["restricted"] is True and seen_by_bdoc["restrictedPart"] == "legemidler"
    assert params(await kj.status("hdoc", PIDS["kari"]))["callerBlocked"] is False


async def test_privacy_settings_are_the_patients_own(kj):
    assert (await kj.privacy("gp", "kari", block=["1000005"])).status_code == 403
    assert (await kj.privacy("kari", "lise", block=["1000005"])).status_code == 403
    assert (await kj.privacy("kari", "kari", restrict=["nonsense"])).status_code == 400
    assert (await kj.privacy("kari", "kari", block=["abc"])).status_code == 400
    shown = await kj.http.get("/fhir/Patient/kari/$kj-privacy", headers=kj.headers("kari"))
    assert params(shown)["reserved"] is False


@EVERY_BACKEND
async def test_reservation_hides_at_once_and_deletes_after_30_days(kj):
    entry = (await kj.register("gp", "kari", allergy())).json()
    await kj.register("gp", "kari", condition())
    response = await kj.privacy("kari", "kari", reserve=True)
    assert response.status_code == 200
    reserved_at = datetime.fromisoformat(params(response)["reservedAt"])
    assert (await kj.summary("gp", "kari", "UNNTAK")).status_code == 404
    assert (await kj.summary("hdoc", "kari", "AKUTT", "Ulykke")).status_code == 404
    assert (await kj.summary("kari", "kari")).status_code == 200  # the citizen still can
    status = params(await kj.status("gp", PIDS["kari"]))
    assert status["reserved"] is True and status["hasCriticalInformation"] is False
    ref = f"/fhir/AllergyIntolerance/{entry['id']}"
    assert (await kj.http.get(ref, headers=kj.headers("gp"))).status_code == 404

    assert await delete_reserved(kj.store, reserved_at + timedelta(days=29)) == 0
    async with kj.store.transaction(write=False) as tx:
        assert await tx.exists("AllergyIntolerance", entry["id"])
    assert await delete_reserved(kj.store, reserved_at + timedelta(days=30, seconds=1)) == 2
    versions = await versions_with_id(kj.store, entry["id"])
    index = await reference_index_rows(kj.store, "AllergyIntolerance", "kari")
    async with kj.store.transaction(write=False) as tx:
        assert not await tx.exists("AllergyIntolerance", entry["id"])
        assert versions == 0 and index == 0
        assert await tx.exists("Observation", "kari-obs")  # the record's own data stays
        assert await tx.exists("MedicationRequest", "kari-mr")
    assert await delete_reserved(kj.store, reserved_at + timedelta(days=31)) == 0


async def test_withdrawn_reservation_keeps_the_record(kj):
    await kj.register("gp", "kari", allergy())
    await kj.privacy("kari", "kari", reserve=True)
    response = await kj.privacy("kari", "kari", reserve=False)
    assert params(response)["reserved"] is False
    later = datetime.now(UTC) + timedelta(days=60)
    assert await delete_reserved(kj.store, later) == 0
    assert (await kj.summary("gp", "kari", "UNNTAK")).status_code == 200
