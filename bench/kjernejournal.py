"""Kjernejournal ``Patient/$summary`` latency: ``python -m bench.kjernejournal``.

On a fresh PostgreSQL database: the demo population is imported (``--base`` resources,
validated and indexed by ``enjournal import``), then copied in SQL, index rows and all,
with suffixed ids until the database holds ``--total`` resources (import alone would take
half an hour at 1M; the copies give the tables and indexes their real size).  Then patients
with 50 and with 500 resources of their own (critical information, medicines, vaccines,
visits, observations; the demo GP is their fastlege) are added through the store, the
database is analysed, and a secured server (tokens, access policy, audit, document
signing) serves ``$summary`` on basis UNNTAK to the demo GP from ``--concurrency`` clients
for ``--seconds`` per size.  Prints and saves p50/p95 (target: p95 < 100 ms at 500).

Then, with the server stopped, the same-run baseline (``drive_raw``): the same patients
from as many asyncpg connections, one SQL query per request returning the JSON array of
every row the summary reads (the Patient, its rows through ``idx_reference``, the shared
resources those rows refer to), with no FHIR layer and no document; printed beside
enjournal's with enjournal / raw, saved as ``baseline`` and ``ratio`` per size.

Every document is built cold (the service has no document cache), so the figures are the
cold cost.  The in-process cost of one document, without HTTP or other processes, is
``python -m bench.kjernejournal_profile``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from bench.common import save_report, start_report
from bench.run import Databases, Server, latency_summary
from bench.security import drive, gp_token, load, secured_env

UNNTAK = {"nhn-access-basis": "UNNTAK"}  # the GP reads on the exception basis

KJ = "http://enjournal.no/fhir/CodeSystem/kjernejournal"
SOURCE = "http://nhn.no/kj/fhir/StructureDefinition/KjSourceOfInformation"
GP = "Practitioner/legekontor-0001-fastlege-1"
ATC = "http://www.whocc.no/atc"


async def grow(url: str, total: int) -> int:
    """Copy the loaded resources (rows, versions, index rows) until ``total`` is reached."""
    import asyncpg

    from enjournal.storage.schema import INDEX_COLUMNS

    conn = await asyncpg.connect(url)
    try:
        base = await conn.fetchval("SELECT count(*) FROM resources")
        copies = max(0, -(-(total - base) // base))
        await conn.execute("CREATE TEMP TABLE src AS SELECT rid, type, id FROM resources")
        for n in range(1, copies + 1):
            room = total - await conn.fetchval("SELECT count(*) FROM resources")
            if room <= 0:
                break
            suffix = f"~c{n}"
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO resources (type, id, version, last_updated, deleted, content) "
                    "SELECT type, id || $1, version, last_updated, deleted, content "
                    "FROM resources WHERE rid IN (SELECT rid FROM src ORDER BY rid LIMIT $2)",
                    suffix,
                    room,
                )
                await conn.execute("DROP TABLE IF EXISTS map")
                await conn.execute(
                    "CREATE TEMP TABLE map AS SELECT s.rid AS old, r.rid AS new FROM src s "
                    "JOIN resources r ON r.type = s.type AND r.id = s.id || $1",
                    suffix,
                )
                await conn.execute(
                    "INSERT INTO resource_versions (rid, type, id, version, last_updated, "
                    "method, content) SELECT m.new, v.type, v.id || $1, v.version, "
                    "v.last_updated, v.method, v.content FROM resource_versions v "
                    "JOIN map m ON m.old = v.rid",
                    suffix,
                )
                for table, cols in INDEX_COLUMNS.items():
                    select = ", ".join(
                        f"t.target_id || '{suffix}'"  # NULL stays NULL
                        if c == "target_id"
                        else f"t.{c}"
                        for c in cols
                    )
                    await conn.execute(
                        f"INSERT INTO {table} (rid, type, {', '.join(cols)}) "
                        f"SELECT m.new, t.type, {select} FROM {table} t JOIN map m ON m.old = t.rid"
                    )
            print(
                f"  copy {n}: {await conn.fetchval('SELECT count(*) FROM resources')} resources",
                flush=True,
            )
        await conn.execute("VACUUM ANALYZE")
        return await conn.fetchval("SELECT count(*) FROM resources")
    finally:
        await conn.close()


def record(patient_id: str, size: int, today: date) -> list[dict]:
    """A patient's own resources: a fixed mix scaled to ``size``."""
    subject = {"reference": f"Patient/{patient_id}"}
    recent = (today - timedelta(days=200)).isoformat()
    source = [{"url": SOURCE, "valueCoding": {"code": "2", "display": "Pasientjournal"}}]
    mix = [
        ("allergy", 0.06),
        ("condition", 0.06),
        ("flag", 0.02),
        ("device", 0.02),
        ("request", 0.16),
        ("dispense", 0.16),
        ("immunization", 0.2),
        ("encounter", 0.2),
    ]
    out: list[dict] = []
    for kind, share in mix:
        for i in range(max(1, round(size * share))):
            id_ = f"{patient_id}-{kind}-{i}"
            if kind == "allergy":
                r = {
                    "resourceType": "AllergyIntolerance",
                    "patient": subject,
                    "extension": source,
                    "criticality": "high",
                    "category": ["medication"],
                    "code": {"coding": [{"system": ATC, "code": f"J01CE{i % 100:02d}"}]},
                    "meta": {"tag": [{"system": KJ, "code": "legemiddelreaksjon"}]},
                }
            elif kind == "condition":
                r = {
                    "resourceType": "Condition",
                    "subject": subject,
                    "extension": source,
                    "code": {
                        "coding": [
                            {"system": "http://hl7.org/fhir/sid/icd-10", "code": f"I{10 + i % 80}"}
                        ]
                    },
                    "meta": {"tag": [{"system": KJ, "code": "kritisk-tilstand"}]},
                }
            elif kind == "flag":
                r = {
                    "resourceType": "Flag",
                    "status": "active",
                    "subject": subject,
                    "code": {"text": "HLR minus"},
                    "period": {"end": "2099-01-01"},
                    "meta": {"tag": [{"system": KJ, "code": "livsforlengende"}]},
                }
            elif kind == "device":
                r = {
                    "resourceType": "Device",
                    "patient": subject,
                    "deviceName": [{"name": "Pacemaker", "type": "user-friendly-name"}],
                    "meta": {"tag": [{"system": KJ, "code": "implantat"}]},
                }
            elif kind == "request":
                r = {
                    "resourceType": "MedicationRequest",
                    "status": "active",
                    "intent": "order",
                    "subject": subject,
                    "authoredOn": recent,
                    "requester": {"reference": GP},
                    "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "A10BA02"}]},
                }
            elif kind == "dispense":
                r = {
                    "resourceType": "MedicationDispense",
                    "status": "completed",
                    "subject": subject,
                    "whenHandedOver": recent,
                    "medicationCodeableConcept": {"coding": [{"system": ATC, "code": "C07AB02"}]},
                }
            elif kind == "immunization":
                r = {
                    "resourceType": "Immunization",
                    "status": "completed",
                    "patient": subject,
                    "occurrenceDateTime": "2022-01-01",
                    "vaccineCode": {"coding": [{"system": ATC, "code": "J07BB02"}]},
                }
            else:
                r = {
                    "resourceType": "Encounter",
                    "status": "finished",
                    "subject": subject,
                    "class": {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "AMB",
                    },
                    "period": {"start": "2023-05-01"},
                    "serviceProvider": {"reference": "Organization/legekontor-0001"},
                }
            r["id"] = id_
            out.append(r)
    while len(out) < size:
        n = len(out)
        out.append(
            {
                "resourceType": "Observation",
                "id": f"{patient_id}-obs-{n}",
                "status": "final",
                "subject": subject,
                "code": {"text": "Puls"},
            }
        )
    return out[:size]


