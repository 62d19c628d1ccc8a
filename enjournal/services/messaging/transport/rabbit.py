"""The RabbitMQ transport (aio-pika): messaging at scale, keeping the transport's promises
(``transport/__init__.py``) with the broker's own means.

Topology, all durable: a topic exchange ``enjournal.messaging``; messages are published to
it with routing key ``msg.<HER-id>``, persistent (delivery mode 2), ``message_id`` = the
message id; the queue ``enjournal.messages`` takes ``msg.#``.

Why a quorum queue: a consumer that dies (kill -9, a lost connection) before it acked gets
its messages delivered again, and RabbitMQ counts those deliveries only on quorum queues
(``x-delivery-count``); with ``x-delivery-limit`` a message that kills every consumer it
reaches is dead-lettered by the broker instead of looping forever.  It is also RabbitMQ's
recommended durable queue (replicated when the broker is a cluster).  Crash redeliveries
count towards ``max_attempts`` (the envelope's ``attempts``) like the handler's retries.

Retries without the delayed-message plugin: a message the handler asks to retry is
published (confirmed) to a retry queue of its delay, ``enjournal.messages.retry.<ms>``,
whose ``x-message-ttl`` expires it back into the exchange (dead-lettering, routing key
``msg.retry``); its attempt count and route travel in headers.  One queue per delay keeps
expiry in order (a TTL queue expires only from its head).  After ``max_attempts``
deliveries, or at once for "dead", it is published to ``enjournal.messages.dead`` with the
reason in a header; the original is acked only after that publish was confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from enjournal.services.messaging.rules import backoff_ms
from enjournal.services.messaging.transport import QUEUE, Envelope, Handler, Outcome

log = logging.getLogger("enjournal.messaging")
EXCHANGE = "enjournal.messaging"
ATTEMPTS = "x-enjournal-attempts"  # deliveries before this one that the handler retried
ROUTE = "x-enjournal-route"
REASON = "x-enjournal-reason"
LINGER_SECONDS = 0.02  # how long a batch waits to fill once its first message is in hand
CONFIRM_SECONDS = 30.0
# The broker's own limit (x-delivery-limit) is the safety net for a message that kills its
# consumers: RabbitMQ 3.x counts every return, also of prefetched messages a consumer gave
# back when it stopped, so it is set well above ``max_attempts``, which the handler's
# retries and the redeliveries after a crash (``x-delivery-count``) reach first.
CRASH_FACTOR = 4


def safe_url(url: str) -> str:
    """``url`` without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RabbitTransport:
    def __init__(
        self,
        url: str,
        *,
        max_attempts: int = 5,
        queue: str = QUEUE,
        exchange: str = EXCHANGE,
        backoff_base_ms: int = 1000,
        name: str | None = None,
    ):
        self.url, self.max_attempts = url, max_attempts
        self.queue_name, self.exchange_name = queue, exchange
        self.dead_name = f"{queue}.dead"
        self.backoff_base_ms = backoff_base_ms
        # how the broker's operators (rabbitmqctl list_connections) tell this process
        self.name = name or f"enjournal {queue} pid {os.getpid()}"
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._publisher: aio_pika.abc.AbstractChannel | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._retry_queues: set[str] = set()
        self._lock = asyncio.Lock()

    # -- connection and topology ----------------------------------------------------------

    async def start(self) -> None:
        try:
            self._connection = await aio_pika.connect_robust(
                self.url, client_properties={"connection_name": self.name}, reconnect_interval=1
            )
        except Exception as error:  # aio-pika's message may carry the URL: name the host only
            raise ConnectionError(f"RabbitMQ at {safe_url(self.url)}: {error!s}"[:300]) from None
        self._publisher = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._exchange = await self._publisher.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await self._publisher.declare_queue(self.dead_name, durable=True)
        queue = await self._publisher.declare_queue(self.queue_name, durable=True, arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": self.max_attempts * CRASH_FACTOR,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dead_name,
        })  # fmt: skip
        await queue.bind(self._exchange, "msg.#")

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    def _ready(self) -> tuple[aio_pika.abc.AbstractChannel, aio_pika.abc.AbstractExchange]:
        if self._publisher is None or self._exchange is None:
            raise RuntimeError("RabbitTransport.start() was not called")
        return self._publisher, self._exchange

    async def _retry_queue(self, delay_ms: int) -> str:
        """The retry queue of ``delay_ms`` (declared on first use)."""
        name = f"{self.queue_name}.retry.{delay_ms}"
        async with self._lock:
            if name not in self._retry_queues:
                channel, _ = self._ready()
                await channel.declare_queue(name, durable=True, arguments={
                    "x-message-ttl": delay_ms,
                    "x-dead-letter-exchange": self.exchange_name,
                    "x-dead-letter-routing-key": "msg.retry",
                })  # fmt: skip
                self._retry_queues.add(name)
        return name

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Every envelope confirmed by the broker, or an exception (nacked, returned as
        unroutable, or no confirmation in time)."""
        _, exchange = self._ready()
        await asyncio.gather(*(
            exchange.publish(
                _message(e, {ROUTE: e.route}), f"msg.{e.route}",
                mandatory=True, timeout=CONFIRM_SECONDS,
            )
            for e in envelopes
        ))  # fmt: skip

    async def _publish_to_queue(self, queue: str, message: aio_pika.Message) -> None:
        channel, _ = self._ready()
        await channel.default_exchange.publish(
            message, queue, mandatory=True, timeout=CONFIRM_SECONDS
        )

    # -- consuming ------------------------------------------------------------------------

    async def consume(self, handle: Handler, stop: asyncio.Event, batch: int = 100) -> None:
        """Hand batches to ``handle`` until ``stop`` is set; up to ``batch`` deliveries in
        flight (prefetch) and per call, gathered for at most ``LINGER_SECONDS``."""
        assert self._connection is not None, "start() first"
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=batch)
        # declared (passively) on this robust channel, so that its consumer is restored
        # when the connection comes back
        queue = await channel.declare_queue(self.queue_name, passive=True)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        tag = await queue.consume(inbox.put)
        try:
            while not stop.is_set():
                taken = await _gather(inbox, stop, batch)
                if taken:
                    await self._handle_or_leave(handle, taken)
        finally:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
            with contextlib.suppress(Exception):
                await channel.close()  # what was not acked goes back to the queue

    async def _handle_or_leave(self, handle: Handler, taken: list) -> None:
        """``_handle``; when the connection was lost meanwhile (the robust connection comes
        back by itself), the batch is left unacknowledged: the broker delivers it again."""
        try:
            await self._handle(handle, taken)
        except Exception as error:  # the handler's own failures were retried in _handle
            log.warning(
                "messaging: %d messages not settled (%s); the broker delivers them again",
                len(taken), type(error).__name__,
            )  # fmt: skip

    async def receive_once(self, handle: Handler, batch: int = 100) -> int:
        """Up to ``batch`` waiting messages (basic.get) handed to ``handle`` at once."""
        assert self._connection is not None, "start() first"
        channel = await self._connection.channel()
        try:
            queue = await channel.get_queue(self.queue_name, ensure=False)
            taken: list[AbstractIncomingMessage] = []
            while len(taken) < batch:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                taken.append(message)
            if taken:
                await self._handle(handle, taken)
            return len(taken)
        finally:
            await channel.close()

    async def _handle(self, handle: Handler, taken: list[AbstractIncomingMessage]) -> None:
        envelopes = [_envelope(m) for m in taken]
        try:
            outcomes = await handle(envelopes)
        except Exception:  # the handler failed as a whole: every one is retried
            log.exception("messaging: the handler failed on %d messages", len(taken))
            outcomes = ["retry"] * len(taken)
        await asyncio.gather(*(
            self._settle(e, o) for e, o in zip(envelopes, outcomes, strict=True)
        ))  # fmt: skip
        # one ack for the batch: its deliveries are the oldest unacked on this channel (a
        # channel's batches are handled one after another), retries and dead letters
        # are confirmed in their queues by now
        await taken[-1].ack(multiple=True)

    async def _settle(self, envelope: Envelope, outcome: Outcome) -> None:
        delivery = envelope.attempts + 1
        if outcome == "dead" or (outcome == "retry" and delivery >= self.max_attempts):
            reason = f"{outcome} after {delivery} deliveries"
            await self._publish_to_queue(self.dead_name, _message(envelope, {REASON: reason}))
        elif outcome == "retry":
            delay = backoff_ms(delivery, self.backoff_base_ms)
            headers = {ROUTE: envelope.route, ATTEMPTS: delivery}
            await self._publish_to_queue(
                await self._retry_queue(delay), _message(envelope, headers)
            )

    # -- state ----------------------------------------------------------------------------

    async def stats(self) -> dict[str, float | int | None]:
        """Depths by passive declaration (on a channel of its own: a missing queue closes
        it); the broker does not tell the age of the oldest message."""
        assert self._connection is not None, "start() first"
        channel = await self._connection.channel()
        try:
            waiting = await channel.declare_queue(self.queue_name, passive=True)
            dead = await channel.declare_queue(self.dead_name, passive=True)
        finally:
            await channel.close()
        return {
            "waiting": waiting.declaration_result.message_count,
            "dead": dead.declaration_result.message_count,
            "oldest_age": None,
        }

    async def drop(self) -> None:
        """Delete this transport's queues and exchange (tests and benchmarks)."""
        channel, _ = self._ready()
        for name in (self.queue_name, self.dead_name, *self._retry_queues):
            await channel.queue_delete(name)
        await channel.exchange_delete(self.exchange_name)


