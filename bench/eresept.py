"""E-resept dispensing throughput: `python -m bench.eresept`.

A fresh PostgreSQL database gets a small FEST catalogue (with interactions, so the check
does real work), 32 pharmacies, a few GPs, and ``--prescriptions`` prescriptions (four per
patient, reit 2, so three dispensings each), bulk-written through the store by several
concurrent transactions of ``--batch`` creates each (the load is timed).  Then
``enjournal serve --workers N`` (security off: no token check, no audit; see
docs/performance.md) serves ``--clients`` concurrent pharmacy clients, each repeating one
cycle: look a random patient up by national identity number ($dispensable), take one of
the prescriptions (``$take``), dispense it (``$dispense``: prescription update, a
MedicationDispense, reports to prescriber and GP).  Then, on the same database with the
server stopped, a baseline: the same cycle as raw SQL from as many asyncpg connections
(``drive_raw``: one lookup query over the same index tables, lock + update of the
prescription row, lock + update + a row in a plain ``bare_dispense`` table).  Prints cycles/s
and p50/p95 of each step for both, and enjournal / raw (target: >= 300 cycles/s, p95 <
100 ms per step); the result JSON holds ``cycles``, ``baseline`` and ``ratio``.  Between
the two, with the server stopped, one pass of the deletion job with nothing due, beside the
previous version's full scan (``scan_all``) as its baseline; after the raw run, a pass a
month on that deletes what the enjournal run fully dispensed (``deletion_job``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import asyncpg
import orjson

from bench.common import bench_store, save_report, start_report
from bench.httpclient import Connection
from bench.run import Databases, Server, latency_summary
from bench.security import secured_env
from enjournal.fhir.errors import Conflict, Forbidden, Unprocessable
from enjournal.fhir.norwegian_ids import OID_FNR, OID_HPR, OID_ORGNR, make_fnr, make_orgnr
from enjournal.services.eresept import jobs, rules
from enjournal.services.eresept.actors import DISPENSER_TYPE, PHARMACY
from enjournal.services.eresept.fest import resources as fest

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
    store = await bench_store(url, pool_size=writers + 2)  # with the service's parameters
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
            resources: list[dict] = []
            ids: list[str | None] = []
            for n in numbers:
                gp = n % GPS
                patient_id = f"bp-{n}"
                resources.append(
                    {
                        "resourceType": "Patient",
                        "identifier": [{"system": OID_FNR, "value": pids[n]}],
                        "generalPractitioner": [{"reference": f"Practitioner/bench-gp-{gp}"}],
                    }
                )
                ids.append(patient_id)
                for varenr in PRESCRIBED[:PER_PATIENT]:
                    resources.append(prescription(patient_id, varenr, gp, today))
                    ids.append(None)
            async with store.transaction() as tx:
                await tx.create_many(resources, ids)
            written += PER_PATIENT * len(numbers)
            if written % 50_000 < PER_PATIENT * per_batch:
                print(f"  {written} prescriptions", flush=True)

    started = time.monotonic()
    await asyncio.gather(*(writer() for _ in range(writers)))
    seconds = time.monotonic() - started
    async with store.transaction() as tx:
        await tx._conn.execute("ANALYZE")
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


def pharmacist_tokens(orgs: list[str], clients: int, key_file: Path, issuer: str) -> list[str]:
    """With ``--security``: one pharmacist per client, at the client's pharmacy, with the demo
    pharmacist's scopes, signed by the server's own token provider key."""
    from enjournal.demo.users import PHARMACIST_SCOPES
    from enjournal.security.keys import load_or_create
    from enjournal.security.provider import DemoUser, issue_token

    key = load_or_create(key_file)
    tokens = []
    for n in range(clients):
        user = DemoUser(
            name=f"pharmacist-{n}",
            kind="personnel",
            display_name=f"Farmasøyt {n}",
            hpr=str(910_000_000 + n),
            profession="FA1",
            org_nr=orgs[n % len(orgs)],
        )
        tokens.append(
            issue_token(user, key=key, issuer=issuer, scopes=PHARMACIST_SCOPES, lifetime=3600)
        )
    return tokens


async def drive(
    port: int,
    pids: list[str],
    orgs: list[str],
    clients: int,
    seconds: float,
    tokens: list[str] | None = None,
):
    """``clients`` pharmacies repeat lookup -> take -> dispense for ``seconds``.  Without
    tokens the server runs without security and each client names its pharmacy with the
    ``organization`` parameter; with tokens the pharmacy comes from the token."""
    steps: dict[str, list[float]] = {"lookup": [], "take": [], "dispense": []}
    counts = {"cycles": 0, "empty": 0, "conflicts": 0, "errors": 0}
    stop = time.monotonic() + seconds

    async def client(n: int) -> None:
        auth = {"Authorization": f"Bearer {tokens[n]}"} if tokens else None
        conn = Connection("127.0.0.1", port, auth)
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


# ---- the same-run baseline: the cycle as raw SQL ------------------------------------------
#
# 32 asyncpg connections on the same database after the HTTP phase, no HTTP, no FHIR layer
# (no parsing into models, validation, index rows, versions, Communications).  The state
# decisions are the same pure functions enjournal uses (rules.take / rules.dispense on the
# stored JSON), so both sides do the same cycle and the gap is HTTP plus enjournal's own
# cost.  (A withdrawn prescription still held is not listed: the bench withdraws none.)

BARE_DISPENSE = (
    "CREATE TABLE IF NOT EXISTS bare_dispense ("
    "id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, prescription_rid BIGINT NOT NULL, "
    "pharmacy TEXT NOT NULL, quantity DOUBLE PRECISION NOT NULL, "
    "dispensed_at TIMESTAMPTZ NOT NULL)"
)
# The patient by fødselsnummer (idx_token), its prescriptions by subject (idx_reference), the
# dispensable ones kept in SQL: status E or U, not expired, no privacy lock; ``held`` says
# whether a pharmacy holds it under dispensing (the client takes a free one).
RAW_LOOKUP = (
    "SELECT r.rid, r.content, x.j @> $6::jsonb AS held FROM idx_token t "
    "JOIN resources p ON p.rid = t.rid AND NOT p.deleted "
    "JOIN idx_reference f ON f.target_id = p.id AND f.target_type = 'Patient' "
    "AND f.type = 'MedicationRequest' AND f.param = 'subject' "
    "JOIN resources r ON r.rid = f.rid AND NOT r.deleted "
    "CROSS JOIN LATERAL (SELECT convert_from(r.content, 'UTF8')::jsonb AS j) x "
    "WHERE t.type = 'Patient' AND t.param = 'identifier' AND t.code = $1 AND t.system = $2 "
    "AND (x.j @> $3::jsonb OR x.j @> $4::jsonb) AND NOT x.j @> $7::jsonb "
    "AND left(coalesce(x.j #>> '{dispenseRequest,validityPeriod,end}', '9999'), 10) >= $5"
)
RAW_LOCK = "SELECT content FROM resources WHERE rid = $1 FOR UPDATE"
RAW_UPDATE = (
    "UPDATE resources SET version = version + 1, last_updated = $2, content = $3 WHERE rid = $1"
)
RAW_DISPENSE = (
    "INSERT INTO bare_dispense (prescription_rid, pharmacy, quantity, dispensed_at) "
    "VALUES ($1, $2, $3, $4)"
)


def _has_extension(url: str, **value) -> str:
    """A jsonb containment probe: the resource has an extension with this url (and value)."""
    return orjson.dumps({"extension": [{"url": url, **value}]}).decode()


class _Refused(Exception):
    """The state check refused the step (the HTTP side's 409)."""


async def _raw_change(conn, rid: int, change, dispensed: tuple | None = None) -> None:
    """Lock the prescription row, apply ``change`` to its JSON, write it back (and the
    dispense row), in one transaction."""
    async with conn.transaction():
        content = await conn.fetchval(RAW_LOCK, rid)
        p = rules.Prescription(orjson.loads(content))
        try:
            change(p)
        except (Conflict, Forbidden, Unprocessable) as refused:
            raise _Refused from refused
        await conn.execute(RAW_UPDATE, rid, int(time.time() * 1000), orjson.dumps(p.resource))
        if dispensed is not None:
            await conn.execute(RAW_DISPENSE, rid, *dispensed)


async def _raw_step(conn, rid: int, change, dispensed: tuple | None = None) -> str | None:
    """``_raw_change``; None when done, else the counter to count it under."""
    try:
        await _raw_change(conn, rid, change, dispensed)
    except _Refused:
        return "conflicts"
    except asyncpg.PostgresError:
        return "errors"
    return None


async def drive_raw(url: str, pids: list[str], orgs: list[str], clients: int, seconds: float):
    """The cycle as raw SQL from ``clients`` connections: the same counters and steps as
    ``drive``."""
    steps: dict[str, list[float]] = {"lookup": [], "take": [], "dispense": []}
    counts = {"cycles": 0, "empty": 0, "conflicts": 0, "errors": 0}
    probes = (
        _has_extension(rules.STATUS_EXT, valueCoding={"code": rules.EXPEDITABLE}),
        _has_extension(rules.STATUS_EXT, valueCoding={"code": rules.UNDER_DISPENSING}),
        _has_extension(rules.LOCK_EXT),
        _has_extension(rules.PRIVACY_EXT),
    )
    conns = await asyncio.gather(*(asyncpg.connect(url) for _ in range(clients)))
    stop = time.monotonic() + seconds

    async def client(n: int, conn) -> None:
        org, name = orgs[n % len(orgs)], f"Apotek {n % len(orgs)}"
        rng = random.Random(1000 + n)
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            today = datetime.now(UTC).date().isoformat()
            rows = await conn.fetch(
                RAW_LOOKUP, rng.choice(pids), OID_FNR, probes[0], probes[1], today, *probes[2:]
            )
            steps["lookup"].append(time.perf_counter() - t0)
            free = [row[0] for row in rows if not row[2]]
            if not free:
                counts["empty"] += 1
                continue
            rid = rng.choice(free)
            t1 = time.perf_counter()
            outcome = await _raw_step(
                conn,
                rid,
                lambda p: rules.take(p, org, name, datetime.now(UTC), bandagist=False),
            )
            steps["take"].append(time.perf_counter() - t1)
            if outcome:
                counts[outcome] += 1
                continue
            t2 = time.perf_counter()
            now = datetime.now(UTC)
            outcome = await _raw_step(
                conn, rid, lambda p, now=now: rules.dispense(p, org, 30, now), (org, 30.0, now)
            )
            steps["dispense"].append(time.perf_counter() - t2)
            counts[outcome or "cycles"] += 1

    started = time.monotonic()
    try:
        await asyncio.gather(*(client(n, conn) for n, conn in enumerate(conns)))
    finally:
        await asyncio.gather(*(conn.close() for conn in conns))
    elapsed = time.monotonic() - started
    return {
        **counts,
        "seconds": round(elapsed, 1),
        "cycles_per_second": round(counts["cycles"] / elapsed, 1),
        **{name: latency_summary(values, elapsed) for name, values in steps.items()},
    }


BASELINE = (
    "raw SQL over the same tables from asyncpg connections: lookup = one query (patient by "
    "fodselsnummer via idx_token, prescriptions via idx_reference, status E/U, not expired, "
    "no privacy lock, filtered in SQL over the stored JSON); take = SELECT FOR UPDATE + "
    "UPDATE of the resources row; dispense = the same + INSERT INTO bare_dispense; state "
    "changes by rules.take/rules.dispense on the JSON; no versions, index rows, "
    "MedicationDispense or M6/M8 Communications"
)


async def scan_all(store, now: datetime) -> int:
    """The previous version's deletion pass (read part): every prescription, in batches by
    surrogate key, parsed and checked against the rule.  Returns how many were due."""
    due, after = 0, 0
    while True:
        async with store.transaction(write=False) as tx:
            rows = await tx._conn.fetch(
                "SELECT rid, id, content FROM resources WHERE type = 'MedicationRequest' "
                "AND NOT deleted AND rid > ? ORDER BY rid LIMIT ?",
                after,
                jobs.BATCH,
            )
        if not rows:
            return due
        after = rows[-1][0]
        for _rid, _id, content in rows:
            p = rules.Prescription(orjson.loads(content))
            due += p.issued_here and rules.due_for_deletion(p, now)


async def time_pass(label: str, run) -> dict:
    started = time.monotonic()
    count = await run()
    seconds = time.monotonic() - started
    print(f"  {label}: {count} in {seconds * 1000:.1f} ms", flush=True)
    return {"count": count, "ms": round(seconds * 1000, 1)}


async def deletion_job(url: str, *, later: bool) -> dict:
    """Time one pass of the deletion job (``jobs.delete_prescriptions``) with nothing due,
    beside the previous version's full scan as baseline; with ``later``, a pass a month on,
    which deletes the prescriptions the run fully dispensed."""
    store = await bench_store(url, pool_size=2)
    now = datetime.now(UTC)
    try:
        if later:
            month = now + timedelta(days=35)
            return {
                "month_later": await time_pass(
                    "pass a month on", partial(jobs.delete_prescriptions, store, month)
                )
            }
        return {
            "nothing_due": await time_pass(
                "pass, nothing due", partial(jobs.delete_prescriptions, store, now)
            ),
            "baseline_full_scan": await time_pass(
                "previous version: full scan", partial(scan_all, store, now)
            ),
        }
    finally:
        await store.close()


def ratios(enjournal: dict, raw: dict) -> dict:
    """enjournal / raw: cycles per second (below 1: slower), and per step p50 and p95 (above
    1: slower)."""

    def ratio(a, b):
        return round(a / b, 3) if b else None

    out = {"cycles_per_second": ratio(enjournal["cycles_per_second"], raw["cycles_per_second"])}
    for step in ("lookup", "take", "dispense"):
        for p in ("p50_ms", "p95_ms"):
            out[f"{step}_{p}"] = ratio(enjournal[step][p], raw[step][p])
    return out


def summary(enjournal: dict, raw: dict, ratio: dict) -> list[str]:
    lines = []
    for label, r in (("enjournal", enjournal), ("raw SQL", raw)):
        lines.append(
            f"{label:9s} {r['cycles_per_second']:8.1f} cycles/s ({r['cycles']} in "
            f"{r['seconds']} s, conflicts {r['conflicts']}, empty {r['empty']}, "
            f"errors {r['errors']})"
        )
    lines.append(f"{'':9s} {'enjournal p50 / p95 ms':>24s} {'raw SQL p50 / p95 ms':>22s}  ratio")
    for step in ("lookup", "take", "dispense"):
        e, b = enjournal[step], raw[step]
        lines.append(
            f"  {step:8s} {e['p50_ms']:10.2f} / {e['p95_ms']:8.2f} "
            f"{b['p50_ms']:11.2f} / {b['p95_ms']:8.2f}  "
            f"{ratio[step + '_p50_ms']} / {ratio[step + '_p95_ms']}"
        )
    lines.append(f"enjournal / raw SQL cycles per second: {ratio['cycles_per_second']}")
    return lines


async def serve_and_drive(url, opts, work: Path, pids, orgs, *, secured: bool) -> dict:
    """One HTTP phase: a server (security off, or on with pharmacist tokens), a warm-up,
    then ``opts.seconds`` of cycles."""
    os.environ["ENJOURNAL_BENCH_AUTH"] = "off"
    key_file = work / "oidc-key.json"
    if secured:
        secured_env(key_file, ENJOURNAL_JOBS="off")
    server = Server(url, opts.workers, work, "eresept-secured" if secured else "eresept")
    os.environ["ENJOURNAL_PUBLIC_URL"] = f"http://127.0.0.1:{server.port}"
    async with server:
        tokens = None
        if secured:
            issuer = f"http://127.0.0.1:{server.port}/oidc"
            tokens = pharmacist_tokens(orgs, opts.clients, key_file, issuer)
        await drive(server.port, pids, orgs, opts.clients, opts.warmup, tokens)
        result = await drive(server.port, pids, orgs, opts.clients, opts.seconds, tokens)
        server.sample_rss()
    return result


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
        result = await serve_and_drive(url, opts, work, pids, orgs, secured=False)
        report["cycles"] = result
        print(f"enjournal: {result['cycles_per_second']} cycles/s", flush=True)
        if opts.security:
            secured = await serve_and_drive(url, opts, work, pids, orgs, secured=True)
            report["cycles_security_on"] = secured
            print(f"enjournal, security on: {secured['cycles_per_second']} cycles/s", flush=True)
        print("deletion job (one pass, server stopped) ...", flush=True)
        report["deletion_job"] = await deletion_job(url, later=False)
        print("raw SQL baseline (asyncpg, same database, no HTTP, no FHIR layer) ...", flush=True)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(BARE_DISPENSE)
        finally:
            await conn.close()
        await drive_raw(url, pids, orgs, opts.clients, opts.warmup)
        raw = await drive_raw(url, pids, orgs, opts.clients, opts.seconds)
        report["baseline"] = {"what": BASELINE, **raw}
        report["ratio"] = ratios(result, raw)
        for line in summary(result, raw, report["ratio"]):
            print(line)
        if opts.security:
            report["ratio_security_on"] = ratios(secured, raw)
            print("security on:")
            for line in summary(secured, raw, report["ratio_security_on"])[2:]:
                print(line)
        # last: it deletes what the enjournal run completed (the raw run wrote no index rows)
        report["deletion_job"].update(await deletion_job(url, later=True))
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
    parser.add_argument(
        "--security",
        action="store_true",
        help="also a phase with security on: pharmacist tokens, access policy, audit",
    )
    asyncio.run(amain(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
