"""What every benchmark script does at its start and end: describe the machine, save the
result under bench/results/."""

from __future__ import annotations

import json
import time
from pathlib import Path

import asyncpg

from bench import machine

RESULTS = Path(__file__).resolve().parent / "results"


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
