"""One contract for both transports (``transport/__init__.py``): the database queue on
SQLite and PostgreSQL, and RabbitMQ (the real broker at 127.0.0.1:5672, with a queue and
exchange of this test's own, deleted after it).  In order; acknowledged only after the
handler returned; retried with a doubling backoff and dead-lettered after ``max_attempts``;
"dead" at once; a poison message never blocks the ones behind it; stats."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid

import pytest

from enjournal.bootstrap import build_platform, close_platform
from enjournal.services.messaging.transport import Envelope
from enjournal.services.messaging.transport.database import DatabaseTransport
from enjournal.services.messaging.transport.rabbit import RabbitTransport
from enjournal.settings import Settings
from tests.conftest import PG_DSN, _drop_schema, _pg_schema

AMQP = os.environ.get("ENJOURNAL_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
BASE_MS = 100  # the backoff's first wait
ATTEMPTS = 3


class Died(BaseException):
    """The consumer dies inside the handler (as kill -9 would): nothing is settled."""


@pytest.fixture(params=["sqlite", "postgres", "rabbitmq"])
async def transport(request, tmp_path):
    kind = request.param
    if kind == "rabbitmq":
        name = f"test.{uuid.uuid4().hex[:10]}"
        rabbit = RabbitTransport(
            AMQP, max_attempts=ATTEMPTS, queue=f"{name}.messages", exchange=name,
            backoff_base_ms=BASE_MS,
        )  # fmt: skip
        await rabbit.start()
        yield rabbit
        await rabbit.drop()
        await rabbit.close()
        return
    schema = await _pg_schema() if kind == "postgres" else None
    url = f"{PG_DSN}?search_path={schema}" if schema else f"sqlite:///{tmp_path}/t.sqlite"
    platform = await build_platform(Settings(database_url=url, auth=False, jobs=False))
    yield DatabaseTransport(
        platform.store, max_attempts=ATTEMPTS, backoff_base_ms=BASE_MS, lease_ms=300
    )
    await close_platform(platform)
    if schema:
        await _drop_schema(schema)


def envelopes(n: int, prefix: str = "m") -> list[Envelope]:
    return [
        Envelope(f"{prefix}{i}-{uuid.uuid4().hex[:6]}", "82000001", "application/fhir+json",
                 f'{{"n": {i}}}'.encode())
        for i in range(n)
    ]  # fmt: skip


class Recorder:
    """A handler that answers by a rule and remembers what it saw and when."""

    def __init__(self, rule=lambda envelope: "ack"):
        self.rule, self.seen, self.batches = rule, [], []

    async def __call__(self, batch: list[Envelope]):
        self.batches.append(len(batch))
        self.seen += [(e, time.monotonic()) for e in batch]
        return [self.rule(e) for e in batch]

    def ids(self, id_: str | None = None) -> list[str]:
        return [e.id for e, _ in self.seen if id_ in (None, e.id)]


async def consume_until(transport, handle, done, seconds: float = 10.0, batch: int = 10):
    """Run ``consume`` until ``done()`` holds (or fail after ``seconds``)."""
    stop = asyncio.Event()
    task = asyncio.create_task(transport.consume(handle, stop, batch))
    deadline = time.monotonic() + seconds
    try:
        while not done():
            assert time.monotonic() < deadline, "the consumer did not get there in time"
            assert not task.done(), task.exception()
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def settled_stats(transport, expect: dict, seconds: float = 5.0) -> dict:
    """The transport's stats once they show ``expect`` (RabbitMQ counts a moment late)."""
    deadline = time.monotonic() + seconds
    while True:
        stats = await transport.stats()
        if all(stats[k] == v for k, v in expect.items()) or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.05)


async def test_published_messages_are_consumed_in_order(transport):
    sent = envelopes(25)
    await transport.publish(sent)
    handler = Recorder()
    await consume_until(transport, handler, lambda: len(handler.seen) >= 25)
    assert handler.ids() == [e.id for e in sent]
    first = handler.seen[0][0]
    assert (first.route, first.content_type, first.body, first.attempts) == (
        "82000001", "application/fhir+json", b'{"n": 0}', 0,
    )  # fmt: skip
    assert max(handler.batches) > 1  # batched, not one by one
    assert await settled_stats(transport, {"waiting": 0}) == {
        "waiting": 0, "dead": 0, "oldest_age": None,
    }  # fmt: skip


