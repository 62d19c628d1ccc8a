"""A SQL-on-FHIR view over many Observations on each engine (issue 15), beside raw baselines.

The view (``VIEW``): one row per Observation with its id, the patient's key, the first
coding's code, the quantity's value and the effective time.  The data: ``--resources``
synthetic Observations (default 1,000,000) written once as NDJSON.

1. PostgreSQL over the store: a fresh database migrated by the platform; the first
   ``--through-store`` Observations written through the store (``bench.bulk``: rows,
   versions, indexes, as the platform writes them), the rest COPYed from the same NDJSON as
   ``resources`` rows only (what the view reads); VACUUM ANALYZE.  Timed: the view by
   ``enjournal.storage.views.postgres.view_batches`` (a server-side cursor, ``--batch-rows``
   rows a fetch, every row decoded into Python), and the bench process's RSS before and
   after (flat: one batch at a time).  Baselines: ``SELECT count(*)`` of the same rows, and a
   hand-written jsonb SELECT of the same five columns through the same kind of cursor
   (each JSON parsed once: ``OFFSET 0`` keeps PostgreSQL from parsing it per column).
2. DuckDB over the NDJSON file: ``run_view(..., engine="duckdb")`` (every row into Python).
   Baselines: ``count(*)`` over ``read_json_objects`` and a hand-written ``json_extract``
   SELECT of the same columns (fetched into Python).
3. Spark local (when ``enjournal.storage.views.spark`` exists): the compiled view over the
   NDJSON file written to Spark's ``noop`` sink (every row computed, none collected: a
   million rows do not fit the local driver's 1 GB as Python objects); baseline: ``count()``
   of the parsed lines.

Prints the machine (``bench.machine``) and each figure; saves the report under
bench/results/.  Run: ``make bench-views`` (``python -m bench.views``; ``--resources 100000``
for a quicker run, ``--engines duckdb,postgres``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from bench import machine
from bench.bulk import bulk_load
from bench.common import bench_store, save_report, start_report

VIEW = {
    "resourceType": "ViewDefinition",
    "name": "observation_values",
    "status": "active",
    "resource": "Observation",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "code", "path": "code.coding.first().code"},
                {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
                {"name": "effective", "path": "effective.ofType(dateTime)", "type": "dateTime"},
            ]
        }
    ],
}
CODES = ["29463-7", "8867-4", "8480-6", "8462-4", "2708-6", "8310-5"]
PATIENTS = 20_000
STARTED_MS = 1_780_000_000_000

HAND_POSTGRES = """
SELECT c ->> 'id', substring(c -> 'subject' ->> 'reference' from '^Patient/(.+)$'),
       c -> 'code' -> 'coding' -> 0 ->> 'code', (c -> 'valueQuantity' ->> 'value')::float8,
       c ->> 'effectiveDateTime'
FROM (SELECT convert_from(content, 'UTF8')::jsonb AS c FROM resources
      WHERE type = 'Observation' AND NOT deleted OFFSET 0) AS s
"""
COUNT_POSTGRES = "SELECT count(*) FROM resources WHERE type = 'Observation' AND NOT deleted"
HAND_DUCKDB = """
SELECT json_extract_string(json, '$.id'),
       regexp_extract(json_extract_string(json, '$.subject.reference'), '^Patient/(.+)$', 1),
       json_extract_string(json, '$.code.coding[0].code'),
       CAST(json_extract(json, '$.valueQuantity.value') AS DOUBLE),
       json_extract_string(json, '$.effectiveDateTime')