async def add_patients(url: str, sizes: list[int], per_size: int) -> dict[int, list[str]]:
    from bench.common import bench_store

    store = await bench_store(url, migrate=False)
    ids: dict[int, list[str]] = {}
    try:
        for size in sizes:
            for n in range(per_size):
                pid = f"kj{size}-{n}"
                async with store.transaction() as tx:
                    await tx.update(
                        {
                            "resourceType": "Patient",
                            "id": pid,
                            "name": [{"family": f"Kjernesen{n}", "given": ["Kari"]}],
                            "birthDate": "1970-01-01",
                            "generalPractitioner": [{"reference": GP}],
                        },
                        pid,
                    )
                    for resource in record(pid, size, date.today()):
                        await tx.update(resource, resource["id"])
                ids.setdefault(size, []).append(pid)
    finally:
        await store.close()
    return ids


# One query: the patient, its rows through the same idx_reference rows as
# records.patient_rows, and the shared resources they (and the patient) refer to, as one
# JSON array built in PostgreSQL from the stored bytes.
RAW_SUMMARY = """
WITH own AS (
    SELECT rid, content FROM resources WHERE rid IN (
        SELECT rid FROM idx_reference WHERE target_id = $1 AND target_type = 'Patient'
        AND type = ANY($2::text[])) AND NOT deleted),
patient AS (SELECT rid, content FROM resources WHERE type = 'Patient' AND id = $1
    AND NOT deleted),
shared AS (
    SELECT r.content FROM resources r WHERE (r.type, r.id) IN (
        SELECT target_type, target_id FROM idx_reference
        WHERE rid IN (SELECT rid FROM own UNION ALL SELECT rid FROM patient)
        AND target_type = ANY($3::text[])) AND NOT r.deleted)
SELECT '['::bytea || string_agg(content, ','::bytea) || ']'::bytea FROM (
    SELECT content FROM patient UNION ALL SELECT content FROM own
    UNION ALL SELECT content FROM shared) AS rows
"""

BASELINE = (
    "raw SQL from asyncpg connections, one query per request: the Patient, its rows "
    "through idx_reference (the summary's types) and the shared resources they refer to, "
    "returned as one JSON array of the stored bytes; no HTTP, token, access check, audit, "
    "parsing, document or signature"
)