async def test_a_message_is_acknowledged_only_after_the_handler_returned(transport):
    [sent] = envelopes(1)
    await transport.publish([sent])

    async def dies(batch):
        raise Died

    with pytest.raises(Died):
        await transport.receive_once(dies, 10)
    handler = Recorder()
    await consume_until(transport, handler, lambda: handler.seen)
    again = handler.seen[0][0]
    assert (again.id, again.attempts) == (sent.id, 1)  # delivered again, and counted
    assert (await settled_stats(transport, {"waiting": 0}))["waiting"] == 0


async def test_retries_back_off_doubling_then_the_message_is_dead_lettered(transport):
    [sent] = envelopes(1)
    await transport.publish([sent])
    handler = Recorder(lambda e: "retry")
    await consume_until(transport, handler, lambda: len(handler.seen) >= ATTEMPTS)
    await asyncio.sleep(4 * BASE_MS / 1000)  # no further delivery comes
    assert [e.attempts for e, _ in handler.seen] == list(range(ATTEMPTS))
    times = [t for _, t in handler.seen]
    waits = [b - a for a, b in itertools.pairwise(times)]
    assert waits[0] >= 0.8 * BASE_MS / 1000
    assert waits[1] >= 0.8 * 2 * BASE_MS / 1000  # doubled
    stats = await settled_stats(transport, {"waiting": 0, "dead": 1})
    assert (stats["waiting"], stats["dead"]) == (0, 1)


async def test_dead_goes_to_the_dead_letter_queue_at_once(transport):
    sent = envelopes(3)
    await transport.publish(sent)
    handler = Recorder(lambda e: "dead" if e.id == sent[1].id else "ack")
    await consume_until(transport, handler, lambda: len(handler.seen) >= 3)
    await asyncio.sleep(2 * BASE_MS / 1000)
    assert handler.ids(sent[1].id) == [sent[1].id]  # once, not retried
    stats = await settled_stats(transport, {"waiting": 0, "dead": 1})
    assert (stats["waiting"], stats["dead"]) == (0, 1)


async def test_a_poison_message_never_blocks_the_ones_behind_it(transport):
    poison, *good = envelopes(11)
    await transport.publish([poison, *good])
    good_ids = {e.id for e in good}
    handler = Recorder(lambda e: "ack" if e.id in good_ids else "retry")
    await consume_until(transport, handler, lambda: len(handler.seen) >= 10 + ATTEMPTS, batch=1)
    good_seen = [(e.id, t) for e, t in handler.seen if e.id in good_ids]
    assert sorted(i for i, _ in good_seen) == sorted(good_ids)  # each once
    second_poison = [t for e, t in handler.seen if e.id == poison.id][1]
    assert max(t for _, t in good_seen) < second_poison  # all of them before its first retry
    assert (await settled_stats(transport, {"dead": 1}))["dead"] == 1


async def test_a_handler_that_fails_as_a_whole_gets_its_batch_again(transport):
    sent = envelopes(4)
    await transport.publish(sent)
    calls = []

    async def fails_once(batch):
        calls.append([e.id for e in batch])
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        return ["ack"] * len(batch)

    await consume_until(transport, fails_once, lambda: sum(map(len, calls[1:])) >= 4)
    assert sorted(i for call in calls[1:] for i in call) == sorted(e.id for e in sent)


async def test_stats_count_waiting_and_dead(transport):
    await transport.publish(envelopes(3))
    stats = await settled_stats(transport, {"waiting": 3})
    assert (stats["waiting"], stats["dead"]) == (3, 0)
    handled = await transport.receive_once(Recorder(lambda e: "dead"), 2)
    assert handled == 2
    stats = await settled_stats(transport, {"waiting": 1, "dead": 2})
    assert (stats["waiting"], stats["dead"]) == (1, 2)
    if not isinstance(transport, RabbitTransport):
        assert stats["oldest_age"] is not None and stats["oldest_age"] >= 0
