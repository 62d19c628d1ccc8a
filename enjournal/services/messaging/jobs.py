"""Messaging's scheduled jobs: the relay and the receiving side (in process on the embedded
transport; ``enjournal messaging worker`` runs them continuously at scale), overdue receipts
and the queue-age alert."""

from __future__ import annotations

import logging
import uuid

from enjournal.fhir.norwegian_ids import OID_HER_ID
from enjournal.services import Job
from enjournal.services.messaging.hub import hub_of
from enjournal.storage import messaging as db

log = logging.getLogger("enjournal.messaging")
ALERTS = 200  # overdue messages alerted per pass


def all_jobs(platform) -> list[Job]:
    hub = hub_of(platform)

    async def relay(store, now) -> int:
        return await (await hub.relay()).run_once()

    async def deliver(store, now) -> int:
        return await hub.deliver_once()

    async def overdue(store, now) -> int:
        return await overdue_receipts(platform, store, now)

    async def queue_age(store, now) -> int:
        return await check_queue_age(platform, hub, store, now)

    async def prune(store, now) -> int:
        keep_ms = platform.settings.messaging_keep_days * 86_400_000
        async with store.transaction() as tx:
            return await db.prune(tx, int(now.timestamp() * 1000) - keep_ms)

    addresses = None
    if platform.settings.messaging_addresses:  # the loader (and validation) only then
        from enjournal.services.messaging.register_file import addresses_job

        addresses = addresses_job(platform)
    return [
        *([addresses] if addresses else []),
        Job("messaging-relay", 0.5, relay),
        Job("messaging-deliver", 0.5, deliver),
        Job("messaging-overdue", 60.0, overdue),
        Job("messaging-queue-age", 60.0, queue_age),
        Job("messaging-prune", 3600.0, prune),
    ]


async def overdue_receipts(platform, store, now) -> int:
    """Messages with no receipt within ``messaging_receipt_seconds``: a Task to the sender
    (owner: the sender's HER-id) says which, once per message."""
    limit = int(now.timestamp() * 1000) - platform.settings.messaging_receipt_seconds * 1000
    async with store.transaction() as tx:
        late = await db.overdue(tx, limit, ALERTS)
        for message in late:
            await tx.create(_overdue_task(message, now.isoformat()), id_=uuid.uuid4().hex)
        await db.mark_overdue(tx, [m.id for m in late], int(now.timestamp() * 1000))
    for message in late:
        log.warning(
            "message overdue: no receipt",
            extra={"fields": {"message": message.id, "sender": message.sender}},
        )
    return len(late)


def _overdue_task(message: db.Message, now_iso: str) -> dict:
    task: dict = {
        "resourceType": "Task",
        "identifier": [{"system": "urn:enjournal:message-id", "value": message.id}],
        "status": "requested",
        "intent": "order",
        "priority": "urgent",
        "code": {"text": "Manglende applikasjonskvittering"},
        "description": (
            f"{message.type} {message.id} to HER-id {message.receiver} has no receipt yet: "
            "check that it arrived, or send it another way"
        ),
        "authoredOn": now_iso,
        "owner": {"identifier": {"system": OID_HER_ID, "value": message.sender}},
    }
    if message.patient:
        task["for"] = {"reference": f"Patient/{message.patient}"}
    return task


async def check_queue_age(platform, hub, store, now) -> int:
    """Warn when the oldest message waiting in the outbox or the transport is older than
    ``messaging_queue_age_seconds``; returns 1 when it warned."""
    limit = platform.settings.messaging_queue_age_seconds
    async with store.transaction(write=False) as tx:
        oldest = await db.oldest_unpublished(tx)
        dead = await db.dead_outgoing(tx, 1)
    if dead:
        log.error("messaging: the outbox holds messages the transport refused (dead letters)")
    ages = [now.timestamp() - oldest / 1000] if oldest else []
    stats = await (await hub.transport()).stats()
    if stats.get("oldest_age") is not None:
        ages.append(float(stats["oldest_age"] or 0))
    if ages and max(ages) > limit:
        log.warning(
            "messaging queue age over its limit",
            extra={"fields": {"age_seconds": round(max(ages)), "limit": limit, **stats}},
        )
        return 1
    return 0
