"""One platform's messaging parts, built once: the transport (opened on first use), the
relay and the receiver.  The jobs, the worker command and the tests use it."""

from __future__ import annotations

import asyncio

from enjournal.services.messaging.receiving import Receiver
from enjournal.services.messaging.relay import Relay
from enjournal.services.messaging.transport import Transport, open_transport


class Hub:
    def __init__(self, platform, transport: Transport | None = None):
        self.platform = platform
        self._transport = transport
        self._started = False
        self._lock = asyncio.Lock()
        self.receiver = Receiver(platform)

    async def transport(self) -> Transport:
        async with self._lock:
            if self._transport is None:
                self._transport = open_transport(self.platform.settings, self.platform.store)
            if not self._started:
                await self._transport.start()
                self._started = True
        return self._transport

    async def relay(self) -> Relay:
        return Relay(self.platform, await self.transport())

    async def deliver_once(self, batch: int = 200) -> int:
        """One pass of the receiving side: up to ``batch`` messages from the transport."""
        transport = await self.transport()
        return await transport.receive_once(self.receiver.handle, batch)

    async def settle(self, rounds: int = 20) -> None:
        """Relay and deliver until nothing moves (tests and the demo's in-process hub)."""
        relay = await self.relay()
        for _ in range(rounds):
            moved = await relay.drain() + await self.deliver_once()
            if not moved:
                return

    async def close(self) -> None:
        if self._transport is not None and self._started:
            await self._transport.close()
            self._started = False


def hub_of(platform) -> Hub:
    """The platform's hub (one per platform)."""
    hub = getattr(platform, "_messaging_hub", None)
    if hub is None:
        hub = Hub(platform)
        platform._messaging_hub = hub
    return hub
