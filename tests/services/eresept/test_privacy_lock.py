"""The privacy lock (låst resept, domain 3.3) for every role and every operation: without
its reference number no health worker sees or handles a locked prescription; the patient
and the prescriber who issued it do.  Plain REST writes cannot lift it."""

from __future__ import annotations

from tests.conftest import MEMORY
from tests.probes import current_of_type
from tests.services.eresept.conftest import CONTRACEPTIVE, IBUPROFEN, WARFARIN, params, part

pytestmark = MEMORY


async def locked_by_hdoc(eresept) -> tuple[dict, str]:
    """A prescription for kari issued by the hospital doctor, locked by kari."""
    mr = part(await eresept.prescribe(who="hdoc"), "prescription")[0]
    response = await eresept.step("kari", mr["id"], "privacy-lock")
    assert response.status_code == 200, response.text
    return mr, part(response.json(), "reference-number")[0]["valueString"]


async def test_no_health_worker_reads_it_without_the_number(eresept):
    mr, _ = await locked_by_hdoc(eresept)
    plain = part(await eresept.prescribe(varenr=CONTRACEPTIVE), "prescription")[0]
    path = f"MedicationRequest/{mr['id']}"
    # kari's own GP, a nurse at the GP office and pharmacists: hidden in read and search.
    for who in ("gp", "nurse", "farm1", "farm2"):
        assert (await eresept.get(who, path)).status_code == 404, who
        found = await eresept.get(who, "MedicationRequest?patient=Patient/kari")
        ids = [e["resource"]["id"] for e in found.json().get("entry", [])]
        assert mr["id"] not in ids, who
    everything = await eresept.get("gp", "Patient/kari/$everything")
    assert mr["id"] not in everything.text
    # The patient sees it (its issuer too, where the general policy lets them read kari's
    # record: test_withdraw_lock_pll, where the GP issued it).
    assert (await eresept.get("kari", path)).status_code == 200
    assert plain["id"] in (await eresept.get("gp", "MedicationRequest?patient=Patient/kari")).text


async def test_every_pharmacy_step_needs_the_number(eresept):
    mr, number = await locked_by_hdoc(eresept)
    for op in ("take", "release", "dispense"):
        assert (await eresept.step("farm1", mr["id"], op)).status_code == 404, op
        wrong = await eresept.step("farm1", mr["id"], op, **{"reference-number": "AAAA-BBBB-CCCC"})
        assert wrong.status_code == 404, op
    with_number = {"reference-number": number}
    taken = await eresept.step("farm1", mr["id"], "take", **with_number)
    assert taken.status_code == 200, taken.text
    assert "privacy-lock" not in taken.text
    assert (await eresept.step("farm1", mr["id"], "dispense")).status_code == 404
    done = await eresept.step("farm1", mr["id"], "dispense", **with_number)
    assert done.status_code == 200, done.text
    assert "privacy-lock" not in done.text


async def test_other_prescribers_cannot_withdraw_it_the_issuer_can(eresept):
    mr, _ = await locked_by_hdoc(eresept)
    other = await eresept.step("gp", mr["id"], "withdraw", reason="feil")
    assert other.status_code == 404  # as unknown: the lock hides it from kari's GP
    own = await eresept.step("hdoc", mr["id"], "withdraw", reason="Feil dosering")
    assert own.status_code == 200, own.text


async def test_plain_rest_writes_cannot_lift_the_lock(eresept):
    # Issued by kari's GP, so the GP reads it: the refusal is the write's own.
    mr = part(await eresept.prescribe(who="gp"), "prescription")[0]
    assert (await eresept.step("kari", mr["id"], "privacy-lock")).status_code == 200
    path = f"MedicationRequest/{mr['id']}"
    stored = (await eresept.get("gp", path)).json()
    unlocked = {
        **stored,
        "extension": [e for e in stored["extension"] if "privacy-lock" not in e["url"]],
    }
    headers = eresept.headers("gp")
    put = await eresept.http.put(f"/fhir/{path}", json=unlocked, headers=headers)
    assert put.status_code == 403, put.text
    no_id = {k: v for k, v in unlocked.items() if k != "identifier"}
    put = await eresept.http.put(f"/fhir/{path}", json=no_id, headers=headers)
    assert put.status_code == 403, put.text
    assert (await eresept.http.delete(f"/fhir/{path}", headers=headers)).status_code == 403
    assert (await eresept.get("farm1", path)).status_code == 404  # still locked
    forged = {k: v for k, v in stored.items() if k not in ("id", "meta")}
    created = await eresept.http.post("/fhir/MedicationRequest", json=forged, headers=headers)
    assert created.status_code == 403, created.text


async def test_gp_cannot_lift_the_patients_reservation_by_plain_rest(eresept):
    reserved = await eresept.post("kari", "Patient/kari/$reserve-gp-reports", params(reserve=True))
    assert reserved.status_code == 200, reserved.text
    consent = reserved.json()
    path = f"/fhir/Consent/{consent['id']}"
    lifted = {**consent, "status": "inactive"}
    put = await eresept.http.put(path, json=lifted, headers=eresept.headers("gp"))
    assert put.status_code == 403, put.text
    assert (await eresept.http.delete(path, headers=eresept.headers("gp"))).status_code == 403


async def test_medication_list_stop_does_not_name_a_locked_prescription(eresept):
    mr = part(await eresept.prescribe(who="hdoc", varenr=WARFARIN), "prescription")[0]
    await eresept.step("kari", mr["id"], "privacy-lock")
    entry = {"item": {"reference": f"Medication/fest-{WARFARIN}"}}
    listed = {"resourceType": "List", "status": "current", "mode": "working", "entry": [entry]}
    assert (
        await eresept.post("gp", "Patient/kari/$medication-list", params(list=listed))
    ).status_code == 200
    stopped = {**listed, "entry": [{**entry, "deleted": True}]}
    response = await eresept.post("gp", "Patient/kari/$medication-list", params(list=stopped))
    assert response.status_code == 200, response.text
    assert mr["id"] not in response.text
    # Withdrawn all the same (seponering), as the patient sees.
    after = await eresept.get("kari", f"MedicationRequest/{mr['id']}")
    assert after.json()["status"] == "stopped"


async def test_interaction_check_does_not_reveal_a_locked_prescription(eresept):
    warfarin = part(await eresept.prescribe(who="hdoc", varenr=WARFARIN), "prescription")[0]
    await eresept.step("kari", warfarin["id"], "privacy-lock")
    body = await eresept.prescribe(varenr=IBUPROFEN)  # no 409 naming the locked warfarin
    assert warfarin["id"] not in str(body)


async def test_no_gp_report_of_a_locked_prescription(eresept):
    mr, number = await locked_by_hdoc(eresept)
    with_number = {"reference-number": number}
    assert (await eresept.step("farm1", mr["id"], "take", **with_number)).status_code == 200
    done = await eresept.step("farm1", mr["id"], "dispense", **with_number)
    assert done.status_code == 200, done.text
    rows = [(content,) for _, content in await current_of_type(eresept.store, "Communication")]
    kinds = [
        c for (content,) in rows for c in ("M6", "M8") if f'"code":"{c}"' in bytes(content).decode()
    ]
    assert kinds == ["M6"]  # to the prescriber only, not kari's GP
