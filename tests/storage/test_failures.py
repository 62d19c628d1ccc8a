"""The store under failure: dropped connections, a full disk, a query that runs too long,
a cancelled request.  Each becomes a typed FHIR error (503 Busy with a clear message) or a
transparent retry, never an untyped exception (a 500)."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
import pytest

from enjournal.fhir.errors import Busy
from enjournal.storage import open_store
from tests.conftest import PG_DSN


async def _terminate_backends(application: str) -> int:
    """End the server processes of this test's pool (what a failover, a restart or an
    idle-session killer does to a pool); only its own, other tests share the database."""
    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            application,
        )
    finally:
        await conn.close()
    return len(rows)


@pytest.fixture
async def pg_client(tmp_path):
    import httpx

    from enjournal.bootstrap import build_platform, close_platform
    from enjournal.server.app import create_app
    from enjournal.settings import Settings
    from tests.conftest import _drop_schema, _pg_schema

    schema = await _pg_schema()
    url = f"{PG_DSN}?search_path={schema}&application_name={schema}"
    settings = Settings(database_url=url, auth=False, pool_size=3)
    platform = await build_platform(settings, serving=True)
    app = create_app(settings, platform=platform)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http, schema
    await close_platform(platform)
    await _drop_schema(schema)


async def test_reads_survive_dropped_connections(pg_client):
    http, application = pg_client
    created = await http.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    assert created.status_code == 201
    for _ in range(3):
        # Warm every pooled connection, then kill them all.
        await asyncio.gather(*(http.get("/fhir/Patient/p1") for _ in range(3)))
        assert await _terminate_backends(application) >= 1
        r = await http.get("/fhir/Patient/p1")
        assert r.status_code == 200, r.text
        r = await http.get("/fhir/Patient?_id=p1")
        assert r.status_code == 200 and r.json()["entry"], r.text


async def test_writes_after_dropped_connections_succeed(pg_client):
    http, application = pg_client
    await asyncio.gather(*(http.get("/fhir/metadata") for _ in range(3)))
    await http.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    assert await _terminate_backends(application) >= 1
    # The dropped connection is found at BEGIN, before anything was written: replaced.
    r = await http.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "2"


def test_a_lost_connection_is_busy_with_retry_after():
    from enjournal.fhir.errors import Busy
    from enjournal.rest.errors import error_response
    from enjournal.storage.postgres import storage_error

    lost = storage_error(asyncpg.ConnectionDoesNotExistError("connection was closed"))
    assert isinstance(lost, Busy)
    response = error_response(lost)
    assert response.status == 503 and response.headers["Retry-After"] == "1"


async def test_a_statement_over_the_time_limit_is_busy(tmp_path):
    from tests.conftest import _drop_schema, _pg_schema

    schema = await _pg_schema()
    store = await open_store(f"{PG_DSN}?search_path={schema}", read_timeout_ms=200)
    try:
        with pytest.raises(Busy) as refused:
            async with store.transaction(write=False) as tx:
                await tx._conn.fetch("SELECT pg_sleep(2)")
        assert "took longer" in refused.value.message
        assert refused.value.issues[0].code == "too-costly"
        async with store.transaction(write=False) as tx:  # the connection is usable again
            assert await tx._conn.fetchrow("SELECT 1") is not None
    finally:
        await store.close()
        await _drop_schema(schema)


async def test_a_long_sqlite_read_is_interrupted(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path}/db.sqlite", read_timeout_ms=200)
    try:
        slow = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
            "SELECT count(*) FROM n WHERE i < 0"
        )
        with pytest.raises(Busy) as refused:
            async with store.transaction(write=False) as tx:
                await tx._conn.fetch(slow)
        assert "took longer" in refused.value.message
        async with store.transaction(write=False) as tx:
            assert await tx._conn.fetchrow("SELECT 1") == (1,)
    finally:
        await store.close()


async def test_a_full_sqlite_disk_is_busy_with_a_clear_message(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path}/db.sqlite")
    try:
        async with store.transaction(write=True) as tx:
            pages = (await tx._conn.fetchrow("PRAGMA page_count"))[0]
            await tx._conn.fetch(f"PRAGMA max_page_count = {pages + 2}")
        with pytest.raises(Busy) as refused:
            async with store.transaction(write=True) as tx:
                for n in range(200):
                    text = "x" * 2000
                    patient = {"resourceType": "Patient", "id": f"p{n}", "name": [{"text": text}]}
                    await tx.create(patient, id_=f"p{n}")
        assert "full" in refused.value.message
        assert refused.value.status == 503
        async with store.transaction(write=False) as tx:  # nothing of it was kept
            assert not await tx.exists("Patient", "p0")
    finally:
        await store.close()


def test_postgres_disk_full_and_lost_connections_map_to_busy():
    from enjournal.storage.postgres import storage_error

    full = storage_error(asyncpg.DiskFullError("could not extend file"))
    assert isinstance(full, Busy) and "disk" in full.message
    lost = storage_error(asyncpg.ConnectionDoesNotExistError("connection was closed"))
    assert isinstance(lost, Busy) and "connection" in lost.message
    assert storage_error(asyncpg.AdminShutdownError("terminating connection")) is not None
    assert storage_error(ConnectionResetError()) is not None
    assert storage_error(asyncpg.UndefinedColumnError("x")) is None  # a bug stays a bug


def test_sqlite_disk_full_maps_to_busy():
    from enjournal.storage.sqlite import storage_error

    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    assert isinstance(storage_error(full), Busy)
    assert storage_error(sqlite3.OperationalError("no such table: x")) is None


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_statement_past_the_database_limits_is_a_400(backend, tmp_path):
    from enjournal.fhir.errors import Invalid
    from tests.conftest import _drop_schema, _pg_schema

    schema = None
    if backend == "sqlite":
        store = await open_store(f"sqlite:///{tmp_path}/db.sqlite")
    else:
        schema = await _pg_schema()
        store = await open_store(f"{PG_DSN}?search_path={schema}")
    try:
        # Past SQLite's variable limit (32,766, or 250,000 in some builds) and PostgreSQL's.
        ids = [f"p{n}" for n in range(300_000 if backend == "sqlite" else 40_000)]
        marks = ", ".join("?" for _ in ids)
        with pytest.raises(Invalid) as refused:
            async with store.transaction(write=False) as tx:
                await tx._conn.fetch(f"SELECT id FROM resources WHERE id IN ({marks})", *ids)
        assert refused.value.status == 400 and refused.value.issues[0].code == "too-costly"
    finally:
        await store.close()
        if schema:
            await _drop_schema(schema)


async def test_an_integer_beyond_64_bits_is_a_400(store):
    from enjournal.fhir.errors import Invalid

    with pytest.raises(Invalid) as refused:
        async with store.transaction(write=False) as tx:
            await tx._conn.fetch("SELECT rid FROM resources WHERE rid = ?", 10**20)
    assert refused.value.status == 400
