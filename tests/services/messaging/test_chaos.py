"""Chaos: referrals sent in their own transactions, delivered by ``enjournal messaging worker``
processes that are killed (kill -9) while relaying and while receiving; a new worker takes
over; on RabbitMQ the broker then drops the last worker's connections mid-stream (its
robust connection comes back).  At the end nothing is lost and nothing has two effects: one
ServiceRequest per message, every message delivered and answered by exactly one receipt,
the inbox holding each message and each receipt once, nothing in the dead-letter queue.

On the embedded default (SQLite, the database queue; 300 referrals) and on PostgreSQL with
RabbitMQ (1,000 referrals).  The
workers' leases are short (``lease_seconds``) so a dead worker's claims are taken over in
seconds, not the production minute."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest

from enjournal.bootstrap import build_platform, close_platform
from enjournal.services.messaging import rules
from enjournal.services.messaging.sending import send
from enjournal.services.messaging.transport.database import DatabaseTransport
from enjournal.services.messaging.transport.rabbit import RabbitTransport
from enjournal.settings import Settings
from enjournal.storage import messaging as db
from tests.conftest import PG_DSN, _drop_schema, _pg_schema
from tests.services.messaging import world

pytestmark = pytest.mark.slow
AMQP = os.environ.get("ENJOURNAL_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
N = 300
ROOT = Path(__file__).resolve().parents[3]
WORKER = (
    "import asyncio, sys\n"
    "from enjournal.services.messaging.worker import worker_command\n"
    "sys.exit(asyncio.run(worker_command(sys.argv[1], sys.argv[2], 10, 1, "
    "queue=sys.argv[3], lease_seconds=1.5)))\n"
)


SENDER = (
    "import asyncio, sys, time\n"
    "from enjournal.bootstrap import build_platform\n"
    "from enjournal.fhir import jsonio\n"
    "from enjournal.services.messaging import rules\n"
    "from enjournal.services.messaging.sending import send\n"
    "from enjournal.settings import Settings\n"
    "from tests.services.messaging import world\n"
    "async def main(url):\n"
    "    settings = Settings(database_url=url, auth=False, jobs=False, terminology_check=False)\n"
    "    platform = await build_platform(settings)\n"
    "    for i in range(100_000):\n"
    "        bundle = world.message('HENVIS', world.GP_HER, world.HOSPITAL_HER,\n"
    "                               [world.referral(f'henvisning {i}')])\n"
    "        envelope = rules.envelope_of(bundle)\n"
    "        async with platform.store.transaction() as tx:\n"
    "            await send(tx, None, envelope, rules.FHIR_JSON, jsonio.dumps(bundle),\n"
    "                       int(time.time() * 1000))\n"
    "        print(envelope.id, flush=True)  # committed: the sender's 202\n"
    "asyncio.run(main(sys.argv[1]))\n"
)


class World:
    def __init__(self, platform, url: str, transport: str, queue: str, n: int):
        self.platform, self.url, self.transport, self.queue = platform, url, transport, queue
        self.n = n
        self.started: list[subprocess.Popen] = []

    def worker(self, log: Path) -> subprocess.Popen:
        env = {**os.environ, "ENJOURNAL_AUTH": "off", "ENJOURNAL_TERMINOLOGY_CHECK": "off"}
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER, self.url, self.transport, self.queue],
            cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.started.append(process)
        return process

    async def scalar(self, sql: str) -> int:
        async with self.platform.store.transaction(write=False) as tx:
            row = await tx._conn.fetchrow(sql)
        return int(row[0])

    async def rows(self, sql: str) -> list[tuple]:
        async with self.platform.store.transaction(write=False) as tx:
            return [tuple(r) for r in await tx._conn.fetch(sql)]

    async def progress(self) -> dict[str, int]:
        names = ("published", "delivered", "receipt_at")
        counts = {
            name: await self.scalar(
                f"SELECT count(*) FROM messages WHERE type = 'HENVIS' AND {name} IS NOT NULL"
            )
            for name in names
        }
        counts["outbox"] = await self.scalar("SELECT count(*) FROM message_outbox")
        return counts


@pytest.fixture(params=["embedded", "postgres+rabbitmq"])
async def chaos(request, tmp_path):
    rabbit = request.param != "embedded"
    schema = await _pg_schema() if rabbit else None
    url = f"{PG_DSN}?search_path={schema}" if schema else f"sqlite:///{tmp_path}/chaos.sqlite"
    transport = AMQP if rabbit else "database"
    queue = f"chaos.{uuid.uuid4().hex[:10]}" if rabbit else "enjournal.messages"
    settings = Settings(database_url=url, auth=False, jobs=False, terminology_check=False)
    platform = await build_platform(settings)
    await world.load(platform.store)
    chaos = World(platform, url, transport, queue, 2000 if rabbit else N)
    yield chaos
    for process in chaos.started:  # a failed test leaves none running
        if process.poll() is None:
            kill(process)
    await close_platform(platform)
    if rabbit:
        broker = RabbitTransport(AMQP, queue=queue, exchange=queue)
        await broker.start()
        await broker.drop()
        await broker.close()
    if schema:
        await _drop_schema(schema)


async def send_referrals(platform, n: int) -> list[str]:
    """``n`` referrals GP -> hospital, each in its own transaction, as $process-message does."""
    ids = []
    for i in range(n):
        bundle = world.message(
            "HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral(f"henvisning {i}")]
        )
        envelope = rules.envelope_of(bundle)
        body = rules_body(bundle)
        async with platform.store.transaction() as tx:
            await send(tx, None, envelope, rules.FHIR_JSON, body, int(time.time() * 1000))
        ids.append(envelope.id)
    return ids


def rules_body(bundle: dict) -> bytes:
    from enjournal.fhir import jsonio

    return jsonio.dumps(bundle)


async def wait_for(chaos: World, done, seconds: float = 120.0) -> dict[str, int]:
    deadline = time.monotonic() + seconds
    while True:
        progress = await chaos.progress()
        if done(progress):
            return progress
        assert time.monotonic() < deadline, f"stuck at {progress}"
        assert all(p.poll() in (None, -signal.SIGKILL) for p in chaos.started), "a worker died"
        await asyncio.sleep(0.005)


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


async def test_kill_9_while_relaying_and_receiving_loses_and_duplicates_nothing(chaos, tmp_path):
    n, rng, log = chaos.n, random.Random(), tmp_path / "workers.log"
    ids = await send_referrals(chaos.platform, n)
    relaying = chaos.worker(log)  # killed while the outbox is still being published
    await wait_for(chaos, lambda p: p["published"] >= rng.randint(1, n // 10))
    kill(relaying)
    at_first = await chaos.progress()
    receiving = chaos.worker(log)  # killed with part of the messages delivered
    target = rng.randint(n // 5, n // 3)
    await wait_for(chaos, lambda p: p["delivered"] >= target)
    kill(receiving)
    at_second = await chaos.progress()
    last = chaos.worker(log)
    at_cut = None
    if chaos.transport != "database":  # the broker drops the last worker's connections
        await wait_for(chaos, lambda p: p["delivered"] >= n // 2)
        at_cut = await cut_connections(chaos)
    await wait_for(chaos, lambda p: p["receipt_at"] >= n and p["outbox"] == 0)
    await asyncio.sleep(0.5)  # a late duplicate would land now
    last.send_signal(signal.SIGTERM)
    assert last.wait(30) == 0, log.read_text()[-3000:]
    assert at_first["published"] < n or at_first["outbox"] > 0, (at_first, "killed too late")
    assert at_second["delivered"] < n, (at_second, "killed too late")
    assert at_cut is None or at_cut["delivered"] < n, (at_cut, "cut too late")
    await assert_once_each(chaos, ids)


async def test_kill_9_of_the_sender_leaves_every_committed_message_delivered_once(chaos, tmp_path):
    """A sender (the server's $process-message, one transaction per message) killed mid-run:
    every message it committed (each it answered 202 for, and at most the one in flight)
    is delivered once and answered once; none half-written."""
    env = {**os.environ, "ENJOURNAL_AUTH": "off"}
    sender = subprocess.Popen(
        [sys.executable, "-c", SENDER, chaos.url], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=(tmp_path / "sender.log").open("wb"),
    )  # fmt: skip
    chaos.started.append(sender)
    worker = chaos.worker(tmp_path / "workers.log")
    target = random.Random().randint(chaos.n // 10, chaos.n // 4)
    await wait_for(chaos, lambda p: p["published"] >= target)
    kill(sender)
    answered = (sender.stdout.read() if sender.stdout else b"").decode().split()
    ledger = [row[0] for row in await chaos.rows("SELECT id FROM messages WHERE type = 'HENVIS'")]
    assert set(answered) <= set(ledger) and len(ledger) - len(answered) <= 1
    await wait_for(chaos, lambda p: p["receipt_at"] >= len(ledger) and p["outbox"] == 0)
    await asyncio.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    await assert_once_each(chaos, ledger)


async def cut_connections(chaos: World) -> dict[str, int]:
    """Close the worker's broker connections from the broker's side (rabbitmqctl), as a
    network cut would; the progress when they were closed."""
    listed = await _rabbitmqctl("list_connections", "pid", "client_properties", "-q")
    lines = listed.decode().splitlines()
    pids = [line.split("\t", 1)[0] for line in lines if chaos.queue in line]
    assert pids, "the worker's connections were not found"
    progress = await chaos.progress()
    for pid in pids:
        await _rabbitmqctl("close_connection", pid, "chaos test: connection cut")
    return progress


async def _rabbitmqctl(*args: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-500:]
    return out


async def assert_once_each(chaos: World, ids: list[str]) -> None:
    n = len(ids)
    assert await chaos.scalar("SELECT count(*) FROM resources WHERE type = 'ServiceRequest'") == n
    async with chaos.platform.store.transaction(write=False) as tx:
        rows = [await db.get(tx, i) for i in ids]
    assert all(r and r.delivered and r.receipt == rules.OK for r in rows)
    receipts = await chaos.scalar(
        "SELECT count(*) FROM messages WHERE type = 'APPREC' AND delivered IS NOT NULL"
    )
    assert receipts == n  # one receipt each, each delivered (record() refuses a second)
    # sent from this platform, each was taken by the ledger's "not delivered yet" (the inbox
    # table is for other hubs' messages); their receipts were delivered in the transaction
    # that wrote them (receiving.answer)
    assert await chaos.scalar("SELECT count(*) FROM message_inbox") == 0
    delivered = "SELECT count(*) FROM messages WHERE type = 'HENVIS' AND delivered IS NOT NULL"
    assert await chaos.scalar(delivered) == n
    assert sorted(await imported_from(chaos)) == sorted(ids)  # one ServiceRequest each
    stats = await dead_letters(chaos)
    assert (stats["waiting"], stats["dead"]) == (0, 0)


async def imported_from(chaos: World) -> list[str]:
    """The message id each stored ServiceRequest came from (its ``meta.source``)."""
    async with chaos.platform.store.transaction(write=False) as tx:
        rows = await tx._conn.fetch("SELECT content FROM resources WHERE type = 'ServiceRequest'")
    return [orjson.loads(bytes(r[0]))["meta"]["source"].partition("#")[2] for r in rows]


async def dead_letters(chaos: World) -> dict:
    if chaos.transport == "database":
        return await DatabaseTransport(chaos.platform.store).stats()
    broker = RabbitTransport(AMQP, queue=chaos.queue, exchange=chaos.queue)
    await broker.start()
    try:
        return await broker.stats()
    finally:
        await broker.close()
