"""The export job runner on SQLite and PostgreSQL: bounded pages whatever a resource holds (a
5 MB attachment), a job that resumes after its worker dies (a new platform over the same
database), exports side by side, expiry.  Security is off here (tests/services/registers/
test_bulk.py drives the secured API); requests go through ``Platform.handle``."""

from __future__ import annotations

import base64
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from enjournal.bootstrap import build_platform, close_platform
from enjournal.rest.message import FhirRequest
from enjournal.services.registers.bulk_runner import Exporter, job_dir
from enjournal.settings import Settings
from enjournal.storage import exports as db
from enjournal.storage.base import too_costly

BASE = "http://test/fhir"
BIG = 5 * 1024 * 1024


def settings(store_url: str, tmp_path: Path, **options) -> Settings:
    return Settings(
        database_url=store_url,
        auth=False,
        terminology_check=False,
        jobs=False,
        export_dir=str(tmp_path / "exports"),
        **options,
    )


@pytest.fixture
async def open_platforms():
    opened = []

    async def build(store_url, tmp_path, clock=None, **options):
        kw = {"clock": clock} if clock else {}
        platform = await build_platform(settings(store_url, tmp_path, **options), **kw)
        opened.append(platform)
        return platform

    yield build
    for platform in opened:
        await close_platform(platform)


def observation(n: int) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"obs-{n}",
        "status": "final",
        "code": {"text": f"reading {n}"},
        "subject": {"reference": f"Patient/p{n % 3}"},
    }


