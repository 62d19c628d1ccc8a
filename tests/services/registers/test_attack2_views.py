"""Second attack on the registers service (notes: /work/notes/attack2-registers.md).

Tests marked ``xfail(strict=True)`` demonstrate an open defect found on 2026-12-03; they go
red (XPASS) when it is fixed, and the mark must then go.  The server is ``test_bulk``'s
in-process app with real system tokens.
"""

from __future__ import annotations

import orjson
import pytest

from tests.security.conftest import PIDS
from tests.services.registers import test_bulk

bulk = test_bulk.bulk

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
BOTH = pytest.mark.backends("sqlite", "postgres")


def parameters(*parts: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(parts)}


def view(resource: str, *columns: tuple[str, str]) -> dict:
    cols = [{"name": name, "path": path, "collection": True} for name, path in columns]
    return {"resourceType": "ViewDefinition", "resource": resource, "status": "active",
            "select": [{"column": [{"name": "id", "path": "id"}, *cols]}]}  # fmt: skip


async def store(bulk, *resources: dict) -> None:
    async with bulk.platform.store.transaction() as tx:
        for resource in resources:
            await tx.update(resource, resource["id"])


async def run_view(bulk, definition: dict, who: str = "other") -> dict[str, dict]:
    body = parameters({"name": "viewResource", "resource": definition})
    r = await bulk.http.post(
        "/fhir/$viewdefinition-run", headers=await bulk.headers(who), json=body
    )
    assert r.status_code == 200, r.text[:300]
    return {row["id"]: row for row in r.json()}


async def exported(bulk, type_: str, who: str = "other") -> dict[str, dict]:
    found = await bulk.lines(await bulk.export(f"/fhir/$export?_type={type_}", who), who)
    return {r["id"]: r for r in found.get(type_, [])}


def observation(id_: str, subject: dict, **more) -> dict:
    return {"resourceType": "Observation", "id": id_, "status": "final",
            "code": {"text": "x"}, "subject": subject, **more}  # fmt: skip


# ---- the PostgreSQL view engine against the SQLite path (same client, same view) -----------

PG = pytest.mark.backends("postgres")
SQLITE = pytest.mark.backends("sqlite")
PG_GAP = "applied in SQL by ViewPolicy (storage/views/postgres.py), which lacks this rule"


def display_of_ola() -> dict:
    """ola reserved against disclosure with the national id: her name goes with it."""
    return observation("o-disp", {"reference": "Patient/ola", "display": "Ola Nordmann"})


def contained_siri() -> dict:
    """siri's strengt fortrolig address in a contained Patient that carries her FNR."""
    siri = {"resourceType": "Patient", "id": "p",
            "identifier": [{"system": FNR, "value": PIDS["siri"]}],
            "address": [{"line": ["Storgata 1"]}]}  # fmt: skip
    return observation("o-siri", {"reference": "#p"}, contained=[siri])


def naming_nora() -> dict:
    """kari's Observation naming nora (reserved against purpose-2 use) by a non-indexed
    reference (an extension): $export and the SQLite view leave it out."""
    ext = [{"url": "http://example.org/related", "valueReference": {"reference": "Patient/nora"}}]
    return observation("o-nora", {"reference": "Patient/kari"}, extension=ext)


async def names_shown(bulk, who: str = "other") -> list[str]:
    await store(bulk, display_of_ola())
    rows = await run_view(bulk, view("Observation", ("disp", "subject.display")), who)
    return rows["o-disp"]["disp"]


async def addresses_shown(bulk, who: str = "other") -> list[str]:
    await store(bulk, contained_siri())
    rows = await run_view(bulk, view("Observation", ("line", "contained.address.line")), who)
    return rows["o-siri"]["line"]


async def nora_rows(bulk, who: str = "other") -> set[str]:
    await store(bulk, naming_nora())
    return set(await run_view(bulk, view("Observation"), who)) & {"o-nora"}


@SQLITE
async def test_sqlite_view_drops_the_display_of_an_identity_reserved_patient(bulk):
    assert await names_shown(bulk) == []