def _message(envelope: Envelope, headers: dict) -> aio_pika.Message:
    return aio_pika.Message(
        envelope.body,
        message_id=envelope.id,
        content_type=envelope.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers=headers,
        timestamp=time.time(),
    )


def _envelope(message: AbstractIncomingMessage) -> Envelope:
    """The envelope of a delivery; its attempts count the handler's retries (our header)
    and the broker's redeliveries after a consumer died (``x-delivery-count``)."""
    headers = message.headers or {}
    route = str(headers.get(ROUTE) or (message.routing_key or "").removeprefix("msg."))
    attempts = _count(headers.get(ATTEMPTS)) + _count(headers.get("x-delivery-count"))
    return Envelope(
        str(message.message_id or ""),
        route,
        message.content_type or "application/octet-stream",
        message.body,
        attempts,
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) else 0


async def _gather(
    inbox: asyncio.Queue[AbstractIncomingMessage], stop: asyncio.Event, batch: int
) -> list[AbstractIncomingMessage]:
    """The first delivery (or nothing once ``stop`` is set), then what else arrives within
    ``LINGER_SECONDS``, up to ``batch``."""
    first = asyncio.ensure_future(inbox.get())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({first, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not first.done():
        first.cancel()
        return []
    taken = [first.result()]
    deadline = asyncio.get_running_loop().time() + LINGER_SECONDS
    while len(taken) < batch:
        if not inbox.empty():
            taken.append(inbox.get_nowait())
            continue
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        try:
            taken.append(await asyncio.wait_for(inbox.get(), left))
        except TimeoutError:
            break
    return taken
