"""``enjournal messaging worker``: the hub's delivery at scale, one process of it (run
several: relays share the outbox by their claims, consumers share the queue).  It relays the
outbox to the transport and consumes the transport's queue with the receiver until SIGTERM
or SIGINT, then finishes the batch in hand and prints what it did.

Killing it (kill -9) loses nothing: the outbox keeps what was not confirmed (published
again after the claim's lease), the transport delivers again what was not acknowledged, and
the receiver's inbox makes a second delivery harmless."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

log = logging.getLogger("enjournal.messaging")
IDLE_SECONDS = 0.05  # a relay's pause when the outbox had nothing due


async def worker_command(
    database_url: str | None,
    transport_url: str | None,
    batch: int = 100,
    relays: int = 1,
    *,
    queue: str | None = None,
    lease_seconds: float | None = None,
    consumers: int = 1,
) -> int:
    """The worker on the platform at ``database_url`` (default: the settings') and the
    transport at ``transport_url`` ("database" or amqp://, default: the settings');
    ``queue`` names the transport's queue (a second platform, or a test, on one broker);
    ``lease_seconds`` is how soon what a dead worker held is taken over; ``consumers``
    batches are received at once (each on a channel and a database connection of its own:
    the receiver waits on the database most of the time)."""
    from enjournal.bootstrap import close_platform, compose, open_platform
    from enjournal.security.setup import worker_security
    from enjournal.settings import Settings

    settings = Settings.from_env(database_url=database_url, messaging_transport=transport_url)
    security = worker_security(settings)
    platform = await open_platform(compose(settings, security=security))
    await security.start(platform.store)
    hub = _hub(platform, queue, lease_seconds)
    stop = _stop_on_signals()
    published = 0
    try:
        published = await run(hub, stop, batch, relays, consumers)
    except ConnectionError as error:
        print(f"enjournal messaging worker: {error}", file=sys.stderr)
        return 1
    finally:
        await hub.close()
        await security.stop()
        await close_platform(platform)
    counts = {"published": published, **hub.receiver.counts}
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())), flush=True)
    return 0


def _hub(platform, queue: str | None, lease_seconds: float | None):
    """The platform's hub, on a transport with ``queue`` and leases of ``lease_seconds``."""
    from enjournal.services.messaging import relay
    from enjournal.services.messaging.hub import Hub
    from enjournal.services.messaging.transport import QUEUE, open_transport

    transport = open_transport(platform.settings, platform.store)
    if queue and queue != QUEUE:
        transport = _named(platform.settings, platform.store, queue)
    if lease_seconds:  # the relay's claim is a module constant of relay.py
        relay.LEASE_MS = int(lease_seconds * 1000)
        if hasattr(transport, "lease_ms"):
            transport.lease_ms = int(lease_seconds * 1000)
    hub = Hub(platform, transport)
    platform._messaging_hub = hub
    return hub


def _named(settings, store, queue: str):
    from enjournal.services.messaging.transport.database import DatabaseTransport
    from enjournal.services.messaging.transport.rabbit import RabbitTransport

    attempts = settings.messaging_max_attempts
    if settings.messaging_transport == "database":
        return DatabaseTransport(store, max_attempts=attempts, queue=queue)
    return RabbitTransport(
        settings.messaging_transport, max_attempts=attempts, queue=queue, exchange=queue
    )


async def run(hub, stop: asyncio.Event, batch: int, relays: int, consumers: int = 1) -> int:
    """The relays and the consumer until ``stop``; how many messages the relays published."""
    from enjournal.services.messaging.relay import Relay

    transport = await hub.transport()
    answered = asyncio.Event()  # a batch was received: its receipts wait in the outbox

    async def handle(envelopes):
        try:
            return await hub.receiver.handle(envelopes)
        finally:
            answered.set()

    loops = [
        relay_loop(Relay(hub.platform, transport, batch=batch), stop, answered)
        for _ in range(max(1, relays))
    ]
    receiving = [transport.consume(handle, stop, batch) for _ in range(max(1, consumers))]
    results = await asyncio.gather(*loops, *receiving)
    return sum(results[: len(loops)])


async def relay_loop(relay, stop: asyncio.Event, answered: asyncio.Event) -> int:
    """``relay.run_once`` over and over; when the outbox had nothing due, a pause until
    this process received a batch (its receipts are due), ``stop``, or ``IDLE_SECONDS``
    (another process's messages).  A failing pass (the database away) is logged and
    tried again."""
    while not stop.is_set():
        answered.clear()
        try:
            moved = await relay.run_once()
        except Exception:
            log.exception("relay pass failed; tried again")
            moved = 0
        if not moved:
            await _first(stop, answered, seconds=IDLE_SECONDS)
    return relay.published


async def _first(*events: asyncio.Event, seconds: float) -> None:
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
