"""Appending events to the chain in the caller's write transaction, under the head lock."""

from __future__ import annotations

from typing import Any

from enjournal.security.audit.chain import chain_hash, prepare

_INSERT = (
    "INSERT INTO audit_log (seq, recorded, patient_id, actor, action, outcome, purpose, "
    "emergency, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


async def append(conn: Any, events: list[dict]) -> None:
    """Append ``events`` to the chain inside the caller's (write) transaction."""
    await append_prepared(conn, prepare(events))


async def append_prepared(conn: Any, prepared: list[tuple[tuple, bytes]]) -> None:
    if not prepared:
        return
    # Lock the head: on PostgreSQL other writers wait here until this transaction ends; on
    # SQLite the single writer lock already serialises write transactions.
    lock = " FOR UPDATE" if conn.dialect == "postgres" else ""
    head = await conn.fetchrow(f"SELECT seq, hash FROM audit_head WHERE id = 1{lock}")
    if head is None:
        raise RuntimeError("audit_head is missing: the audit log is damaged (run audit verify)")
    seq, prev = int(head[0]), bytes(head[1])
    rows = []
    for columns, data in prepared:
        seq += 1
        digest = chain_hash(prev, seq, data)
        rows.append((seq, *columns, data, prev, digest))
        prev = digest
    await conn.executemany(_INSERT, rows)
    await conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", seq, prev)
