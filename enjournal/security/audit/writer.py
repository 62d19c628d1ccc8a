"""The group-committing writer of read events."""

from __future__ import annotations

import asyncio
from typing import Any

from enjournal.fhir.errors import Busy
from enjournal.security.audit.appending import append_prepared
from enjournal.security.audit.chain import prepare
from enjournal.storage import audit_log

_STOP = object()


class AuditWriter:
    """Records audit events outside a write transaction (for reads), with group commit.

    ``await record(events)`` returns once the events are committed.  A background task takes
    everything waiting in the (bounded) queue, up to ``max_batch`` callers, and appends it in
    one write transaction, so many concurrent reads cost one commit, not one each.
    """

    def __init__(
        self,
        store: Any,
        *,
        max_batch: int = 256,
        max_queue: int = 10_000,
        synchronous: bool = True,
    ):
        self.store = store
        # False: on PostgreSQL, commit batches with synchronous_commit off.  A read then
        # waits for its events to be committed but not flushed to disk: a crash of the
        # database server (not of enjournal) can lose the last fraction of a second of read
        # events.  Writes' events are always in the write's own, synchronous transaction.
        self.synchronous = synchronous
        self.max_batch = max_batch
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task | None = None
        self._closing = False
        self.batches = 0  # committed transactions, for metrics and tests

    async def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        """Commit everything queued, then stop."""
        if self._task is None:
            return
        self._closing = True
        await self._queue.put(_STOP)
        await self._task
        self._task = None

    async def __aenter__(self) -> AuditWriter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def record(self, events: list[dict]) -> None:
        if self._task is None or self._closing:
            raise RuntimeError("the audit writer is not running")
        prepared = prepare(events)  # a malformed event fails its caller, not the batch
        if not prepared:
            return
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((prepared, future))
        # Shielded: a cancelled caller still gets its events written.
        await asyncio.shield(future)

    async def _run(self) -> None:
        stop = False
        while not stop:
            item = await self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            await self._commit(batch)

    async def _commit(self, batch: list) -> None:
        prepared = [row for rows, _ in batch for row in rows]
        error: BaseException | None = None
        for attempt in range(3):
            try:
                async with self.store.transaction(write=True) as tx:
                    if not self.synchronous:
                        await audit_log.relax_commit(tx)
                    await append_prepared(tx, prepared)
                error = None
                break
            except Busy as exc:
                error = exc
                await asyncio.sleep(0.05 * (attempt + 1))
            except Exception as exc:  # the callers get the error; the writer keeps running
                error = exc
                break
        if error is None:
            self.batches += 1
        for _, future in batch:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
