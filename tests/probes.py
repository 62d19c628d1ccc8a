"""What tests look at beneath the API, on every backend (memory, SQLite, PostgreSQL).

The audit log's rows come through ``storage.audit_log`` and current resources through the
store's lookups, so those need no SQL.  What only a backend's own tables can show (a purged
resource's leftover versions and index rows) is read from the SQL tables, or from the memory
store's state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from enjournal.storage import audit_log


class AuditRow(NamedTuple):
    """One ``audit_log`` row."""

    seq: int
    recorded: int
    patient_id: str | None
    actor: str
    action: str
    outcome: str
    purpose: str | None
    emergency: bool
    event: bytes
    prev_hash: bytes
    hash: bytes


async def audit_rows(store: Any) -> list[AuditRow]:
    """Every audit log row in seq order (filter them in the test)."""
    rows: list[AuditRow] = []
    async with store.transaction(write=False) as tx:
        while page := await audit_log.rows_after(tx, rows[-1].seq if rows else 0, 1000):
            rows += [_audit_row(r) for r in page]
    return rows


def _audit_row(row: Any) -> AuditRow:
    blobs = (bytes(b) for b in row[8:11])
    return AuditRow(int(row[0]), *row[1:7], bool(row[7]), *blobs)


async def current_of_type(store: Any, type_: str) -> list[tuple[str, bytes]]:
    """(id, stored JSON) of every current (not deleted) resource of ``type_``, by id."""
    async with store.transaction(write=False) as tx:
        return [(f.id, bytes(f.content)) for f in await tx.with_id_prefix(type_)]


async def traces(store: Any, type_: str, id_: str) -> int:
    """Rows left anywhere of a resource: its row, its versions, its index rows."""
    if store.dialect == "memory":
        return _memory_traces(store._state, type_, id_)
    async with store.transaction(write=False) as tx:
        rows = await tx._conn.fetch(
            "SELECT rid FROM resources WHERE type = ? AND id = ?", type_, id_
        )
        versions = await tx._conn.fetch(
            "SELECT version FROM resource_versions WHERE type = ? AND id = ?", type_, id_
        )
        index = 0
        for (rid,) in rows:
            for table in ("idx_reference", "idx_token", "idx_date", "idx_string"):
                index += len(await tx._conn.fetch(f"SELECT 1 FROM {table} WHERE rid = ?", rid))
    return len(rows) + len(versions) + index


def _memory_traces(state: Any, type_: str, id_: str) -> int:
    row = state.rows.get((type_, id_))
    versions = state.versions_of.get((type_, id_), ())
    index = sum(len(found) for found in state.index.get(row.rid, {}).values()) if row else 0
    return (row is not None) + len(versions) + index


async def versions_with_id(store: Any, id_: str) -> int:
    """History entries of any resource with this id."""
    if store.dialect == "memory":
        return sum(len(seqs) for (_, i), seqs in store._state.versions_of.items() if i == id_)
    async with store.transaction(write=False) as tx:
        row = await tx._conn.fetchrow("SELECT count(*) FROM resource_versions WHERE id = ?", id_)
    return row[0]


async def reference_index_rows(store: Any, type_: str, target_id: str) -> int:
    """Reference index rows of ``type_`` resources pointing at ``target_id``."""
    if store.dialect == "memory":
        state = store._state
        refs = (
            ref
            for rid in state.by_target.get(target_id)
            if state.keys[rid][0] == type_
            for ref in state.index_rows(rid, "reference")
        )
        return sum(1 for ref in refs if ref[2] == target_id)
    async with store.transaction(write=False) as tx:
        row = await tx._conn.fetchrow(
            "SELECT count(*) FROM idx_reference WHERE type = ? AND target_id = ?", type_, target_id
        )
    return row[0]
