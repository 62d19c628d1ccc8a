"""Bulk Data ``$export`` of 1M+ resources on PostgreSQL (issue 15), beside a raw baseline.

1. Load: ``--seed-resources`` of the demo population through the store (``bench.bulk``:
   every version and index row, as the importer writes them), then copied inside PostgreSQL
   (``INSERT ... SELECT`` with new ids, ``resources`` rows only: a system-level export reads
   nothing else) until the table holds ``--resources``.
2. Baseline: ``COPY (SELECT convert_from(content, 'UTF8') FROM resources WHERE NOT deleted)
   TO STDOUT`` into a file: PostgreSQL streaming the same JSON text with no server between.
3. Export: ``enjournal serve`` (one worker, security off, the job runner on) in a subprocess;
   ``GET /fhir/$export`` with ``Prefer: respond-async``, polled until the manifest; resources/s
   from kick-off to manifest, and the worker's peak RSS (``VmHWM``, sampled while polling;
   it includes the start-up).  The manifest's counts must add up to the table.

Prints the machine first (``bench.machine``) and saves the report under bench/results/.
Run: ``make bench-bulk-export`` (``python -m bench.bulk_export --resources 1000000``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

from bench.bulk import bulk_load, demo_resources
from bench.common import save_report, start_report

# Copies of the seed rows, each with an id of its own in its row and in its JSON: orjson
# writes ``"id":"<id>"`` without spaces, and only the resource's own id matches it.
_REPLICATE = """
INSERT INTO resources (type, id, version, last_updated, deleted, content)
SELECT type, id || '-' || g, version, last_updated, deleted,
       convert_to(replace(convert_from(content, 'UTF8'),
                          '"id":"' || id || '"', '"id":"' || id || '-' || g || '"'), 'UTF8')
FROM resources, generate_series($1::int, $2::int) AS g
WHERE rid <= $3 AND NOT deleted
"""


async def load(url: str, total: int, seed: int, seed_resources: int) -> dict:
    started = time.perf_counter()
    resources = itertools.islice(demo_resources(seed_resources, seed), seed_resources)
    seeded = await bulk_load(url, resources)
    conn = await asyncpg.connect(url)
    try:
        rows, top = await conn.fetchrow("SELECT count(*), max(rid) FROM resources")
        copies = max(0, -(-total // rows) - 1)
        step = 4
        for first in range(1, copies + 1, step):  # a few statements, each in its own commit
            await conn.execute(_REPLICATE, first, min(copies, first + step - 1), top)
        await conn.execute("ANALYZE resources")
        count, size = await conn.fetchrow(
            "SELECT count(*), sum(octet_length(content)) FROM resources WHERE NOT deleted"
        )
    finally:
        await conn.close()
    return {
        "seed_load": seeded,
        "resources": count,
        "json_mb": round(size / 2**20, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


async def copy_baseline(url: str, work: Path, count: int) -> dict:
    out = work / "copy.ndjson"
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await conn.copy_from_query(
            "SELECT convert_from(content, 'UTF8') FROM resources WHERE NOT deleted", output=out
        )
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    size = out.stat().st_size
    out.unlink()
    return _rate(count, seconds) | {"mb": round(size / 2**20, 1)}


async def export(url: str, work: Path, count: int, batch_bytes: int) -> dict:
    from bench.run import Server

    folder = work / "exports"
    os.environ.update(
        {
            "ENJOURNAL_EXPORT_DIR": str(folder),
            "ENJOURNAL_EXPORT_BATCH_BYTES": str(batch_bytes),
            "ENJOURNAL_JOBS": "on",
        }
    )
    async with Server(url, 1, work, "bulk-export") as server:
        base = f"http://127.0.0.1:{server.port}/fhir"
        start_rss = server.sample_rss()
        async with httpx.AsyncClient(timeout=60) as http:
            started = time.perf_counter()
            kick = await http.get(f"{base}/$export", headers={"Prefer": "respond-async"})
            kick.raise_for_status()
            status_url = kick.headers["content-location"]
            while (poll := await http.get(status_url)).status_code == 202:
                server.sample_rss()
                await asyncio.sleep(0.25)
            seconds = time.perf_counter() - started
            poll.raise_for_status()
            manifest = poll.json()
            server.sample_rss()
            exported = sum(entry["count"] for entry in manifest["output"])
            size = sum(p.stat().st_size for p in folder.rglob("*.ndjson"))
            await http.delete(status_url)
    conn = await asyncpg.connect(url)
    try:  # the server's start may add the shipped code lists' resources
        count = await conn.fetchval("SELECT count(*) FROM resources WHERE NOT deleted")
    finally:
        await conn.close()
    if exported != count:
        raise RuntimeError(f"the export holds {exported} resources, the table {count}")
    return _rate(count, seconds) | {
        "files": len(manifest["output"]),
        "mb": round(size / 2**20, 1),
        "peak_rss_mb": round(sum(server.peak_rss_kb) / 1024, 1),
        "rss_after_start_mb": round(sum(start_rss) / 1024, 1),
        "batch_bytes": batch_bytes,
    }


def _rate(count: int, seconds: float) -> dict:
    return {"seconds": round(seconds, 1), "resources_per_second": round(count / seconds)}


async def run(opts: argparse.Namespace) -> dict:
    from bench.run import Databases

    report = await start_report(opts.database_admin_url, vars(opts))
    dbs = Databases(opts.database_admin_url, keep=False)
    work = Path(tempfile.mkdtemp(prefix="bench-bulk-export-"))
    try:
        url = await dbs.create("bulk_export")
        report["load"] = await load(url, opts.resources, opts.seed, opts.seed_resources)
        print("load", report["load"], flush=True)
        count = report["load"]["resources"]
        report["copy_baseline"] = await copy_baseline(url, work, count)
        print("COPY baseline", report["copy_baseline"], flush=True)
        report["export"] = await export(url, work, count, opts.batch_bytes)
        print("$export", report["export"], flush=True)
    finally:
        await dbs.drop_all()
        shutil.rmtree(work, ignore_errors=True)
    save_report("bulk-export", report)
    return report


def main(argv: list[str] | None = None) -> None:
    from bench.run import DEFAULT_ADMIN

    p = argparse.ArgumentParser(prog="python -m bench.bulk_export", description=__doc__)
    p.add_argument("--resources", type=int, default=1_000_000, help="rows to export")
    p.add_argument("--seed-resources", type=int, default=50_000, help="loaded through the store")
    p.add_argument("--batch-bytes", type=int, default=4 * 1024 * 1024)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--database-admin-url", default=DEFAULT_ADMIN)
    asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    main()
