"""Withdrawal (tilbakekalling), the privacy lock (låst resept), the medication list (PLL)
and interaction checks, through the API."""

from __future__ import annotations

from tests.conftest import MEMORY
from tests.security.test_access import deny_consent
from tests.services.eresept.conftest import (
    CLARITHROMYCIN,
    CONTRACEPTIVE,
    HIGH_WARFARIN_NSAID,
    IBUPROFEN,
    SIMVASTATIN,
    WARFARIN,
    params,
    part,
)
from tests.services.eresept.test_chain import status

pytestmark = MEMORY


async def test_withdrawal_while_under_dispensing_is_seen_by_the_pharmacy(eresept):
    mr = part(await eresept.prescribe(), "prescription")[0]
    assert (await eresept.step("farm1", mr["id"], "take")).status_code == 200
    no_reason = await eresept.step("gp", mr["id"], "withdraw")
    assert no_reason.status_code == 400  # a required parameter is missing
    blank_reason = await eresept.step("gp", mr["id"], "withdraw", reason=" ")
    assert blank_reason.status_code in (400, 422)
    other_doctor = await eresept.step("hdoc", mr["id"], "withdraw", reason="feil pasient")
    assert other_doctor.status_code == 403
    withdrawn = await eresept.step("gp", mr["id"], "withdraw", reason="Feil dosering")
    assert withdrawn.status_code == 200, withdrawn.text
    assert status(withdrawn.json()) == "T" and withdrawn.json()["status"] == "stopped"
    # The holding pharmacy still sees it, with the reason; it cannot dispense it.
    seen = await eresept.lookup("farm1", "kari")
    assert [(r["id"], r["statusReason"]["text"]) for r in seen] == [(mr["id"], "Feil dosering")]
    refused = await eresept.step("farm1", mr["id"], "dispense")
    assert refused.status_code == 409
    assert "Feil dosering" in refused.json()["issue"][0]["diagnostics"]
    # Once released it is gone from the list.
    assert (await eresept.step("farm1", mr["id"], "release")).status_code == 200
    assert await eresept.lookup("farm1", "kari") == []
    assert (await eresept.step("gp", mr["id"], "withdraw", reason="igjen")).status_code == 409


async def test_withdrawn_prescription_not_in_list_of_others(eresept):
    mr = part(await eresept.prescribe(), "prescription")[0]
    await eresept.step("gp", mr["id"], "withdraw", reason="Seponert")
    assert await eresept.lookup("farm2", "kari") == []
    assert (await eresept.step("farm2", mr["id"], "take")).status_code == 409


async def test_privacy_lock_hides_from_lookups_without_reference_number(eresept):
    locked = part(await eresept.prescribe(), "prescription")[0]
    plain = part(await eresept.prescribe(varenr=CONTRACEPTIVE), "prescription")[0]
    response = await eresept.step("kari", locked["id"], "privacy-lock")
    assert response.status_code == 200, response.text
    number = part(response.json(), "reference-number")[0]["valueString"]
    assert [r["id"] for r in await eresept.lookup("farm1", "kari")] == [plain["id"]]
    assert [r["id"] for r in await eresept.lookup("farm1", "kari", "WRONG-NUMB-ER00")] == [
        plain["id"]
    ]
    with_number = await eresept.lookup("farm1", "kari", number)
    assert sorted(r["id"] for r in with_number) == sorted([locked["id"], plain["id"]])
    assert all("privacy-lock" not in str(r.get("extension")) for r in with_number)
    # Plain REST reads by a pharmacist do not reveal it either.
    assert (await eresept.get("farm1", f"MedicationRequest/{locked['id']}")).status_code == 404
    search = await eresept.get("farm1", "MedicationRequest?patient=Patient/kari")
    assert [e["resource"]["id"] for e in search.json()["entry"]] == [plain["id"]]
    # The patient and its prescriber still see it (see test_privacy_lock.py for the rest).
    assert (await eresept.get("kari", f"MedicationRequest/{locked['id']}")).status_code == 200
    assert (await eresept.get("gp", f"MedicationRequest/{locked['id']}")).status_code == 200