@PG
async def test_postgres_view_drops_the_display_of_an_identity_reserved_patient(bulk):
    assert await names_shown(bulk) == []
    assert await names_shown(bulk, "kpr") == []  # the register's own client alike


@SQLITE
async def test_sqlite_view_redacts_a_contained_patient_with_a_protected_address(bulk):
    assert await addresses_shown(bulk) == []


@PG
async def test_postgres_view_redacts_a_contained_patient_with_a_protected_address(bulk):
    assert await addresses_shown(bulk, "kpr") == []


@SQLITE
async def test_sqlite_view_leaves_out_a_row_naming_an_excluded_patient(bulk):
    assert await nora_rows(bulk) == set()


@PG
async def test_postgres_view_leaves_out_a_row_naming_an_excluded_patient(bulk):
    assert await nora_rows(bulk) == set()


# ---- every path: the person resources linked to a protected patient -----------------------


def linked_persons() -> list[dict]:
    """A Person (a master-index record) for ola and one for siri, and an old Patient record
    of ola replaced by hers: the same people, their name and address."""
    name = [{"family": "Nordmann", "given": ["Ola"]}]
    return [
        {"resourceType": "Person", "id": "ola-person", "name": name,
         "link": [{"target": {"reference": "Patient/ola"}}]},
        {"resourceType": "Person", "id": "siri-person", "address": [{"line": ["Storgata 1"]}],
         "link": [{"target": {"reference": "Patient/siri"}}]},
        {"resourceType": "Patient", "id": "ola-old", "name": name,
         "link": [{"other": {"reference": "Patient/ola"}, "type": "replaced-by"}]},
    ]  # fmt: skip


@BOTH
async def test_export_redacts_a_person_linked_to_an_identity_reserved_patient(bulk):
    await store(bulk, *linked_persons())
    assert "name" not in (await exported(bulk, "Person")).get("ola-person", {})


@BOTH
async def test_export_redacts_a_person_linked_to_a_patient_with_a_protected_address(bulk):
    await store(bulk, *linked_persons())
    assert "address" not in (await exported(bulk, "Person")).get("siri-person", {})


@BOTH
async def test_export_redacts_an_old_record_of_an_identity_reserved_patient(bulk):
    await store(bulk, *linked_persons())
    assert "name" not in (await exported(bulk, "Patient")).get("ola-old", {})


@BOTH
async def test_view_redacts_persons_linked_to_protected_patients(bulk):
    await store(bulk, *linked_persons())
    rows = await run_view(bulk, view("Person", ("name", "name.family"), ("line", "address.line")))
    assert not rows["ola-person"]["name"] and not rows["siri-person"]["line"]


# ---- the asynchronous $viewdefinition-export shares the PostgreSQL engine -----------------


async def exported_view_rows(bulk, definition: dict, who: str = "kpr") -> dict[str, dict]:
    """The rows of ``$viewdefinition-export``'s files (NDJSON), by id."""
    headers = {**await bulk.headers(who), **test_bulk.ASYNC}
    body = parameters({"name": "viewResource", "resource": definition})
    r = await bulk.http.post("/fhir/$viewdefinition-export", headers=headers, json=body)
    assert r.status_code == 202, r.text[:200]
    await bulk.run_jobs()
    result = await bulk.http.get(
        r.headers["content-location"], headers=headers, follow_redirects=True
    )
    assert result.status_code == 200, result.text[:200]
    urls = [
        part["valueUri"]
        for output in result.json()["parameter"]
        if output["name"] == "output"
        for part in output["part"]
        if part["name"] == "location"
    ]
    rows = {}
    for url in urls:
        got = await bulk.http.get(url, headers=headers)
        rows.update({row["id"]: row for row in map(orjson.loads, got.content.splitlines())})
    return rows


@PG
async def test_postgres_view_export_scrubs_display_and_contained_address(bulk):
    await store(bulk, display_of_ola(), contained_siri())
    columns = ("disp", "subject.display"), ("line", "contained.address.line")
    rows = await exported_view_rows(bulk, view("Observation", *columns))
    assert not rows["o-disp"]["disp"] and not rows["o-siri"]["line"]
