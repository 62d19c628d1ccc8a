"""Bulk export's SQL (enjournal/storage/exports.py) on SQLite and PostgreSQL: the byte-bounded
keyset reader and its selections, and the job table's claims, leases and checkpoints."""

from __future__ import annotations

from enjournal.fhir.search import parse_search
from enjournal.storage import exports as db


def observation(n: int, patient: str, status: str = "final", pad: int = 0) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"obs-{n}",
        "status": status,
        "code": {"text": "x" * pad or f"reading {n}"},
        "subject": {"reference": f"Patient/{patient}"},
    }


async def load(store, resources) -> None:
    async with store.transaction() as tx:
        for resource in resources:
            await tx.update(resource, resource["id"])


async def read_all(store, selection: db.Selection, max_bytes: int) -> list[list[tuple]]:
    pages, after = [], 0
    while True:
        async with store.transaction(write=False) as tx:
            page = await db.read_batch(tx, selection, after, max_bytes)
        if not page:
            return pages
        pages.append(page)
        after = page[-1][0]


async def test_pages_hold_every_row_once_within_the_byte_limit(store):
    await load(store, [observation(n, "a", pad=n * 40) for n in range(60)])
    await load(store, [{"resourceType": "Patient", "id": "a"}])
    pages = await read_all(store, db.Selection("Observation"), 4000)
    rows = [row for page in pages for row in page]
    assert sorted(r[1] for r in rows) == sorted(f"obs-{n}" for n in range(60))
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)  # keyset order
    for page in pages:
        assert sum(len(r[2]) for r in page) <= 4000 or len(page) == 1
    assert len(pages) > 5
    assert all(r[2].startswith(b'{"resourceType":"Observation"') for r in rows)  # as stored


async def test_one_resource_larger_than_the_limit_is_a_page_of_its_own(store):
    await load(store, [observation(1, "a"), observation(2, "a", pad=10_000), observation(3, "a")])
    pages = await read_all(store, db.Selection("Observation"), 1000)
    assert [[r[1] for r in page] for page in pages] == [["obs-1"], ["obs-2"], ["obs-3"]]


async def test_since_type_filter_compartments_and_exclusions(store):
    await load(
        store,
        [
            {"resourceType": "Patient", "id": "a"},
            {"resourceType": "Patient", "id": "b"},
            {"resourceType": "Patient", "id": "c"},
            observation(1, "a"),
            observation(2, "b", status="amended"),
            observation(3, "c"),
            {"resourceType": "Observation", "id": "orphan", "status": "final", "code": {}},
        ],
    )

    async def ids(selection: db.Selection) -> set[str]:
        return {r[1] for page in await read_all(store, selection, 10_000) for r in page}

    assert await ids(db.Selection("Observation")) == {"obs-1", "obs-2", "obs-3", "orphan"}
    amended = parse_search("Observation", [("status", "amended")])
    final = parse_search("Observation", [("status", "final"), ("subject", "Patient/a")])
    assert await ids(db.Selection("Observation", filters=(amended,))) == {"obs-2"}
    assert await ids(db.Selection("Observation", filters=(amended, final))) == {"obs-1", "obs-2"}
    assert await ids(db.Selection("Observation", patients=("a", "c"))) == {"obs-1", "obs-3"}
    assert await ids(db.Selection("Patient", patients=("a", "c"))) == {"a", "c"}
    assert await ids(db.Selection("Observation", any_patient=True)) == {"obs-1", "obs-2", "obs-3"}
    assert await ids(db.Selection("Observation", excluded=("b",))) == {"obs-1", "obs-3", "orphan"}
    assert await ids(db.Selection("Patient", excluded=("b",))) == {"a", "c"}
    async with store.transaction(write=False) as tx:
        assert await db.count_selection(tx, db.Selection("Observation", excluded=("b",))) == 3
        newest = (await tx.read("Observation", "obs-3")).last_updated
    assert await ids(db.Selection("Observation", since_ms=newest)) == {"obs-3", "orphan"}


async def test_the_citizen_controls_are_found_in_one_query_each(store):
    protected = {"system": "urn:protection", "code": "strengt-fortrolig"}
    await load(
        store,
        [
            {"resourceType": "Patient", "id": "a", "meta": {"security": [protected]}},
            {"resourceType": "Patient", "id": "b"},
            {
                "resourceType": "Consent",
                "id": "c1",
                "status": "active",
                "scope": {},
                "category": [{"coding": [{"system": "urn:reservation", "code": "x"}]}],
                "patient": {"reference": "Patient/b"},
            },
            {
                "resourceType": "Group",
                "id": "g",
                "type": "person",
                "actual": True,
                "member": [{"entity": {"reference": "Patient/b"}}],
            },
        ],
    )
    async with store.transaction(write=False) as tx:
        assert await db.protected_patients(tx, "urn:protection") == [("a", "strengt-fortrolig")]
        consents = await db.consents_of_category(tx, ["urn:reservation", "urn:other"])
        assert [(p, c.startswith(b'{"resourceType":"Consent"')) for p, c in consents] == [
            ("b", True)
        ]
        assert await db.group_members(tx, "g") == ["b"]
        assert await db.group_members(tx, "nope") is None


def new_job(job_id: str, created: int) -> db.ExportJob:
    return db.ExportJob(job_id, "client", db.QUEUED, "url", {"types": []}, created, created)


async def test_a_job_is_claimed_by_one_worker_until_its_lease_runs_out(store):
    async with store.transaction() as tx:
        for n in range(3):
            await db.create_job(tx, new_job(f"job-{n}", 1000 + n))
    first = await db.claim_jobs(store, "w1", 10_000, 60_000, 2)
    second = await db.claim_jobs(store, "w2", 10_000, 60_000, 5)
    assert [j.id for j in first] == ["job-0", "job-1"] and [j.id for j in second] == ["job-2"]
    assert await db.claim_jobs(store, "w3", 60_000, 60_000, 5) == []  # leases still held
    job = first[0]
    job.progress = {"done": 5}
    assert await db.checkpoint(store, job, "w1", 80_000)
    # w1 stops renewing job-1; after its lease a new worker takes it and resumes.
    taken = await db.claim_jobs(store, "w3", 75_000, 60_000, 5)
    assert [j.id for j in taken] == ["job-1", "job-2"]
    assert not await db.checkpoint(store, first[1], "w1", 90_000)  # no longer w1's
    # A cancelled (deleted) job stops its worker at the next checkpoint.
    async with store.transaction() as tx:
        assert await db.delete_job(tx, "job-0")
    assert not await db.checkpoint(store, job, "w1", 90_000)


async def test_finish_release_and_expiry(store):
    async with store.transaction() as tx:
        await db.create_job(tx, new_job("job", 1000))
    [job] = await db.claim_jobs(store, "w1", 2000, 60_000, 1)
    job.progress = {"done": 1}
    await db.release(store, job, "w1")
    [again] = await db.claim_jobs(store, "w2", 2001, 60_000, 1)  # released: no wait
    assert again.progress == {"done": 1} and again.lease_owner == "w2"
    assert not await db.finish(store, again, "w1", db.DONE, {}, 3000, 9000)
    assert await db.finish(store, again, "w2", db.DONE, {"output": []}, 3000, 9000)
    async with store.transaction(write=False) as tx:
        done = await db.read_job(tx, "job")
    assert done is not None and done.status == db.DONE and done.output == {"output": []}
    assert await db.expired_jobs(store, 8999) == []
    assert await db.expired_jobs(store, 9001) == ["job"]
    assert await db.claim_jobs(store, "w3", 99_999, 60_000, 1) == []  # done is done
