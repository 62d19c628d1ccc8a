"""The whole e-resept chain through the API with the real roles' tokens: prescriber,
pharmacist, GP, citizen (domain 3.1)."""

from __future__ import annotations

from tests.conftest import EVERY_BACKEND, MEMORY
from tests.services.eresept.conftest import (
    IBUPROFEN,
    PIDS,
    USERS,
    params,
    part,
)

pytestmark = MEMORY

STATUS = "https://enjournal.no/fhir/StructureDefinition/resept-status"
REMAINING = "https://enjournal.no/fhir/StructureDefinition/remaining-quantity"
LOCK = "https://enjournal.no/fhir/StructureDefinition/under-dispensing"


def ext(resource: dict, url: str) -> dict | None:
    return next((e for e in resource.get("extension", []) if e["url"] == url), None)


def status(resource: dict) -> str:
    return ext(resource, STATUS)["valueCoding"]["code"]


@EVERY_BACKEND
async def test_prescribe_lookup_take_dispense_report_and_access_log(eresept):
    # The GP prescribes ibuprofen with one repeat (reit 1): two dispensings of 30.
    body = await eresept.prescribe(varenr=IBUPROFEN, quantity=30, repeats=1)
    mr = part(body, "prescription")[0]
    assert mr["requester"]["identifier"]["value"] == "2000001"  # HPR from the token
    assert status(mr) == "E" and mr["status"] == "active"
    assert ext(mr, REMAINING)["valueDecimal"] == 60
    assert (
        mr["dispenseRequest"]["validityPeriod"]["end"]
        > mr["dispenseRequest"]["validityPeriod"]["start"]
    )

    # Pharmacy 1 looks the patient up by national identity number and takes it.
    found = await eresept.lookup("farm1", "kari")
    assert [r["id"] for r in found] == [mr["id"]]
    taken = await eresept.step("farm1", mr["id"], "take")
    assert taken.status_code == 200, taken.text
    assert status(taken.json()) == "U"

    # Pharmacy 2 sees who holds it and cannot take or dispense it.
    seen = (await eresept.lookup("farm2", "kari"))[0]
    holder = {e["url"]: e for e in ext(seen, LOCK)["extension"]}["holder"]["valueReference"]
    assert holder["display"] == "apotek1 AS"
    assert (await eresept.step("farm2", mr["id"], "take")).status_code == 409
    assert (await eresept.step("farm2", mr["id"], "dispense")).status_code == 409

    # Pharmacy 1 dispenses one of the two dispensings.
    done = await eresept.step("farm1", mr["id"], "dispense", quantity=30)
    assert done.status_code == 200, done.text
    after = part(done.json(), "prescription")[0]
    assert status(after) == "E" and ext(after, REMAINING)["valueDecimal"] == 30
    dispense = part(done.json(), "dispense")[0]
    assert dispense["authorizingPrescription"][0]["reference"] == f"MedicationRequest/{mr['id']}"

    # Reports reach the prescriber (M6) and the GP (M8): here the same practitioner.
    reports = await eresept.get("gp", "Communication?patient=Patient/kari")
    assert reports.status_code == 200, reports.text
    kinds = sorted(
        e["resource"]["category"][0]["coding"][0]["code"] for e in reports.json()["entry"]
    )
    assert kinds == ["M6", "M8"]
    dispenses = await eresept.get("gp", "MedicationDispense?patient=Patient/kari")
    assert [e["resource"]["id"] for e in dispenses.json()["entry"]] == [dispense["id"]]

    # The second (last) dispensing closes it; it leaves the dispensable list.
    assert (await eresept.step("farm2", mr["id"], "take")).status_code == 200
    last = await eresept.step("farm2", mr["id"], "dispense")
    assert last.status_code == 200, last.text
    closed = part(last.json(), "prescription")[0]
    assert status(closed) == "avsluttet" and closed["status"] == "completed"
    assert part(last.json(), "closed")[0]["valueBoolean"] is True
    assert await eresept.lookup("farm1", "kari") == []
    assert (await eresept.step("farm1", mr["id"], "take")).status_code == 409

    # The citizen reads her own prescriptions and sees who looked them up.
    own = await eresept.get("kari", "MedicationRequest?patient=Patient/kari")
    assert [e["resource"]["id"] for e in own.json()["entry"]] == [mr["id"]]
    log = await eresept.get("kari", "Patient/kari/$access-log")
    assert log.status_code == 200, log.text
    events = [e["resource"] for e in log.json()["entry"]]
    operations = {
        (c.get("code"), a["who"]["identifier"]["value"])
        for ev in events
        for c in ev["subtype"]
        for a in ev["agent"][:1]
        if c.get("code", "").startswith("$")
    }
    assert ("$dispensable", "2000011") in operations  # pharmacist farm1 looked her up
    assert ("$dispensable", "2000012") in operations
    assert ("$take", "2000011") in operations
    assert ("$dispense", "2000012") in operations
    assert ("$prescribe", "2000001") in operations