async def test_severe_interaction_needs_acknowledgement(eresept):
    warfarin = part(await eresept.prescribe(varenr=WARFARIN), "prescription")[0]
    refused = await eresept.prescribe(varenr=IBUPROFEN, expect=409)
    assert refused["resourceType"] == "OperationOutcome"
    assert HIGH_WARFARIN_NSAID in str(refused["issue"])
    assert refused["contained"][0]["resourceType"] == "DetectedIssue"
    assert refused["contained"][0]["severity"] == "high"
    # Nothing was written: only the warfarin prescription exists.
    listed = await eresept.get("gp", "MedicationRequest?patient=Patient/kari")
    assert [e["resource"]["id"] for e in listed.json()["entry"]] == [warfarin["id"]]
    accepted = await eresept.prescribe(varenr=IBUPROFEN, acknowledge=[HIGH_WARFARIN_NSAID])
    issue = part(accepted, "issue")[0]
    new_id = part(accepted, "prescription")[0]["id"]
    assert issue["severity"] == "high"
    assert {i["reference"] for i in issue["implicated"]} == {
        f"MedicationRequest/{new_id}",
        f"MedicationRequest/{warfarin['id']}",
    }
    assert issue["mitigation"]


async def test_a_prescriber_without_access_is_protected_but_not_told_the_medicines(eresept):
    # hdoc may prescribe for kari (any prescriber may, as in RF) but may not read her record.
    warfarin = part(await eresept.prescribe(varenr=WARFARIN), "prescription")[0]
    assert (await eresept.get("hdoc", "Patient/kari/$medication-list")).status_code == 404
    refused = await eresept.prescribe("hdoc", varenr=IBUPROFEN, expect=409)
    text = str(refused)
    assert "B01AA03" not in text and HIGH_WARFARIN_NSAID not in text and warfarin["id"] not in text
    assert "contained" not in refused
    # Naming the interaction does not help: it is still refused, unnamed.
    again = await eresept.prescribe(
        "hdoc", varenr=IBUPROFEN, acknowledge=[HIGH_WARFARIN_NSAID], expect=409
    )
    assert "B01AA03" not in str(again)
    # A moderate interaction is recorded, and not reported to them.
    await eresept.prescribe(varenr=SIMVASTATIN)
    body = await eresept.prescribe("hdoc", varenr=CLARITHROMYCIN)
    assert part(body, "issue") == []
    assert [i["severity"] for i in part(await eresept.prescribe(varenr=CLARITHROMYCIN), "issue")]


async def test_moderate_interaction_reported_without_blocking(eresept):
    await eresept.prescribe(varenr=SIMVASTATIN)
    body = await eresept.prescribe(varenr=CLARITHROMYCIN)
    assert [i["severity"] for i in part(body, "issue")] == ["moderate"]
    # Unrelated medicine: no issue.
    assert part(await eresept.prescribe(varenr=WARFARIN), "issue") == []


async def test_dispensing_checks_interactions_too(eresept):
    # The interaction arises at dispensing: warfarin is on the PLL only.
    ibuprofen = part(await eresept.prescribe(varenr=IBUPROFEN), "prescription")[0]
    listed = params(
        list={
            "resourceType": "List",
            "status": "current",
            "mode": "working",
            "entry": [{"item": {"reference": f"Medication/fest-{WARFARIN}"}}],
        }
    )
    assert (await eresept.post("gp", "Patient/kari/$medication-list", listed)).status_code == 200
    await eresept.step("farm1", ibuprofen["id"], "take")
    refused = await eresept.step("farm1", ibuprofen["id"], "dispense")
    assert refused.status_code == 409
    assert refused.json()["contained"][0]["code"]["coding"][0]["code"] == "DRG"
    ok = await eresept.step("farm1", ibuprofen["id"], "dispense", acknowledge=HIGH_WARFARIN_NSAID)
    assert ok.status_code == 200, ok.text
    assert part(ok.json(), "issue")[0]["severity"] == "high"


