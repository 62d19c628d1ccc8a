"""The audit log's tables: ``audit_log`` (one row per event, append-only) and the one-row
``audit_head`` (last seq and hash).

Only the SQL lives here; the hash chain, the events' columns and the citizen's view of them
are ``enjournal.security.audit``.  Every function runs on the caller's transaction; on the
memory store (``storage.memory``, which runs no SQL) it asks the transaction's ``AuditLog``,
which answers with the same rows.
"""

from __future__ import annotations

from typing import Any

_INSERT = (
    "INSERT INTO audit_log (seq, recorded, patient_id, actor, action, outcome, purpose, "
    "emergency, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_PAGE = (
    "SELECT seq, recorded, patient_id, actor, action, outcome, purpose, emergency, event, "
    "prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"
)
_PATIENT_PAGE = (
    "SELECT seq, recorded, action, outcome, purpose, emergency, event, actor FROM audit_log "
    "WHERE patient_id = ?"
)


async def lock_head(tx: Any) -> tuple[int, bytes] | None:
    """The head (last seq, its hash), locked until the transaction ends; None if missing.

    On PostgreSQL other writers wait here until this transaction ends; on SQLite the single
    writer lock already serialises write transactions."""
    if memory := _memory(tx):
        return memory.head  # write transactions already run one at a time
    conn = tx._conn
    lock = " FOR UPDATE" if conn.dialect == "postgres" else ""
    head = await conn.fetchrow(f"SELECT seq, hash FROM audit_head WHERE id = 1{lock}")
    return None if head is None else (int(head[0]), bytes(head[1]))


async def insert_events(tx: Any, rows: list[tuple]) -> None:
    """Insert chained rows: (seq, *columns, event, prev_hash, hash)."""
    if memory := _memory(tx, write=True):
        return memory.insert_events(rows)
    await tx._conn.executemany(_INSERT, rows)


async def move_head(tx: Any, seq: int, digest: bytes) -> None:
    if memory := _memory(tx, write=True):
        return memory.move_head(seq, digest)
    await tx._conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", seq, digest)


async def relax_commit(tx: Any) -> None:
    """Commit this transaction without waiting for the disk (PostgreSQL only; see
    ``AuditWriter.synchronous``)."""
    if tx._conn.dialect == "postgres":
        await tx._conn.execute("SET LOCAL synchronous_commit TO OFF")


async def read_head(tx: Any) -> tuple[int, bytes] | None:
    """The head (last seq, its hash), unlocked; None if the row is missing."""
    if memory := _memory(tx):
        return memory.head
    head = await tx._conn.fetchrow("SELECT seq, hash FROM audit_head WHERE id = 1")
    return None if head is None else (int(head[0]), bytes(head[1]))


async def rows_after(tx: Any, seq: int, limit: int) -> list:
    """Up to ``limit`` rows after ``seq`` in seq order: (seq, recorded, patient_id, actor,
    action, outcome, purpose, emergency, event, prev_hash, hash)."""
    if memory := _memory(tx):
        return memory.rows_after(seq, limit)
    return await tx._conn.fetch(_SELECT_PAGE, seq, limit)


async def seq_linked_to(tx: Any, prev_hash: bytes, other_than: int) -> int | None:
    """The first seq (other than ``other_than``) whose prev_hash is ``prev_hash``."""
    if memory := _memory(tx):
        return memory.seq_linked_to(prev_hash, other_than)
    row = await tx._conn.fetchrow(
        "SELECT seq FROM audit_log WHERE prev_hash = ? AND seq <> ? ORDER BY seq LIMIT 1",
        prev_hash,
        other_than,
    )
    return None if row is None else int(row[0])


async def patient_rows(
    tx: Any,
    patient_id: str,
    count: int,
    before_seq: int | None,
    *,
    since: int | None = None,
    until: int | None = None,
    skip_actors: frozenset[str] = frozenset(),
    containing: bytes | None = None,
) -> list:
    """Up to ``count`` rows about the patient, newest first, before ``before_seq`` if given:
    (seq, recorded, action, outcome, purpose, emergency, event, actor).

    ``since`` and ``until`` bound ``recorded`` (epoch ms, inclusive), ``skip_actors`` leaves
    out rows by those actors, and ``containing`` keeps rows whose stored event holds these
    bytes (a cheap pre-filter: the caller checks the parsed event)."""
    if memory := _memory(tx):
        return memory.patient_rows(
            patient_id, count, before_seq, since, until, skip_actors, containing
        )
    sql = _PATIENT_PAGE
    args: list[Any] = [patient_id]
    for clause, value in (
        ("seq < ?", before_seq),
        ("recorded >= ?", since),
        ("recorded <= ?", until),
    ):
        if value is not None:
            sql += f" AND {clause}"
            args.append(value)
    if skip_actors:
        sql += f" AND actor NOT IN ({', '.join('?' * len(skip_actors))})"
        args += sorted(skip_actors)
    if containing:
        pg = tx._conn.dialect == "postgres"
        sql += " AND position(? in event) > 0" if pg else " AND instr(event, ?) > 0"
        args.append(containing)
    return await tx._conn.fetch(sql + " ORDER BY seq DESC LIMIT ?", *args, count)


def _memory(tx: Any, write: bool = False) -> Any:
    """The memory store's ``AuditLog`` for ``tx``, or None on a SQL backend."""
    return tx.audit_log(write) if tx._conn.dialect == "memory" else None