async def test_release_lets_another_pharmacy_take_it(eresept):
    mr = part(await eresept.prescribe(), "prescription")[0]
    assert (await eresept.step("farm1", mr["id"], "take")).status_code == 200
    assert (await eresept.step("farm2", mr["id"], "release")).status_code == 409
    released = await eresept.step("farm1", mr["id"], "release")
    assert status(released.json()) == "E" and ext(released.json(), LOCK) is None
    assert (await eresept.step("farm2", mr["id"], "take")).status_code == 200


async def test_partial_dispensing_counts_down_and_never_exceeds(eresept):
    mr = part(await eresept.prescribe(quantity=30), "prescription")[0]
    await eresept.step("farm1", mr["id"], "take")
    part_one = await eresept.step("farm1", mr["id"], "dispense", quantity=10)
    assert ext(part(part_one.json(), "prescription")[0], REMAINING)["valueDecimal"] == 20
    await eresept.step("farm1", mr["id"], "take")
    too_much = await eresept.step("farm1", mr["id"], "dispense", quantity=25)
    assert too_much.status_code == 409
    assert too_much.json()["resourceType"] == "OperationOutcome"
    rest = await eresept.step("farm1", mr["id"], "dispense", quantity=20)
    assert status(part(rest.json(), "prescription")[0]) == "avsluttet"


async def test_citizen_reservation_stops_gp_reports(eresept):
    # hdoc (hospital) prescribes for ola, whose GP is gp; ola reserves against GP reports.
    reserved = await eresept.post("ola", "Patient/ola/$reserve-gp-reports", params(reserve=True))
    assert reserved.status_code == 200, reserved.text
    mr = part(await eresept.prescribe("hdoc", patient_id="ola"), "prescription")[0]
    await eresept.step("farm1", mr["id"], "take")
    assert (await eresept.step("farm1", mr["id"], "dispense")).status_code == 200
    reports = await eresept.get("gp", "Communication?patient=Patient/ola")
    assert reports.status_code == 200, reports.text
    recipients = [
        e["resource"]["recipient"][0]["identifier"]["value"] for e in reports.json()["entry"]
    ]
    # The GP's list gives the GP read access, but only the prescriber's M6 exists.
    assert recipients == ["2000003"]
    # The reservation does not restrict the GP's access to the record otherwise.
    assert (await eresept.get("gp", f"MedicationRequest/{mr['id']}")).status_code == 200


async def test_gp_reports_sent_without_reservation(eresept):
    mr = part(await eresept.prescribe("hdoc", patient_id="ola"), "prescription")[0]
    await eresept.step("farm1", mr["id"], "take")
    await eresept.step("farm1", mr["id"], "dispense")
    reports = await eresept.get("gp", "Communication?patient=Patient/ola")
    recipients = sorted(
        e["resource"]["recipient"][0].get("reference")
        or e["resource"]["recipient"][0]["identifier"]["value"]
        for e in reports.json()["entry"]
    )
    assert recipients == ["2000003", "Practitioner/gp"]


async def test_other_citizen_and_non_dispensers_are_refused(eresept):
    mr = part(await eresept.prescribe(), "prescription")[0]
    # Personnel who are not dispensers cannot list or take.
    for who in ("gp", "nurse"):
        response = await eresept.post(
            who, "MedicationRequest/$dispensable", params(patient=PIDS["kari"])
        )
        assert response.status_code == 403
        assert (await eresept.step(who, mr["id"], "take")).status_code == 403
    # A citizen cannot prescribe, nor lock someone else's prescription.
    assert (await eresept.post("kari", "MedicationRequest/$prescribe", params())).status_code in (
        400,
        403,
    )
    assert (await eresept.step("ola", mr["id"], "privacy-lock")).status_code == 404


async def test_smart_scopes_bound_the_operations(eresept):
    mr = part(await eresept.prescribe(), "prescription")[0]
    narrow = eresept.provider.issue_token(USERS["farm1"], scopes="user/Patient.rs")
    headers = {"Authorization": f"Bearer {narrow}"}
    take = await eresept.http.post(
        f"/fhir/MedicationRequest/{mr['id']}/$take", json=params(), headers=headers
    )
    assert take.status_code == 403
    lookup = await eresept.http.post(
        "/fhir/MedicationRequest/$dispensable", json=params(patient=PIDS["kari"]), headers=headers
    )
    assert lookup.status_code == 403
    assert (await eresept.step("farm1", mr["id"], "take")).status_code == 200


async def test_a_medication_order_not_sent_to_the_intermediary_is_not_dispensable(eresept):
    """A MedicationRequest stored in the record without $prescribe (a hospital's medication
    order, an imported history) has no reseptID: not in the pharmacy's list, not takeable."""
    stored = await eresept.store.create(
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/kari"},
            "medicationCodeableConcept": {"text": "Paracet 500 mg"},
        }
    )
    assert stored.id not in [r["id"] for r in await eresept.lookup("farm1", "kari")]
    response = await eresept.step("farm1", stored.id, "take")
    assert response.status_code == 404, response.text
    assert "not an e-prescription" in response.text
