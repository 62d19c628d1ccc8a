"""Shared fixtures: a platform (``enjournal.bootstrap``) and its store on each backend, and an
in-process client of the app on it.

Which backends a test runs on is its ``backends`` mark (the closest one: the test's, else its
module's ``pytestmark``): by default the real databases, embedded SQLite and PostgreSQL.
Tests of rules and access, not of storage, say ``pytest.mark.backends("memory")`` and run
on the pure-Python memory store (``memory://``, fast); a few of them keep
``pytest.mark.backends(*ALL_BACKENDS)`` as the check that the databases answer alike.
"""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest

from enjournal.bootstrap import build_platform, close_platform
from enjournal.settings import Settings

PG_DSN = os.environ.get("ENJOURNAL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def _pg_schema() -> str:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return schema


async def _drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


DATABASES = ("sqlite", "postgres")
ALL_BACKENDS = ("memory", *DATABASES)
MEMORY = pytest.mark.backends("memory")  # a module's ``pytestmark``: rules and access tests
EVERY_BACKEND = pytest.mark.backends(*ALL_BACKENDS)  # the integration check among them


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "backends(*names): the stores store_url gives (memory, sqlite, postgres)"
    )


def pytest_generate_tests(metafunc):
    """Parametrise ``store_url`` (and all built on it) by the test's ``backends`` mark."""
    if "store_url" not in metafunc.fixturenames:
        return
    mark = metafunc.definition.get_closest_marker("backends")
    names = mark.args if mark else DATABASES
    unknown = set(names) - set(ALL_BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends {sorted(unknown)}")
    metafunc.parametrize("store_url", names, indirect=True)


@pytest.fixture
async def store_url(request, tmp_path):
    """A URL for an empty store on the backend the test's ``backends`` mark names."""
    if request.param == "memory":
        yield "memory://"
        return
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/test.sqlite"
        return
    schema = await _pg_schema()
    yield f"{PG_DSN}?search_path={schema}"
    await _drop_schema(schema)


@pytest.fixture
async def platform(store_url):
    """The platform as the commands build it, with security off and no write checks: tests
    that want the terminology check install it (tests/terminology)."""
    settings = Settings(database_url=store_url, auth=False, terminology_check=False)
    platform = await build_platform(settings)
    yield platform
    await close_platform(platform)


@pytest.fixture
async def store(platform):
    return platform.store


@pytest.fixture
async def client(platform):
    """An HTTP client talking to the app in-process, on each backend, with security off:
    these tests are about the FHIR core (tests/security covers the secured server)."""
    import httpx

    from enjournal.server.app import create_app

    app = create_app(platform.settings, platform=platform)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http
