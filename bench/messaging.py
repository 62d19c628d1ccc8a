"""Messaging end to end: ``python -m bench.messaging``.

Issue 16's target, on this machine: >= 2,000 messages/s and p99 < 500 ms, end to end: a
referral sent (ledger + outbox in its own transaction, as ``$process-message`` does) ->
relay -> broker -> receiver (inbox, checks, import of the ServiceRequest, audit) -> the
automatic AppRec into the outbox -> relay -> broker -> the sender's ledger (``receipt_at``).

1. Baseline, the broker alone: the same bodies published to a quorum queue with publisher
   confirms (aio-pika, persistent, concurrent) and consumed with acks by a minimal client
   in the same process, no database: messages/s and publish -> consume latency, unpaced and
   at the offered rate.
2. PostgreSQL + RabbitMQ: a fresh schema with the test world (tests/services/messaging),
   ``--workers`` processes of the messaging worker on a queue of the run's own, then a
   sender in this process offering ``--rate`` referrals/s (one transaction each, ``--senders``
   at a time) until ``--messages`` are sent.  Latency per message: the ledger's
   ``receipt_at - created``; throughput: messages / (last receipt - first sent).
3. The embedded default: the same on SQLite with the database queue.
4. ``--profile N``: N referrals queued first, then the worker's loop (relay + consumer) in
   this process under cProfile until their receipts are in: own CPU time by area and the
   costliest functions.

The machine and the figures are printed and saved to bench/results/messaging-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import aio_pika
import asyncpg

from bench.common import bench_platform, save_report, start_report
from bench.run import percentile

ROOT = Path(__file__).resolve().parent.parent
PG = "postgresql://postgres@127.0.0.1:5432/test"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
WORKER = (
    "import asyncio, sys\n"
    "if sys.argv[6] == 'uvloop':\n"
    "    import uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())\n"
    "from enjournal.services.messaging.worker import worker_command\n"
    "sys.exit(asyncio.run(worker_command(sys.argv[1], sys.argv[2], int(sys.argv[4]), 1, "
    "queue=sys.argv[3], consumers=int(sys.argv[5]))))\n"
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def summary(latencies_ms: list[float], count: int, seconds: float) -> dict:
    values = sorted(latencies_ms)
    return {
        "messages": count,
        "seconds": round(seconds, 2),
        "per_second": round(count / seconds, 1) if seconds else None,
        "p50_ms": round(percentile(values, 50), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "max_ms": round(values[-1], 1) if values else None,
    }


# ---- the messages ------------------------------------------------------------------------


def referrals(n: int) -> list[tuple]:
    """``n`` referrals GP -> hospital: (envelope, body), built before the clock runs."""
    from enjournal.fhir import jsonio
    from enjournal.services.messaging import rules
    from tests.services.messaging import world

    out = []
    for i in range(n):
        bundle = world.message(
            "HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral(f"henvisning {i}")]
        )
        out.append((rules.envelope_of(bundle), jsonio.dumps(bundle)))
    return out


async def paced(items: list, rate: float, send) -> float:
    """``send(chunk)`` for ``items`` in chunks every 10 ms at ``rate`` per second (0: all
    at once in chunks of 500); the seconds it took."""
    started = time.perf_counter()
    chunk = max(1, round(rate / 100)) if rate else 500
    for n, start in enumerate(range(0, len(items), chunk)):
        if rate:
            delay = started + n * chunk / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await send(items[start : start + chunk])
    return time.perf_counter() - started


# ---- 1. the broker alone -----------------------------------------------------------------


async def broker_baseline(amqp: str, bodies: list[bytes], rate: float, prefetch: int) -> dict:
    """Publish (confirmed, persistent) and consume (acked) ``bodies`` through a quorum queue
    of its own; publish -> consume latency."""
    name = f"bench.baseline.{uuid.uuid4().hex[:8]}"
    publisher, consumer = await aio_pika.connect(amqp), await aio_pika.connect(amqp)
    try:
        channel = await publisher.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        receiving = await consumer.channel()
        await receiving.set_qos(prefetch_count=prefetch)
        queue = await receiving.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(exchange, "msg.#")
        latencies: list[float] = []
        done = asyncio.Event()

        async def on_message(message) -> None:
            latencies.append((time.time_ns() // 1000 - int(message.headers["t"])) / 1000)
            await message.ack()
            if len(latencies) == len(bodies):
                done.set()

        await queue.consume(on_message)

        async def send(chunk: list[bytes]) -> None:
            await asyncio.gather(*(
                exchange.publish(aio_pika.Message(
                    body, message_id=uuid.uuid4().hex, content_type="application/fhir+json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    headers={"t": time.time_ns() // 1000},
                ), "msg.82000001")
                for body in chunk
            ))  # fmt: skip

        started = time.perf_counter()
        await paced(bodies, rate, send)
        await asyncio.wait_for(done.wait(), 300)
        result = summary(latencies, len(bodies), time.perf_counter() - started)
        await receiving.close()
        channel = await consumer.channel()
        await channel.queue_delete(name)
        await channel.exchange_delete(name)
        return result
    finally:
        await publisher.close()
        await consumer.close()


def cpu_seconds(worker_pids: list[int]) -> dict[str, float]:
    """CPU seconds so far of the workers, this process (the sender), every PostgreSQL and
    RabbitMQ (beam.smp) process on the machine (other users of them included)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"workers": 0.0, "sender": 0.0, "postgresql": 0.0, "rabbitmq": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid, comm = int(text.split(" ", 1)[0]), text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if pid in worker_pids:
            out["workers"] += used
        elif pid == os.getpid():
            out["sender"] += used
        elif comm.startswith("postgres"):
            out["postgresql"] += used
        elif comm.startswith(("beam", "erl")):
            out["rabbitmq"] += used
    return out


