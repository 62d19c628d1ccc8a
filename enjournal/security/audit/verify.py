"""Walking the hash chain and reporting the first problem."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from enjournal.security.audit.chain import ZERO_HASH, chain_hash
from enjournal.security.audit.columns import event_columns
from enjournal.storage import audit_log


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str  # changed | removed | reordered | inserted | head-mismatch
    detail: str


@dataclass
class VerifyResult:
    checked: int = 0  # rows whose hash and link were verified
    last_seq: int = 0  # the last seq in the log
    head_seq: int = 0
    head_hash: bytes = ZERO_HASH
    problem: Problem | None = None
    seconds: float = field(default=0.0)

    @property
    def ok(self) -> bool:
        return self.problem is None


_COLUMN_NAMES = ("recorded", "patient_id", "actor", "action", "outcome", "purpose", "emergency")


async def verify(tx: Any, *, page_size: int = 2000) -> VerifyResult:
    """Walk the chain in seq order, a page at a time, and report the first problem.

    Run it in one read transaction ``tx`` (PostgreSQL's read transactions are repeatable read, so
    the walk sees one consistent snapshot).
    """
    started = time.monotonic()
    result = VerifyResult()
    head = await audit_log.read_head(tx)
    if head is None:
        result.problem = Problem(0, "head-mismatch", "the audit_head row is missing")
    else:
        result.head_seq, result.head_hash = head
    expected_seq, prev = 1, ZERO_HASH
    cursor = -(2**62)
    while result.problem is None:
        rows = await audit_log.rows_after(tx, cursor, page_size)
        for row in rows:
            problem = await _check_row(tx, row, expected_seq, prev)
            if problem is not None:
                result.problem = problem
                break
            result.checked += 1
            result.last_seq = int(row[0])
            expected_seq, prev = result.last_seq + 1, bytes(row[10])
        if result.problem is not None or len(rows) < page_size:
            break
        cursor = int(rows[-1][0])
    if result.problem is None:
        result.problem = _check_head(result, prev)
    result.seconds = time.monotonic() - started
    return result


async def _check_row(tx: Any, row: tuple, expected_seq: int, prev: bytes) -> Problem | None:
    seq = int(row[0])
    data, row_prev, row_hash = bytes(row[8]), bytes(row[9]), bytes(row[10])
    if seq < expected_seq:
        return Problem(seq, "inserted", f"seq {seq} is before the start of the chain")
    if seq > expected_seq:
        missing = (
            f"seq {expected_seq}" if seq == expected_seq + 1 else f"seqs {expected_seq}..{seq - 1}"
        )
        return Problem(expected_seq, "removed", f"{missing} missing: the next event is seq {seq}")
    linked = row_prev == prev
    self_ok = chain_hash(row_prev, seq, data) == row_hash
    if linked and not self_ok:
        return Problem(seq, "changed", f"event {seq} does not match its hash")
    if not linked and self_ok:
        return Problem(
            seq - 1,
            "changed",
            f"event {seq} does not link to event {seq - 1}: event {seq - 1} was changed and "
            "re-hashed, or events were removed and the chain rebuilt",
        )
    if not linked:
        other = await audit_log.seq_linked_to(tx, prev, seq)
        if other is not None:
            return Problem(
                seq,
                "reordered",
                f"the event that follows seq {seq - 1} is stored as seq {other}, not {seq}",
            )
        return Problem(
            seq,
            "removed",
            f"event {seq} does not link to event {seq - 1}: events were removed before it "
            "and the rest renumbered",
        )
    try:
        derived = event_columns(orjson.loads(data))
    except Exception as exc:  # hash-valid but unreadable: only a broken writer does this
        return Problem(seq, "changed", f"event {seq} cannot be read: {exc}")
    stored = tuple(row[1:8])
    for name, want, got in zip(_COLUMN_NAMES, derived, stored, strict=True):
        if (bool(got) if name == "emergency" else got) != want:
            return Problem(seq, "changed", f"column {name} of event {seq} differs from the event")
    return None


def _check_head(result: VerifyResult, last_hash: bytes) -> Problem | None:
    last, head = result.last_seq, result.head_seq
    if head > last:
        return Problem(
            last + 1,
            "head-mismatch",
            f"the head says {head} events but the log ends at {last}: "
            f"events {last + 1}..{head} were removed from the end",
        )
    if head < last:
        return Problem(
            head + 1,
            "head-mismatch",
            f"the log has events after the head ({head}): events {head + 1}..{last} were "
            "added without the head, or the head was moved back",
        )
    if result.head_hash != last_hash:
        return Problem(head, "head-mismatch", f"the head hash does not match event {head}")
    return None
