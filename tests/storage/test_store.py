"""The store's FHIR persistence semantics, on both backends (http.html#read, #vread, #update)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from enjournal.fhir.errors import Gone, NotFound, PreconditionFailed
from enjournal.storage import open_store


def patient(family: str = "Nordmann") -> dict:
    return {"resourceType": "Patient", "name": [{"family": family, "given": ["Kari"]}]}


async def test_create_read_assigns_id_and_meta(store):
    created = await store.create(patient())
    read = await store.read("Patient", created.id)
    body = orjson.loads(read.content)
    assert body["id"] == created.id
    assert body["meta"]["versionId"] == "1"
    assert body["name"][0]["family"] == "Nordmann"


async def test_update_makes_versions_and_vread_returns_each(store):
    created = await store.create(patient("A"))
    await store.update(patient("B"), created.id)
    async with store.transaction(write=False) as tx:
        v1 = orjson.loads((await tx.vread("Patient", created.id, 1)).content)
        v2 = orjson.loads((await tx.vread("Patient", created.id, 2)).content)
    assert (v1["name"][0]["family"], v2["name"][0]["family"]) == ("A", "B")
    assert v2["meta"]["versionId"] == "2"


async def test_update_as_create_with_client_id(store):
    stored = await store.update(patient(), "kari-1")
    assert (stored.id, stored.version) == ("kari-1", 1)


async def test_if_match_on_stale_version_fails(store):
    created = await store.create(patient())
    await store.update(patient("B"), created.id, if_match=1)
    with pytest.raises(PreconditionFailed):
        await store.update(patient("C"), created.id, if_match=1)


async def test_delete_then_read_is_gone_and_history_keeps_it(store):
    created = await store.create(patient())
    assert await store.delete("Patient", created.id) == 2
    with pytest.raises(Gone):
        await store.read("Patient", created.id)
    async with store.transaction(write=False) as tx:
        entries, _ = await tx.history("Patient", created.id)
    assert [(e.version, e.method) for e in entries] == [(2, "DELETE"), (1, "POST")]


async def test_unknown_resource_is_not_found(store):
    with pytest.raises(NotFound):
        await store.read("Patient", "nope")


async def test_failed_transaction_leaves_nothing(store):
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.create(patient(), id_="half")
            raise RuntimeError("crash in the middle")
    with pytest.raises(NotFound):
        await store.read("Patient", "half")


async def test_history_pages_with_cursor(store):
    for i in range(5):
        await store.create(patient(str(i)))
    async with store.transaction(write=False) as tx:
        first, cursor = await tx.history("Patient", count=3)
        second, end = await tx.history("Patient", count=3, before_seq=cursor)
    assert len(first) == 3 and len(second) == 2 and end is None
    assert {e.id for e in first}.isdisjoint({e.id for e in second})


async def test_parallel_if_match_updates_have_one_winner(store_url):
    # Two separate stores stand in for two API worker processes.
    stores = [await open_store(store_url) for _ in range(2)]
    try:
        created = await stores[0].create(patient())
        results = await asyncio.gather(
            *(stores[i % 2].update(patient(str(i)), created.id, if_match=1) for i in range(8)),
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, Exception)]
        assert len(winners) == 1
        assert all(isinstance(r, PreconditionFailed) for r in results if r not in winners)
        assert (await stores[1].read("Patient", created.id)).version == 2
    finally:
        for s in stores:
            await s.close()


async def test_read_for_update_serialises_read_check_write(store):
    """Two transactions that read a counter for update and increment it never lose one:
    the second waits for the first (row lock on PostgreSQL, one writer on SQLite)."""
    import asyncio

    await store.update({"resourceType": "Basic", "code": {"text": "0"}}, "counter")

    async def increment():
        async with store.transaction(write=True) as tx:
            current = await tx.read_for_update("Basic", "counter")
            value = int(orjson.loads(current.content)["code"]["text"])
            await asyncio.sleep(0.01)  # widen the window a lost update would need
            await tx.update(
                {"resourceType": "Basic", "id": "counter", "code": {"text": str(value + 1)}},
                "counter",
            )

    await asyncio.gather(*(increment() for _ in range(8)))
    final = await store.read("Basic", "counter")
    assert orjson.loads(final.content)["code"]["text"] == "8"
    assert final.version == 9


async def test_read_for_update_needs_a_write_transaction(store):
    await store.update({"resourceType": "Basic", "code": {"text": "x"}}, "b")
    async with store.transaction(write=False) as tx:
        with pytest.raises(RuntimeError):
            await tx.read_for_update("Basic", "b")


# ---- create_many: the resources rows of a batch in one statement ---------------------------


def clinical_batch() -> list[dict]:
    """Resources that fill most index tables: string, token, date, reference, quantity,
    uri and composite rows."""
    return [
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "13031353453"}],
            "name": [{"family": "Nordmann", "given": ["Kari"]}],
            "gender": "female",
            "birthDate": "1953-03-13",
            "address": [{"city": "Tromsø", "postalCode": "9008"}],
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/p-ref"},
            "effectiveDateTime": "2024-05-01T10:00:00+02:00",
            "valueQuantity": {
                "value": 72,
                "unit": "/min",
                "system": "http://unitsofmeasure.org",
                "code": "/min",
            },
            "meta": {"profile": ["http://example.org/StructureDefinition/pulse"]},
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "subject": {"reference": "Patient/p-ref"},
            "component": [
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "valueQuantity": {
                        "value": 120,
                        "system": "http://unitsofmeasure.org",
                        "code": "mm[Hg]",
                    },
                }
            ],
        },
        {"resourceType": "Basic", "code": {"text": "note"}},
    ]


async def dump_rows(tx) -> dict[str, list]:
    """Every row the store wrote, with rids and sequence numbers replaced by "Type/id"."""
    from enjournal.storage.schema import INDEX_COLUMNS

    await tx.flush()
    keys = {
        r[0]: f"{r[1]}/{r[2]}" for r in await tx._conn.fetch("SELECT rid, type, id FROM resources")
    }
    dump = {
        "resources": await tx._conn.fetch(
            "SELECT type, id, version, last_updated, deleted, content FROM resources"
        ),
        "resource_versions": await tx._conn.fetch(
            "SELECT rid, type, id, version, last_updated, method, content FROM resource_versions"
        ),
    }
    for table, cols in INDEX_COLUMNS.items():
        dump[table] = await tx._conn.fetch(f"SELECT rid, type, {', '.join(cols)} FROM {table}")
    out = {}
    for table, rows in dump.items():
        rows = [tuple(r) for r in rows]
        if table != "resources":
            rows = [(keys[r[0]], *r[1:]) for r in rows]
        out[table] = sorted(
            (tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows),
            key=repr,
        )
    return out


class Rollback(Exception):
    pass


async def rows_written(store, write) -> dict[str, list]:
    """The rows ``write(tx)`` leaves, at a fixed clock; rolled back afterwards."""
    dump: dict = {}
    with pytest.raises(Rollback):
        async with store.transaction() as tx:
            tx._now = lambda: 1_714_550_400_000
            await write(tx)
            dump.update(await dump_rows(tx))
            raise Rollback
    return dump


async def test_create_many_writes_the_same_rows_as_creates(store):
    ids = ["p-ref", "obs-1", "obs-2", "basic-1"]

    async def one_by_one(tx):
        for resource, id_ in zip(clinical_batch(), ids, strict=True):
            await tx.create(resource, id_=id_)

    async def batched(tx):
        stored = await tx.create_many(clinical_batch(), ids)
        assert [(s.id, s.version, s.method) for s in stored] == [(i, 1, "POST") for i in ids]

    expected = await rows_written(store, one_by_one)
    assert await rows_written(store, batched) == expected
    filled = [table for table, rows in expected.items() if rows]
    assert len(expected["resources"]) == 4 and len(filled) >= 7, filled


async def test_create_many_assigns_ids_and_stamps_meta(store):
    async with store.transaction() as tx:
        stored = await tx.create_many([patient("A"), patient("B")])
    assert len({s.id for s in stored}) == 2
    for s, family in zip(stored, "AB", strict=True):
        body = orjson.loads((await store.read("Patient", s.id)).content)
        assert body["id"] == s.id and body["meta"]["versionId"] == "1"
        assert body["name"][0]["family"] == family
    async with store.transaction(write=False) as tx:
        from enjournal.fhir.search import parse_search

        found = await tx.search(parse_search("Patient", [("family", "B")]))
    assert [r.id for r in found.matches] == [stored[1].id]


async def test_create_many_turns_existing_and_repeated_ids_into_updates(store):
    await store.update(patient("Old"), "kari")
    await store.update(patient("Gone"), "deleted")
    await store.delete("Patient", "deleted")
    async with store.transaction() as tx:
        stored = await tx.create_many(
            [patient("A"), patient("B"), patient("C"), patient("D")],
            ["kari", "new", "deleted", "new"],
        )
    assert [(s.id, s.version, s.method) for s in stored] == [
        ("kari", 2, "PUT"),
        ("new", 1, "POST"),
        ("deleted", 3, "PUT"),
        ("new", 2, "PUT"),
    ]
    current = orjson.loads((await store.read("Patient", "new")).content)
    assert current["name"][0]["family"] == "D"
    assert (
        orjson.loads((await store.read("Patient", "deleted")).content)["meta"]["versionId"] == "3"
    )
    async with store.transaction(write=False) as tx:
        entries, _ = await tx.history("Patient", "new")
    assert [(e.version, e.method) for e in entries] == [(2, "PUT"), (1, "POST")]


async def test_create_many_failing_check_writes_nothing(store):
    from enjournal.fhir.errors import Unprocessable

    seen = []

    async def refuse_bad(tx, resource):
        seen.append(resource["name"][0]["family"])
        if resource["name"][0]["family"] == "Bad":
            raise Unprocessable("bad family")

    store.checks.append(refuse_bad)
    with pytest.raises(Unprocessable) as refused:
        async with store.transaction() as tx:
            await tx.create(patient("Before"), id_="before")
            await tx.create_many([patient("Good"), patient("Bad"), patient("Later")])
    assert seen == ["Before", "Good", "Bad"]
    assert refused.value.index == 1  # which resource was refused
    store.checks.remove(refuse_bad)
    async with store.transaction() as tx:
        dump = await dump_rows(tx)
    assert all(rows == [] for rows in dump.values()), dump


async def test_create_many_of_nothing(store):
    async with store.transaction() as tx:
        assert await tx.create_many([]) == []
        with pytest.raises(ValueError):
            await tx.create_many([patient()], ["a", "b"])
        dump = await dump_rows(tx)
    assert all(rows == [] for rows in dump.values())


async def test_update_after_read_for_update_keeps_the_index_right(store):
    """An update after read_for_update skips rewriting index rows only when they would be
    the same; a changed code is found under its new value and not under the old one."""
    from enjournal.fhir.search import parse_search

    def basic(code: str, note: str) -> dict:
        return {
            "resourceType": "Basic",
            "code": {"coding": [{"system": "http://example.org", "code": code}]},
            "extension": [{"url": "http://example.org/note", "valueString": note}],
        }

    async def found(code: str) -> list[str]:
        async with store.transaction(write=False) as tx:
            result = await tx.search(parse_search("Basic", [("code", code)]))
            return [r.id for r in result.matches]

    await store.update(basic("a", "first"), "x")
    for code, note in [("a", "second"), ("b", "third"), ("b", "fourth")]:
        async with store.transaction(write=True) as tx:
            await tx.read_for_update("Basic", "x")
            await tx.update(basic(code, note), "x")
    assert await found("a") == []
    assert await found("b") == ["x"]
    stored = await store.read("Basic", "x")
    assert stored.version == 4
    assert orjson.loads(stored.content)["extension"][0]["valueString"] == "fourth"


async def test_purge_leaves_no_row_of_the_resource_and_keeps_the_rest(store):
    from enjournal.storage.schema import INDEX_COLUMNS

    ids = ["p-ref", "obs-1", "obs-2", "basic-1"]
    async with store.transaction() as tx:
        await tx.create_many(clinical_batch(), ids)
    await store.update({**clinical_batch()[1], "status": "amended"}, "obs-1")  # a 2nd version
    kept = await rows_written(store, lambda tx: asyncio.sleep(0))

    async def purge(tx):
        # one created in this transaction (its rows still pending) and two stored ones
        await tx.create(patient("Ny"), id_="fresh")
        assert await tx.purge("Patient", "fresh")
        assert await tx.purge("Observation", "obs-1")
        assert await tx.purge("Observation", "obs-2")
        assert not await tx.purge("Observation", "obs-2")  # already gone
        assert not await tx.purge("Observation", "never")
        await tx.flush()
        for table in INDEX_COLUMNS:
            orphans = await tx._conn.fetch(
                f"SELECT rid FROM {table} WHERE rid NOT IN (SELECT rid FROM resources)"
            )
            assert orphans == [], table

    left = await rows_written(store, purge)
    purged = {"Observation/obs-1", "Observation/obs-2", "Patient/fresh"}

    def of_purged(row: tuple) -> bool:
        return row[0] in purged or f"{row[0]}/{row[1]}" in purged

    assert left["resources"] and left["idx_token"]
    for table, rows in left.items():
        assert not [r for r in rows if of_purged(r)], table
        assert rows == [r for r in kept[table] if not of_purged(r)], table


async def test_statistics_follow_the_data_on_postgres(store):
    """Migration 4: every store table re-analyses after a fixed number of changed rows."""
    from enjournal.storage.schema import INDEX_COLUMNS

    async with store.transaction(write=False) as tx:
        versions = [r[0] for r in await tx._conn.fetch("SELECT version FROM schema_migrations")]
        assert 4 in versions
        if tx._conn.dialect != "postgres":
            return  # SQLite keeps no statistics unless ANALYZE runs
        for table in ("resources", "resource_versions", *INDEX_COLUMNS):
            (options,) = await tx._conn.fetchrow(
                "SELECT reloptions FROM pg_class WHERE oid = to_regclass(?)", table
            )
            assert "autovacuum_analyze_threshold=20000" in options, table
            assert "autovacuum_analyze_scale_factor=0" in options, table