async def drive_raw(url: str, pids: list[str], concurrency: int, seconds: float) -> dict:
    """``RAW_SUMMARY`` for random patients from ``concurrency`` connections."""
    import asyncpg

    from enjournal.services.kjernejournal.records import SHARED_TYPES, SUMMARY_TYPES

    latencies: list[float] = []
    sizes: list[int] = []
    conns = await asyncio.gather(*(asyncpg.connect(url) for _ in range(concurrency)))
    stop = time.monotonic() + seconds

    async def client(n: int, conn) -> None:
        rng = random.Random(n)
        while time.monotonic() < stop:
            started = time.perf_counter()
            body = await conn.fetchval(
                RAW_SUMMARY, rng.choice(pids), list(SUMMARY_TYPES), list(SHARED_TYPES)
            )
            latencies.append(time.perf_counter() - started)
            sizes.append(len(body or b""))

    started = time.monotonic()
    try:
        await asyncio.gather(*(client(n, conn) for n, conn in enumerate(conns)))
    finally:
        await asyncio.gather(*(conn.close() for conn in conns))
    summary = latency_summary(sorted(latencies), time.monotonic() - started)
    summary["mean_bytes"] = round(sum(sizes) / len(sizes)) if sizes else 0
    return summary


def ratio(enjournal: dict, raw: dict) -> dict:
    """enjournal / raw: req/s (below 1: slower), p50 and p95 (above 1: slower)."""

    def of(a, b):
        return round(a / b, 2) if b else None

    return {key: of(enjournal[key], raw[key]) for key in ("per_second", "p50_ms", "p95_ms")}


async def amain(opts: argparse.Namespace) -> dict:
    began = time.monotonic()
    report = await start_report(opts.admin_url, vars(opts))
    dbs = Databases(opts.admin_url, keep=False)
    work = Path(tempfile.mkdtemp(prefix="bench-kj-"))
    url = await dbs.create("kj")
    try:
        patients = max(10, opts.base // 60)
        print(f"importing {patients} demo patients ...", flush=True)
        await load(url, patients, work)
        print(f"copying up to {opts.total} resources ...", flush=True)
        ids = await add_patients(url, [50, 500], opts.per_size)
        report["resources"] = await grow(url, opts.total)
        print(f"{report['resources']} resources", flush=True)
        key_file = work / "oidc-key.json"
        secured_env(
            key_file,
            ENJOURNAL_SIGNING_KEY_FILE=str(work / "document-key.json"),
            ENJOURNAL_JOBS="off",
        )
        server = Server(url, opts.workers, work, "kj")
        os.environ["ENJOURNAL_PUBLIC_URL"] = f"http://127.0.0.1:{server.port}"
        async with server:
            token = await gp_token(url, key_file, f"http://127.0.0.1:{server.port}/oidc")
            for size, pids in ids.items():
                paths = [f"/fhir/Patient/{p}/$summary" for p in pids]
                await drive(server.port, paths, token, opts.concurrency, 2, UNNTAK)  # warm-up
                result = await drive(
                    server.port, paths, token, opts.concurrency, opts.seconds, UNNTAK
                )
                report[f"summary_{size}"] = result
                print(
                    f"$summary {size:4d} resources: {result['per_second']:6.1f} req/s "
                    f"p50 {result['p50_ms']:7.2f} ms p95 {result['p95_ms']:7.2f} ms "
                    f"(errors {result['errors']})",
                    flush=True,
                )
        print("raw SQL baseline (server stopped, asyncpg, no FHIR layer) ...", flush=True)
        report["baseline"] = {"what": BASELINE}
        report["ratio"] = {}
        for size, pids in ids.items():
            await drive_raw(url, pids, opts.concurrency, 2)  # warm-up
            raw = await drive_raw(url, pids, opts.concurrency, opts.seconds)
            mine = report[f"summary_{size}"]
            report["baseline"][f"summary_{size}"] = raw
            report["ratio"][f"summary_{size}"] = r = ratio(mine, raw)
            print(
                f"  raw SQL  {size:4d} resources: {raw['per_second']:6.1f} req/s "
                f"p50 {raw['p50_ms']:7.2f} ms p95 {raw['p95_ms']:7.2f} ms "
                f"({raw['mean_bytes'] / 1024:.0f} KiB)\n"
                f"  enjournal / raw: req/s {r['per_second']}, p50 {r['p50_ms']}, "
                f"p95 {r['p95_ms']}",
                flush=True,
            )
    finally:
        await dbs.drop_all()
    report["run_seconds"] = round(time.monotonic() - began, 1)
    save_report("kjernejournal", report)
    print(f"run took {report['run_seconds']:.0f} s", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kjernejournal", description=__doc__)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--base", type=int, default=100_000, help="resources imported")
    parser.add_argument("--total", type=int, default=1_000_000, help="resources in all")
    parser.add_argument("--per-size", type=int, default=4, help="patients of each size")
    # Three on two cores: a third worker fills the time the others wait on PostgreSQL and
    # on the audit commit (docs/performance.md, Kjernejournal).
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    opts = parser.parse_args(argv)
    asyncio.run(amain(opts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
