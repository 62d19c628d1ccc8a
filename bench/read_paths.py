"""How much of a read by id the database access pattern costs, without HTTP.

    python -m bench.read_paths [--resources 100000] [--seconds 8]

Loads the demo population's resource JSON into a ``(type, id, content)`` table and reads
random ids at 32 concurrent asyncpg connections in four ways:

- ``store``: what ``Store.read`` does per request: pool acquire, ``BEGIN ISOLATION LEVEL
  REPEATABLE READ READ ONLY``, the SELECT, ``COMMIT``, pool release (which runs asyncpg's
  connection reset, one more round trip);
- ``no_tx``: pool acquire, the SELECT alone (one statement is already a consistent
  snapshot), release with the reset;
- ``no_tx_no_reset``: as ``no_tx`` with a pool whose ``reset`` does nothing;
- ``held``: each client holds its connection (the PK baseline of the main benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import asyncpg

from bench.run import DEFAULT_ADMIN, Databases, latency_summary


async def _noop_reset(conn: asyncpg.Connection) -> None:
    return None


async def run(opts: argparse.Namespace) -> None:
    import orjson

    from enjournal.demo.population import generate_population

    dbs = Databases(opts.database_admin_url, keep=False)
    try:
        url = await dbs.create("readpaths")
        rows = []
        for bundle in generate_population(max(1, opts.resources // 64), 1):
            for entry in bundle["entry"]:
                r = entry["resource"]
                rows.append((r["resourceType"], r.get("id") or f"{len(rows):08d}", orjson.dumps(r)))
        conn = await asyncpg.connect(url)
        await conn.execute(
            "CREATE TABLE resources (type TEXT, id TEXT, version INT DEFAULT 1, "
            "last_updated BIGINT DEFAULT 0, deleted BOOLEAN DEFAULT FALSE, content BYTEA, "
            "UNIQUE (type, id))"
        )
        await conn.copy_records_to_table(
            "resources", records=rows, columns=["type", "id", "content"]
        )
        await conn.execute("VACUUM ANALYZE resources")
        await conn.close()
        keys = [(t, i) for t, i, _ in rows]
        random.Random(1).shuffle(keys)
        sql = (
            "SELECT version, last_updated, deleted, content FROM resources "
            "WHERE type = $1 AND id = $2"
        )
        print(f"{len(rows):,} rows, {opts.concurrency} clients, {opts.seconds}s each")

        for mode in ("store", "no_tx", "no_tx_no_reset", "held"):
            kw = {"reset": _noop_reset} if mode == "no_tx_no_reset" else {}
            pool = await asyncpg.create_pool(
                url, min_size=opts.concurrency, max_size=opts.concurrency, **kw
            )
            latencies: list[float] = []
            stop = time.perf_counter() + opts.seconds

            async def client(k: int, mode: str, pool, stop: float, latencies: list) -> None:
                i = k
                if mode == "held":
                    async with pool.acquire() as c:
                        while time.perf_counter() < stop:
                            t0 = time.perf_counter()
                            await c.fetchrow(sql, *keys[i % len(keys)])
                            latencies.append(time.perf_counter() - t0)
                            i += opts.concurrency
                    return
                while time.perf_counter() < stop:
                    t0 = time.perf_counter()
                    async with pool.acquire() as c:
                        if mode == "store":
                            async with c.transaction(readonly=True, isolation="repeatable_read"):
                                await c.fetchrow(sql, *keys[i % len(keys)])
                        else:
                            await c.fetchrow(sql, *keys[i % len(keys)])
                    latencies.append(time.perf_counter() - t0)
                    i += opts.concurrency

            t0 = time.perf_counter()
            await asyncio.gather(
                *(client(k, mode, pool, stop, latencies) for k in range(opts.concurrency))
            )
            s = latency_summary(latencies, time.perf_counter() - t0)
            await pool.close()
            print(
                f"  {mode:16s} {s['per_second']:8,.0f} reads/s  p50 {s['p50_ms']:6.2f} ms  "
                f"p99 {s['p99_ms']:6.2f} ms"
            )
    finally:
        await dbs.drop_all()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.read_paths")
    p.add_argument("--resources", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--database-admin-url", default=DEFAULT_ADMIN)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