async def test_medication_list_read_update_and_stop_withdraws(eresept):
    empty = await eresept.get("gp", "Patient/kari/$medication-list")
    assert empty.status_code == 200 and empty.json().get("entry") is None
    warfarin = part(await eresept.prescribe(varenr=WARFARIN), "prescription")[0]
    entry = {"item": {"reference": f"Medication/fest-{WARFARIN}"}}
    body = params(
        list={"resourceType": "List", "status": "current", "mode": "working", "entry": [entry]}
    )
    first = await eresept.post("gp", "Patient/kari/$medication-list", body)
    assert first.status_code == 200, first.text
    # Pharmacist and citizen read it; a pharmacist may not change it.
    for who in ("farm1", "kari"):
        seen = await eresept.get(who, "Patient/kari/$medication-list")
        assert seen.status_code == 200, (who, seen.text)
        assert seen.json()["entry"] == [entry]
    assert (await eresept.post("farm1", "Patient/kari/$medication-list", body)).status_code == 403
    # The patient's other record is not the citizen Ola's to read.
    assert (await eresept.get("ola", "Patient/kari/$medication-list")).status_code == 404
    # Stopping warfarin (seponering) withdraws its prescription.
    stopped = params(
        list={
            "resourceType": "List",
            "status": "current",
            "mode": "working",
            "entry": [{**entry, "deleted": True}],
        }
    )
    response = await eresept.post("gp", "Patient/kari/$medication-list", stopped)
    assert response.status_code == 200, response.text
    assert part(response.json(), "withdrawn")[0]["valueReference"]["reference"] == (
        f"MedicationRequest/{warfarin['id']}"
    )
    after = await eresept.get("gp", f"MedicationRequest/{warfarin['id']}")
    assert status(after.json()) == "T"
    assert await eresept.lookup("farm1", "kari") == []


async def _list_warfarin(eresept) -> tuple[dict, dict]:
    """Kari's GP puts warfarin on her medication list; the entry and the list sent."""
    entry = {"item": {"reference": f"Medication/fest-{WARFARIN}"}}
    listed = {"resourceType": "List", "status": "current", "mode": "working", "entry": [entry]}
    assert (
        await eresept.post("gp", "Patient/kari/$medication-list", params(list=listed))
    ).is_success
    return entry, listed


async def test_the_medication_list_changes_only_through_its_operation(eresept):
    entry, listed = await _list_warfarin(eresept)
    # A plain PUT or DELETE would skip the prescriber rule and the withdrawal of stopped
    # medicines: the guard refuses both, even for the GP who may use the operation.
    plain = {**listed, "id": "pll-kari", "subject": {"reference": "Patient/kari"}}
    put = await eresept.http.put("/fhir/List/pll-kari", json=plain, headers=eresept.headers("gp"))
    assert put.status_code == 403, put.text
    deleted = await eresept.http.delete("/fhir/List/pll-kari", headers=eresept.headers("gp"))
    assert deleted.status_code == 403, deleted.text
    seen = await eresept.get("gp", "Patient/kari/$medication-list")
    assert seen.json()["entry"] == [entry]


async def test_a_consent_that_hides_the_list_is_honoured(eresept):
    entry, _ = await _list_warfarin(eresept)
    consent = deny_consent("kari", data="List/pll-kari")
    saved = await eresept.http.post("/fhir/Consent", json=consent, headers=eresept.headers("kari"))
    assert saved.status_code == 201, saved.text
    for who in ("gp", "farm1"):
        hidden = await eresept.get(who, "Patient/kari/$medication-list")
        assert hidden.status_code == 404, (who, hidden.text)
        assert "warfarin" not in hidden.text.lower()
    assert (await eresept.get("kari", "Patient/kari/$medication-list")).json()["entry"] == [entry]


async def test_a_pharmacist_learns_nothing_of_who_is_registered(eresept):
    # The prescriber rule answers first: the same 403 for a registered and an unknown patient.
    for patient in ("kari", "nobody-here"):
        body = params(list={"resourceType": "List", "status": "current", "mode": "working"})
        response = await eresept.post("farm1", f"Patient/{patient}/$medication-list", body)
        assert response.status_code == 403, (patient, response.text)


def test_medication_list_reads_in_a_read_transaction(eresept):
    """GET $medication-list only reads, so it runs without a write transaction; POST
    replaces the list and writes (enjournal.rest.operations.Operation.writes_for)."""
    from enjournal.rest.message import FhirRequest
    from enjournal.rest.router import writes

    path = ["Patient", "kari", "$medication-list"]
    assert writes(FhirRequest("GET", path)) is False
    assert writes(FhirRequest("POST", path)) is True
    assert writes(FhirRequest("POST", ["MedicationRequest", "x", "$take"])) is True
