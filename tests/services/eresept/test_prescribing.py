"""The intermediary's checks of a new prescription (domain 3.2-3.4), through the API."""

from __future__ import annotations

from datetime import date, timedelta

from tests.conftest import MEMORY
from tests.services.eresept.conftest import (
    AMOXICILLIN,
    BANDAGE,
    CONTRACEPTIVE,
    DIAZEPAM,
    IBUPROFEN,
    MORPHINE,
    part,
    prescribe_body,
)

pytestmark = MEMORY


def days_valid(mr: dict) -> int:
    period = mr["dispenseRequest"]["validityPeriod"]
    return (date.fromisoformat(period["end"]) - date.fromisoformat(period["start"])).days


async def test_validity_defaults(eresept):
    cases = [
        (IBUPROFEN, False, 365),
        (CONTRACEPTIVE, False, 3 * 365),
        (AMOXICILLIN, False, 10),
        (AMOXICILLIN, True, 365),  # antibiotics on blue prescription: the general rule
    ]
    for varenr, blue, days in cases:
        mr = part(await eresept.prescribe(varenr=varenr, blue=blue), "prescription")[0]
        assert days_valid(mr) == days, (varenr, blue)


async def test_shorter_validity_kept_longer_refused(eresept):
    short = (date.today() + timedelta(days=30)).isoformat()
    mr = part(await eresept.prescribe(validity_end=short), "prescription")[0]
    assert mr["dispenseRequest"]["validityPeriod"]["end"] == short
    too_long = (date.today() + timedelta(days=11)).isoformat()
    refused = await eresept.prescribe(varenr=AMOXICILLIN, validity_end=too_long, expect=422)
    assert "§4-4" in refused["issue"][0]["diagnostics"]


async def test_group_a_and_b_not_repeated_except_blue(eresept):
    for varenr in (MORPHINE, DIAZEPAM):
        refused = await eresept.prescribe(varenr=varenr, repeats=1, expect=422)
        assert "may not be repeated" in refused["issue"][0]["diagnostics"]
        await eresept.prescribe(varenr=varenr, repeats=0)
        await eresept.prescribe(varenr=varenr, repeats=1, blue=True)
    await eresept.prescribe(varenr=IBUPROFEN, repeats=3)


async def test_who_may_prescribe(eresept):
    # A nurse may not prescribe; a midwife group C only; a doctor anything.
    await eresept.prescribe("nurse", expect=403)
    await eresept.prescribe("jordmor", varenr=CONTRACEPTIVE)
    await eresept.prescribe("jordmor", varenr=MORPHINE, expect=403)
    await eresept.prescribe("hdoc", varenr=MORPHINE)
    for who in ("farm1", "kari"):
        await eresept.prescribe(who, expect=403)


async def test_requester_and_institution_come_from_the_token(eresept):
    body = prescribe_body()
    mr_in = body["parameter"][0]["resource"]
    mr_in["requester"] = {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "9"}}
    response = await eresept.post("gp", "MedicationRequest/$prescribe", body)
    mr = part(response.json(), "prescription")[0]
    assert mr["requester"]["identifier"]["value"] == "2000001"
    institution = next(e for e in mr["extension"] if e["url"].endswith("requester-organization"))
    assert institution["valueReference"]["identifier"] == {
        "system": "urn:oid:2.16.578.1.12.4.1.2",
        "value": "81001",
    }


async def test_bad_input_is_an_operation_outcome(eresept):
    cases = [
        ({"varenr": "999999"}, 422),  # not in the catalogue
        ({"quantity": 0}, 422),
        ({"patient_id": "nobody"}, 422),
        ({"repeats": -1}, 422),
    ]
    for kw, expected in cases:
        body = await eresept.prescribe(expect=expected, **kw)
        assert body["resourceType"] == "OperationOutcome", kw
    garbage = await eresept.post("gp", "MedicationRequest/$prescribe", {"resourceType": "Patient"})
    assert garbage.status_code == 400
    # Nothing of those was stored.
    assert (await eresept.get("kari", "MedicationRequest?patient=Patient/kari")).json().get(
        "entry", []
    ) == []


async def test_bandagist_rules(eresept):
    # A bandagist may not be named for a medicine, may be for a consumable.
    refused = await eresept.prescribe(dispenser="bandasjist", expect=422)
    assert "bandagist" in refused["issue"][0]["diagnostics"]
    bandage = part(await eresept.prescribe(varenr=BANDAGE, dispenser="bandasjist"), "prescription")[
        0
    ]
    medicine = part(await eresept.prescribe(), "prescription")[0]
    # The bandagist sees only the consumable and may not take the medicine.
    assert [r["id"] for r in await eresept.lookup("band", "kari")] == [bandage["id"]]
    assert (await eresept.step("band", medicine["id"], "take")).status_code == 403
    assert (await eresept.step("band", bandage["id"], "take")).status_code == 200
    assert (await eresept.step("band", bandage["id"], "dispense")).status_code == 200


async def test_named_dispenser_gets_the_first_dispensing(eresept):
    mr = part(await eresept.prescribe(dispenser="apotek2", repeats=1), "prescription")[0]
    assert (await eresept.step("farm1", mr["id"], "take")).status_code == 403
    assert (await eresept.step("farm2", mr["id"], "take")).status_code == 200
    assert (await eresept.step("farm2", mr["id"], "dispense")).status_code == 200
    # Later dispensings are free.
    assert (await eresept.step("farm1", mr["id"], "take")).status_code == 200
