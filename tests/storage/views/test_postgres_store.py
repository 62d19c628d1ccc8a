"""The PostgreSQL view engine over the store (storage/views/postgres.py ``view_batches``):
resources written through the platform's API, selected by type, ``_since``, patients and the
register export policy's excluded patients, read from a server-side cursor in batches."""

from __future__ import annotations

import asyncpg.cursor
import pytest

from enjournal.fhir.errors import Invalid, NotSupported
from enjournal.security.exports import (
    CONSENT_SYSTEMS,
    NO_SECONDARY_USE,
    REGISTER_RESERVATION,
    export_policy,
)
from enjournal.storage import exports
from enjournal.storage.views.postgres import run_store_view, view_batches

pytestmark = [pytest.mark.backends("postgres"), pytest.mark.postgres]

FHIR = {"Content-Type": "application/fhir+json"}
VIEW = {
    "resource": "Observation",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "code", "path": "code.coding.first().code"},
                {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
            ]
        }
    ],
}


def observation(n: int, patient: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"obs-{n}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": f"{8000 + n}-1"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": n + 0.5, "unit": "kg"},
    }


def reservation(patient: str) -> dict:
    """The citizen's reservation against disclosure for purpose 2 (research, analyses)."""
    coding = {"system": REGISTER_RESERVATION, "code": NO_SECONDARY_USE}
    return {
        "resourceType": "Consent",
        "id": f"reservation-{patient}",
        "status": "active",
        "scope": {"text": "register"},
        "category": [{"coding": [coding]}],
        "patient": {"reference": f"Patient/{patient}"},
        "policyRule": {"text": "the Health Register Act"},
        "provision": {"type": "deny", "code": [{"coding": [coding]}]},
    }


async def put(client, resources: list[dict]) -> None:
    for resource in resources:
        url = f"/fhir/{resource['resourceType']}/{resource['id']}"
        response = await client.put(url, json=resource, headers=FHIR)
        assert response.status_code in (200, 201), response.text


@pytest.fixture
async def written(client):
    patients = [{"resourceType": "Patient", "id": p} for p in ("a", "b", "c")]
    observations = [observation(n, "abc"[n % 3]) for n in range(9)]
    await put(client, [*patients, *observations, reservation("b")])
    return observations


async def ids(store, **selection) -> set[str]:
    return {row[0] for row in (await run_store_view(store, VIEW, **selection)).rows}


async def test_a_view_over_the_stores_current_resources(client, store, written):
    await put(client, [{**observation(1, "a"), "valueQuantity": {"value": 99, "unit": "kg"}}])
    assert (await client.delete("/fhir/Observation/obs-8")).status_code in (200, 204)
    result = await run_store_view(store, VIEW)
    assert result.columns == ["id", "patient", "code", "value"]
    rows = {row[0]: row for row in result.rows}
    assert set(rows) == {f"obs-{n}" for n in range(8)}  # obs-8 deleted; no Patient, Consent
    assert rows["obs-1"] == ("obs-1", "a", "8001-1", 99.0)  # the current version
    assert rows["obs-3"] == ("obs-3", "a", "8003-1", 3.5)


async def test_since_patients_and_type_filters(client, store, written):
    async with store.transaction(write=False) as tx:
        newest = (await tx.read("Observation", "obs-6")).last_updated
    assert await ids(store, since_ms=newest) == {"obs-6", "obs-7", "obs-8"}
    assert await ids(store, patients=["a", "c"]) == {
        "obs-0",
        "obs-2",
        "obs-3",
        "obs-5",
        "obs-6",
        "obs-8",
    }
    assert await ids(store, patients=[]) == set()
    from enjournal.fhir.search import parse_search

    only = parse_search("Observation", [("code", "http://loinc.org|8004-1")])
    assert await ids(store, type_filters=[only]) == {"obs-4"}


async def test_the_register_policys_excluded_patients_are_left_out(store, written):
    async with store.transaction(write=False) as tx:
        consents = await exports.consents_of_category(tx, CONSENT_SYSTEMS)
    policy = export_policy([], consents)
    assert policy.excluded == {"b"}
    found = await ids(store, excluded_patients=policy.excluded)
    assert found == {f"obs-{n}" for n in range(9) if n % 3 != 1}
    patients = {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
    result = await run_store_view(store, patients, excluded_patients=policy.excluded)
    assert sorted(result.rows) == [("a",), ("c",)]


async def test_rows_come_in_batches_from_a_cursor(client, store, monkeypatch):
    await put(client, [observation(n, "a") for n in range(23)])
    fetches = []
    fetch = asyncpg.cursor.Cursor.fetch

    async def counted(cursor, n, *args, **kwargs):
        fetches.append(n)
        return await fetch(cursor, n, *args, **kwargs)

    monkeypatch.setattr(asyncpg.cursor.Cursor, "fetch", counted)
    sizes = [len(batch) async for batch in view_batches(store, VIEW, batch_rows=5)]
    assert sizes == [5, 5, 5, 5, 3]
    assert fetches == [5] * 6  # the server hands over 5 rows a time (the last: none left)
    monkeypatch.undo()
    # rows, not resources, fill a batch: two rows per Observation here
    per_coding = {
        "resource": "Observation",
        "select": [
            {"column": [{"name": "id", "path": "id"}]},
            {
                "unionAll": [
                    {"column": [{"name": "x", "path": "status"}]},
                    {"column": [{"name": "x", "path": "code.coding.code"}]},
                ]
            },
        ],
    }
    sizes = [len(batch) async for batch in view_batches(store, per_coding, batch_rows=10)]
    assert sizes == [10, 10, 10, 10, 6]
    limited = [len(b) async for b in view_batches(store, VIEW, batch_rows=5, limit=7)]
    assert limited == [5, 2]


async def test_a_consumer_may_stop_early_and_the_store_goes_on(client, store):
    await put(client, [observation(n, "a") for n in range(12)])
    batches = view_batches(store, VIEW, batch_rows=4)
    first = await anext(batches)
    await batches.aclose()
    assert len(first) == 4
    assert len((await run_store_view(store, VIEW)).rows) == 12


async def test_a_row_that_breaks_the_view_is_invalid(client, store):
    await put(client, [{**observation(1, "a"), "code": {"coding": [{"code": "x"}, {"code": "y"}]}}])
    several = {
        "resource": "Observation",
        "select": [{"column": [{"name": "code", "path": "code.coding.code"}]}],
    }
    with pytest.raises(Invalid, match="several values"):
        await run_store_view(store, several)
    with pytest.raises(Invalid):
        await run_store_view(store, {"resource": "Observation", "select": []})
    with pytest.raises(Invalid, match="batch_rows"):
        await run_store_view(store, VIEW, batch_rows=0)


async def test_only_on_a_postgresql_store():
    class SqliteStore:
        dialect = "sqlite"

    with pytest.raises(NotSupported):
        await run_store_view(SqliteStore(), VIEW)
