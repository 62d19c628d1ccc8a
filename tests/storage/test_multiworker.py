"""Concurrency across server processes on one PostgreSQL database (PostgreSQL only).

Three separate ``enjournal serve`` processes share one database, and requests are spread
over them round-robin, so concurrent writes really race in different processes (and
different connection pools).  One test also runs a single server with ``--workers 3``.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.server.conftest import ServerProcess, assert_graceful, live_server  # noqa: F401

FHIR = {"Content-Type": "application/fhir+json"}
POSTGRES = pytest.mark.backends("postgres")


@pytest.fixture
async def servers(store_url, tmp_path):
    """Base URLs of three server processes on one database."""
    procs = [
        ServerProcess(store_url, tmp_path / f"server{n}.log").start(wait=False) for n in range(3)
    ]
    try:
        for proc in procs:
            await asyncio.to_thread(proc.wait_healthy, 30)
        yield [proc.base for proc in procs]
    finally:
        statuses = [proc.terminate(10) for proc in procs]
        for proc in procs:
            proc.kill()
    for proc, status in zip(procs, statuses, strict=True):
        assert_graceful(proc, status)


def patient(**extra) -> dict:
    return {"resourceType": "Patient", "name": [{"family": "Samtidig"}], **extra}


async def spread(bases: list[str], requests: list[dict]) -> list[httpx.Response]:
    """Send all ``requests`` at once, round-robin over the servers."""
    clients = [httpx.AsyncClient(base_url=base, timeout=60) for base in bases]
    try:
        return await asyncio.gather(
            *(clients[n % len(clients)].request(**request) for n, request in enumerate(requests))
        )
    finally:
        for client in clients:
            await client.aclose()


async def conditional_creates(bases: list[str], count: int) -> None:
    value = uuid.uuid4().hex
    body = patient(identifier=[{"system": "urn:test:mw", "value": value}])
    responses = await spread(
        bases,
        [
            {
                "method": "POST",
                "url": "/fhir/Patient",
                "json": body,
                "headers": {**FHIR, "If-None-Exist": f"identifier=urn:test:mw|{value}"},
            }
            for _ in range(count)
        ],
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (count - 1) + [201], [r.text[:200] for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1, ids
    async with httpx.AsyncClient(base_url=bases[0]) as http:
        found = await http.get("/fhir/Patient", params={"identifier": f"urn:test:mw|{value}"})
    assert found.json()["total"] == 1
    assert [e["resource"]["id"] for e in found.json()["entry"]] == list(ids)


@POSTGRES
async def test_concurrent_conditional_creates_make_one_resource(servers):
    await conditional_creates(servers, 30)


@POSTGRES
@pytest.mark.parametrize("live_server", [3], indirect=True)
async def test_conditional_creates_with_three_workers(live_server):  # noqa: F811
    await conditional_creates([live_server], 30)


@POSTGRES
async def test_concurrent_if_match_updates_one_wins(servers):
    async with httpx.AsyncClient(base_url=servers[0]) as http:
        pid = (await http.post("/fhir/Patient", json=patient())).json()["id"]
    responses = await spread(
        servers,
        [
            {
                "method": "PUT",
                "url": f"/fhir/Patient/{pid}",
                "json": patient(id=pid, gender=("male", "female")[n % 2]),
                "headers": {**FHIR, "If-Match": 'W/"1"'},
            }
            for n in range(20)
        ],
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 19, [r.text[:200] for r in responses]
    async with httpx.AsyncClient(base_url=servers[1]) as http:
        current = (await http.get(f"/fhir/Patient/{pid}")).json()
        history = (await http.get(f"/fhir/Patient/{pid}/_history")).json()
    assert current["meta"]["versionId"] == "2"
    assert len(history["entry"]) == 2


@POSTGRES
async def test_concurrent_updates_lose_no_version(servers):
    updates = 24
    async with httpx.AsyncClient(base_url=servers[0]) as http:
        pid = (await http.post("/fhir/Patient", json=patient())).json()["id"]
    responses = await spread(
        servers,
        [
            {
                "method": "PUT",
                "url": f"/fhir/Patient/{pid}",
                "json": patient(id=pid, telecom=[{"system": "phone", "value": f"+47 {n}"}]),
                "headers": FHIR,
            }
            for n in range(updates)
        ],
    )
    assert [r.status_code for r in responses] == [200] * updates, [r.text[:200] for r in responses]
    versions = sorted(int(r.json()["meta"]["versionId"]) for r in responses)
    assert versions == list(range(2, updates + 2))
    async with httpx.AsyncClient(base_url=servers[2]) as http:
        current = (await http.get(f"/fhir/Patient/{pid}")).json()
        history = (await http.get(f"/fhir/Patient/{pid}/_history", params={"_count": "100"})).json()
    assert current["meta"]["versionId"] == str(updates + 1)
    listed = sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"])
    assert listed == list(range(1, updates + 2))
    # Each update's content is in exactly one version.
    phones = sorted(
        e["resource"]["telecom"][0]["value"] for e in history["entry"] if "telecom" in e["resource"]
    )
    assert phones == sorted(f"+47 {n}" for n in range(updates))
