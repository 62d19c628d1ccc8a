"""The store's indexed lookups (``enjournal.storage.lookups``) that the access guard asks, on
both backends: each finds current resources only (deleted ones, and references an update
removed, are never returned)."""

from __future__ import annotations

import orjson
import pytest

HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"


def ref(target: str) -> dict:
    return {"reference": target}


def practitioner(hpr: str) -> dict:
    return {"resourceType": "Practitioner", "identifier": [{"system": HPR, "value": hpr}]}


def role(practitioner_id: str, org_id: str) -> dict:
    return {
        "resourceType": "PractitionerRole",
        "practitioner": ref(f"Practitioner/{practitioner_id}"),
        "organization": ref(f"Organization/{org_id}"),
    }


def patient(fnr: str, gp: str | None = None) -> dict:
    body = {"resourceType": "Patient", "identifier": [{"system": FNR, "value": fnr}]}
    if gp:
        body["generalPractitioner"] = [ref(gp)]
    return body


def encounter(patient_id: str, org_id: str) -> dict:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": ref(f"Patient/{patient_id}"),
        "serviceProvider": ref(f"Organization/{org_id}"),
    }


def consent(patient_id: str, note: str) -> dict:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"coding": [{"code": "INFA"}]}],
        "patient": ref(f"Patient/{patient_id}"),
        "provision": {"type": "deny"},
        "policyRule": {"text": note},
    }


def related(fnr: str, child: str) -> dict:
    return {
        "resourceType": "RelatedPerson",
        "identifier": [{"system": FNR, "value": fnr}],
        "patient": ref(f"Patient/{child}"),
    }


@pytest.fixture
async def world(store):
    """Two practitioners (one deleted), roles at two offices, patients and their data; some
    written, then deleted or updated away, so that a lookup returning them fails."""
    resources = [
        ("Practitioner", "p1", practitioner("111")),
        ("Practitioner", "p-gone", practitioner("111")),
        ("Organization", "o1", {"resourceType": "Organization", "name": "Legekontor"}),
        ("Organization", "o2", {"resourceType": "Organization", "name": "Sykehus"}),
        ("PractitionerRole", "r1", role("p1", "o1")),
        ("PractitionerRole", "r-gone", role("p1", "o2")),
        ("PractitionerRole", "r-moved", role("p1", "o2")),
        ("Patient", "kari", patient("01010112345", gp="Practitioner/p1")),
        ("Patient", "ola", patient("02020212345")),
        ("Patient", "gone", patient("03030312345", gp="Practitioner/p1")),
        ("Encounter", "e1", encounter("kari", "o2")),
        ("Encounter", "e-gone", encounter("ola", "o2")),
        ("Consent", "c1", consent("kari", "kept")),
        ("Consent", "c-gone", consent("kari", "deleted")),
        ("RelatedPerson", "rp1", related("04040412345", "ola")),
        ("RelatedPerson", "rp-gone", related("04040412345", "kari")),
    ]
    async with store.transaction() as tx:
        for _, id_, body in resources:
            await tx.update({**body, "id": id_}, id_)
    async with store.transaction() as tx:
        for type_, id_ in [
            ("Practitioner", "p-gone"),
            ("PractitionerRole", "r-gone"),
            ("Patient", "gone"),
            ("Encounter", "e-gone"),
            ("Consent", "c-gone"),
            ("RelatedPerson", "rp-gone"),
        ]:
            await tx.delete(type_, id_)
        # An update that moves a role away from the practitioner: its old reference is gone.
        moved = {**role("p-other", "o2"), "id": "r-moved"}
        await tx.update(moved, "r-moved")
        created = await tx.create(practitioner("222"))
    return {"created": created.id}


async def test_ids_by_identifier(store, world):
    async with store.transaction(write=False) as tx:
        assert await tx.ids_by_identifier("Practitioner", (HPR,), "111") == ["p1"]
        assert await tx.ids_by_identifier("Practitioner", (HPR,), "222") == [world["created"]]
        assert await tx.ids_by_identifier("Practitioner", (FNR,), "111") == []
        assert await tx.ids_by_identifier("Patient", ("x", FNR), "02020212345") == ["ola"]
        assert await tx.ids_by_identifier("Patient", (FNR,), "03030312345") == []  # deleted
        assert await tx.ids_by_identifier("Patient", (FNR,), None) == []


async def test_referencing(store, world):
    async with store.transaction(write=False) as tx:
        found = await tx.referencing("PractitionerRole", "practitioner", "Practitioner", ["p1"])
        assert found == ["r1"]  # not the deleted role, nor the one updated away
        both = ["p1", "p-other"]
        found = await tx.referencing("PractitionerRole", "practitioner", "Practitioner", both)
        assert sorted(found) == ["r-moved", "r1"]
        assert await tx.referencing("PractitionerRole", "practitioner", "Patient", ["p1"]) == []
        assert await tx.referencing("PractitionerRole", "practitioner", "Practitioner", []) == []


async def test_references_of(store, world):
    async with store.transaction(write=False) as tx:
        gps = await tx.references_of("Patient", "kari", "general-practitioner")
        assert gps == [("Practitioner", "p1")]
        assert await tx.references_of("Patient", "ola", "general-practitioner") == []
        assert await tx.references_of("Patient", "gone", "general-practitioner") is None
        assert await tx.references_of("Patient", "never", "general-practitioner") is None


async def test_linked(store, world):
    async with store.transaction(write=False) as tx:
        args = ("Encounter", "patient")
        assert await tx.linked(*args, "kari", "service-provider", ["o2"]) is True
        assert await tx.linked(*args, "kari", "service-provider", ["o1"]) is False
        assert await tx.linked(*args, "kari", "participant", ["o2"]) is False
        assert await tx.linked(*args, "ola", "service-provider", ["o2"]) is False  # deleted
        assert await tx.linked(*args, "kari", "service-provider", []) is False


async def test_same_resource_links(store, world):
    async with store.transaction(write=False) as tx:
        args = ("PractitionerRole", "practitioner")
        assert await tx.same_resource_links(*args, ["p1"], "organization", ["o1"]) is True
        # r-gone (deleted) and r-moved (updated away) linked p1 to o2.
        assert await tx.same_resource_links(*args, ["p1"], "organization", ["o2"]) is False
        assert await tx.same_resource_links(*args, ["p1"], "organization", []) is False


async def test_contents_referencing(store, world):
    async with store.transaction(write=False) as tx:
        found = await tx.contents_referencing("Consent", "patient", "Patient", "kari")
        assert [orjson.loads(c)["id"] for c in found] == ["c1"]
        assert await tx.contents_referencing("Consent", "patient", "Patient", "ola") == []


async def test_contents_by_identifier(store, world):
    async with store.transaction(write=False) as tx:
        found = await tx.contents_by_identifier("RelatedPerson", "04040412345")
        assert [orjson.loads(c)["id"] for c in found] == ["rp1"]
        assert await tx.contents_by_identifier("RelatedPerson", "") == []


async def test_content_of(store, world):
    async with store.transaction(write=False) as tx:
        assert orjson.loads(await tx.content_of("Patient", "kari"))["id"] == "kari"
        assert await tx.content_of("Patient", "gone") is None
        assert await tx.content_of("Patient", "never") is None
