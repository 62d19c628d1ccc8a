"""The store's indexed lookups (``enjournal.storage.lookups``) that the access guard asks, on
both backends: each finds current resources only (deleted ones, and references an update
removed, are never returned)."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import ALL_BACKENDS

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


# ---- the lookups the national services ask ------------------------------------------------


def ids(found) -> list[str]:
    return [f.id for f in found]


async def test_ping(store):
    async with store.transaction(write=False) as tx:
        await tx.ping()


async def test_by_identifier(store, world):
    async with store.transaction(write=False) as tx:
        found = await tx.by_identifier("Patient", (FNR,), "01010112345")
        assert [(f.type, f.id) for f in found] == [("Patient", "kari")]
        assert orjson.loads(found[0].content)["id"] == "kari"
        assert found[0].last_updated > 0
        assert await tx.by_identifier("Patient", (FNR,), "03030312345") == []  # deleted
        assert await tx.by_identifier("Patient", (HPR,), "01010112345") == []
        assert await tx.by_identifier("Patient", (FNR,), "") == []
        assert ids(await tx.by_identifier("Practitioner", (HPR,), "111")) == ["p1"]
        assert len(await tx.by_identifier("Practitioner", ("x", HPR), "111", limit=1)) == 1


@pytest.mark.backends(*ALL_BACKENDS)
async def test_identifier_values(store, world):
    """A patient's national ids by id, for many ids at once: the deleted patient, an id
    never stored and an identifier in another system are not in the answer."""
    dnr = "urn:oid:2.16.578.1.12.4.1.4.2"
    async with store.transaction() as tx:
        two = {"system": dnr, "value": "41010112345"}
        body = patient("01010112345", gp="Practitioner/p1")
        body["identifier"] += [two, {"system": "urn:local", "value": "7"}]
        await tx.update({**body, "id": "kari"}, "kari")
        for n in range(600):  # more ids than one statement takes
            await tx.update({**patient(f"{n:011d}"), "id": f"p{n}"}, f"p{n}")
    wanted = ["kari", "ola", "gone", "never", *(f"p{n}" for n in range(600))]
    async with store.transaction(write=False) as tx:
        found = await tx.identifier_values("Patient", wanted, (FNR, dnr))
        assert found["kari"] == ["01010112345", "41010112345"]
        assert found["ola"] == ["02020212345"]
        assert found["p599"] == ["00000000599"] and len(found) == 602
        assert await tx.identifier_values("Patient", ["kari"], (FNR,)) == {"kari": ["01010112345"]}
        assert await tx.identifier_values("Patient", ["kari"], ()) == {}
        assert await tx.identifier_values("Patient", [], (FNR,)) == {}
        assert await tx.identifier_values("Practitioner", ["kari", "p1"], (FNR,)) == {}


async def test_referencing_target(store, world):
    async with store.transaction(write=False) as tx:
        # e1 names kari as subject and patient: found once; c-gone is deleted.
        found = await tx.referencing_target("Patient", "kari", ("Encounter", "Consent"))
        assert ids(found) == ["e1", "c1"]  # oldest first
        assert ids(await tx.referencing_target("Patient", "kari", ("Consent",))) == ["c1"]
        assert ids(await tx.referencing_target("Patient", "kari", ("Encounter",), "subject")) == [
            "e1"
        ]
        assert await tx.referencing_target("Patient", "kari", ("Encounter",), "location") == []
        assert ids(
            await tx.referencing_target("Patient", "kari", ("Encounter", "Consent"), limit=1)
        ) == ["e1"]
        assert await tx.referencing_target("Patient", "ola", ("Encounter",)) == []  # deleted
        assert await tx.referencing_target("Patient", "kari", ()) == []
        found = await tx.referencing_target(
            "Practitioner", "p1", ("Patient",), "general-practitioner"
        )
        assert ids(found) == ["kari"]


async def test_with_id_prefix(store):
    async with store.transaction() as tx:
        for id_ in ("fest-c", "fest-a", "FEST-d", "fest-b", "other", "fest-gone"):
            await tx.update({"resourceType": "Organization", "id": id_, "name": id_}, id_)
    async with store.transaction() as tx:
        await tx.delete("Organization", "fest-gone")
    async with store.transaction(write=False) as tx:
        found = await tx.with_id_prefix("Organization", "fest-")
        assert ids(found) == ["fest-a", "fest-b", "fest-c"]  # case counts; not the deleted
        assert orjson.loads(found[0].content)["name"] == "fest-a"
        assert ids(await tx.with_id_prefix("Organization", "fest-", "fest-a", 1)) == ["fest-b"]
        assert await tx.with_id_prefix("Organization", "fest-", "fest-c") == []
        assert len(await tx.with_id_prefix("Organization")) == 5
        assert await tx.with_id_prefix("Patient", "fest-") == []


async def test_latest_change(store):
    async with store.transaction(write=False) as tx:
        assert await tx.latest_change("Organization") is None
    marks = []
    for change in ("create", "update", "delete"):
        async with store.transaction() as tx:
            if change == "delete":
                await tx.delete("Organization", "o")
            else:
                await tx.update({"resourceType": "Organization", "id": "o", "name": change}, "o")
            await tx.update({"resourceType": "Patient", "id": change}, change)
        async with store.transaction(write=False) as tx:
            marks.append(await tx.latest_change("Organization"))
    assert None not in marks and len(set(marks)) == 3
    async with store.transaction() as tx:
        await tx.update({"resourceType": "Patient", "id": "more"}, "more")
    async with store.transaction(write=False) as tx:
        assert await tx.latest_change("Organization") == marks[-1]  # other types do not count


def visit(id_: str, day: str) -> dict:
    return {**encounter("kari", "o1"), "id": id_, "period": {"start": day, "end": day}}


async def test_date_before(store):
    from enjournal.fhir.datetime import date_range
    from enjournal.storage.lookup_specs import DateBefore

    days = {"v1": "2020-01-01", "v2": "2020-06-01", "v3": "2021-01-01", "v-gone": "2019-01-01"}
    async with store.transaction() as tx:
        for id_, day in days.items():
            await tx.update(visit(id_, day), id_)
    async with store.transaction() as tx:
        await tx.delete("Encounter", "v-gone")
    june, _ = date_range("2020-06-01")
    noon, _ = date_range("2020-06-01T12:00:00Z")
    async with store.transaction(write=False) as tx:
        ended = await tx.date_before("Encounter", [DateBefore("date", june)])
        assert [f.id for _, f in ended] == ["v1"]
        started = await tx.date_before("Encounter", [DateBefore("date", noon, ends=False)])
        assert [f.id for _, f in started] == ["v1", "v2"]
        # Any condition; each resource once, in position order, paged by position.
        both = [DateBefore("date", june), DateBefore("date", noon, ends=False)]
        first = await tx.date_before("Encounter", both, limit=1)
        assert [f.id for _, f in first] == ["v1"]
        rest = await tx.date_before("Encounter", both, after=first[-1][0], limit=5)
        assert [f.id for _, f in rest] == ["v2"]
        assert rest[0][0] > first[0][0]
        assert orjson.loads(rest[0][1].content)["id"] == "v2"
        assert await tx.date_before("Encounter", both, after=rest[-1][0]) == []
        assert await tx.date_before("Observation", both) == []
        assert await tx.date_before("Encounter", []) == []


async def test_combined(store, world):
    from enjournal.storage.lookup_specs import Current, Referencing, ReferencingIdentified

    specs = [
        Current("Patient", "kari"),
        Current("Patient", "gone"),
        Referencing("Consent", "patient", "Patient", "kari"),
        ReferencingIdentified("Encounter", "subject", "Patient", (FNR,), "01010112345"),
        ReferencingIdentified("Encounter", "subject", "Patient", (FNR,), "03030312345"),
        ReferencingIdentified("Encounter", "subject", "Patient", (FNR,), "02020212345"),
        ReferencingIdentified("Encounter", "subject", "Patient", (), "02020212345"),
        Current("Consent", "c1"),
    ]
    async with store.transaction(write=False) as tx:
        answers = await tx.combined(specs)
        assert [ids(a) for a in answers] == [
            ["kari"],
            [],  # deleted
            ["c1"],  # not the deleted c-gone
            ["kari", "e1"],  # the identified patient first
            [],  # a deleted patient has no identifier
            ["ola"],  # found, nothing references it (its encounter was deleted)
            [],  # no systems: nothing to find
            ["c1"],
        ]
        assert [f.type for f in answers[3]] == ["Patient", "Encounter"]
        assert orjson.loads(answers[3][1].content)["id"] == "e1"
        assert await tx.combined([]) == []
        assert await tx.combined([specs[6]]) == [[]]
