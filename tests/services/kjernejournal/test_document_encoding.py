"""The fast path of $summary (Links, encode) gives the same document a parse-and-walk
would: decimals as written, every reference resolved, a valid signature."""

from __future__ import annotations

import uuid
from decimal import Decimal

from enjournal.fhir import jsonio
from enjournal.services.kjernejournal import summary
from enjournal.services.kjernejournal.signing import canonical, verify
from tests.conftest import MEMORY
from tests.services.kjernejournal import ips

pytestmark = MEMORY


def test_stored_url_is_uuid5_of_type_and_id():
    for type_, id_ in (("Patient", "kari"), ("MedicationDispense", "x-1"), ("Device", "æøå")):
        expected = f"urn:uuid:{uuid.uuid5(summary.NAMESPACE, f'{type_}/{id_}')}"
        assert summary.stored_url(type_, id_) == expected


def test_links_rewrite_exact_references_only():
    urls = {("Patient", "p1"): "urn:uuid:1", ("Patient", "p12"): "urn:uuid:2"}
    links = summary.Links(urls)
    content = b'{"a":{"reference":"Patient/p1"},"b":{"reference":"Patient/p12"},"c":"#x"}'
    assert links.relink(content) == (
        b'{"a":{"reference":"urn:uuid:1"},"b":{"reference":"urn:uuid:2"},"c":"#x"}'
    )
    assert links.relink(b'{"a":{"reference":"Practitioner/gone"}}') is None  # to be dropped
    assert links.relink(b'{"a":{"reference":"Patient/p\\u0031"}}') is None  # escaped: walk it


async def test_document_keeps_decimals_verifies_and_resolves_contained_references(kj):
    async with kj.store.transaction() as tx:
        await tx.update(
            {
                "resourceType": "MedicationRequest",
                "id": "kari-dec",
                "status": "active",
                "intent": "order",
                "subject": {"reference": "Patient/kari"},
                "medicationCodeableConcept": {"text": "Paracet"},
                "contained": [
                    {
                        "resourceType": "Provenance",
                        "id": "p",
                        "target": [{"reference": "Patient/kari"}],
                        "recorded": "2025-01-01T00:00:00Z",
                        "agent": [{"who": {"reference": "Organization/hf"}}],
                    }
                ],
                "dosageInstruction": [
                    {"doseAndRate": [{"doseQuantity": {"value": Decimal("0.50"), "unit": "g"}}]}
                ],
            },
            "kari-dec",
        )
    response = await kj.summary("gp", "kari", "UNNTAK")
    assert response.status_code == 200
    assert response.content.startswith(b'{"resourceType":"Bundle"')
    assert b'"value":0.50' in response.content
    bundle = jsonio.loads(response.content)
    assert ips.problems(bundle) == []
    assert verify(bundle, await kj.jwks())
    request = next(e["resource"] for e in bundle["entry"] if e["resource"].get("id") == "kari-dec")
    urls = {e["fullUrl"] for e in bundle["entry"]}
    provenance = request["contained"][0]
    assert provenance["target"][0]["reference"] in urls
    assert provenance["agent"][0]["who"]["reference"] in urls
    # The body minus its signature, canonicalised, is what was signed: keys sorted.
    assert canonical(bundle).startswith(b'{"entry":[')


async def test_a_dispensed_medication_not_stored_is_reduced_to_display_and_still_verifies(kj):
    async with kj.store.transaction() as tx:
        await tx.update(
            {
                "resourceType": "MedicationDispense",
                "id": "kari-md",
                "status": "completed",
                "subject": {"reference": "Patient/kari"},
                "whenHandedOver": "2025-10-01",
                "medicationReference": {"reference": "Medication/not-stored", "display": "X"},
            },
            "kari-md",
        )
    response = await kj.summary("gp", "kari", "UNNTAK")
    bundle = jsonio.loads(response.content)
    assert ips.problems(bundle) == []
    assert verify(bundle, await kj.jwks())
    by_id = {e["resource"].get("id"): e["resource"] for e in bundle["entry"]}
    assert by_id["kari-md"]["medicationReference"] == {"display": "X"}
    assert by_id["kj-kari-md"]["medicationReference"] == {"display": "X"}


def test_reference_tokens_and_swaps_worked_out_once_per_set_of_tokens():
    urls = {("Patient", "p1"): "urn:uuid:1"}
    links = summary.Links(urls)
    first = b'{"subject":{"reference":"Patient/p1"},"a":1}'
    second = b'{"b":2,"subject":{"reference":"Patient/p1"}}'
    tokens = summary.reference_tokens(first)
    assert tokens == [b"Patient/p1"]
    assert (
        links.swaps(first, tokens)
        == links.swaps(second)
        == [(b'"reference":"Patient/p1"', b'"reference":"urn:uuid:1"')]
    )
    assert summary.reference_tokens(b'{"a":{"reference":"Patient/p\\u0031"}}') is None
    assert links.swaps(b'{"a":{"reference":"Patient/p\\u0031"}}') is None
    assert summary.referenced(first, tokens) == {("Patient", "p1")}


def test_encoding_leaves_the_parsed_resources_as_stored():
    """A statement shares its medication with the dispense it is made from; dropping a
    reference that is not in the document rewrites copies, never the parsed resources."""
    from datetime import UTC, datetime

    now = datetime(2026, 11, 1, tzinfo=UTC)
    patient = {"resourceType": "Patient", "id": "p1"}
    dispense = {
        "resourceType": "MedicationDispense",
        "id": "d1",
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "whenHandedOver": "2026-10-01",
        "medicationReference": {"reference": "Medication/not-stored", "display": "X"},
    }
    before = jsonio.dumps(dispense)
    raw = {id(patient): jsonio.dumps(patient), id(dispense): before}
    document = summary.build(
        patient, [dispense], {}, now=now, server={"resourceType": "Device", "id": "s"}, raw=raw
    )
    body, _ = summary.encode(document, raw)
    assert jsonio.dumps(dispense) == before
    entries = {e["resource"]["id"]: e["resource"] for e in jsonio.loads(body)["entry"]}
    assert entries["d1"]["medicationReference"] == {"display": "X"}
    assert entries["kj-d1"]["medicationReference"] == {"display": "X"}
