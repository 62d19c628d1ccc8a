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
        rows = await tx._conn.fetch(
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
        rows = await tx._conn.fetch("SELECT type, count(*) FROM resources GROUP BY type")
    assert dict((r[0], r[1]) for r in rows) == {"Patient": 7, "Organization": 1}
    assert (await families(store))["given-id"] == ("Given", 1)


def shared_bundle(n: int, offices: list[str]) -> dict:
    """A Synthea-like transaction: the offices (plain POSTs) and one patient of its own."""
    entries = [
        {
            "fullUrl": f"urn:uuid:{n:08d}-0000-4000-8000-{i:012d}",
            "resource": {
                "resourceType": "Organization",
                "name": orgnr,
                "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": orgnr}],
            },
            "request": {"method": "POST", "url": "Organization"},
        }
        for i, orgnr in enumerate(offices)
    ]
    entries.append({"resource": patient(f"S{n}"), "request": {"method": "POST", "url": "Patient"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def test_summary_counts_stored_merged_and_failed(store, tmp_path):
    bundles = [
        shared_bundle(0, ["974600951", "983974899"]),  # both offices new: 3 stored
        shared_bundle(1, ["974600951"]),  # a copy of one: 1 stored, 1 merged
        shared_bundle(2, ["983974899", "974600951", "981275721"]),  # 2 stored, 2 merged
    ]
    paths = []
    for n, bundle in enumerate(bundles):
        paths.append(tmp_path / f"{n}.json")
        paths[-1].write_bytes(orjson.dumps(bundle))
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"resourceType": "Bundle", "type": "transaction", "entry": [')
    results = [await importer.import_file(store, path) for path in [*paths, bad]]
    assert [(r.resources, r.merged) for r in results[:3]] == [(3, 0), (1, 1), (2, 2)]
    assert results[3].error is not None
    text = importer.summary(results)
    assert text.startswith("3 of 4 files loaded: 6 resources stored, 3 merged as duplicates")
    assert "1 files failed" in text
    async with store.transaction(write=False) as tx:
        rows = await tx._conn.fetch("SELECT type, count(*) FROM resources GROUP BY type")
    assert dict((r[0], r[1]) for r in rows) == {"Patient": 3, "Organization": 3}


async def test_own_conditional_create_that_matches_counts_as_merged(store, tmp_path):
    await store.update(patient("Known", "known"), "known")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": patient("Again"),
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": "_id=known"},
            },
            {
                "resource": patient("Fresh", "fresh"),
                "request": {"method": "PUT", "url": "Patient/fresh"},
            },
        ],
    }
    path = tmp_path / "conditional.json"
    path.write_bytes(orjson.dumps(bundle))
    result = await importer.import_file(store, path)
    assert (result.error, result.resources, result.merged) == (None, 1, 1)