FROM read_json_objects(?, format = 'newline_delimited')
"""


def observation(n: int) -> dict:
    """The n-th Observation, as the store keeps it (meta included)."""
    updated = STARTED_MS + n
    return {
        "resourceType": "Observation",
        "id": f"obs-{n}",
        "meta": {"versionId": "1", "lastUpdated": iso(updated)},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": CODES[n % len(CODES)]}]},
        "subject": {"reference": f"Patient/p{n % PATIENTS}"},
        "effectiveDateTime": f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}T08:{n % 60:02d}:00Z",
        "valueQuantity": {
            "value": round(40 + (n * 7919 % 1000) / 10, 1),
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
    }


def iso(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def write_ndjson(path: Path, count: int) -> dict:
    started = time.perf_counter()
    with path.open("w") as out:
        for n in range(count):
            out.write(json.dumps(observation(n), separators=(",", ":")) + "\n")
    return {"seconds": round(time.perf_counter() - started, 1), "mb": mb(path.stat().st_size)}


def mb(size: int) -> float:
    return round(size / 2**20, 1)


def timed(seconds: float, rows: int) -> dict:
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds)}


# ---- PostgreSQL ---------------------------------------------------------------------------


def copy_rows(path: Path, skip: int) -> Iterator[tuple]:
    """``resources`` rows of the NDJSON lines after the first ``skip``."""
    with path.open("rb") as lines:
        for n, line in enumerate(itertools.islice(lines, skip, None), start=skip):
            yield "Observation", f"obs-{n}", 1, STARTED_MS + n, False, line.rstrip(b"\n")


async def fill_store(url: str, path: Path, count: int, through_store: int) -> dict:
    started = time.perf_counter()
    first = min(count, through_store)
    seeded = await bulk_load(url, (observation(n) for n in range(first)))
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table(
            "resources",
            records=copy_rows(path, first),
            columns=["type", "id", "version", "last_updated", "deleted", "content"],
        )
        await conn.execute("VACUUM ANALYZE resources")
        size = await conn.fetchval("SELECT pg_total_relation_size('resources')")
    finally:
        await conn.close()
    return {
        "through_store": seeded["resources"],
        "copied": count - first,
        "seconds": round(time.perf_counter() - started, 1),
        "table_mb": mb(size),
    }


async def postgres_view(url: str, batch_rows: int) -> dict:
    from enjournal.storage.views.postgres import view_batches

    store = await bench_store(url, pool_size=2)
    try:
        rss_before = machine.status_kb(os.getpid(), "VmRSS")
        started = time.perf_counter()
        rows = batches = 0
        async for batch in view_batches(store, VIEW, batch_rows=batch_rows):
            rows += len(batch)
            batches += 1
        seconds = time.perf_counter() - started
        rss_after = machine.status_kb(os.getpid(), "VmRSS")
    finally:
        await store.close()
    return timed(seconds, rows) | {
        "batches": batches,
        "rss_mb_before": round((rss_before or 0) / 1024, 1),
        "rss_mb_after": round((rss_after or 0) / 1024, 1),
    }


async def postgres_baselines(url: str, batch_rows: int) -> dict:
    conn = await asyncpg.connect(url, server_settings={"jit": "off"})
    try:
        started = time.perf_counter()
        count = await conn.fetchval(COUNT_POSTGRES)
        counted = timed(time.perf_counter() - started, count)
        started = time.perf_counter()
        rows = 0
        async with conn.transaction(readonly=True):
            cursor = await conn.cursor(HAND_POSTGRES)
            while batch := await cursor.fetch(batch_rows):
                rows += len(batch)
        hand = timed(time.perf_counter() - started, rows)
    finally:
        await conn.close()
    return {"count": counted, "hand_jsonb_select": hand}


async def run_postgres(opts: argparse.Namespace, path: Path) -> dict:
    from bench.run import Databases

    dbs = Databases(opts.database_admin_url, keep=False)
    try:
        url = await dbs.create("views")
        fill = await fill_store(url, path, opts.resources, opts.through_store)
        print("postgres fill", fill, flush=True)
        baselines = await postgres_baselines(url, opts.batch_rows)
        print("postgres baselines", baselines, flush=True)
        view = await postgres_view(url, opts.batch_rows)
        print("postgres view", view, flush=True)
    finally:
        await dbs.drop_all()
    return {"fill": fill, "baselines": baselines, "view": view}


# ---- DuckDB and Spark ---------------------------------------------------------------------


def run_duckdb(path: Path) -> dict:
    import duckdb

    from enjournal.storage.views import run_view

    with duckdb.connect() as conn:
        started = time.perf_counter()
        (count,) = conn.execute(
            "SELECT count(*) FROM read_json_objects(?, format = 'newline_delimited')", [str(path)]
        ).fetchone()
        counted = timed(time.perf_counter() - started, count)
        started = time.perf_counter()
        rows = len(conn.execute(HAND_DUCKDB, [str(path)]).fetchall())
        hand = timed(time.perf_counter() - started, rows)
    started = time.perf_counter()
    result = run_view(VIEW, [path], engine="duckdb")
    view = timed(time.perf_counter() - started, len(result.rows))
    out = {"baselines": {"count": counted, "hand_json_select": hand}, "view": view}
    print("duckdb", out, flush=True)
    return out


def run_spark(path: Path) -> dict:
    from enjournal.fhir.viewdefinition import plan
    from enjournal.storage.views import ENGINES
    from enjournal.storage.views.compile import compile_view
    from enjournal.storage.views.spark import DIALECT, frame

    engine = ENGINES["spark"]
    spark = engine.session()  # type: ignore[attr-defined]
    try:
        frame(spark, [str(path)]).limit(1).collect()  # warm-up (the JVM), not timed
        started = time.perf_counter()
        source = frame(spark, [str(path)])
        count = source.count()
        counted = timed(time.perf_counter() - started, count)
        source.createOrReplaceTempView("_bench_source")
        sql = compile_view(DIALECT, plan(VIEW), "_bench_source")
        started = time.perf_counter()
        spark.sql(sql).write.format("noop").mode("overwrite").save()
        seconds = time.perf_counter() - started
        rows = spark.sql(f"SELECT count(*) FROM ({sql})").collect()[0][0]
        view = timed(seconds, rows)
    finally:
        engine.stop()  # type: ignore[attr-defined]
    out = {"baselines": {"count_parsed_lines": counted}, "view_to_noop_sink": view}
    print("spark", out, flush=True)
    return out


async def run(opts: argparse.Namespace) -> dict:
    report = await start_report(opts.database_admin_url, vars(opts))
    engines = set(opts.engines.split(","))
    work = Path(tempfile.mkdtemp(prefix="bench-views-"))
    try:
        path = work / "Observation.ndjson"
        report["ndjson"] = write_ndjson(path, opts.resources)
        print("ndjson", report["ndjson"], flush=True)
        if "postgres" in engines:
            report["postgres"] = await run_postgres(opts, path)
        if "duckdb" in engines:
            report["duckdb"] = run_duckdb(path)
        if "spark" in engines and importlib.util.find_spec("enjournal.storage.views.spark"):
            report["spark"] = run_spark(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return report


def main(argv: list[str] | None = None) -> None:
    from bench.run import DEFAULT_ADMIN

    p = argparse.ArgumentParser(prog="python -m bench.views", description=__doc__)
    p.add_argument("--resources", type=int, default=1_000_000, help="Observations")
    p.add_argument("--engines", default="postgres,duckdb,spark")
    p.add_argument("--through-store", type=int, default=10_000, help="written by the store")
    p.add_argument("--batch-rows", type=int, default=5000, help="rows per cursor fetch")
    p.add_argument("--database-admin-url", default=DEFAULT_ADMIN)
    opts = p.parse_args(argv)
    report = asyncio.run(run(opts))
    save_report("views", report)


if __name__ == "__main__":
    main()
