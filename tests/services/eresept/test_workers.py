"""Two real server worker processes on PostgreSQL: racing pharmacies reach different
processes, and still exactly one takes a prescription and nothing is dispensed more than
prescribed.  The server runs without security (ENJOURNAL_AUTH=off), so callers name their
organisation in the operation's ``organization`` parameter (see actors.py)."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path

import httpx
import pytest

from enjournal.fhir.norwegian_ids import make_orgnr
from enjournal.storage import open_store
from tests.server.conftest import ServerProcess, assert_graceful
from tests.services.eresept.conftest import params, prescription, world
from tests.services.eresept.test_races import dispenses_of

pytestmark = pytest.mark.backends("postgres")  # two processes share one database

ORGS = [make_orgnr(random.Random(n)) for n in range(10)]


def serving_pids(log: Path, operation: str) -> Counter:
    """Requests for ``operation`` per worker process, from the server's JSON request log."""
    pids: Counter = Counter()
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "request" and entry.get("path", "").endswith(operation):
            pids[entry["pid"]] += 1
    return pids


@pytest.fixture
async def two_workers(store_url, tmp_path):
    store = await open_store(store_url)
    async with store.transaction() as tx:
        for resource in world():
            await tx.update(resource, resource["id"])
    server = ServerProcess(store_url, tmp_path / "server.log", workers=2).start()
    try:
        # No keep-alive: every request is a new connection, accepted by either worker.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=f"{server.base}/fhir", timeout=30, limits=limits
        ) as http:
            yield http, store, server.log
    finally:
        status = server.terminate(10)
        server.kill()
        await store.close()
    assert_graceful(server, status)  # and no error logged by either worker


async def test_two_workers_race(two_workers):
    http, store, log = two_workers
    for round_ in range(10):
        created = await http.post(
            "/MedicationRequest/$prescribe",
            json=params(
                prescription={
                    **prescription(quantity=10, repeats=1),
                    "requester": {
                        "identifier": {
                            "system": "urn:oid:2.16.578.1.12.4.1.4.4",
                            "value": "2000001",
                        }
                    },
                }
            ),
        )
        assert created.status_code == 201, created.text
        mr_id = created.json()["parameter"][0]["resource"]["id"]
        takes = await asyncio.gather(
            *(
                http.post(f"/MedicationRequest/{mr_id}/$take", json=params(organization=org))
                for org in ORGS
            )
        )
        assert Counter(t.status_code for t in takes) == {200: 1, 409: len(ORGS) - 1}, round_
        winner = ORGS[[t.status_code for t in takes].index(200)]
        dispensings = await asyncio.gather(
            *(
                http.post(
                    f"/MedicationRequest/{mr_id}/$dispense",
                    json=params(organization=winner, quantity=20),
                )
                for _ in range(4)
            )
        )
        assert Counter(d.status_code for d in dispensings) == {200: 1, 409: 3}
        assert [d["quantity"]["value"] for d in await dispenses_of(store, mr_id)] == [20]
    # The races above crossed processes: both workers served takes.
    assert len(serving_pids(log, "$take")) == 2, serving_pids(log, "$take")
