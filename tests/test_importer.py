"""``enjournal import`` in process (enjournal/importer.py), on both backends: files are
written in batches through ``Transaction.create_many``, each file all-or-nothing."""

from __future__ import annotations

import orjson
import pytest

from enjournal import importer
from enjournal.fhir.errors import Unprocessable


def patient(family: str, id_: str | None = None) -> dict:
    resource = {"resourceType": "Patient", "name": [{"family": family}]}
    if id_:
        resource["id"] = id_
    return resource


def write_ndjson(path, resources) -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))


async def families(store) -> dict[str, tuple[str, int]]:
    async with store.transaction(write=False) as tx:
        rows = await tx.conn.fetch(
            "SELECT id, version, content FROM resources WHERE type = 'Patient'"
        )
    return {r[0]: (orjson.loads(bytes(r[2]))["name"][0]["family"], r[1]) for r in rows}


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(importer, "BATCH", 3)  # several batches from a few lines


async def test_ndjson_in_batches_creates_updates_and_repeats(store, tmp_path, small_batches):
    await store.update(patient("Old"), "known")
    lines = [patient(f"P{i}") for i in range(5)] + [
        patient("New", "known"),
        patient("First", "twice"),
        patient("Second", "twice"),
    ]
    path = tmp_path / "patients.ndjson"
    write_ndjson(path, lines)
    result = await importer.import_file(store, path)
    assert (result.error, result.resources) == (None, 8)
    found = await families(store)
    assert len(found) == 5 + 2
    assert found["known"] == ("New", 2) and found["twice"] == ("Second", 2)
    assert sorted(f for f, v in found.values() if v == 1) == [f"P{i}" for i in range(5)]


async def test_refused_line_is_named_and_the_file_leaves_nothing(store, tmp_path, small_batches):
    async def refuse(tx, resource):
        if resource["name"][0]["family"] == "Refused":
            raise Unprocessable("refused family")

    store.checks.append(refuse)
    path = tmp_path / "patients.ndjson"
    write_ndjson(path, [patient(f"P{i}") for i in range(4)] + [patient("Refused")])
    result = await importer.import_file(store, path)
    assert result.error == "line 5: refused family"
    assert await families(store) == {}


async def test_invalid_line_is_named(store, tmp_path):
    path = tmp_path / "patients.ndjson"
    write_ndjson(path, [patient("A"), {"resourceType": "Patient", "gender": "x"}])
    result = await importer.import_file(store, path)
    assert result.error and result.error.startswith("line 2:")
    assert await families(store) == {}


async def test_collection_bundle_and_repeated_shared_resources(store, tmp_path, small_batches):
    collection = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": patient(f"C{i}")} for i in range(4)]
        + [{"resource": patient("Given", "given-id")}],
    }
    path = tmp_path / "collection.json"
    path.write_bytes(orjson.dumps(collection))
    assert (await importer.import_file(store, path)).resources == 5
    gp = {
        "resourceType": "Organization",
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "974600951"}],
    }
    for n in range(2):  # two exported patients who share one GP office
        transaction = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": gp, "request": {"method": "POST", "url": "Organization"}},
                {"resource": patient(f"T{n}"), "request": {"method": "POST", "url": "Patient"}},
            ],
        }
        path = tmp_path / f"transaction-{n}.json"
        path.write_bytes(orjson.dumps(transaction))
        assert (await importer.import_file(store, path)).error is None
    async with store.transaction(write=False) as tx:
        rows = await tx.conn.fetch("SELECT type, count(*) FROM resources GROUP BY type")
    assert dict((r[0], r[1]) for r in rows) == {"Patient": 7, "Organization": 1}
    assert (await families(store))["given-id"] == ("Given", 1)
