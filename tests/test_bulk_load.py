"""bench/bulk.py's ``bulk_load``: concurrent ``create_many`` batches, on both backends."""

from __future__ import annotations

import pytest

from bench.bulk import bulk_load, demo_resources
from enjournal.storage import open_store


async def test_bulk_load_stores_every_resource_with_its_references(store_url):
    resources = list(demo_resources(120, seed=3))  # the shared resources and 2 patients
    assert {"Patient", "Observation"} <= {r["resourceType"] for r in resources}
    result = await bulk_load(store_url, iter(resources), batch=100, concurrency=3)
    assert result["resources"] == len(resources)
    assert result["batches"] == -(-len(resources) // 100)
    store = await open_store(store_url)
    try:
        async with store.transaction(write=False) as tx:
            count = (await tx._conn.fetchrow("SELECT count(*) FROM resources"))[0]
            # every reference points at a stored resource (none left as urn:uuid)
            dangling = await tx._conn.fetch(
                "SELECT r.target_type, r.target_id, r.url FROM idx_reference r "
                "LEFT JOIN resources t ON t.type = r.target_type AND t.id = r.target_id "
                "WHERE t.rid IS NULL"
            )
            linked = (await tx._conn.fetchrow("SELECT count(*) FROM idx_reference"))[0]
    finally:
        await store.close()
    assert count == len(resources)
    assert dangling == [] and linked > len(resources)


async def test_bulk_load_stops_on_a_failing_batch(store_url):
    resources = [{"resourceType": "Basic", "code": {"text": str(i)}} for i in range(50)]
    resources[30] = {"code": {"text": "no type"}}
    with pytest.raises(KeyError):
        await bulk_load(store_url, iter(resources), batch=10, concurrency=2)
