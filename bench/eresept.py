"""E-resept dispensing throughput: `python -m bench.eresept`.

A fresh PostgreSQL database gets a small FEST catalogue (with interactions, so the check
does real work), 32 pharmacies, a few GPs, and ``--prescriptions`` prescriptions (four per
patient, reit 2, so three dispensings each), bulk-written through the store by several
concurrent transactions of ``--batch`` creates each (the load is timed).  Then
``enjournal serve --workers N`` (security off: no token check, no audit; see
docs/performance.md) serves ``--clients`` concurrent pharmacy clients, each repeating one
cycle: look a random patient up by national identity number ($dispensable), take one of
the prescriptions (``$take``), dispense it (``$dispense``: prescription update, a
MedicationDispense, reports to prescriber and GP).  Prints cycles/s and p50/p95 of each step
(target: >= 300 cycles/s, p95 < 100 ms per step).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson

from bench.common import save_report, start_report
from bench.httpclient import Connection
from bench.run import Databases, Server, latency_summary
from enjournal.fhir.norwegian_ids import OID_FNR, OID_HPR, OID_ORGNR, make_fnr, make_orgnr
from enjournal.services.eresept import rules
from enjournal.services.eresept.actors import DISPENSER_TYPE, PHARMACY
from enjournal.services.eresept.fest import resources as fest
from enjournal.storage import open_store

# varenr: (name, ATC, group); none of these interact severely with another
PRODUCTS = {
    "200001": ("Ibuprofen tab 400 mg", "M01AE01", "C"),
    "200002": ("Simvastatin tab 20 mg", "C10AA01", "C"),
    "200003": ("Metformin tab 500 mg", "A10BA02", "C"),
    "200004": ("P-pille tab", "G03AA07", "C"),
    "200005": ("Warfarin tab 2,5 mg", "B01AA03", "C"),  # catalogue only: high with M01A
    "200006": ("Klaritromycin tab 500 mg", "J01FA09", "C"),
}
PRESCRIBED = ["200001", "200002", "200003", "200004"]
PER_PATIENT = 4
GPS = 50


def catalogue() -> list[dict]:
    out = []
    for varenr, (name, atc, group) in PRODUCTS.items():
        record = {
            "varenr": varenr,
            "name": name,
            "kind": "legemiddel",
            "active": True,
            "atc": {"code": atc},
            "group": {"code": group},
        }
        out.append(fest.medication(record, {}, {}, {}, {}))
    for id_, relevans, a, b in (("1", "1", "B01AA03", "M01A"), ("2", "2", "C10AA01", "J01FA09")):
        out.append(
            fest.interaction(
                {
                    "id": id_,
                    "relevans": {"code": relevans},
                    "sides": [[{"code": a}], [{"code": b}]],
                    "mechanism": "",
                    "consequence": "",
                    "management": "",
                }
            )
        )
    return out


def pharmacies(rng: random.Random, count: int) -> list[dict]:
    out, seen = [], set()
    while len(out) < count:
        orgnr = make_orgnr(rng)
        if orgnr in seen:
            continue
        seen.add(orgnr)
        out.append(
            {
                "resourceType": "Organization",
                "id": f"bench-apotek-{len(out)}",
                "name": f"Apotek {len(out)}",
                "identifier": [{"system": OID_ORGNR, "value": orgnr}],
                "type": [{"coding": [{"system": DISPENSER_TYPE, "code": PHARMACY}]}],
            }
        )
    return out


def prescription(patient_id: str, varenr: str, gp: int, today: date) -> dict:
    p = rules.Prescription(
        {
            "resourceType": "MedicationRequest",
            "identifier": [{"system": rules.RESEPT_ID, "value": f"{patient_id}-{varenr}"}],
            "status": "active",
            "intent": "order",
            "category": [{"coding": [{"system": rules.PRODUCT_KIND, "code": "legemiddel"}]}],
            "medicationReference": {"reference": f"Medication/fest-{varenr}"},
            "subject": {"reference": f"Patient/{patient_id}"},
            "requester": {"identifier": {"system": OID_HPR, "value": f"{9000000 + gp}"}},
            "dosageInstruction": [{"text": "1 tablett daglig"}],
            "dispenseRequest": {
                "validityPeriod": {
                    "start": today.isoformat(),
                    "end": (today + timedelta(days=365)).isoformat(),
                },
                "numberOfRepeatsAllowed": 2,
                "quantity": {"value": 30, "unit": "stk"},
            },
            "extension": [{"url": rules.GROUP_EXT, "valueCode": "C"}],
        }
    )
    p.set_status(rules.EXPEDITABLE)
    p.set_remaining(90)
    return p.resource


async def load(url: str, count: int, batch: int, writers: int) -> tuple[list[str], dict]:
    """Write the world; the patients' national identity numbers and the timings."""
    rng = random.Random(1)
    store = await open_store(url, pool_size=writers + 2)
    today = datetime.now(UTC).date()
    shared = [*catalogue(), *pharmacies(rng, 64)]
    for gp in range(GPS):
        shared.append(
            {
                "resourceType": "Practitioner",
                "id": f"bench-gp-{gp}",
                "identifier": [{"system": OID_HPR, "value": f"{9000000 + gp}"}],
            }
        )
    async with store.transaction() as tx:
        for resource in shared:
            await tx.update(resource, resource["id"])
    patients = count // PER_PATIENT
    pids: list[str] = []
    seen: set[str] = set()
    while len(pids) < patients:
        born = date(1940, 1, 1) + timedelta(days=rng.randrange(25000))
        pid = make_fnr(born, rng, female=rng.random() < 0.5)
        if pid not in seen:
            seen.add(pid)
            pids.append(pid)
    queue: asyncio.Queue = asyncio.Queue()
    per_batch = max(1, batch // (PER_PATIENT + 1))
    for start in range(0, patients, per_batch):
        queue.put_nowait(range(start, min(patients, start + per_batch)))
    written = 0

    async def writer() -> None:
        nonlocal written
        while not queue.empty():
            numbers = queue.get_nowait()
            async with store.transaction() as tx:
                for n in numbers:
                    gp = n % GPS
                    patient_id = f"bp-{n}"
                    await tx.create(
                        {
                            "resourceType": "Patient",
                            "identifier": [{"system": OID_FNR, "value": pids[n]}],
                            "generalPractitioner": [{"reference": f"Practitioner/bench-gp-{gp}"}],
                        },
                        id_=patient_id,
                    )
                    for varenr in PRESCRIBED[:PER_PATIENT]:
                        await tx.create(prescription(patient_id, varenr, gp, today))
                    written += PER_PATIENT
            if written % 50_000 < PER_PATIENT * per_batch:
                print(f"  {written} prescriptions", flush=True)

    started = time.monotonic()
    await asyncio.gather(*(writer() for _ in range(writers)))
    seconds = time.monotonic() - started
    async with store.transaction() as tx:
        await tx.conn.execute("ANALYZE")
    await store.close()
    return pids, {
        "prescriptions": written,
        "patients": patients,
        "seconds": round(seconds, 1),
        "prescriptions_per_second": round(written / seconds, 1),
    }


def _params(**values) -> bytes:
    parts = []
    for name, value in values.items():
        key = "valueDecimal" if isinstance(value, int | float) else "valueString"
        parts.append({"name": name, key: value})
    return orjson.dumps({"resourceType": "Parameters", "parameter": parts})


async def drive(port: int, pids: list[str], orgs: list[str], clients: int, seconds: float):
    steps: dict[str, list[float]] = {"lookup": [], "take": [], "dispense": []}
    counts = {"cycles": 0, "empty": 0, "conflicts": 0, "errors": 0}
    stop = time.monotonic() + seconds

    async def client(n: int) -> None:
        conn = Connection("127.0.0.1", port)
        org = orgs[n % len(orgs)]
        rng = random.Random(n)
        base = "/fhir/MedicationRequest"
        try:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                status, body = await conn.request(
                    "POST",
                    f"{base}/$dispensable",
                    _params(patient=rng.choice(pids), organization=org),
                )
                steps["lookup"].append(time.perf_counter() - t0)
                if status != 200:
                    counts["errors"] += 1
                    continue
                free = [
                    e["resource"]["id"]
                    for e in orjson.loads(body).get("entry", [])
                    if not any(x["url"] == rules.LOCK_EXT for x in e["resource"]["extension"])
                ]
                if not free:
                    counts["empty"] += 1
                    continue
                mr = rng.choice(free)
                t1 = time.perf_counter()
                status, _ = await conn.request(
                    "POST", f"{base}/{mr}/$take", _params(organization=org)
                )
                steps["take"].append(time.perf_counter() - t1)
                if status != 200:
                    counts["conflicts" if status == 409 else "errors"] += 1
                    continue
                t2 = time.perf_counter()
                status, _ = await conn.request(
                    "POST", f"{base}/{mr}/$dispense", _params(organization=org, quantity=30)
                )
                steps["dispense"].append(time.perf_counter() - t2)
                if status == 200:
                    counts["cycles"] += 1
                else:
                    counts["conflicts" if status == 409 else "errors"] += 1
        finally:
            await conn.close()

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.monotonic() - started
    return {
        **counts,
        "seconds": round(elapsed, 1),
        "cycles_per_second": round(counts["cycles"] / elapsed, 1),
        **{name: latency_summary(values, elapsed) for name, values in steps.items()},
    }


async def amain(opts: argparse.Namespace) -> dict:
    report = await start_report(opts.admin_url, vars(opts))
    dbs = Databases(opts.admin_url, keep=opts.keep)
    work = Path(tempfile.mkdtemp(prefix="bench-eresept-"))
    url = await dbs.create("eresept")
    try:
        print(f"loading {opts.prescriptions} prescriptions into {url} ...", flush=True)
        pids, report["load"] = await load(url, opts.prescriptions, opts.batch, opts.writers)
        print(f"load: {report['load']}", flush=True)
        orgs = [org["identifier"][0]["value"] for org in pharmacies(random.Random(1), 64)]
        # the same generator as load(): the first 32 pharmacies
        async with Server(url, opts.workers, work, "eresept") as server:
            await drive(server.port, pids, orgs, opts.clients, opts.warmup)
            result = await drive(server.port, pids, orgs, opts.clients, opts.seconds)
            server.sample_rss()
        report["cycles"] = result
        print(
            f"{result['cycles_per_second']} cycles/s ({result['cycles']} in {result['seconds']} s, "
            f"conflicts {result['conflicts']}, empty {result['empty']}, errors {result['errors']})"
        )
        for step in ("lookup", "take", "dispense"):
            s = result[step]
            print(f"  {step:8s} p50 {s['p50_ms']:7.2f} ms  p95 {s['p95_ms']:7.2f} ms")
    finally:
        await dbs.drop_all()
    save_report("eresept", report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eresept", description=__doc__)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--prescriptions", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=2500, help="creates per load transaction")
    parser.add_argument("--writers", type=int, default=4, help="concurrent load transactions")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    asyncio.run(amain(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
