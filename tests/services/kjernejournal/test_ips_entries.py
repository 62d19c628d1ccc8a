"""Every section entry of $summary carries what the IPS profiles and the R4 invariants
require; an unknown value is said with data-absent-reason; an allergy without
clinicalStatus gets one on the way in; a record that cannot make a valid document is
refused, never signed."""

from __future__ import annotations

from enjournal.fhir import jsonio
from tests.conftest import MEMORY
from tests.services.kjernejournal import ips
from tests.services.kjernejournal.conftest import KJ, SOURCE, allergy

pytestmark = MEMORY

DAR = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"


def treatment() -> dict:
    return {
        "resourceType": "Procedure",
        "extension": [{"url": SOURCE, "valueCoding": {"code": "2"}}],
        "status": "in-progress",
        "category": {"coding": [{"system": KJ, "code": "behandling"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "108241001"}]},
    }


def implant() -> dict:
    return {
        "resourceType": "Device",
        "extension": [{"url": SOURCE, "valueCoding": {"code": "2"}}],
        "deviceName": [{"name": "Pacemaker", "type": "user-friendly-name"}],
    }


async def document(kj, patient="kari") -> dict:
    response = await kj.summary("gp", patient, "UNNTAK")
    assert response.status_code == 200, response.text
    return jsonio.loads(response.content)


async def test_unknown_performed_and_timing_use_data_absent_reason(kj):
    for resource in (treatment(), implant()):
        response = await kj.register("gp", "kari", resource)
        assert response.status_code == 201, response.text
    bundle = await document(kj)
    assert ips.problems(bundle) == []
    [procedure] = ips.section_resources(bundle, "47519-4")
    assert "performedDateTime" not in procedure
    assert procedure["_performedDateTime"]["extension"] == [{"url": DAR, "valueCode": "unknown"}]
    [statement] = ips.section_resources(bundle, "46264-8")
    assert statement["_timingDateTime"]["extension"] == [{"url": DAR, "valueCode": "unknown"}]


async def test_a_known_performed_date_is_kept(kj):
    resource = {**treatment(), "performedDateTime": "2025-02-01"}
    assert (await kj.register("gp", "kari", resource)).status_code == 201
    [procedure] = ips.section_resources(await document(kj), "47519-4")
    assert procedure["performedDateTime"] == "2025-02-01" and "_performedDateTime" not in procedure


async def test_allergy_without_clinical_status_is_registered_active(kj):
    # docs/kjernejournal.md's example, which has no clinicalStatus.
    entry = {k: v for k, v in allergy().items() if k != "clinicalStatus"}
    response = await kj.register("gp", "kari", entry)
    assert response.status_code == 201, response.text
    assert response.json()["clinicalStatus"]["coding"][0]["code"] == "active"
    bundle = await document(kj)
    assert ips.problems(bundle) == []


async def test_stored_entries_missing_required_elements_are_filled(kj):
    # Entries written before these rules (straight into the store): an allergy without
    # clinicalStatus or code, a vaccine without a date is impossible (R4), so only these.
    tagged = {k: v for k, v in allergy().items() if k not in ("clinicalStatus", "code")}
    tagged["category"] = ["environment"]
    tagged["meta"] = {"tag": [{"system": KJ, "code": "annen-allergi"}]}
    tagged["patient"] = {"reference": "Patient/kari"}
    old_procedure = {
        **treatment(),
        "meta": {"tag": [{"system": KJ, "code": "behandling"}]},
        "subject": {"reference": "Patient/kari"},
    }
    del old_procedure["code"]
    async with kj.store.transaction() as tx:
        await tx.update({**tagged, "id": "old-allergy"}, "old-allergy")
        await tx.update({**old_procedure, "id": "old-procedure"}, "old-procedure")
    bundle = await document(kj)
    assert ips.problems(bundle) == []
    [allergy_entry] = ips.section_resources(bundle, "48765-2")
    assert allergy_entry["clinicalStatus"]["extension"][0]["url"] == DAR
    assert allergy_entry["code"]["coding"][0]["code"] == "unknown"


async def test_a_record_that_cannot_make_a_valid_document_is_refused(kj):
    # An Encounter without class (written straight into the store) has no fill-in.
    broken = {
        "resourceType": "Encounter",
        "id": "kari-broken",
        "status": "finished",
        "subject": {"reference": "Patient/kari"},
        "period": {"start": "2025-04-01"},
    }
    async with kj.store.transaction() as tx:
        await tx.update(broken, broken["id"])
    response = await kj.summary("gp", "kari", "UNNTAK")
    assert response.status_code == 422
    assert "Encounter.class" in response.text and "signature" not in response.text


async def test_registration_requires_what_the_document_needs(kj):
    no_code = {k: v for k, v in treatment().items() if k != "code"}
    assert (await kj.register("gp", "kari", no_code)).status_code == 422
    other = {k: v for k, v in allergy().items() if k != "code"}
    other["category"] = ["environment"]
    assert (await kj.register("gp", "kari", other)).status_code == 422


def test_the_checker_finds_what_the_old_summary_lacked():
    """The checker itself: a Procedure without performed[x], a DeviceUseStatement without
    timing[x] and an allergy without clinicalStatus are problems."""
    assert ips.entry_problems(
        {"resourceType": "Procedure", "status": "x", "code": {"text": "y"}, "subject": {"r": 1}}
    ) == ["Procedure/None: performed[x] missing"]
    device = {"resourceType": "DeviceUseStatement", "status": "active", "subject": {"r": 1}}
    assert "DeviceUseStatement/None: timing[x] missing" in ips.entry_problems(
        {**device, "device": {"r": 1}}
    )
    allergy_entry = {
        "resourceType": "AllergyIntolerance",
        "code": {"text": "x"},
        "patient": {"r": 1},
    }
    assert ips.entry_problems(allergy_entry) == [
        "AllergyIntolerance/None: clinicalStatus missing (ait-1)"
    ]
    assert (
        ips.entry_problems(
            {
                **allergy_entry,
                "clinicalStatus": {"extension": [{"url": DAR, "valueCode": "unknown"}]},
            }
        )
        == []
    )


async def test_privacy_locked_prescriptions_are_not_in_the_medicines(kj):
    """Same class as e-resept's lock: a låst resept and its dispensings stay out of the
    summary's medicines, for any reader (domain.md 3.3: excluded from LIB)."""
    lock = {"url": "https://enjournal.no/fhir/StructureDefinition/privacy-lock", "valueString": "h"}
    locked = {
        "resourceType": "MedicationRequest",
        "id": "kari-locked",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "Hemmelig medisin"},
        "subject": {"reference": "Patient/kari"},
        "authoredOn": "2026-01-05",
        "extension": [lock],
    }
    dispense = {
        "resourceType": "MedicationDispense",
        "id": "kari-locked-dispense",
        "status": "completed",
        "medicationCodeableConcept": {"text": "Hemmelig medisin"},
        "subject": {"reference": "Patient/kari"},
        "authorizingPrescription": [{"reference": "MedicationRequest/kari-locked"}],
        "whenHandedOver": "2026-01-06T10:00:00Z",
    }
    async with kj.store.transaction() as tx:
        for resource in (locked, dispense):
            await tx.update(resource, resource["id"])
    for who, basis in (("gp", "UNNTAK"), ("kari", None)):
        response = await kj.summary(who, "kari", basis)
        assert response.status_code == 200, response.text
        assert "Hemmelig medisin" not in response.text and "kari-locked" not in response.text
