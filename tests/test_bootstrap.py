"""The composition root (``enjournal.bootstrap``): whichever command writes the data, the
store enforces and indexes the same.  The commands run as subprocesses, as an operator runs
them: a fresh process has only what its own command composed (a service's search
parameters registered by an earlier test in this process would hide the defect)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from enjournal.bootstrap import build_platform, close_platform, compose
from enjournal.services.eresept.fest.resources import RESEPTGRUPPE_SYSTEM
from enjournal.services.eresept.rules import RESEPT_ID
from enjournal.settings import Settings
from tests.services.eresept.fest.helpers import fest, package, write

ROOT = Path(__file__).resolve().parents[1]


def enjournal(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "enjournal.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def issued_prescription(id_: str, validity_end: str) -> dict:
    """A MedicationRequest as ``$prescribe`` stores it (the reseptID marks it as the
    intermediary's), whose validity ended on ``validity_end``."""
    return {
        "resourceType": "MedicationRequest",
        "id": id_,
        "identifier": [{"system": RESEPT_ID, "value": f"resept-{id_}"}],
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/kari"},
        "medicationReference": {"reference": "Medication/fest-100002"},
        "dispenseRequest": {"validityPeriod": {"start": "2024-01-01", "end": validity_end}},
    }


def test_an_imported_prescription_is_purged_by_the_deletion_job(store_url, tmp_path):
    data = tmp_path / "prescriptions.ndjson"
    lines = [issued_prescription("old", "2025-01-31"), issued_prescription("valid", "2099-12-31")]
    data.write_text("".join(json.dumps(r) + "\n" for r in lines))
    imported = enjournal("import", "--database", store_url, str(data))
    assert imported.returncode == 0, imported.stderr
    ran = enjournal("jobs", "run", "--database", store_url, "--now", "2025-06-01T00:00:00+00:00")
    assert ran.returncode == 0, ran.stderr
    assert "eresept-delete-prescriptions: 1" in ran.stdout
    assert asyncio.run(_ids(store_url, "MedicationRequest")) == ["valid"]
    # Purged, not deleted: no row, version or index row of it is left.
    assert asyncio.run(_traces(store_url, "MedicationRequest", "old")) == 0


async def _traces(url: str, type_: str, id_: str) -> int:
    from tests.probes import traces

    platform = await build_platform(Settings(database_url=url), migrate=False)
    try:
        return await traces(platform.store, type_, id_)
    finally:
        await close_platform(platform)


async def _ids(url: str, type_: str) -> list[str]:
    platform = await build_platform(Settings(database_url=url), migrate=False)
    try:
        async with platform.store.transaction(write=False) as tx:
            rows = await tx._conn.fetch(
                "SELECT id FROM resources WHERE type = ? AND NOT deleted ORDER BY id", type_
            )
        return [row[0] for row in rows]
    finally:
        await close_platform(platform)


@asynccontextmanager
async def running(app):
    """The app's lifespan, as uvicorn drives it: startup, then shutdown on leaving."""
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


async def test_migrate_then_serve_knows_the_shipped_code_lists(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/fresh.sqlite"
    migrated = await asyncio.to_thread(enjournal, "migrate", "--database", url)
    assert migrated.returncode == 0, migrated.stderr
    for name, value in {"DATABASE_URL": url, "AUTH": "off", "JOBS": "off"}.items():
        monkeypatch.setenv(f"ENJOURNAL_{name}", value)
    from enjournal.server.main import app_from_env

    app = app_from_env()  # what each `enjournal serve` worker builds
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            params = {"system": "http://loinc.org", "code": "8867-4"}
            loinc = await http.get("/fhir/CodeSystem/$lookup", params=params)
            params = {"system": "urn:oid:2.16.578.1.12.4.1.1.9060", "code": "LE"}
            kodeverk = await http.get("/fhir/CodeSystem/$lookup", params=params)
    assert loinc.status_code == 200, loinc.text
    assert kodeverk.status_code == 200, kodeverk.text


async def test_migrate_twice_loads_the_code_lists_once(tmp_path):
    url = f"sqlite:///{tmp_path}/twice.sqlite"
    for _ in range(2):
        migrated = await asyncio.to_thread(enjournal, "migrate", "--database", url)
        assert migrated.returncode == 0, migrated.stderr
    platform = await build_platform(Settings(database_url=url), migrate=False)
    try:
        async with platform.store.transaction(write=False) as tx:
            rows = await tx._conn.fetch(
                "SELECT url, COUNT(*) FROM tx_code_systems GROUP BY url HAVING COUNT(*) > 1"
            )
            loinc = await tx._conn.fetch(
                "SELECT id FROM tx_code_systems WHERE url = 'http://loinc.org'"
            )
    finally:
        await close_platform(platform)
    assert rows == [] and len(loinc) == 1


def reseptgruppe_code_system(path: Path) -> Path:
    """A complete code system for Reseptgruppe (A, B, C), so codes outside it are refused."""
    path.write_text(
        json.dumps(
            {
                "resourceType": "CodeSystem",
                "url": RESEPTGRUPPE_SYSTEM,
                "version": "test",
                "name": "Reseptgruppe",
                "status": "active",
                "content": "complete",
                "concept": [{"code": c, "display": c} for c in "ABC"],
            }
        )
    )
    return path


async def test_fest_load_refuses_a_bad_code_as_the_api_does(tmp_path):
    url = f"sqlite:///{tmp_path}/fest.sqlite"
    system = reseptgruppe_code_system(tmp_path / "reseptgruppe.json")
    loaded = await asyncio.to_thread(
        enjournal, "terminology", "load", "--database", url, str(system)
    )
    assert loaded.returncode == 0, loaded.stderr
    refusal = f"the code 'X' is not in the code system {RESEPTGRUPPE_SYSTEM}"

    bad = write(tmp_path / "bad.xml", fest(package("200001", "Bad group", "N02BE01", group="X")))
    fest_load = await asyncio.to_thread(enjournal, "fest", "load", "--database", url, str(bad))
    assert fest_load.returncode == 2, fest_load.stderr
    assert refusal in fest_load.stderr and "Traceback" not in fest_load.stderr
    assert await _ids(url, "Medication") == []

    good = write(tmp_path / "good.xml", fest(package("200002", "Good group", "N02BE01")))
    fest_load = await asyncio.to_thread(enjournal, "fest", "load", "--database", url, str(good))
    assert fest_load.returncode == 0, fest_load.stderr

    from enjournal.server.app import create_app
    from enjournal.services.eresept.fest import resources

    medication = resources.medication(
        {"varenr": "200001", "name": "Bad group", "kind": "legemiddel", "active": True,
         "group": {"code": "X", "display": "X"}},
        {}, {}, {}, {},
    )  # fmt: skip
    platform = await build_platform(Settings(database_url=url, auth=False))
    try:
        app = create_app(platform.settings, platform=platform)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.put("/fhir/Medication/fest-200001", json=medication)
    finally:
        await close_platform(platform)
    assert response.status_code == 422, response.text
    assert refusal in response.text


def test_every_platform_has_every_service_and_keeps_its_own_tables():
    one = compose(Settings(auth=False))
    two = compose(Settings(auth=False))
    names = {(op.resource_type, op.name) for op in one.operations.all()}
    assert {("MedicationRequest", "prescribe"), ("Patient", "summary")} <= names
    assert {("CodeSystem", "lookup"), ("Appointment", "book"), ("Patient", "fullmakt")} <= names
    assert {("Task", "vkp-acknowledge"), ("Task", "vkp-close")} <= names
    assert {job.name for job in one.jobs} == {
        "kjernejournal-reservation-deletion",
        "eresept-delete-prescriptions",
        "helsenorge-end-fullmakts",
        "vkp-escalate",
        "vkp-evaluate-gateway-readings",
        "vkp-missing-measurements",
        "vkp-silent-devices",
        "messaging-relay",
        "messaging-deliver",
        "messaging-overdue",
        "messaging-queue-age",
        "messaging-prune",
        "bulk-export",
        "register-kpr-daily-feedback",
    }
    assert one.hooks and one.consent_systems and one.hooks == two.hooks
    one.operations.remove("MedicationRequest", "prescribe", False)
    assert two.operations.find("MedicationRequest", "prescribe", False) is not None
    compose_again = compose(Settings(auth=False))  # registration is idempotent
    assert len(compose_again.hooks) == len(two.hooks)


@pytest.mark.parametrize("check", [True, False])
async def test_the_write_check_follows_the_settings(tmp_path, check):
    from enjournal.terminology.checks import CodeCheck

    url = f"sqlite:///{tmp_path}/checks.sqlite"
    platform = await build_platform(Settings(database_url=url, terminology_check=check))
    try:
        installed = [c for c in platform.store.checks if isinstance(c, CodeCheck)]
    finally:
        await close_platform(platform)
    assert len(installed) == (1 if check else 0)


async def test_an_app_refuses_a_store_that_does_not_index_its_services_parameters():
    # A store opened outside the root knows only the R4 parameters: serving e-resept from it
    # would leave its prescriptions unindexed for the deletion job the law requires.
    from enjournal.server.app import create_app
    from enjournal.storage import open_store

    bare = await open_store("memory://")
    platform = await build_platform(Settings(database_url="memory://", auth=False))
    try:
        with pytest.raises(ValueError, match="search parameters"):
            create_app(Settings(database_url="unused", auth=False), bare)
        create_app(Settings(database_url="unused", auth=False), platform.store)  # composed alike
    finally:
        await bare.close()
        await close_platform(platform)
