"""Every refused e-resept operation leaves an AuditEvent (outcome 4) naming the patient, and
answers 403 for the wrong role (404 only where the refusal hides that something exists:
another patient's prescription, a privacy-locked one)."""

from __future__ import annotations

import orjson

from tests.conftest import MEMORY
from tests.probes import audit_rows
from tests.services.eresept.conftest import PIDS, params, part, prescribe_body

pytestmark = MEMORY


async def refusals(store, patient: str) -> list[tuple[str, str]]:
    """(actor, subtype code) of the refused events about the patient, in order."""
    rows = [
        (r.actor, r.event)
        for r in await audit_rows(store)
        if r.patient_id == patient and r.outcome == "4"
    ]
    out = []
    for actor, event in rows:
        codes = [c.get("code") for c in orjson.loads(bytes(event)).get("subtype", [])]
        out.append((actor, next((c for c in codes if c and c.startswith("$")), "")))
    return out


async def refused_and_audited(eresept, who, path, body, operation, status=403, patient="kari"):
    before = len(await refusals(eresept.store, patient))
    response = await eresept.post(who, path, body)
    assert response.status_code == status, (who, path, response.text)
    after = await refusals(eresept.store, patient)
    assert len(after) > before, (who, path, "no refusal audited")
    assert any(op == operation for _, op in after[before:]), (who, path, after[before:])


async def test_wrong_roles_are_refused_with_403_and_audited(eresept):
    mr = part(await eresept.prescribe(), "prescription")[0]
    one = f"MedicationRequest/{mr['id']}"
    lookup = params(patient=PIDS["kari"])
    for who in ("kari", "gp", "nurse"):
        await refused_and_audited(
            eresept, who, "MedicationRequest/$dispensable", lookup, "$dispensable"
        )
    for op in ("take", "dispense", "release"):
        for who in ("gp", "nurse", "kari"):
            await refused_and_audited(eresept, who, f"{one}/${op}", params(), f"${op}")
    await refused_and_audited(
        eresept, "farm1", f"{one}/$withdraw", params(reason="akutt innleggelse"), "$withdraw"
    )
    await refused_and_audited(
        eresept,
        "farm1",
        "MedicationRequest/$prescribe",
        prescribe_body(),
        "$prescribe",
    )
    await refused_and_audited(eresept, "gp", f"{one}/$privacy-lock", params(), "$privacy-lock")
    await refused_and_audited(
        eresept,
        "gp",
        "Patient/kari/$reserve-gp-reports",
        params(reserve=True),
        "$reserve-gp-reports",
    )
    pll = {"resourceType": "List", "status": "current", "mode": "working"}
    await refused_and_audited(
        eresept, "farm1", "Patient/kari/$medication-list", params(list=pll), "$medication-list"
    )


async def test_another_patients_prescription_is_unknown_and_audited(eresept):
    mr = part(await eresept.prescribe(), "prescription")[0]
    await refused_and_audited(
        eresept,
        "ola",
        f"MedicationRequest/{mr['id']}/$privacy-lock",
        params(),
        "$privacy-lock",
        status=404,
    )
    await refused_and_audited(
        eresept,
        "ola",
        "Patient/kari/$reserve-gp-reports",
        params(reserve=True),
        "$reserve-gp-reports",
        status=404,
    )


async def test_a_locked_prescription_taken_without_its_number_is_audited(eresept):
    mr = part(await eresept.prescribe(), "prescription")[0]
    assert (await eresept.step("kari", mr["id"], "privacy-lock")).status_code == 200
    await refused_and_audited(
        eresept, "farm1", f"MedicationRequest/{mr['id']}/$take", params(), "$take", status=404
    )