def cpu_ms_per_message(before: dict, after: dict, n: int) -> dict[str, float]:
    return {k: round((after[k] - before[k]) * 1000 / n, 2) for k in before}


# ---- 2 and 3. end to end -----------------------------------------------------------------


class Workers:
    """``count`` worker processes (``enjournal messaging worker``) on ``url``."""

    def __init__(
        self, url: str, transport: str, queue: str, count: int, batch: int, consumers: int, logs
    ):
        loop = (
            "uvloop"
            if asyncio.get_event_loop_policy().__class__.__module__.startswith("uvloop")
            else "asyncio"
        )
        env = {**os.environ, "ENJOURNAL_AUTH": "off", "ENJOURNAL_TERMINOLOGY_CHECK": "off"}
        self.processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    url,
                    transport,
                    queue,
                    str(batch),
                    str(consumers),
                    loop,
                ],
                cwd=ROOT,
                env=env,
                stdout=logs,
                stderr=subprocess.STDOUT,
            )
            for _ in range(count)
        ]

    def stop(self) -> list[int]:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        return [process.wait(60) for process in self.processes]


async def wait_for_consumers(amqp: str, queue: str, count: int, seconds: float = 60) -> None:
    connection = await aio_pika.connect(amqp)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                declared = await channel.declare_queue(queue, passive=True)
                if declared.declaration_result.consumer_count >= count:
                    return
            with contextlib.suppress(Exception):
                await channel.close()
            await asyncio.sleep(0.2)
    finally:
        await connection.close()
    raise TimeoutError("the workers did not start consuming")


async def end_to_end(url: str, transport: str, queue: str, opts, logdir: Path) -> dict:
    """Workers on ``url``; the sender here at ``opts.rate``; figures from the ledger."""
    from enjournal.services.messaging.sending import send
    from tests.services.messaging import world

    platform = await bench_platform(url, pool_size=opts.senders + 2)
    await world.load(platform.store)
    messages = referrals(opts.messages)
    logs = (logdir / f"workers-{transport.split(':')[0]}.log").open("ab")
    workers = Workers(url, transport, queue, opts.workers, opts.batch, opts.consumers, logs)
    try:
        if transport.startswith("amqp"):
            await wait_for_consumers(transport, queue, opts.workers * opts.consumers)
        else:
            await asyncio.sleep(3)  # the workers start (no sign of it in the database)
        limit = asyncio.Semaphore(opts.senders)

        async def send_one(item) -> None:
            envelope, body = item
            async with limit, platform.store.transaction() as tx:
                now = int(time.time() * 1000)
                await send(tx, None, envelope, "application/fhir+json", body, now)

        async def send_chunk(chunk) -> None:
            await asyncio.gather(*(send_one(item) for item in chunk))

        pids = [p.pid for p in workers.processes]
        cpu_before = cpu_seconds(pids)
        sending = await paced(messages, opts.rate, send_chunk)
        await wait_for_receipts(platform, opts.messages)
        cpu_after = cpu_seconds(pids)
        figures = await ledger_figures(platform)
        figures["cpu_ms_per_referral"] = cpu_ms_per_message(cpu_before, cpu_after, opts.messages)
        figures["sent_per_second"] = round(opts.messages / sending, 1)
    finally:
        codes = workers.stop()
        await close_store(platform)
    figures["worker_exit_codes"] = codes
    return figures


async def close_store(platform) -> None:
    from enjournal.bootstrap import close_platform

    await close_platform(platform)


