"""Patient/$summary: an IPS document, signed, complete for a large record."""

from __future__ import annotations

import copy

from enjournal.fhir import jsonio
from enjournal.services.kjernejournal.signing import verify
from tests.conftest import EVERY_BACKEND, MEMORY
from tests.services.kjernejournal import ips
from tests.services.kjernejournal.conftest import allergy, condition, flag

pytestmark = MEMORY


@EVERY_BACKEND
async def test_summary_is_a_valid_ips_document_with_registered_information(kj):
    for resource in (allergy(), condition(), flag(), condition("A41", "Sepsis", "smitte")):
        response = await kj.register("gp", "kari", resource)
        assert response.status_code == 201, response.text
    response = await kj.summary("gp", "kari", "UNNTAK")
    assert response.status_code == 200, response.text
    bundle = jsonio.loads(response.content)
    assert ips.problems(bundle) == []
    allergies = ips.section_resources(bundle, "48765-2")
    assert [a["code"]["coding"][0]["code"] for a in allergies] == ["J01CE02"]
    problems = ips.section_resources(bundle, "11450-4")
    assert sorted(c["code"]["coding"][0]["code"] for c in problems) == ["A41", "I21"]
    alerts = ips.section_resources(bundle, "104605-1")
    assert [f["code"]["text"] for f in alerts] == ["Ikke gjenoppliv (HLR minus)"]
    # The header names the GP (the reference is read before it is rewritten to a urn).
    composition = bundle["entry"][0]["resource"]
    assert "Fastlege: gp" in composition["text"]["div"]
    # Norwegian narrative, naming the substance and who registered it.
    text = ips.section(bundle, "48765-2")["text"]["div"]
    assert "Penicillin" in text and "HPR 1000001" in text and "Kritikalitet" in text
    # kari's MedicationRequest (active) is in the medications section.
    meds = ips.section_resources(bundle, "10160-0")
    assert [m["resourceType"] for m in meds] == ["MedicationRequest"]


async def test_empty_required_sections_say_why(kj):
    bundle = (await kj.summary("gp", "lise", "UNNTAK")).json()
    assert ips.problems(bundle) == []
    for code in ("48765-2", "11450-4"):
        section = ips.section(bundle, code)
        assert "entry" not in section
        assert section["emptyReason"]["coding"][0]["code"] == "unavailable"


async def test_signature_verifies_and_tampering_breaks_it(kj):
    await kj.register("gp", "kari", allergy())
    response = await kj.summary("gp", "kari", "UNNTAK")
    bundle = jsonio.loads(response.content)
    jwks = await kj.jwks()
    assert verify(bundle, jwks)
    signature = bundle["signature"]
    assert signature["sigFormat"] == "application/jose"
    assert signature["type"][0]["code"] == "1.2.840.10065.1.12.1.1"
    assert signature["who"]["reference"] == bundle["entry"][-1]["fullUrl"]
    tampered = copy.deepcopy(bundle)
    allergy_entry = next(
        e for e in tampered["entry"] if e["resource"]["resourceType"] == "AllergyIntolerance"
    )
    allergy_entry["resource"]["criticality"] = "low"
    assert not verify(tampered, jwks)
    from enjournal.security.keys import generate, public_jwks

    assert not verify(bundle, public_jwks(generate()))


async def test_references_outside_the_document_are_reduced_to_display(kj):
    # A MedicationRequest whose requester is not stored anywhere.
    async with kj.store.transaction() as tx:
        await tx.update(
            {
                "resourceType": "MedicationRequest",
                "id": "kari-mr2",
                "status": "active",
                "intent": "order",
                "subject": {"reference": "Patient/kari"},
                "requester": {"reference": "Practitioner/nobody"},
                "medicationCodeableConcept": {"text": "Paracet"},
            },
            "kari-mr2",
        )
    bundle = (await kj.summary("gp", "kari", "UNNTAK")).json()
    assert ips.problems(bundle) == []
    request = next(r for r in ips.section_resources(bundle, "10160-0") if r["id"] == "kari-mr2")
    assert "reference" not in request["requester"]
