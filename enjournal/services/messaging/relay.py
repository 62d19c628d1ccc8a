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
GIVE_UP = 3  # refusals in a row, none confirmed: the broker is away, not one message


def _envelope(out: db.Outgoing) -> Envelope:
    return Envelope(out.id, out.route, out.content_type, out.body, out.attempts)


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
        try:
            await self.transport.publish([_envelope(o) for o in claimed])
            confirmed = [o.id for o in claimed]
        except Exception as error:  # the broker is away, or refused one of them
            confirmed = await self._one_by_one(claimed, error, now)
        if confirmed:
            async with self.platform.store.transaction() as tx:
                await db.published(tx, confirmed, self.now())
        self.published += len(confirmed)
        return len(confirmed)

    async def _one_by_one(self, claimed: list[db.Outgoing], error: Exception, now: int):
        """A refused batch, each message alone: one the broker refuses (too large, say)
        holds back only itself, and after ``messaging_max_attempts`` tries it is dead-
        lettered in the outbox; when the broker is away (``GIVE_UP`` refusals in a row) the
        rest wait for the next pass."""
        log.warning("relay: a batch of %d not confirmed (%s)", len(claimed), type(error).__name__)
        confirmed: list[str] = []
        refused: list[tuple[db.Outgoing, str]] = []
        for n, out in enumerate(claimed):
            if len(refused) >= GIVE_UP and not confirmed:
                refused += [
                    (o, "not tried: the transport refused the ones before") for o in claimed[n:]
                ]
                break
            try:
                await self.transport.publish([_envelope(out)])
                confirmed.append(out.id)
            except Exception as single:
                refused.append((out, type(single).__name__))
        await self._refused(refused, now)
        return confirmed

    async def _refused(self, refused: list[tuple[db.Outgoing, str]], now: int) -> None:
        limit = self.platform.settings.messaging_max_attempts
        async with self.platform.store.transaction() as tx:
            for out, why in refused:
                if out.attempts + 1 >= limit:
                    log.error(
                        "relay: message %s dead-lettered in the outbox: %s", out.id[:100], why
                    )
                    await db.bury(tx, out.id, now, f"refused {limit} times: {why}")
                else:
                    await db.postpone(tx, [out.id], now + backoff_ms(out.attempts + 1))

    async def drain(self) -> int:
        """Passes until the outbox has nothing due."""
        total = 0
        while done := await self.run_once():
            total += done
        return total
