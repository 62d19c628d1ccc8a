"""A measured proposal, not used by the platform: the receiver's inbox check and ledger
lookup done once per batch instead of once per message (PostgreSQL only).

``Receiver._one`` asks ``first_seen`` and ``get`` for every message: four round trips per
referral with its receipt.  ``install()`` puts a stand-in for ``receiving.db`` that answers
them from two statements run at the start of each batch (``INSERT ... SELECT unnest(...)
... RETURNING id`` and ``SELECT ... WHERE id = ANY(...)``).  ``python -m bench.messaging
--batched-prototype`` measures the worker with it; the change it argues for belongs in
receiving.py and storage/messaging.py."""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from types import SimpleNamespace

from enjournal.services.messaging import receiving
from enjournal.storage import messaging as real

_batch: contextvars.ContextVar[SimpleNamespace | None] = contextvars.ContextVar(
    "batch", default=None
)
# the envelopes of the batch in hand: per task (several consumers share one Receiver)
_envelopes: contextvars.ContextVar[Sequence] = contextvars.ContextVar("envelopes", default=())


class _Prefetched:
    """``enjournal.storage.messaging`` with ``first_seen`` and ``get`` from the batch."""

    def __getattr__(self, name: str):
        return getattr(real, name)

    async def first_seen(self, tx, message_id: str, now: int) -> bool:
        batch = _batch.get()
        if batch is None or message_id not in batch.ids:
            return await real.first_seen(tx, message_id, now)
        if message_id in batch.fresh:
            batch.fresh.discard(message_id)  # a second copy in the batch is a duplicate
            return True
        return False

    async def get(self, tx, message_id: str):
        batch = _batch.get()
        if batch is not None and message_id in batch.known:
            return batch.known.pop(message_id)
        if batch is not None and message_id in batch.ids:
            batch.ids.discard(message_id)  # looked up once: absent then
            return None
        return await real.get(tx, message_id)


async def _prefetch(tx, ids: list[str], now: int) -> SimpleNamespace:
    conn = tx._conn.raw
    fresh = await conn.fetch(
        "INSERT INTO message_inbox (id, received) SELECT unnest($1::text[]), $2 "
        "ON CONFLICT (id) DO NOTHING RETURNING id",
        ids, now,
    )  # fmt: skip
    rows = await conn.fetch(f"SELECT {real._COLUMNS} FROM messages WHERE id = ANY($1)", ids)
    known = {r[0]: real._message(r) for r in rows}
    return SimpleNamespace(ids=set(ids), fresh={r[0] for r in fresh}, known=known)


def install() -> None:
    """Batch the inbox check and ledger lookups of every Receiver in this process."""
    receiving.db = _Prefetched()  # type: ignore[assignment]
    one = receiving.Receiver._one

    async def first_of_batch(self, tx, envelope, events, alone):
        if _batch.get() is None or envelope.id not in _batch.get().seen_ids:
            ids = [e.id for e in _envelopes.get()]
            state = await _prefetch(tx, ids, self.now())
            state.seen_ids = set(ids)
            _batch.set(state)
        return await one(self, tx, envelope, events, alone)

    handle = receiving.Receiver._batch

    async def batch(self, envelopes):
        token, batch_token = _batch.set(None), _envelopes.set(envelopes)
        try:
            return await handle(self, envelopes)
        finally:
            _batch.reset(token)
            _envelopes.reset(batch_token)

    receiving.Receiver._one = first_of_batch  # type: ignore[method-assign]
    receiving.Receiver._batch = batch  # type: ignore[method-assign]
