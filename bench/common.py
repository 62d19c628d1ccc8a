"""What every benchmark script does at its start and end: describe the machine, save the
result under bench/results/; and the platform a benchmark writes and reads through."""

from __future__ import annotations

import json
import time
from pathlib import Path

import asyncpg

from bench import machine

RESULTS = Path(__file__).resolve().parent / "results"


async def bench_platform(url: str, *, pool_size: int = 10, migrate: bool = True, **settings):
    """The platform as the commands build it (``enjournal.bootstrap``), so what a benchmark
    writes is indexed by every service's search parameters; security off, no write checks
    (the data is generated valid), unless ``settings`` say otherwise."""
    from enjournal.bootstrap import build_platform
    from enjournal.settings import Settings

    options = {"auth": False, "jobs": False, "terminology_check": False, **settings}
    return await build_platform(
        Settings(database_url=url, pool_size=pool_size, **options), migrate=migrate
    )


async def bench_store(url: str, **options):
    """The store of ``bench_platform`` (closing it closes the platform's store)."""
    return (await bench_platform(url, **options)).store


async def start_report(admin_url: str, options: dict) -> dict:
    """A report holding the machine (with PostgreSQL's version) and the options; printed."""
    conn = await asyncpg.connect(admin_url)
    try:
        pg_version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    report: dict = {"machine": machine.describe(pg_version, {}), "options": options}
    print(json.dumps(report["machine"]), flush=True)
    return report


def save_report(name: str, report: dict) -> Path:
    out = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"result: {out}")
    return out
