"""``enjournal vkp consume``: one MQTT consumer of device readings (run several: they share
the subscription).  It stops on SIGTERM or SIGINT after the group in hand is stored and
acknowledged, and prints what it did."""

from __future__ import annotations

import asyncio
import signal
import sys


async def consume_command(
    database_url: str, broker_url: str, client_id: str, group: str, batch: int
) -> int:
    from enjournal.bootstrap import close_platform, compose, open_platform
    from enjournal.security.setup import worker_security
    from enjournal.services.velferdsteknologi.ingest import Ingest
    from enjournal.services.velferdsteknologi.mqtt import Broker, Consumer
    from enjournal.settings import Settings

    try:
        broker = Broker.from_url(broker_url)
    except ValueError as error:
        print(f"enjournal vkp consume: {error}", file=sys.stderr)
        return 2
    settings = Settings.from_env(database_url=database_url)
    security = worker_security(settings)
    platform = await open_platform(compose(settings, security=security))
    await security.start(platform.store)
    ingest = Ingest(platform)
    stop = _stop_on_signals()
    try:
        await Consumer(ingest, broker, client_id, group=group, batch=batch).run_forever(stop)
    finally:
        await security.stop()
        await close_platform(platform)
    print(" ".join(f"{k}={v}" for k, v in sorted(ingest.counts.items())) or "nothing consumed")
    return 0


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
