"""Bulk loading through the store, for benchmarks that need many resources (1M and more).

``bulk_load(url, resources)`` writes an iterable of resources with
``Transaction.create_many`` in several concurrent write transactions (one batch each), so the
``resources`` rows of a batch cost one statement and its version and index rows one
``executemany`` per table.  Every row the store keeps is written (versions, all search
indexes); nothing is validated (the data is the benchmark's own) and no write checks run
unless the caller installs them.  PostgreSQL only in practice: SQLite has one writer, so
its transactions run one after another.

``python -m bench.bulk`` times it on a throwaway PostgreSQL database with the demo
population (``--resources 200000``), and ``--ingest SIZE`` runs only the ingest part of
``python -m bench`` (COPY baseline, POST of transaction Bundles, ``enjournal import``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.common import bench_store


async def bulk_load(
    url: str, resources: Iterable[dict], batch: int = 2000, concurrency: int = 4
) -> dict:
    """Load ``resources`` (their ``id`` kept when given, else assigned) into the store at
    ``url``; returns counts, seconds and resources/s.  A failing batch stops the load and
    raises; batches committed before it stay."""
    store = await bench_store(url, pool_size=concurrency + 1)
    queue: asyncio.Queue[list[dict] | None] = asyncio.Queue(maxsize=concurrency * 2)
    counts = {"resources": 0, "batches": 0}

    async def writer() -> None:
        while (chunk := await queue.get()) is not None:
            async with store.transaction() as tx:
                await tx.create_many(chunk, [r.get("id") or None for r in chunk])
            counts["resources"] += len(chunk)
            counts["batches"] += 1

    started = time.perf_counter()
    try:
        writers = [asyncio.create_task(writer()) for _ in range(concurrency)]
        try:
            it = iter(resources)
            while chunk := list(itertools.islice(it, batch)):
                await _put(queue, chunk, writers)
            for _ in writers:
                await _put(queue, None, writers)
            await asyncio.gather(*writers)
        finally:
            for task in writers:
                task.cancel()
    finally:
        await store.close()
    seconds = time.perf_counter() - started
    return {
        **counts,
        "batch": batch,
        "concurrency": concurrency,
        "seconds": round(seconds, 2),
        "resources_per_second": round(counts["resources"] / seconds, 1),
    }


async def _put(queue: asyncio.Queue, item, writers: list[asyncio.Task]) -> None:
    """Queue ``item``, but raise at once if a writer has failed (rather than waiting for a
    free slot that never comes)."""
    put = asyncio.ensure_future(queue.put(item))
    while not put.done():
        await asyncio.wait([put, *writers], return_when=asyncio.FIRST_COMPLETED)
        for task in writers:
            if task.done() and task.exception() is not None:
                put.cancel()
                raise task.exception()  # type: ignore[misc]


def demo_resources(target: int, seed: int = 1) -> Iterator[dict]:
    """About ``target`` resources of the demo population, with ids assigned and the
    ``urn:uuid:`` references between a patient's resources rewritten to them, as a
    transaction would store them."""
    from enjournal.demo.population import generate_population

    patients = max(1, round(target / 50))  # about 60 per patient: enough to cut from
    for bundle in generate_population(patients, seed):
        ids: dict[str, str] = {}
        for entry in bundle["entry"]:
            resource = entry["resource"]
            resource.setdefault("id", str(uuid.uuid4()))
            if "fullUrl" in entry:
                ids[entry["fullUrl"]] = f"{resource['resourceType']}/{resource['id']}"
        for entry in bundle["entry"]:
            _rewrite(entry["resource"], ids)
            yield entry["resource"]


def _rewrite(node: object, ids: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in ids:
                node[key] = ids[value]
            elif isinstance(value, (dict, list)):
                _rewrite(value, ids)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item, ids)


async def time_bulk_load(opts: argparse.Namespace) -> dict:
    from bench.run import Databases

    started = time.perf_counter()
    resources = list(itertools.islice(demo_resources(opts.resources, opts.seed), opts.resources))
    generated = time.perf_counter() - started
    dbs = Databases(opts.database_admin_url, keep=False)
    try:
        url = await dbs.create("bulk")
        load_before = os.getloadavg()
        result = await bulk_load(url, resources, opts.batch, opts.concurrency)
        result["generate_seconds"] = round(generated, 1)
        result["load_average_before"] = [round(x, 2) for x in load_before]
        result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        await dbs.drop_all()
    return result


async def ingest_only(opts: argparse.Namespace) -> list[dict]:
    """``python -m bench``'s ingest phases for one size, ``--rounds`` times."""
    from bench import run

    dbs = run.Databases(opts.database_admin_url, keep=False)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    data = run.make_dataset(opts.ingest, opts.seed, work)
    rounds = []
    try:
        for _ in range(opts.rounds):
            r: dict = {"resources": data.resources, "load_average_before": os.getloadavg()}
            url = await dbs.create("copy")
            r["copy"] = (await run.ingest_copy(data, url))["resources_per_second"]
            await dbs.drop(url)
            url = await dbs.create("post")
            async with run.Server(url, opts.ingest_workers, work, "ingest") as server:
                post = await run.ingest_http(data, server.port, opts.ingest_clients)
            r["post"] = post["resources_per_second"]
            await dbs.drop(url)
            url = await dbs.create("import")
            r["import"] = run.ingest_import(data, url, work)["resources_per_second"]
            await dbs.drop(url)
            r["load_average_after"] = os.getloadavg()
            print(r, flush=True)
            rounds.append(r)
    finally:
        await dbs.drop_all()
    return rounds


def main(argv: list[str] | None = None) -> None:
    from bench.common import save_report, start_report
    from bench.run import DEFAULT_ADMIN

    p = argparse.ArgumentParser(prog="python -m bench.bulk", description=__doc__)
    p.add_argument("--resources", type=int, default=200_000, help="resources to bulk load")
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--database-admin-url", default=DEFAULT_ADMIN)
    p.add_argument(
        "--ingest", type=int, help="instead: run only the ingest part of `python -m bench`"
    )
    p.add_argument("--rounds", type=int, default=2, help="with --ingest: repeat (noise)")
    p.add_argument("--ingest-clients", type=int, default=4)
    p.add_argument("--ingest-workers", type=int, default=2)
    opts = p.parse_args(argv)

    async def go() -> None:
        report = await start_report(opts.database_admin_url, vars(opts))
        if opts.ingest:
            report["ingest"] = await ingest_only(opts)
            save_report("ingest", report)
        else:
            report["bulk_load"] = await time_bulk_load(opts)
            print(report["bulk_load"], flush=True)
            save_report("bulk", report)

    asyncio.run(go())


if __name__ == "__main__":
    main()
