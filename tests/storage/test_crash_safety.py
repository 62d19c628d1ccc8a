"""Crash safety: processes killed with SIGKILL leave a consistent database (both backends).

* ``enjournal import`` of one big NDJSON file, killed at several moments: the file is one
  transaction, so afterwards either all its resources are there or none.
* ``enjournal serve`` killed during a stream of transaction Bundles: every Bundle that was
  answered 200 is complete, and no Bundle is partly stored.

After each kill the database is checked: every ``resources`` row has its current
``resource_versions`` row (and no version row is orphaned), every index row points at an
existing resource, and stored resources have their index rows.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson

from enjournal.storage import open_store
from enjournal.storage.schema import INDEX_COLUMNS
from tests.server.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
IMPORT_PATIENTS = 5000  # an import of these outlasts the first two kills on an idle machine
TX_SYSTEM = "urn:test:crash-bundle"


def patient(n: int, *, tag: str, with_id: bool = True) -> dict:
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:crash", "value": f"{tag}-{n}"}],
        "name": [{"family": f"Krasj{n % 97}", "given": ["Kari", f"Nr{n}"]}],
        "gender": ("female", "male", "other")[n % 3],
        "birthDate": f"19{50 + n % 50}-0{1 + n % 9}-1{n % 10}",
        "address": [{"city": "Bergen", "postalCode": f"{5000 + n % 999:04d}"}],
        "telecom": [{"system": "phone", "value": f"+47 9{n:07d}"}],
    }
    if with_id:
        resource["id"] = f"crash-{tag}-{n}"
    return resource


def write_ndjson(path: Path, count: int, tag: str) -> Path:
    with path.open("wb") as out:
        for n in range(count):
            out.write(orjson.dumps(patient(n, tag=tag)) + b"\n")
    return path


async def check_consistent(url: str) -> dict[str, int]:
    """Assert the invariants that must survive any crash; the number of live rows per type.
    (Versions are matched on (type, id), which is indexed, and one to one with rid.)"""
    store = await open_store(url)
    try:
        async with store.transaction(write=False) as tx:
            conn = tx._conn
            no_version = await conn.fetch(
                "SELECT r.type, r.id, r.version FROM resources r WHERE NOT EXISTS "
                "(SELECT 1 FROM resource_versions v WHERE v.type = r.type AND v.id = r.id "
                "AND v.version = r.version)"
            )
            assert not no_version, f"resources without their current version row: {no_version[:5]}"
            orphans = await conn.fetch(
                "SELECT v.type, v.id, v.version FROM resource_versions v WHERE NOT EXISTS "
                "(SELECT 1 FROM resources r WHERE r.rid = v.rid)"
            )
            assert not orphans, f"version rows without a resource: {orphans[:5]}"
            gaps = await conn.fetch(
                "SELECT r.type, r.id FROM resources r WHERE r.version <> "
                "(SELECT count(*) FROM resource_versions v WHERE v.type = r.type "
                "AND v.id = r.id)"
            )
            assert not gaps, f"resources whose history misses versions: {gaps[:5]}"
            for table in INDEX_COLUMNS:
                dangling = await conn.fetch(
                    f"SELECT DISTINCT i.rid FROM {table} i WHERE NOT EXISTS "
                    "(SELECT 1 FROM resources r WHERE r.rid = i.rid AND NOT r.deleted)"
                )
                assert not dangling, f"{table} rows of missing or deleted resources: {dangling[:5]}"
            unindexed = await conn.fetch(
                "SELECT r.id FROM resources r WHERE r.type = 'Patient' AND NOT r.deleted "
                "AND NOT EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid) "
                "AND NOT EXISTS (SELECT 1 FROM idx_string s WHERE s.rid = r.rid)"
            )
            assert not unindexed, f"Patients without index rows: {unindexed[:5]}"
            if conn.dialect == "sqlite":
                assert (await conn.fetchrow("PRAGMA integrity_check"))[0] == "ok"
            rows = await conn.fetch(
                "SELECT type, count(*) FROM resources WHERE NOT deleted GROUP BY type"
            )
            return {row[0]: row[1] for row in rows}
    finally:
        await store.close()


async def identifiers(url: str) -> Counter:
    """How many live Patients carry each identifier value."""
    store = await open_store(url)
    try:
        async with store.transaction(write=False) as tx:
            rows = await tx._conn.fetch(
                "SELECT content FROM resources WHERE type = 'Patient' AND NOT deleted"
            )
    finally:
        await store.close()
    found: Counter = Counter()
    for row in rows:
        for identifier in orjson.loads(bytes(row[0])).get("identifier", []):
            found[identifier["value"]] += 1
    return found


def start_import(url: str, path: Path, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "enjournal.cli", "import", "--database", url, str(path)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )


# --------------------------------------------------------------------------- import


async def test_import_killed_mid_file_is_all_or_nothing(store_url, tmp_path):
    await check_consistent(store_url)  # creates the schema, so the import only writes data
    data = write_ndjson(tmp_path / "patients.ndjson", IMPORT_PATIENTS, "imp")
    log = tmp_path / "import.log"

    killed_running = 0
    for delay in (0.3, 0.6, 1.5):
        proc = start_import(store_url, data, log)
        await asyncio.sleep(delay)
        if proc.poll() is None:
            killed_running += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        counts = await check_consistent(store_url)
        assert counts.get("Patient", 0) in (0, IMPORT_PATIENTS), (delay, counts)
        if counts.get("Patient"):
            break  # finished before the kill: the remaining points would test nothing new
    assert killed_running >= 2, "the import finished too soon to be killed mid-file"

    # A full import afterwards works and stores every line exactly once.
    before = 1 if counts.get("Patient") else 0  # versions an import that beat a kill made
    proc = start_import(store_url, data, log)
    assert proc.wait(120) == 0, log.read_text()[-3000:]
    counts = await check_consistent(store_url)
    assert counts["Patient"] == IMPORT_PATIENTS
    found = await identifiers(store_url)
    assert len(found) == IMPORT_PATIENTS and set(found.values()) == {1}

    # Killing a re-import (updates, one more version of every Patient) is all-or-nothing too.
    proc = start_import(store_url, data, log)
    await asyncio.sleep(1.2)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    await check_consistent(store_url)
    store = await open_store(store_url)
    try:
        async with store.transaction(write=False) as tx:
            versions = await tx._conn.fetch(
                "SELECT version, count(*) FROM resources WHERE type = 'Patient' GROUP BY version"
            )
    finally:
        await store.close()
    assert len(versions) == 1 and versions[0][1] == IMPORT_PATIENTS, versions
    if running:
        assert versions[0][0] in (before + 1, before + 2)


# --------------------------------------------------------------------------- server


BUNDLE_SIZE = 15


def transaction_bundle(number: int) -> dict:
    tag = f"b{number}"
    entries = []
    for n in range(BUNDLE_SIZE):
        resource = patient(n, tag="tx", with_id=False)
        resource["identifier"] = [{"system": TX_SYSTEM, "value": tag}]
        entries.append(
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{number:06d}{n:06d}",
                "resource": resource,
                "request": {"method": "POST", "url": "Patient"},
            }
        )
    entries.append(
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "identifier": [{"system": TX_SYSTEM, "value": tag}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"urn:uuid:00000000-0000-4000-8000-{number:06d}000000"},
                "valueQuantity": {"value": 60 + number % 40, "unit": "/min"},
            },
            "request": {"method": "POST", "url": "Observation"},
        }
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def test_server_killed_during_transactions_keeps_them_whole(store_url, tmp_path):
    server = ServerProcess(store_url, tmp_path / "server.log").start()
    committed: set[str] = set()
    sent: set[str] = set()
    counter = iter(range(10**6))

    async def stream(http: httpx.AsyncClient) -> None:
        while True:
            number = next(counter)
            sent.add(f"b{number}")
            try:
                r = await http.post("/fhir", json=transaction_bundle(number))
            except httpx.HTTPError:
                return  # the server is gone
            assert r.status_code == 200, r.text[:500]
            committed.add(f"b{number}")

    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            streams = [asyncio.create_task(stream(http)) for _ in range(4)]
            # Kill once a fair number of transactions committed, while others are in flight.
            deadline = time.monotonic() + 30
            while len(committed) < 12 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.137)
            server.kill()
            await asyncio.wait_for(asyncio.gather(*streams), 30)
    finally:
        server.kill()
    assert len(committed) >= 12, server.output()
    assert len(sent) > len(committed), "no transaction was in flight at the kill"

    await check_consistent(store_url)
    patients = await identifiers(store_url)
    partial = {tag: n for tag, n in patients.items() if n != BUNDLE_SIZE}
    assert not partial, f"partly stored transactions: {partial}"
    assert committed <= set(patients), f"answered 200 but lost: {committed - set(patients)}"
    assert set(patients) <= sent

    # The restarted server serves the committed data through its search indexes.
    server = ServerProcess(store_url, tmp_path / "server2.log").start()
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            for tag in sorted(committed)[:5]:
                r = await http.get(
                    "/fhir/Patient", params={"identifier": f"{TX_SYSTEM}|{tag}", "_count": "50"}
                )
                assert r.json()["total"] == BUNDLE_SIZE, r.text[:300]
                r = await http.get("/fhir/Observation", params={"identifier": f"{TX_SYSTEM}|{tag}"})
                assert r.json()["total"] == 1
    finally:
        status = server.terminate(10)
        server.kill()
    assert status in (0, -signal.SIGTERM)
