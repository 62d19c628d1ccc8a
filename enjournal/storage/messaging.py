"""Messaging's SQL (services/messaging, docs/messaging.md): the ledger, the outbox, the inbox.

- ``messages``: one row per message a party of this platform sent or received; the sender's
  view (published, delivered, its receipt, overdue) and the receiver's (delivered, read).
- ``message_outbox``: what is still to be handed to the transport.  A row is written in the
  same transaction as the change that caused it (a message sent, a record import with its
  receipt) and deleted in the transaction that records the broker's confirmation, so a
  crash in between publishes it again (the receiver's inbox makes that harmless).
- ``message_inbox``: the ids already processed; ``first_seen`` is the deduplication.

Times are epoch milliseconds.  The embedded transport's queue (``message_queue``) has its
own module, ``enjournal.storage.message_queue``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_COLUMNS = (
    "id, type, sender, receiver, patient, refers, content_type, body, created, published, "
    "delivered, read_at, receipt, receipt_id, receipt_at, errors, overdue"
)
_LIST_COLUMNS = _COLUMNS.replace("body, ", "")


@dataclass
class Message:
    """One row of ``messages``; ``body`` is empty when listed (``listing``)."""

    id: str
    type: str  # kodeverk 8279, e.g. HENVIS, EPIKRISE, DIALOG_FORESPORSEL, APPREC
    sender: str  # HER-id
    receiver: str  # HER-id
    patient: str | None = None  # the Patient's id in the record, once known
    refers: str | None = None  # APPREC: the message it answers; DIALOG_SVAR: the question
    content_type: str = "application/fhir+json"
    body: bytes = b""
    created: int = 0
    published: int | None = None
    delivered: int | None = None
    read_at: int | None = None
    receipt: str | None = None  # kodeverk 8258: 1 OK, 2 avvist, 3 OK med feil i delmelding
    receipt_id: str | None = None
    receipt_at: int | None = None
    errors: list | None = None  # [[code (8221), text], ...] of the receipt
    overdue: int | None = None  # when the overdue alert was raised


@dataclass(frozen=True)
class Outgoing:
    """One row of ``message_outbox``."""

    id: str
    route: str  # the receiver's HER-id: the routing key
    content_type: str
    body: bytes
    created: int
    attempts: int = 0


def _conn(tx: Any) -> Any:
    return tx._conn


def _message(row: Sequence, body: bool = True) -> Message:
    values = list(row)
    if not body:
        values.insert(7, b"")
    values[7] = bytes(values[7] or b"")
    values[15] = json.loads(values[15]) if values[15] else None
    return Message(*values)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


async def record(tx: Any, message: Message) -> bool:
    """Add ``message`` to the ledger; False if its id is already there, or if it is a
    receipt and the message it answers has one (one receipt per message)."""
    row = await _conn(tx).fetchrow(
        f"INSERT INTO messages ({_COLUMNS}) VALUES ({_marks(17)}) "
        "ON CONFLICT DO NOTHING RETURNING id",
        *_values(message),
    )
    return row is not None


def _values(m: Message) -> tuple:
    errors = json.dumps(m.errors) if m.errors is not None else None
    return (
        m.id, m.type, m.sender, m.receiver, m.patient, m.refers, m.content_type, m.body,
        m.created, m.published, m.delivered, m.read_at, m.receipt, m.receipt_id,
        m.receipt_at, errors, m.overdue,
    )  # fmt: skip


async def get(tx: Any, message_id: str) -> Message | None:
    row = await _conn(tx).fetchrow(
        f"SELECT {_COLUMNS} FROM messages WHERE id = ?", message_id[:200]
    )
    return _message(row) if row else None


async def enqueue(tx: Any, out: Outgoing) -> None:
    """Put ``out`` in the outbox (in the caller's transaction)."""
    await _conn(tx).execute(
        "INSERT INTO message_outbox (id, route, content_type, body, created, attempts, "
        "next_attempt) VALUES (?, ?, ?, ?, ?, 0, ?)",
        out.id, out.route, out.content_type, out.body, out.created, out.created,
    )  # fmt: skip


async def claim(tx: Any, now: int, lease_ms: int, limit: int) -> list[Outgoing]:
    """Take the outbox rows due at ``now`` (oldest first) for ``lease_ms``: another relay
    skips them until then, and takes them over if this one never confirms them.  On
    PostgreSQL rows another relay is claiming are skipped, not waited for."""
    lock = " FOR UPDATE SKIP LOCKED" if _conn(tx).dialect == "postgres" else ""
    rows = await _conn(tx).fetch(
        "UPDATE message_outbox SET next_attempt = ? WHERE seq IN (SELECT seq FROM "
        f"message_outbox WHERE next_attempt <= ? AND dead IS NULL ORDER BY next_attempt, seq "
        f"LIMIT ?{lock}) "
        "RETURNING id, route, content_type, body, created, attempts, seq",
        now + lease_ms, now, limit,
    )  # fmt: skip
    rows = sorted(rows, key=lambda r: r[6])
    return [Outgoing(r[0], r[1], r[2], bytes(r[3]), r[4], r[5]) for r in rows]


async def published(tx: Any, ids: Sequence[str], now: int) -> None:
    """The transport confirmed ``ids``: out of the outbox, and published in the ledger."""
    if ids:
        await _conn(tx).execute(
            f"DELETE FROM message_outbox WHERE id IN ({_marks(len(ids))})", *ids
        )
        await _conn(tx).execute(
            f"UPDATE messages SET published = ? WHERE id IN ({_marks(len(ids))}) "
            "AND published IS NULL",
            now, *ids,
        )  # fmt: skip


async def postpone(tx: Any, ids: Sequence[str], until: int) -> None:
    """The transport refused ``ids``: try again at ``until``."""
    if ids:
        await _conn(tx).execute(
            "UPDATE message_outbox SET attempts = attempts + 1, next_attempt = ? "
            f"WHERE id IN ({_marks(len(ids))})",
            until, *ids,
        )  # fmt: skip


async def bury(tx: Any, message_id: str, now: int, error: str) -> None:
    """The transport refused ``message_id`` every time: out of the relay's way, kept with
    its reason for an operator (``dead_outgoing``)."""
    await _conn(tx).execute(
        "UPDATE message_outbox SET attempts = attempts + 1, dead = ?, error = ? WHERE id = ?",
        now, error[:500], message_id,
    )  # fmt: skip


async def dead_outgoing(tx: Any, limit: int = 100) -> list[tuple]:
    """The outbox's dead letters: ``(id, route, attempts, dead, error)``."""
    rows = await _conn(tx).fetch(
        "SELECT id, route, attempts, dead, error FROM message_outbox WHERE dead IS NOT NULL "
        "ORDER BY seq LIMIT ?",
        limit,
    )
    return [tuple(r) for r in rows]


NEW, FOREIGN, DUPLICATE = "new", "foreign", "duplicate"


async def take_delivery(tx: Any, message_id: str, now: int) -> tuple[str, Message | None]:
    """The inbox step, in the transaction of the message's effect, so a redelivery has none:
    (``NEW``, its ledger row) for a message sent from this platform and not delivered before
    (marked delivered now: one statement, the common case); (``FOREIGN``, None) for the
    first delivery of a message another hub sent (its id recorded in ``message_inbox``);
    (``DUPLICATE``, None) for one delivered before."""
    row = await _conn(tx).fetchrow(
        f"UPDATE messages SET delivered = ? WHERE id = ? AND delivered IS NULL "
        f"RETURNING {_COLUMNS}",
        now, message_id,
    )  # fmt: skip
    if row is not None:
        return NEW, _message(row)
    if await _conn(tx).fetchrow("SELECT 1 FROM messages WHERE id = ?", message_id):
        return DUPLICATE, None  # in the ledger, delivered already
    return (FOREIGN if await first_seen(tx, message_id, now) else DUPLICATE), None


async def first_seen(tx: Any, message_id: str, now: int) -> bool:
    """Record ``message_id`` as processed; False if it was already (a redelivery)."""
    row = await _conn(tx).fetchrow(
        "INSERT INTO message_inbox (id, received) VALUES (?, ?) "
        "ON CONFLICT (id) DO NOTHING RETURNING id",
        message_id, now,
    )  # fmt: skip
    return row is not None


async def set_patient(tx: Any, message_id: str, patient: str) -> None:
    await _conn(tx).execute("UPDATE messages SET patient = ? WHERE id = ?", patient, message_id)


async def receipt(
    tx: Any, original: str, receipt_id: str, status: str, errors: list, now: int
) -> bool:
    """Record the receipt ``receipt_id`` for ``original``; False if it had one already."""
    row = await _conn(tx).fetchrow(
        "UPDATE messages SET receipt = ?, receipt_id = ?, receipt_at = ?, errors = ? "
        "WHERE id = ? AND receipt IS NULL RETURNING id",
        status, receipt_id, now, json.dumps(errors), original,
    )  # fmt: skip
    return row is not None


async def mark_read(tx: Any, message_id: str, now: int) -> None:
    await _conn(tx).execute(
        "UPDATE messages SET read_at = ? WHERE id = ? AND read_at IS NULL", now, message_id
    )


async def listing(
    tx: Any,
    parties: Sequence[str],
    *,
    sent: bool,
    unread: bool = False,
    before: tuple[int, str | None] | None = None,
    limit: int = 100,
) -> list[Message]:
    """A box: the messages ``parties`` sent (``sent``) or received (delivered to them),
    newest first (by time, then id: a page's last row is a cursor no message can slip past,
    whatever shares its millisecond), without bodies; ``unread`` keeps received ones not yet
    marked read; ``before`` (created, id) continues after a page."""
    side = "sender" if sent else "receiver"
    where = [f"{side} IN ({_marks(len(parties))})"]
    args: list = list(parties)
    if not sent:
        where.append("delivered IS NOT NULL")
    if unread:
        where.append("read_at IS NULL")
    if before is not None and before[1] is None:  # a time: what was sent before it
        where.append("created < ?")
        args.append(before[0])
    elif before is not None:  # a page's last row: what sorts after it
        where.append("(created, id) < (?, ?)")  # a row comparison: an index range
        args += [before[0], before[1]]
    rows = await _conn(tx).fetch(
        f"SELECT {_LIST_COLUMNS} FROM messages WHERE {' AND '.join(where)} "
        "ORDER BY created DESC, id DESC LIMIT ?",
        *args, limit,
    )  # fmt: skip
    return [_message(r, body=False) for r in rows]


async def overdue(tx: Any, created_before: int, limit: int) -> list[Message]:
    """Messages with no receipt, sent before ``created_before``, not yet alerted."""
    rows = await _conn(tx).fetch(
        f"SELECT {_LIST_COLUMNS} FROM messages WHERE receipt IS NULL AND type <> 'APPREC' "
        "AND created < ? AND overdue IS NULL ORDER BY created LIMIT ?",
        created_before, limit,
    )  # fmt: skip
    return [_message(r, body=False) for r in rows]


async def mark_overdue(tx: Any, ids: Sequence[str], now: int) -> None:
    if ids:
        await _conn(tx).execute(
            f"UPDATE messages SET overdue = ? WHERE id IN ({_marks(len(ids))})", now, *ids
        )


async def oldest_unpublished(tx: Any) -> int | None:
    """When the oldest message still in the outbox was written (None: the outbox is empty)."""
    row = await _conn(tx).fetchrow("SELECT min(created) FROM message_outbox WHERE dead IS NULL")
    return row[0] if row else None


async def prune(tx: Any, before: int) -> int:
    """Data minimisation: the bodies of messages answered before ``before`` (their content is
    in the record; the ledger keeps who sent what to whom, when, and the receipt) and the
    inbox ids received before it (the ledger's ``delivered`` still stops a late duplicate)."""
    rows = await _conn(tx).fetch(
        "UPDATE messages SET body = ? WHERE created < ? "
        "AND (receipt IS NOT NULL OR type = 'APPREC') AND length(body) > 0 RETURNING id",
        b"", before,
    )  # fmt: skip
    await _conn(tx).execute("DELETE FROM message_inbox WHERE received < ?", before)
    return len(rows)
