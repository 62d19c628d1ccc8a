"""The embedded transport's queue (``message_queue``, migration 7): messaging's queue in the
platform's own database when no broker is configured (services/messaging/transport/database.py).

A consumer *takes* rows with a lease (``lease_until``) and counts the delivery (``attempts``);
it deletes what it handled, puts back what must wait (``available``), or marks a row dead
(the dead-letter queue is the rows with ``dead`` set).  A consumer that dies loses its lease
and the rows are taken again: delivery at least once.  On PostgreSQL consumers skip the
rows another is taking (``FOR UPDATE SKIP LOCKED``) instead of waiting for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_TAKEN = "seq, id, route, content_type, body, attempts"


def _conn(tx: Any) -> Any:
    return tx._conn


def _marks(n: int) -> str:
    return ", ".join("?" * n)


async def put(tx: Any, queue: str, rows: Sequence[tuple[str, str, str, bytes]], now: int) -> None:
    """Add ``(id, route, content_type, body)`` rows to ``queue``, available at once."""
    await _conn(tx).executemany(
        "INSERT INTO message_queue (queue, id, route, content_type, body, created, available) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(queue, *row, now, now) for row in rows],
    )


async def take(tx: Any, queue: str, now: int, lease_ms: int, limit: int) -> list[tuple]:
    """Up to ``limit`` available rows, oldest first, leased until ``now + lease_ms``:
    ``(seq, id, route, content_type, body, attempts)``, attempts counting this delivery."""
    lock = " FOR UPDATE SKIP LOCKED" if _conn(tx).dialect == "postgres" else ""
    rows = await _conn(tx).fetch(
        "UPDATE message_queue SET lease_until = ?, attempts = attempts + 1 WHERE seq IN "
        "(SELECT seq FROM message_queue WHERE queue = ? AND dead IS NULL AND available <= ? "
        f"AND lease_until <= ? ORDER BY seq LIMIT ?{lock}) RETURNING {_TAKEN}",
        now + lease_ms, queue, now, now, limit,
    )  # fmt: skip
    return sorted((tuple(r) for r in rows), key=lambda r: r[0])


async def done(tx: Any, seqs: Sequence[int]) -> None:
    if seqs:
        await _conn(tx).execute(
            f"DELETE FROM message_queue WHERE seq IN ({_marks(len(seqs))})", *seqs
        )


async def later(tx: Any, seq: int, available: int) -> None:
    """Deliver ``seq`` again at ``available``."""
    await _conn(tx).execute(
        "UPDATE message_queue SET available = ?, lease_until = 0 WHERE seq = ?", available, seq
    )


async def bury(tx: Any, seq: int, now: int, error: str) -> None:
    """Move ``seq`` to the dead-letter queue."""
    await _conn(tx).execute(
        "UPDATE message_queue SET dead = ?, error = ? WHERE seq = ?", now, error[:500], seq
    )


async def stats(tx: Any, queue: str) -> tuple[int, int, int | None]:
    """(waiting, dead, created of the oldest waiting) of ``queue``."""
    row = await _conn(tx).fetchrow(
        "SELECT count(*) FILTER (WHERE dead IS NULL), count(*) FILTER (WHERE dead IS NOT NULL), "
        "min(created) FILTER (WHERE dead IS NULL) FROM message_queue WHERE queue = ?",
        queue,
    )
    return int(row[0]), int(row[1]), row[2]


async def dead_letters(tx: Any, queue: str, limit: int = 100) -> list[tuple]:
    """The dead-lettered rows: ``(seq, id, route, attempts, dead, error)``."""
    rows = await _conn(tx).fetch(
        "SELECT seq, id, route, attempts, dead, error FROM message_queue "
        "WHERE queue = ? AND dead IS NOT NULL ORDER BY seq LIMIT ?",
        queue, limit,
    )  # fmt: skip
    return [tuple(r) for r in rows]
