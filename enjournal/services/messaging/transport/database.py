"""The embedded transport: a queue in the platform's own database (``message_queue``),
for ``make demo`` and any site without a broker.  It keeps the transport's promises
(``transport/__init__.py``) with transactions: publish is a commit; a consumer's lease
ends if it dies, and the message is taken again; retries wait with a doubling backoff;
after ``max_attempts`` deliveries a message is dead-lettered."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from enjournal.services.messaging.rules import backoff_ms
from enjournal.services.messaging.transport import QUEUE, Envelope, Handler
from enjournal.storage import message_queue as db

log = logging.getLogger("enjournal.messaging")
LEASE_MS = 60_000
IDLE_SECONDS = 0.2


def _now() -> int:
    return int(time.time() * 1000)


class DatabaseTransport:
    def __init__(
        self,
        store,
        *,
        max_attempts: int = 5,
        queue: str = QUEUE,
        backoff_base_ms: int = 1000,
        lease_ms: int = LEASE_MS,
    ):
        self.store, self.max_attempts, self.queue = store, max_attempts, queue
        self.backoff_base_ms, self.lease_ms = backoff_base_ms, lease_ms
        self._published = asyncio.Event()  # wakes this process's idle consumers at once

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        rows = [(e.id, e.route, e.content_type, e.body) for e in envelopes]
        async with self.store.transaction() as tx:
            await db.put(tx, self.queue, rows, _now())
        self._published.set()

    async def receive_once(self, handle: Handler, batch: int = 100) -> int:
        async with self.store.transaction() as tx:
            taken = await db.take(tx, self.queue, _now(), self.lease_ms, batch)
        if not taken:
            return 0
        envelopes = [Envelope(r[1], r[2], r[3], bytes(r[4]), r[5] - 1) for r in taken]
        try:
            outcomes = await handle(envelopes)
        except Exception:  # the handler failed as a whole: every one is retried
            outcomes = ["retry"] * len(envelopes)
        await self._settle(taken, outcomes)
        return len(taken)

    async def _settle(self, taken: list[tuple], outcomes: list) -> None:
        now = _now()
        async with self.store.transaction() as tx:
            await db.done(tx, [r[0] for r, o in zip(taken, outcomes, strict=True) if o == "ack"])
            for row, outcome in zip(taken, outcomes, strict=True):
                if outcome == "dead" or (outcome == "retry" and row[5] >= self.max_attempts):
                    await db.bury(tx, row[0], now, f"{outcome} after {row[5]} deliveries")
                elif outcome == "retry":
                    await db.later(tx, row[0], now + backoff_ms(row[5], self.backoff_base_ms))

    async def consume(self, handle: Handler, stop: asyncio.Event, batch: int = 100) -> None:
        while not stop.is_set():
            self._published.clear()
            try:
                received = await self.receive_once(handle, batch)
            except Exception:  # the database away: what was taken comes back after its lease
                log.exception("messaging: the database queue failed; tried again")
                received = 0
            if not received:
                await _first(stop, self._published, IDLE_SECONDS)

    async def stats(self) -> dict[str, float | int | None]:
        async with self.store.transaction(write=False) as tx:
            waiting, dead, oldest = await db.stats(tx, self.queue)
        age = None if oldest is None else max(0.0, (_now() - oldest) / 1000)
        return {"waiting": waiting, "dead": dead, "oldest_age": age}


async def _first(a: asyncio.Event, b: asyncio.Event, seconds: float) -> None:
    """Wait until ``a`` or ``b`` is set, or ``seconds`` passed (another process's publish
    is seen by polling)."""
    waits = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
