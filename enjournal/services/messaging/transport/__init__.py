"""The transport between organisations, behind one interface: RabbitMQ (``rabbit.py``,
aio-pika, at scale) or a queue in the platform's own database (``database.py``, the embedded
default).  ``Settings.messaging_transport`` picks one: ``database`` or an ``amqp://`` URL.

Guarantees both give (tests/services/messaging/test_transport.py holds them to it):

- ``publish`` returns only when every envelope is safely held by the transport (RabbitMQ's
  publisher confirms; the database's commit); it raises otherwise, and the caller keeps them
  in its outbox and tries again.
- ``consume`` hands batches to ``handle``, which returns one ``Outcome`` per envelope.  An
  envelope is acknowledged only after ``handle`` returned for it ("ack"): a consumer killed
  before that gets it delivered again (at least once; the inbox makes it once in effect).
  "retry" delivers it again after a backoff that doubles (``rules.backoff_ms``); after
  ``max_attempts`` deliveries, and at once for "dead", it goes to the dead-letter queue, so
  a poison message never blocks the ones behind it.
- ``receive_once`` is one bounded pass of ``consume`` (up to ``batch`` envelopes, then it
  returns how many it handed over): the in-process jobs and the tests use it.
- ``stats`` tells the depth of the queue and dead-letter queue and the age of the oldest
  waiting envelope where the transport knows it, for the queue-age alert and /metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

Outcome = Literal["ack", "retry", "dead"]
QUEUE = "enjournal.messages"  # the hub's inbound queue: every message to a party here


@dataclass(frozen=True)
class Envelope:
    """One message in transit."""

    id: str  # the message id: the receiver's deduplication key
    route: str  # the receiver's HER-id (AMQP routing key ``msg.<HER-id>``)
    content_type: str  # application/fhir+json or application/xml
    body: bytes
    attempts: int = 0  # deliveries before this one (set by the transport)


Handler = Callable[[list[Envelope]], Awaitable[list[Outcome]]]


class Transport(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, envelopes: Sequence[Envelope]) -> None: ...

    async def consume(self, handle: Handler, stop: asyncio.Event, batch: int = 100) -> None: ...

    async def receive_once(self, handle: Handler, batch: int = 100) -> int: ...

    async def stats(self) -> dict[str, float | int | None]: ...


def open_transport(settings, store) -> Transport:
    """The transport ``settings.messaging_transport`` names, on ``store`` for the database."""
    url = settings.messaging_transport
    if url.startswith(("amqp://", "amqps://")):
        from enjournal.services.messaging.transport.rabbit import RabbitTransport

        return RabbitTransport(url, max_attempts=settings.messaging_max_attempts)
    if url != "database":
        raise ValueError("messaging_transport is 'database' or an amqp:// URL")
    from enjournal.services.messaging.transport.database import DatabaseTransport

    return DatabaseTransport(store, max_attempts=settings.messaging_max_attempts)
