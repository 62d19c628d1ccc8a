"""The deletion job with a controllable clock, expiry in lookups, and the pure rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from enjournal.fhir.errors import Conflict, Forbidden, Unprocessable
from enjournal.services.eresept import api, rules
from enjournal.services.eresept.jobs import candidates, delete_prescriptions
from enjournal.services.eresept.rules import Prescription
from tests.conftest import EVERY_BACKEND, MEMORY
from tests.probes import current_of_type, traces
from tests.services.eresept.conftest import AMOXICILLIN, IBUPROFEN, part

pytestmark = MEMORY


async def exists(store, id_: str) -> bool:
    async with store.transaction(write=False) as tx:
        return await tx.exists("MedicationRequest", id_)


async def reports_about(store, ref: str) -> tuple[list[str], list[str]]:
    """Ids of the MedicationDispenses authorised by ``ref`` and the Communications about it."""
    rows = [
        (type_, id_, content)
        for type_ in ("MedicationDispense", "Communication")
        for id_, content in await current_of_type(store, type_)
    ]
    dispenses, reports = [], []
    for type_, id_, content in rows:
        text = bytes(content).decode()
        if f'"{ref}"' in text:
            (dispenses if type_ == "MedicationDispense" else reports).append(id_)
    return dispenses, reports


@EVERY_BACKEND
async def test_expired_deleted_at_once_dispensed_after_a_month(eresept):
    now = datetime.now(UTC)
    antibiotic = part(await eresept.prescribe(varenr=AMOXICILLIN), "prescription")[0]
    dispensed = part(await eresept.prescribe(varenr=IBUPROFEN), "prescription")[0]
    await eresept.step("farm1", dispensed["id"], "take")
    assert (await eresept.step("farm1", dispensed["id"], "dispense")).status_code == 200
    kept = part(await eresept.prescribe(varenr=IBUPROFEN, repeats=2), "prescription")[0]
    await eresept.step("farm1", kept["id"], "take")
    assert (await eresept.step("farm1", kept["id"], "dispense")).status_code == 200
    store = eresept.store
    gone_dispenses, gone_reports = await reports_about(
        store, f"MedicationRequest/{dispensed['id']}"
    )
    kept_dispenses, kept_reports = await reports_about(store, f"MedicationRequest/{kept['id']}")
    # one dispensing each, reported to the prescriber (M6) and kari's GP (M8)
    assert len(gone_dispenses) == len(kept_dispenses) == 1
    assert len(gone_reports) == len(kept_reports) == 2
    assert await traces(store, "MedicationRequest", dispensed["id"]) > 3  # row, 3 versions
    # A MedicationRequest the service did not issue is never touched.
    async with store.transaction() as tx:
        await tx.update(
            {
                "resourceType": "MedicationRequest",
                "status": "completed",
                "intent": "order",
                "subject": {"reference": "Patient/kari"},
                "medicationReference": {"reference": "Medication/fest-100002"},
            },
            "hospital-order",
        )

    assert await delete_prescriptions(store, now + timedelta(days=5)) == 0
    assert await delete_prescriptions(store, now + timedelta(days=12)) == 1
    assert not await exists(store, antibiotic["id"])
    assert await traces(store, "MedicationRequest", antibiotic["id"]) == 0
    assert await exists(store, dispensed["id"])
    assert await delete_prescriptions(store, now + timedelta(days=33)) == 1
    # Purged: no row, no version (history), no index row; with it its dispensing and the
    # reports about it, but not those of the patient's other prescription.
    assert await traces(store, "MedicationRequest", dispensed["id"]) == 0
    for id_ in gone_dispenses:
        assert await traces(store, "MedicationDispense", id_) == 0
    for id_ in gone_reports:
        assert await traces(store, "Communication", id_) == 0
    assert await reports_about(store, f"MedicationRequest/{kept['id']}") == (
        kept_dispenses,
        kept_reports,
    )
    response = await eresept.get("gp", f"MedicationRequest/{dispensed['id']}/_history")
    assert response.status_code in (404, 410) or response.json().get("total") == 0
    assert await exists(store, kept["id"]) and await exists(store, "hospital-order")
    assert await delete_prescriptions(store, now + timedelta(days=33)) == 0  # idempotent
    assert await delete_prescriptions(store, now + timedelta(days=400)) == 1
    assert await exists(store, "hospital-order")


async def candidate_ids(store, now: datetime) -> set[str]:
    async with store.transaction(write=False) as tx:
        return {row[1] for row in await candidates(tx, now)}


@EVERY_BACKEND
async def test_the_job_reads_only_candidates_through_its_search_parameters(eresept):
    now = datetime.now(UTC)
    antibiotic = part(await eresept.prescribe(varenr=AMOXICILLIN), "prescription")[0]
    dispensed = part(await eresept.prescribe(varenr=IBUPROFEN), "prescription")[0]
    withdrawn = part(await eresept.prescribe(varenr=IBUPROFEN), "prescription")[0]
    await eresept.step("farm1", dispensed["id"], "take")
    assert (await eresept.step("farm1", dispensed["id"], "dispense")).status_code == 200
    assert (
        await eresept.step("gp", withdrawn["id"], "withdraw", reason="akutt innleggelse")
    ).status_code == 200
    # Valid and not ended: no candidate, so a pass never reads the prescriptions it keeps.
    assert await candidate_ids(eresept.store, now) == set()
    assert await candidate_ids(eresept.store, now + timedelta(days=12)) == {antibiotic["id"]}
    assert await candidate_ids(eresept.store, now + timedelta(days=28)) == {
        antibiotic["id"],
        dispensed["id"],
        withdrawn["id"],
    }
    # The parameters are the server's own SearchParameters: searchable over REST and listed
    # in the CapabilityStatement.
    later = (now + timedelta(days=12)).date().isoformat()
    found = await eresept.get(
        "gp", f"MedicationRequest?subject=Patient/kari&validity-end=lt{later}"
    )
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [antibiotic["id"]]
    metadata = (await eresept.get("gp", "metadata")).json()
    (request,) = [r for r in metadata["rest"][0]["resource"] if r["type"] == "MedicationRequest"]
    names = {p["name"] for p in request["searchParam"]}
    assert {"validity-end", "resept-ended"} <= names


async def test_expired_prescription_leaves_the_list_and_cannot_be_taken(eresept, monkeypatch):
    mr = part(await eresept.prescribe(varenr=AMOXICILLIN), "prescription")[0]
    assert len(await eresept.lookup("farm1", "kari")) == 1
    later = datetime.now(UTC) + timedelta(days=11)
    monkeypatch.setattr(api, "clock", lambda: later)
    assert await eresept.lookup("farm1", "kari") == []
    assert (await eresept.step("farm1", mr["id"], "take")).status_code == 409


# ---- pure rules ------------------------------------------------------------------------


def fresh(quantity=10, repeats=0, end="2099-01-01") -> Prescription:
    p = Prescription(
        {
            "resourceType": "MedicationRequest",
            "id": "x",
            "identifier": [{"system": rules.RESEPT_ID, "value": "r1"}],
            "subject": {"reference": "Patient/p"},
            "dispenseRequest": {
                "quantity": {"value": quantity},
                "numberOfRepeatsAllowed": repeats,
                "validityPeriod": {"start": "2024-01-01", "end": end},
            },
        }
    )
    p.set_status(rules.EXPEDITABLE)
    p.set_remaining(quantity * (1 + repeats))
    return p


NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)


def test_lock_lapses_after_its_time():
    p = fresh()
    rules.take(p, "111", "A", NOW, bandagist=False)
    with pytest.raises(Conflict):
        rules.take(p, "222", "B", NOW + timedelta(hours=1), bandagist=False)
    rules.take(p, "222", "B", NOW + rules.LOCK_TTL + timedelta(minutes=1), bandagist=False)
    assert p.holder.org_nr == "222"
    with pytest.raises(Conflict):
        rules.dispense(p, "111", 1, NOW)


def test_dispense_never_exceeds_what_was_prescribed():
    p = fresh(quantity=10, repeats=2)
    total = 0.0
    for amount in (10, 5, 10, 7, 4):
        rules.take(p, "111", "A", NOW, bandagist=False)
        try:
            rules.dispense(p, "111", amount, NOW)
            total += amount
        except Conflict:
            rules.release(p, "111")
    assert total <= 30 and total + p.remaining == 30
    assert p.remaining == 1
    rules.take(p, "111", "A", NOW, bandagist=False)
    assert rules.dispense(p, "111", 1, NOW) is True
    assert p.status == rules.COMPLETED and p.holder is None
    with pytest.raises(Conflict):
        rules.take(p, "111", "A", NOW, bandagist=False)


def test_validity_and_repeats_and_prescribers():
    start = date(2025, 1, 1)
    assert rules.validity(start, "J01CA04", False, None) == date(2025, 1, 11)
    assert rules.validity(start, "J01CA04", True, None) == date(2026, 1, 1)
    assert rules.validity(start, "G03AA07", False, None) == start + timedelta(days=3 * 365)
    assert rules.validity(start, None, False, date(2025, 2, 1)) == date(2025, 2, 1)
    with pytest.raises(Unprocessable):
        rules.validity(start, None, False, date(2024, 12, 31))
    with pytest.raises(Unprocessable):
        rules.check_repeats("A", 1, False)
    rules.check_repeats("B", 1, True)
    rules.check_repeats("C", 5, False)
    with pytest.raises(Forbidden):
        rules.check_prescriber("LE", None, "C")  # no HPR number
    with pytest.raises(Forbidden):
        rules.check_prescriber("JO", "1", "B")
    rules.check_prescriber("TL", "1", "A")
    with pytest.raises(Unprocessable):
        rules.check_named_dispenser("legemiddel", True)
    rules.check_named_dispenser("forbruksmateriell", True)


def test_deletion_due_and_months():
    assert rules.months_later(date(2025, 1, 31)) == date(2025, 2, 28)
    assert rules.months_later(date(2025, 12, 15)) == date(2026, 1, 15)
    p = fresh(end="2025-03-10")
    assert not rules.due_for_deletion(p, NOW)
    assert rules.due_for_deletion(p, NOW + timedelta(days=10))
    done = fresh()
    rules.take(done, "1", "A", NOW, bandagist=False)
    rules.dispense(done, "1", 10, NOW)
    assert not rules.due_for_deletion(done, NOW + timedelta(days=27))
    assert rules.due_for_deletion(done, NOW + timedelta(days=31))


def test_privacy_lock_and_withdrawn_visibility():
    p = fresh()
    p.set_privacy_hash(rules.reference_hash("AAAA-BBBB-CCCC"))
    assert not rules.dispensable(p, NOW.date())
    assert rules.dispensable(p, NOW.date(), reference_hash_=rules.reference_hash("AAAA-BBBB-CCCC"))
    q = fresh()
    rules.take(q, "1", "A", NOW, bandagist=False)
    rules.withdraw(q, "feil", NOW)
    assert rules.dispensable(q, NOW.date())  # the holder must see the withdrawal
    rules.release(q, "1")
    assert not rules.dispensable(q, NOW.date())


def test_only_prescriptions_sent_to_the_intermediary_are_dispensable():
    """A MedicationRequest without a reseptID (a hospital's medication order, an imported
    history) is not in RF: never in a pharmacy's list."""
    p = fresh()
    assert rules.dispensable(p, NOW.date())
    p.resource["identifier"] = []
    assert not rules.dispensable(p, NOW.date())
