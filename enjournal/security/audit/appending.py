"""Appending events to the chain in the caller's write transaction, under the head lock."""

from __future__ import annotations

from typing import Any

from enjournal.security.audit.chain import chain_hash, prepare
from enjournal.storage import audit_log


async def append(tx: Any, events: list[dict]) -> None:
    """Append ``events`` to the chain inside the caller's (write) transaction ``tx``."""
    await append_prepared(tx, prepare(events))


async def append_prepared(tx: Any, prepared: list[tuple[tuple, bytes]]) -> None:
    if not prepared:
        return
    head = await audit_log.lock_head(tx)
    if head is None:
        raise RuntimeError("audit_head is missing: the audit log is damaged (run audit verify)")
    seq, prev = head
    rows = []
    for columns, data in prepared:
        seq += 1
        digest = chain_hash(prev, seq, data)
        rows.append((seq, *columns, data, prev, digest))
        prev = digest
    await audit_log.insert_events(tx, rows)
    await audit_log.move_head(tx, seq, prev)
