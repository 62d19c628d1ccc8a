"""Messaging's jobs: a message with no receipt within the deadline raises one alert (a Task
to the sender), the queue-age check warns when the oldest waiting message is too old, the
relay keeps what the transport refuses."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from enjournal.services.messaging import rules
from enjournal.services.messaging.hub import Hub, hub_of
from enjournal.services.messaging.jobs import check_queue_age, overdue_receipts
from enjournal.services.messaging.relay import Relay
from enjournal.services.messaging.transport import Envelope
from enjournal.storage import messaging as db
from tests.services.messaging import world

pytestmark = pytest.mark.backends("sqlite", "postgres")


@pytest.fixture
async def loaded(platform):
    await world.load(platform.store)
    return platform


async def send(client, bundle):
    response = await client.post(
        "/fhir/$process-message",
        content=orjson.dumps(bundle),
        headers={"content-type": "application/fhir+json"},
    )
    assert response.status_code == 202, response.text
    return bundle["entry"][0]["resource"]["id"]


async def test_a_message_without_receipt_raises_one_alert_to_its_sender(loaded, client):
    message_id = await send(
        client,
        world.message("EPIKRISE", world.HOSPITAL_HER, world.GP_HER, [world.discharge_summary()]),
    )
    await hub_of(loaded).settle()
    now = datetime.now(UTC)
    assert await overdue_receipts(loaded, loaded.store, now) == 0  # not late yet
    late = now + timedelta(seconds=loaded.settings.messaging_receipt_seconds + 1)
    assert await overdue_receipts(loaded, loaded.store, late) == 1
    assert await overdue_receipts(loaded, loaded.store, late) == 0  # once
    tasks = (
        await client.get("/fhir/Task?identifier=urn:enjournal:message-id|" + message_id)
    ).json()
    assert tasks["total"] == 1
    task = tasks["entry"][0]["resource"]
    assert task["owner"]["identifier"]["value"] == world.HOSPITAL_HER
    assert task["for"] == {"reference": "Patient/kari"}
    status = (await client.get(f"/fhir/$message-status?id={message_id}")).json()
    overdue = [p for p in status["parameter"] if p["name"] == "overdue"]
    assert overdue == [{"name": "overdue", "valueBoolean": False}]  # by the server's clock


async def test_an_answered_message_is_never_overdue(loaded, client):
    await send(
        client, world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    )
    await hub_of(loaded).settle()  # the hospital answers automatically
    late = datetime.now(UTC) + timedelta(days=2)
    assert await overdue_receipts(loaded, loaded.store, late) == 0


async def test_queue_age_warns_about_an_old_undelivered_message(loaded, client, caplog):
    await send(
        client, world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    )
    hub = hub_of(loaded)
    now = datetime.now(UTC)
    assert await check_queue_age(loaded, hub, loaded.store, now) == 0
    later = now + timedelta(seconds=loaded.settings.messaging_queue_age_seconds + 5)
    with caplog.at_level(logging.WARNING, logger="enjournal.messaging"):
        assert await check_queue_age(loaded, hub, loaded.store, later) == 1
    assert "queue age" in caplog.text


class Refusing:
    """A transport whose broker is away."""

    async def start(self):
        return None

    async def publish(self, envelopes):
        raise ConnectionError("broker away")


async def test_the_relay_keeps_what_the_transport_refuses(loaded, client):
    message_id = await send(
        client, world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    )
    relay = Relay(loaded, Refusing())
    assert await relay.run_once() == 0
    async with loaded.store.transaction(write=False) as tx:
        assert await db.oldest_unpublished(tx) is not None  # still in the outbox
        row = await db.get(tx, message_id)
    assert row is not None and row.published is None
    hub = Hub(loaded)  # the database transport, as configured
    await hub.settle()  # within the backoff: nothing moves
    async with loaded.store.transaction(write=False) as tx:
        assert (await db.get(tx, message_id)).published is None
    loaded.clock = lambda: datetime.now(UTC) + timedelta(seconds=5)  # after the backoff
    await hub.settle()
    async with loaded.store.transaction(write=False) as tx:
        assert (await db.get(tx, message_id)).delivered is not None


async def test_old_answered_bodies_are_pruned_and_late_duplicates_still_stopped(loaded, client):
    bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    message_id = await send(client, bundle)
    await hub_of(loaded).settle()
    later = int((datetime.now(UTC) + timedelta(days=1)).timestamp() * 1000)
    async with loaded.store.transaction() as tx:
        assert await db.prune(tx, later) == 2  # the referral and its receipt
    gone = await client.get(f"/fhir/$message?id={message_id}")
    assert gone.status_code == 410 and "in the record" in gone.text
    status = (await client.get(f"/fhir/$message-status?id={message_id}")).json()
    assert any(p["name"] == "receipt" for p in status["parameter"])
    envelope = Envelope(message_id, world.HOSPITAL_HER, rules.FHIR_JSON, orjson.dumps(bundle))
    assert await hub_of(loaded).receiver.handle([envelope]) == ["ack"]
    assert (await client.get("/fhir/ServiceRequest")).json()["total"] == 1


class RefusingOne:
    """A broker that refuses one message every time (RabbitMQ's max message size, say)."""

    def __init__(self, refused: str):
        self.refused, self.published = refused, []

    async def publish(self, envelopes):
        if any(e.id == self.refused for e in envelopes):
            raise RuntimeError("message too large")
        self.published += [e.id for e in envelopes]


async def test_a_message_the_broker_always_refuses_is_dead_lettered_in_the_outbox(loaded, client):
    poison = await send(
        client, world.message("DIALOG_NOTAT", world.GP_HER, world.HOSPITAL_HER, [world.dialogue()])
    )
    good = await send(
        client, world.message("DIALOG_NOTAT", world.GP_HER, world.HOSPITAL_HER, [world.dialogue()])
    )
    broker = RefusingOne(poison)
    relay = Relay(loaded, broker)
    start = datetime.now(UTC)
    for n in range(loaded.settings.messaging_max_attempts):
        loaded.clock = lambda n=n: start + timedelta(hours=n)  # past each backoff
        await relay.run_once()
    assert broker.published == [good]
    async with loaded.store.transaction(write=False) as tx:
        dead = await db.dead_outgoing(tx)
        assert await db.oldest_unpublished(tx) is None  # nothing left waiting
    assert [(d[0], d[2]) for d in dead] == [(poison, loaded.settings.messaging_max_attempts)]
    assert "RuntimeError" in dead[0][4]
