"""The outbox relay: hands what the outbox holds to the transport and forgets it only once
the transport confirmed it (publisher confirms, or the database queue's commit).

Claim (a lease on the rows, committed) -> publish -> delete, each its own transaction, so
several relays share one outbox, a relay that dies after publishing but before deleting
publishes again after the lease (the receiver's inbox makes that one effect), and a
transport that refuses gets the rows back after a backoff that doubles.
"""

from __future__ import annotations

import logging

from enjournal.services.messaging.rules import backoff_ms
from enjournal.services.messaging.transport import Envelope, Transport
from enjournal.storage import messaging as db

log = logging.getLogger("enjournal.messaging")
LEASE_MS = 30_000


class Relay:
    def __init__(self, platform, transport: Transport, batch: int = 500):
        self.platform, self.transport, self.batch = platform, transport, batch
        self.published = 0

    def now(self) -> int:
        return int(self.platform.clock().timestamp() * 1000)

    async def run_once(self) -> int:
        """One pass: publish up to ``batch`` due messages; how many were confirmed."""
        now = self.now()
        async with self.platform.store.transaction() as tx:
            claimed = await db.claim(tx, now, LEASE_MS, self.batch)
        if not claimed:
            return 0
        ids = [out.id for out in claimed]
        try:
            await self.transport.publish(
                [Envelope(o.id, o.route, o.content_type, o.body, o.attempts) for o in claimed]
            )
        except Exception as error:  # the broker is away or refused: keep them, try later
            log.warning(
                "relay: %d messages not confirmed (%s); retried", len(ids), type(error).__name__
            )
            async with self.platform.store.transaction() as tx:
                await db.postpone(tx, ids, now + backoff_ms(claimed[0].attempts + 1))
            return 0
        async with self.platform.store.transaction() as tx:
            await db.published(tx, ids, self.now())
        self.published += len(ids)
        return len(ids)

    async def drain(self) -> int:
        """Passes until the outbox has nothing due."""
        total = 0
        while done := await self.run_once():
            total += done
        return total
