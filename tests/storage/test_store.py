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