def document(n: int, size: int) -> dict:
    data = base64.b64encode(b"x" * (size * 3 // 4)).decode()
    return {
        "resourceType": "DocumentReference",
        "id": f"doc-{n}",
        "status": "current",
        "content": [{"attachment": {"contentType": "application/pdf", "data": data}}],
    }


async def load(platform, resources: list[dict]) -> None:
    async with platform.store.transaction() as tx:
        for resource in resources:
            await tx.update(resource, resource["id"])


async def kick_off(platform, query: list[tuple[str, str]]) -> str:
    request = FhirRequest("GET", ["$export"], query, {"prefer": "respond-async"}, b"", BASE)
    response = await platform.handle(request)
    assert response.status == 202, response.body
    return response.headers["Content-Location"].split("_jobId=")[1]


async def job(platform, job_id: str) -> db.ExportJob:
    async with platform.store.transaction(write=False) as tx:
        found = await db.read_job(tx, job_id)
    assert found is not None
    return found


def exported(platform, found: db.ExportJob) -> list[dict]:
    folder = job_dir(platform.settings, found.id)
    rows = []
    for entry in found.output["output"]:
        rows += [orjson.loads(line) for line in (folder / entry["file"]).read_bytes().splitlines()]
    return rows


async def test_pages_are_bounded_by_bytes_whatever_a_resource_holds(
    open_platforms, store_url, tmp_path
):
    limit = 256 * 1024
    platform = await open_platforms(store_url, tmp_path, export_batch_bytes=limit)
    small = [observation(n) for n in range(300)]
    await load(platform, small[:150] + [document(n, BIG) for n in range(3)] + small[150:])
    job_id = await kick_off(platform, [("_type", "Observation,DocumentReference")])
    exporter: Exporter = platform.bulk_exporter
    tracemalloc.start()
    try:
        await exporter.run_pass(platform.store, datetime.now(UTC))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    found = await job(platform, job_id)
    rows = exported(platform, found)
    assert {r["id"] for r in rows} == {f"obs-{n}" for n in range(300)} | {"doc-0", "doc-1", "doc-2"}
    # A page shares the limit; a 5 MB resource is a page of its own.
    assert 0 < exporter.stats.largest_shared_batch_bytes <= limit
    assert BIG <= exporter.stats.largest_batch_bytes < BIG + 4096
    # The three documents (15 MB) were never held at once: one copy of one (SQLite), two
    # on PostgreSQL (asyncpg joins the message, then decodes the bytea).
    assert peak < 2.5 * BIG


async def test_files_split_at_the_size_limit(open_platforms, store_url, tmp_path):
    platform = await open_platforms(
        store_url, tmp_path, export_batch_bytes=2048, export_file_bytes=8192
    )
    await load(platform, [observation(n) for n in range(200)])
    job_id = await kick_off(platform, [("_type", "Observation")])
    await platform.bulk_exporter.run_pass(platform.store, datetime.now(UTC))
    found = await job(platform, job_id)
    files = found.output["output"]
    assert len(files) > 3 and all(f["type"] == "Observation" for f in files)
    folder = job_dir(platform.settings, job_id)
    assert all((folder / f["file"]).stat().st_size <= 8192 for f in files)
    assert sum(f["count"] for f in files) == 200
    assert sorted(r["id"] for r in exported(platform, found)) == sorted(
        f"obs-{n}" for n in range(200)
    )


class Crash(BaseException):
    """A worker killed between writing a page and saving its checkpoint."""


class CrashingExporter(Exporter):
    def __init__(self, *args, after: int, **kw):
        super().__init__(*args, **kw)
        self.left = after

    async def _checkpoint(self, store, job) -> None:
        if self.left == 0:
            raise Crash
        self.left -= 1
        await super()._checkpoint(store, job)


async def test_a_job_resumes_after_its_worker_dies(open_platforms, store_url, tmp_path):
    first = await open_platforms(store_url, tmp_path, export_batch_bytes=2048)
    await load(first, [observation(n) for n in range(120)])
    job_id = await kick_off(first, [("_type", "Observation")])
    dying = CrashingExporter(first.settings, first.clock, after=5)
    with pytest.raises(Crash):
        await dying.run_pass(first.store, datetime.now(UTC))
    half = await job(first, job_id)
    assert half.status == db.RUNNING and 0 < half.progress["done"] < 120
    folder = job_dir(first.settings, job_id)
    written = (folder / half.progress["file"]).stat().st_size
    assert written > half.progress["offset"]  # a page past the checkpoint: cut off later
    # Another worker on a new platform over the same database: not before the lease ends.
    later = datetime.now(UTC) + timedelta(seconds=first.settings.export_lease_seconds + 1)
    second = await open_platforms(store_url, tmp_path, clock=lambda: later)
    early = Exporter(second.settings)
    assert await early.run_pass(second.store, datetime.now(UTC)) == 0
    assert await second.bulk_exporter.run_pass(second.store, later) == 1
    done = await job(second, job_id)
    assert done.status == db.DONE
    ids = [r["id"] for r in exported(second, done)]
    assert sorted(ids) == sorted(f"obs-{n}" for n in range(120))  # each once


async def test_two_exports_run_side_by_side(open_platforms, store_url, tmp_path):
    platform = await open_platforms(store_url, tmp_path, export_batch_bytes=1024, export_workers=2)
    await load(platform, [observation(n) for n in range(100)])
    first = await kick_off(platform, [("_type", "Observation")])
    second = await kick_off(platform, [("_type", "Observation"), ("_since", "2000-01-01")])
    exporter: Exporter = platform.bulk_exporter
    active: set[str] = set()
    most = 0
    export_type = exporter._export_type

    async def watched(store, job, *args):
        nonlocal most
        active.add(job.id)
        most = max(most, len(active))
        try:
            await export_type(store, job, *args)
        finally:
            active.discard(job.id)

    exporter._export_type = watched  # type: ignore[method-assign]
    assert await exporter.run_pass(platform.store, datetime.now(UTC)) == 2
    assert most == 2
    for job_id in (first, second):
        assert len(exported(platform, await job(platform, job_id))) == 100


async def test_finished_exports_expire_with_their_files(open_platforms, store_url, tmp_path):
    platform = await open_platforms(store_url, tmp_path, export_expire_seconds=3600)
    await load(platform, [observation(n) for n in range(5)])
    job_id = await kick_off(platform, [("_type", "Observation")])
    exporter: Exporter = platform.bulk_exporter
    now = datetime.now(UTC)
    await exporter.run_pass(platform.store, now)
    folder = job_dir(platform.settings, job_id)
    assert folder.is_dir()
    await exporter.run_pass(platform.store, now + timedelta(minutes=59))
    assert folder.is_dir()
    await exporter.run_pass(platform.store, now + timedelta(minutes=61))
    assert not folder.exists()
    async with platform.store.transaction(write=False) as tx:
        assert await db.read_job(tx, job_id) is None


class BusyOnce(Exporter):
    """A database that times a page out once (too-costly, 503)."""

    busy = True

    async def _export_type(self, *args) -> None:
        if self.busy:
            self.busy = False
            raise too_costly()
        await super()._export_type(*args)


async def test_a_busy_database_delays_the_job_it_does_not_fail_it(
    open_platforms, store_url, tmp_path
):
    platform = await open_platforms(store_url, tmp_path)
    await load(platform, [observation(n) for n in range(10)])
    job_id = await kick_off(platform, [("_type", "Observation")])
    now = datetime.now(UTC)
    exporter = BusyOnce(platform.settings, lambda: now)
    assert await exporter.run_pass(platform.store, now) == 0
    waiting = await job(platform, job_id)
    assert waiting.status == db.RUNNING and waiting.progress["retries"] == 1
    assert await exporter.run_pass(platform.store, now) == 0  # not yet
    later = now + timedelta(seconds=31)
    exporter.clock = lambda: later
    assert await exporter.run_pass(platform.store, later) == 1
    assert len(exported(platform, await job(platform, job_id))) == 10


async def test_a_worker_that_lost_its_job_writes_nothing(open_platforms, store_url, tmp_path):
    platform = await open_platforms(store_url, tmp_path)
    await load(platform, [observation(n) for n in range(10)])
    job_id = await kick_off(platform, [("_type", "Observation")])
    now = datetime.now(UTC)
    stalled = Exporter(platform.settings, lambda: now)
    [claimed] = await db.claim_jobs(platform.store, stalled.worker, stalled.now_ms(), 1000, 1)
    later = now + timedelta(seconds=2)
    taker = Exporter(platform.settings, lambda: later)
    [taken] = await db.claim_jobs(platform.store, taker.worker, taker.now_ms(), 60_000, 1)
    assert taken.id == claimed.id == job_id
    assert not await stalled.run_job(platform.store, claimed)  # stops before writing
    folder = job_dir(platform.settings, job_id)
    assert not any(folder.rglob("*.ndjson"))
    assert await taker.run_job(platform.store, taken)
    assert len(exported(platform, await job(platform, job_id))) == 10


class Broken(Exporter):
    async def _export_type(self, *args) -> None:
        raise RuntimeError("the disk is gone")


async def test_a_failed_export_answers_500_without_the_cause(open_platforms, store_url, tmp_path):
    platform = await open_platforms(store_url, tmp_path)
    await load(platform, [observation(1)])
    job_id = await kick_off(platform, [("_type", "Observation")])
    assert await Broken(platform.settings).run_pass(platform.store, datetime.now(UTC))
    status = FhirRequest("GET", ["$export-poll-status"], [("_jobId", job_id)], {}, b"", BASE)
    answer = await platform.handle(status)
    assert answer.status == 500
    text = orjson.loads(answer.body)["issue"][0]["diagnostics"]
    assert "failed" in text and "disk" not in text  # the cause is for the log, not the client


# ---- the other kinds' handlers (views, register): a lease renewed while they run ------------


async def test_a_handlers_lease_is_renewed_and_a_cancel_stops_it(
    open_platforms, store_url, tmp_path, monkeypatch
):
    import asyncio

    from enjournal.services.registers import bulk

    platform = await open_platforms(store_url, tmp_path, export_lease_seconds=1)
    started, beaten, stopped = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def waiting(exporter, store, job) -> dict:
        started.set()
        try:
            await asyncio.Event().wait()  # a long step: only the beats renew the lease
        finally:
            stopped.set()
        return {}

    kind = bulk.Kind(progress=lambda job: "", answer=lambda request, job: None,
                     files=lambda job: {})  # fmt: skip
    monkeypatch.setitem(bulk.KINDS, "waiting", kind)
    exporter: Exporter = platform.bulk_exporter
    monkeypatch.setitem(exporter.handlers, "waiting", waiting)
    checkpoint = exporter._checkpoint

    async def beat(store, job) -> None:
        await checkpoint(store, job)
        beaten.set()

    monkeypatch.setattr(exporter, "_checkpoint", beat)
    now = exporter.now_ms()
    job = db.ExportJob("w1", "", db.QUEUED, "url", {}, now, now, kind="waiting")
    async with platform.store.transaction() as tx:
        await db.create_job(tx, job)
    running = asyncio.create_task(exporter.run_pass(platform.store, datetime.now(UTC)))
    await started.wait()
    claimed = await _read(platform, "w1")
    await beaten.wait()
    renewed = await _read(platform, "w1")
    assert renewed.lease_until > claimed.lease_until and renewed.lease_owner == exporter.worker
    async with platform.store.transaction() as tx:
        await db.delete_job(tx, "w1")  # cancelled (DELETE on the status URL)
    assert await running == 0  # the next beat found it gone: stopped, not finished
    assert stopped.is_set()


async def _read(platform, job_id: str) -> db.ExportJob:
    async with platform.store.transaction(write=False) as tx:
        found = await db.read_job(tx, job_id)
    assert found is not None
    return found