async def wait_for_receipts(platform, n: int, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while await _count(platform, "receipt_at IS NOT NULL") < n:
        if time.monotonic() > deadline:
            raise TimeoutError("not every receipt came back")
        await asyncio.sleep(0.2)


async def _count(platform, where: str) -> int:
    async with platform.store.transaction(write=False) as tx:
        row = await tx._conn.fetchrow(
            f"SELECT count(*) FROM messages WHERE type = 'HENVIS' AND {where}"
        )
    return int(row[0])


async def ledger_figures(platform) -> dict:
    async with platform.store.transaction(write=False) as tx:
        rows = await tx._conn.fetch(
            "SELECT created, receipt_at FROM messages WHERE type = 'HENVIS'"
        )
        imported = await tx._conn.fetchrow(
            "SELECT count(*) FROM resources WHERE type = 'ServiceRequest'"
        )
    latencies = [float(r[1] - r[0]) for r in rows]
    span = (max(r[1] for r in rows) - min(r[0] for r in rows)) / 1000
    result = summary(latencies, len(rows), span)
    result["service_requests"] = int(imported[0])
    return result


# ---- 4. the profile ----------------------------------------------------------------------

AREAS = (  # (marker in the file path or function name, area); first match wins
    ("orjson", "JSON"),
    ("json", "JSON"),
    ("enjournal/fhir/jsonio", "JSON"),
    ("asyncpg", "SQL (asyncpg, storage)"),
    ("enjournal/storage/", "SQL (asyncpg, storage)"),
    ("sqlite", "SQL (sqlite, storage)"),
    ("enjournal/security/audit", "audit"),
    ("enjournal/security/", "guard/policy"),
    ("enjournal/fhir/validation", "validation"),
    ("enjournal/fhir/invariants", "validation"),
    ("enjournal/fhir/fhirpath", "validation"),
    ("enjournal/fhir/element_types", "validation"),
    ("enjournal/fhir/indexing", "indexing"),
    ("messaging/receiving", "receiver"),
    ("messaging/rules", "receiver"),
    ("messaging/addresses", "address register"),
    ("messaging/relay", "relay"),
    ("messaging/transport", "transport (ours)"),
    ("aio_pika", "AMQP client (aio-pika, aiormq, pamqp)"),
    ("aiormq", "AMQP client (aio-pika, aiormq, pamqp)"),
    ("pamqp", "AMQP client (aio-pika, aiormq, pamqp)"),
    ("enjournal/", "enjournal (other)"),
    ("asyncio", "asyncio"),
    ("uuid", "uuid"),
)


def _area(file: str, name: str) -> str:
    where = f"{file}:{name}"
    return next((area for marker, area in AREAS if marker in where), "other")


async def profile_worker(
    url: str, transport_url: str, n: int, batch: int, consumers: int, profiled: bool = True
) -> dict:
    """``n`` referrals queued, then the worker's loop here (under cProfile if ``profiled``)
    until their receipts are in."""
    from enjournal.services.messaging import worker
    from enjournal.services.messaging.sending import send
    from tests.services.messaging import world

    platform = await bench_platform(url, messaging_transport=transport_url)
    await world.load(platform.store)
    for envelope, body in referrals(n):
        async with platform.store.transaction() as tx:
            await send(tx, None, envelope, "application/fhir+json", body, int(time.time() * 1000))
    queue = f"bench.profile.{uuid.uuid4().hex[:8]}"
    hub = worker._hub(platform, queue, None)
    stop = asyncio.Event()

    async def until_answered() -> None:
        await wait_for_receipts(platform, n)
        stop.set()

    statements, batches = _count_statements(), _count_batches(hub.receiver)
    profiler = cProfile.Profile(time.process_time)  # CPU time: waiting is not cost
    started, cpu = time.perf_counter(), time.process_time()
    if profiled:
        profiler.enable()
    await asyncio.gather(worker.run(hub, stop, batch, 1, consumers), until_answered())
    profiler.disable()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    _count_statements(statements)
    transport = await hub.transport()
    if hasattr(transport, "drop"):
        await transport.drop()
    await hub.close()
    await close_store(platform)
    return {
        "messages": n,
        "seconds": round(seconds, 2),
        "per_second": round(n / seconds, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_message": round(cpu * 1000 / n, 3),
        "receiver_batches": {
            "calls": len(batches),
            "mean": round(sum(batches) / max(1, len(batches)), 1),
        },
        "sql_per_referral": round(sum(statements.values()) / n, 1),
        "sql_statements_per_referral": {
            sql: round(count / n, 2) for sql, count in statements.most_common(20)
        },
        **(_profile_tables(profiler, cpu) if profiled else {}),
    }


def _count_statements(counts: Counter | None = None) -> Counter:
    """Count the SQL statements PostgreSQL runs (by their start) until called again."""
    from enjournal.storage.postgres import PostgresConnection

    if counts is not None:
        PostgresConnection._run = PostgresConnection._run.__wrapped__  # type: ignore[attr-defined]
        return counts
    counts, run = Counter(), PostgresConnection._run

    @functools.wraps(run)
    async def counted(self, method, sql, args):
        counts[f"{method}: {' '.join(sql.split())[:90]}"] += 1
        return await run(self, method, sql, args)

    PostgresConnection._run = counted  # type: ignore[method-assign]
    return counts


def _count_batches(receiver) -> list[int]:
    sizes: list[int] = []
    handle = receiver.handle

    async def counted(batch):
        sizes.append(len(batch))
        return await handle(batch)

    receiver.handle = counted
    return sizes


def _profile_tables(profiler: cProfile.Profile, cpu: float) -> dict:
    stats = pstats.Stats(profiler)
    areas: dict[str, float] = {}
    functions = []
    for (file, line, name), (_, calls, own, total, _) in stats.stats.items():  # type: ignore[attr-defined]
        areas[_area(file, name)] = areas.get(_area(file, name), 0.0) + own
        functions.append((own, total, calls, f"{Path(file).name}:{line}:{name}"))
    functions.sort(reverse=True)
    return {
        "own_cpu_by_area_percent": {
            area: round(100 * own / cpu, 1)
            for area, own in sorted(areas.items(), key=lambda kv: -kv[1])
        },
        "costliest_functions": [
            {"function": f, "own_ms": round(o * 1000), "total_ms": round(t * 1000), "calls": c}
            for o, t, c, f in functions[:25]
        ],
    }


# ---- the run -----------------------------------------------------------------------------


async def fresh_schema(admin: str) -> str:
    schema = f"bench_msg_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return schema


async def drop_schema(admin: str, schema: str) -> None:
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await conn.close()


async def on_postgres(opts, step):
    schema = await fresh_schema(opts.database)
    try:
        return await step(f"{opts.database}?search_path={schema}")
    finally:
        await drop_schema(opts.database, schema)


async def run(opts) -> dict:
    report = await start_report(opts.database, vars(opts))
    bodies = [body for _, body in referrals(opts.messages)]
    logdir = Path(tempfile.mkdtemp(prefix="bench-messaging-"))
    log(f"broker baseline: {len(bodies)} messages of {len(bodies[0])} bytes; logs in {logdir}")
    report["baseline_unpaced"] = await broker_baseline(opts.amqp, bodies, 0, opts.batch)
    report["baseline_paced"] = await broker_baseline(opts.amqp, bodies, opts.rate, opts.batch)
    _show(report, "baseline_unpaced", "baseline_paced")
    if not opts.skip_rabbit:
        log(f"PostgreSQL + RabbitMQ: {opts.workers} worker(s), offered {opts.rate}/s")
        queue = f"bench.{uuid.uuid4().hex[:8]}"
        report["postgres_rabbitmq"] = await on_postgres(
            opts, lambda url: end_to_end(url, opts.amqp, queue, opts, logdir)
        )
        _show(report, "postgres_rabbitmq")
    if not opts.skip_embedded:
        log(f"embedded: SQLite + database queue, {opts.workers} worker(s)")
        url = f"sqlite:///{logdir}/bench.sqlite"
        report["embedded_sqlite"] = await end_to_end(
            url, "database", "enjournal.messages", opts, logdir
        )
        _show(report, "embedded_sqlite")
    if opts.profile:
        log(f"profile: the worker in this process, {opts.profile} referrals, PostgreSQL + RabbitMQ")
        report["profile"] = await on_postgres(
            opts,
            lambda url: profile_worker(url, opts.amqp, opts.profile, opts.batch, opts.consumers),
        )
        report["in_process_unprofiled"] = await on_postgres(
            opts,
            lambda url: profile_worker(
                url, opts.amqp, opts.profile, opts.batch, opts.consumers, False
            ),
        )
        _show(report, "profile", "in_process_unprofiled")
    return report


def _show(report: dict, *keys: str) -> None:
    for key in keys:
        print(json.dumps({key: report[key]}), flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.messaging", description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=2000.0, help="referrals/s offered")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--batch", type=int, default=100, help="the workers' batch/prefetch")
    parser.add_argument("--consumers", type=int, default=4, help="batches at once per worker")
    parser.add_argument("--senders", type=int, default=8, help="sending transactions at once")
    parser.add_argument("--profile", type=int, default=2000, help="referrals profiled (0: off)")
    parser.add_argument("--uvloop", action="store_true", help="uvloop's event loop everywhere")
    parser.add_argument("--skip-rabbit", action="store_true")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--database", default=PG, help="PostgreSQL (a schema is made in it)")
    parser.add_argument("--amqp", default=AMQP)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.uvloop:  # every process of the run: this one (the sender) and the workers
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    report = asyncio.run(run(opts))
    save_report("messaging", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
