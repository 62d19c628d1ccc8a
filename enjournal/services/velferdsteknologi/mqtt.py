"""The MQTT consumer: readings from home gateways and devices, through a real broker.

Topics: a device publishes each reading (QoS 1) on ``vkp/<device id>/readings`` and each
safety-alarm event on ``vkp/<device id>/alarms`` (``intake.py``).  The broker
authenticates each device with its own credentials and lets it publish only under its own id
(Mosquitto: a password file and ``pattern write vkp/%u/#``, see docs/velferdsteknologi.md);
the hook then refuses a reading for any patient the device is not assigned to.

Consumers share the load with an MQTT 5 shared subscription (``$share/<group>/vkp/+/readings``):
run as many as needed (``enjournal vkp consume``), each with its own stable client id.  No
loss, no duplicates: a consumer acknowledges a message (manual PUBACK) only after the
transaction that stored it committed, and keeps a persistent session (clean start off, a
session expiry), so after a crash (kill -9) it reconnects under the same id and the broker
sends again what it had not acknowledged; the readings' conditional create stores each
once.  aiomqtt (asyncio over paho-mqtt) is the client; paho's manual acknowledgement is
reached through aiomqtt's client, which has no wrapper for it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from enjournal.services.velferdsteknologi.ingest import Ingest, Message
from enjournal.services.velferdsteknologi.intake import AlarmIntake

log = logging.getLogger("enjournal.velferdsteknologi.mqtt")

TOPICS = ("vkp/+/readings", "vkp/+/alarms")
_DEVICE_TOPIC = re.compile(r"^vkp/([A-Za-z0-9\-.]{1,64})/(readings|alarms)$")
SESSION_EXPIRY = 7 * 24 * 3600  # seconds the broker keeps a stopped consumer's messages


@dataclass(frozen=True)
class Broker:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> Broker:
        """``mqtt://user:password@host:port``."""
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or not parts.hostname:
            raise ValueError("the broker URL must look like mqtt://[user:password@]host[:port]")
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, parts.port or 1883, user, password)


def device_of(topic: str) -> tuple[str, str] | None:
    """(device id, "readings" or "alarms") of a topic; None for any other topic."""
    found = _DEVICE_TOPIC.match(topic)
    return (found.group(1), found.group(2)) if found else None


class Consumer:
    """Consumes readings until ``stop`` is set; each group of messages waiting is stored in
    one transaction, then acknowledged."""

    def __init__(
        self, ingest: Ingest, broker: Broker, client_id: str, *, group="enjournal", batch=100
    ):
        self.ingest, self.broker, self.client_id = ingest, broker, client_id
        self.alarms = AlarmIntake(ingest.hub, ingest.counts, ingest.clock)
        self.group, self.batch = group, batch

    def _client(self) -> aiomqtt.Client:
        connect = Properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = SESSION_EXPIRY
        client = aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=self.broker.username,
            password=self.broker.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=connect,
        )
        client._client.manual_ack_set(True)  # paho: acknowledge only after the commit
        return client

    async def run_forever(self, stop: asyncio.Event) -> None:
        """``run``, reconnecting after a lost broker or a failed store (what was not
        acknowledged comes again with the session)."""
        delay = 0.5
        while not stop.is_set():
            try:
                await self.run(stop)
            except Exception:  # the broker or the database went away: retry, never give up
                log.exception("consumer failed; reconnecting", extra={"fields": {"in": delay}})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def run(self, stop: asyncio.Event) -> None:
        warmed = await self.ingest.warm_up()
        log.info("warmed up", extra={"fields": {"patients": warmed}})
        async with self._client() as client:
            for topic in TOPICS:
                await client.subscribe(f"$share/{self.group}/{topic}", qos=1)
            messages = aiter(client.messages)
            while not stop.is_set():
                group = await self._gather(client, messages, stop)
                if group:
                    await self._store(client, group)

    async def _gather(self, client, messages, stop: asyncio.Event) -> list:
        """The next message (waiting at most a second, to notice ``stop``) and whatever else
        has already arrived, up to the batch size."""
        try:
            first = await asyncio.wait_for(anext(messages), timeout=1.0)
        except TimeoutError:
            return []
        group = [first]
        while len(group) < self.batch and len(client.messages) > 0:
            group.append(await anext(messages))
        return group

    async def _store(self, client, group: list) -> None:
        wanted: dict[str, list[Message]] = {"readings": [], "alarms": []}
        for m in group:
            found = device_of(m.topic.value)
            if found is None:  # the broker's ACL should have stopped it: count, log, drop
                self.ingest.counts["refused:topic"] += 1
                fields = {"topic": m.topic.value}
                log.warning("message on an unknown topic", extra={"fields": fields})
                continue
            wanted[found[1]].append(Message(found[0], _bytes(m.payload)))
        if wanted["alarms"]:  # first: a fall waits for no batch of readings
            await self.alarms.handle(wanted["alarms"])
        if wanted["readings"]:
            await self.ingest.handle(wanted["readings"])
        for m in group:  # committed (or refused for good): now the broker may forget them
            client._client.ack(m.mid, m.qos)


def _bytes(payload) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode()
