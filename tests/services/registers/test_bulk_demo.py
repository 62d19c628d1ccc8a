"""Export completeness on the demo population, SQLite and PostgreSQL: a system-level export
of every type holds every current resource exactly once, and nothing of a patient reserved
against purpose-2 uses, judged by an oracle that reads the stored JSON itself (any reference
to the patient, indexed or not)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import orjson

from enjournal.bootstrap import build_platform, close_platform
from enjournal.demo.population import generate_population
from enjournal.rest.message import FhirRequest
from enjournal.security.exports import ADDRESS_PROTECTION, NO_SECONDARY_USE, REGISTER_RESERVATION
from enjournal.services.registers.bulk_runner import job_dir
from enjournal.settings import Settings
from enjournal.storage import exports as db
from tests.probes import current_of_type

BASE = "http://test/fhir"


async def test_a_system_export_of_the_demo_population_is_complete(store_url, tmp_path):
    settings = Settings(
        database_url=store_url,
        auth=False,
        terminology_check=False,
        jobs=False,
        export_dir=str(tmp_path / "exports"),
        export_batch_bytes=64 * 1024,
    )
    platform = await build_platform(settings)
    try:
        types = await load_demo(platform)
        patients = sorted(i for i, _ in await current_of_type(platform.store, "Patient"))
        reserved, protected = patients[1], patients[2]
        await reserve_and_protect(platform, reserved, protected)
        found = await export_everything(platform)
        stored = {t: dict(await current_of_type(platform.store, t)) for t in types}
    finally:
        await close_platform(platform)
    exported = Counter((r["resourceType"], r["id"]) for r in found)
    assert max(exported.values()) == 1  # nothing twice
    reference = f'"reference":"Patient/{reserved}"'.encode()
    expected = {
        (t, i)
        for t, rows in stored.items()
        for i, content in rows.items()
        if reference not in content and (t, i) != ("Patient", reserved)
    }
    assert set(exported) == expected
    assert len(expected) > 300 and any(reference in c for r in stored.values() for c in r.values())
    protected_patient = next(r for r in found if r["id"] == protected)
    assert "address" not in protected_patient and protected_patient["identifier"]


async def load_demo(platform) -> set[str]:
    types = {"Consent"}
    for bundle in generate_population(6, seed=5):
        types |= {e["resource"]["resourceType"] for e in bundle["entry"]}
        request = FhirRequest("POST", [], [], {}, orjson.dumps(bundle), BASE)
        response = await platform.handle(request)
        assert response.status == 200, response.body
    return types


async def reserve_and_protect(platform, reserved: str, protected: str) -> None:
    async with platform.store.transaction() as tx:
        await tx.update(
            {
                "resourceType": "Consent",
                "id": "reserved",
                "status": "active",
                "scope": {"coding": [{"code": "patient-privacy"}]},
                "category": [
                    {"coding": [{"system": REGISTER_RESERVATION, "code": NO_SECONDARY_USE}]}
                ],
                "patient": {"reference": f"Patient/{reserved}"},
                "provision": {"type": "deny"},
            },
            "reserved",
        )
        patient = orjson.loads((await tx.read("Patient", protected)).content)
        patient["meta"]["security"] = [{"system": ADDRESS_PROTECTION, "code": "fortrolig"}]
        await tx.update(patient, protected)


async def export_everything(platform) -> list[dict]:
    request = FhirRequest("GET", ["$export"], [], {"prefer": "respond-async"}, b"", BASE)
    response = await platform.handle(request)
    assert response.status == 202, response.body
    job_id = response.headers["Content-Location"].split("_jobId=")[1]
    assert await platform.bulk_exporter.run_pass(platform.store, datetime.now(UTC)) == 1
    async with platform.store.transaction(write=False) as tx:
        job = await db.read_job(tx, job_id)
    assert job is not None and job.status == db.DONE
    folder = job_dir(platform.settings, job_id)
    rows = []
    for entry in job.output["output"]:
        lines = (folder / entry["file"]).read_bytes().splitlines()
        assert len(lines) == entry["count"]
        rows += [orjson.loads(line) for line in lines]
    return rows
