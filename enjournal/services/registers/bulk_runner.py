"""The export job runner: claims queued exports from the database and writes their NDJSON
files (docs/registers.md, "Bulk export").

It runs as the platform job ``bulk-export`` (``services/jobs.py``: every server process, or
``enjournal jobs run``).  One pass claims up to ``export_workers`` jobs (a lease in the
database, so two workers never run the same job), runs them side by side, and claims more as
they finish, until none is waiting; a job whose worker died is claimed again once its lease
runs out and resumes from its last checkpoint.  The same pass deletes the files of exports
past their expiry, and of jobs cancelled or removed.

Memory stays flat: a job reads one page of stored JSON at a time, bounded by
``export_batch_bytes`` (``enjournal.storage.exports.read_batch``), and writes it straight
to the file; only the rows the export policy must change (a redacted Patient) or ``_elements``
trims are parsed.  Files are split at ``export_file_bytes``.

The same jobs run the other asynchronous exports: a job's ``kind`` names its handler
(``Exporter.handlers``: ``views`` for ``$viewdefinition-export``, ``register`` for
``$register-export``), ``async handler(exporter, store, job) -> output``, which writes its
files into ``job_dir(settings, job.id, kind)``, keeps its own checkpoint in ``job.progress``
(saved by ``exporter.save``) and returns the output the status answer is made from.  While
a handler runs, its lease is renewed in the background (``LEASE_BEATS`` times a lease), so a
long step (a DuckDB view, a register's extract) does not lose the job, and a cancelled job
stops at the next beat.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qsl

import orjson

from enjournal.fhir.errors import Busy
from enjournal.fhir.search import parse_search
from enjournal.security.exports import ExportPolicy
from enjournal.services.registers.bulk_params import ExportParams
from enjournal.services.registers.privacy import exported_lines, read_policy
from enjournal.storage import Store
from enjournal.storage import exports as db

log = logging.getLogger("enjournal.registers.bulk")
RETRIES, RETRY_AFTER_MS = 5, 30_000
EXPIRE_EVERY_MS = 60_000
MAX_ROWS = 10_000  # rows per page, whatever their size
LEASE_BEATS = 3  # a handler's lease is renewed this many times a lease
# Each kind's folder under ``export_dir`` (the bulk export's is ``bulk``).
FOLDERS = {db.BULK: "bulk", "views": "viewdefinition-export", "register": "register-export"}
# ``async handler(exporter, store, job) -> output`` of a kind other than bulk.
Handler = Callable[[Any, Any, db.ExportJob], Awaitable[dict]]


def jobs_dir(settings, kind: str = db.BULK) -> Path:
    """A kind's own folder under ``export_dir``."""
    return Path(settings.export_dir) / FOLDERS.get(kind, kind)


def job_dir(settings, job_id: str, kind: str = db.BULK) -> Path:
    return jobs_dir(settings, kind) / job_id


def remove_files(settings, job_id: str) -> None:
    """Delete a job's folder, whatever its kind (job ids are unique across kinds)."""
    for kind in FOLDERS:
        shutil.rmtree(job_dir(settings, job_id, kind), ignore_errors=True)


@dataclass
class Stats:
    """What the runner did, for tests and the benchmark: the largest page it held."""

    largest_batch_bytes: int = 0
    largest_shared_batch_bytes: int = 0  # of the pages holding more than one resource
    batches: int = 0
    resources: int = 0


class Stopped(Exception):
    """The job is no longer this worker's (cancelled, or taken over)."""


class Failed(Exception):
    """A job that cannot be done, for a reason its client may read (a handler raises it;
    any other error's text stays in the log)."""


@dataclass
class Exporter:
    """The export jobs of one platform (its settings and clock)."""

    settings: object
    clock: object = None
    worker: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )
    stats: Stats = field(default_factory=Stats)
    expired_at: int = -EXPIRE_EVERY_MS  # when this worker last deleted expired exports
    handlers: dict[str, Handler] = field(default_factory=dict)  # kind -> its handler

    def now_ms(self) -> int:
        if self.clock is not None:
            return int(self.clock().timestamp() * 1000)  # type: ignore[operator]
        return int(time.time() * 1000)

    async def run_pass(self, store, now) -> int:
        """One pass: expire old exports (once a minute), then run every waiting job; how
        many finished."""
        if not isinstance(store, Store):
            return 0  # the memory store keeps no jobs
        now_ms = int(now.timestamp() * 1000)
        if abs(now_ms - self.expired_at) >= EXPIRE_EVERY_MS:
            await self.expire(store, now_ms)
            self.expired_at = now_ms
        return await self.drain(store)

    async def drain(self, store) -> int:
        """Claim and run jobs, up to ``export_workers`` at a time, until none is waiting."""
        limit = max(1, self.settings.export_workers)  # type: ignore[attr-defined]
        running: set[asyncio.Task] = set()
        finished = 0
        try:
            while True:
                for job in await self._claim(store, limit - len(running)):
                    running.add(asyncio.create_task(self.run_job(store, job)))
                if not running:
                    return finished
                done, running = await asyncio.wait(
                    running, timeout=1.0, return_when=asyncio.FIRST_COMPLETED
                )
                finished += sum(1 for task in done if task.result())
        finally:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _claim(self, store, slots: int) -> list:
        now = self.now_ms()
        if slots <= 0 or not await db.claimable(store, now):
            return []
        lease = self.settings.export_lease_seconds * 1000  # type: ignore[attr-defined]
        return await db.claim_jobs(store, self.worker, now, lease, slots)

    async def run_job(self, store, job: db.ExportJob) -> bool:
        """Write one job's files from its checkpoint on; True when it finished."""
        try:
            output = await self._run(store, job)
        except Stopped:
            if await self._gone(store, job.id):
                remove_files(self.settings, job.id)
            return False
        except asyncio.CancelledError:
            await asyncio.shield(db.release(store, job, self.worker))
            raise
        except Busy as error:  # the database is busy or a page took too long: later
            return await self._retry_later(store, job, error)
        except Failed as error:
            return await self._finish(store, job, db.FAILED, {"failure": str(error)[:500]})
        except Exception:  # one failed export must not stop the others
            log.exception("export failed", extra={"fields": {"job": job.id}})
            # The cause stays in the log: an error's text may name paths or stored content.
            failure = f"export {job.id} failed on the server; its log names the cause"
            return await self._finish(store, job, db.FAILED, {"failure": failure})
        return await self._finish(store, job, db.DONE, output)

    async def _run(self, store, job: db.ExportJob) -> dict:
        """The job's handler: the bulk export's own, or its kind's under a renewed lease."""
        if job.kind == db.BULK:
            return await self._export(store, job)
        handler = self.handlers.get(job.kind)
        if handler is None:
            raise Failed(f"export {job.id}: no handler for exports of kind {job.kind!r}")
        return await self._under_lease(store, job, handler(self, store, job))

    async def _under_lease(self, store, job: db.ExportJob, work: Awaitable[dict]) -> dict:
        """Run ``work``, renewing the lease (and saving ``job.progress``) every
        ``LEASE_BEATS``-th of a lease; a beat that finds the job gone stops it."""
        task = asyncio.ensure_future(work)
        beat = self.settings.export_lease_seconds / LEASE_BEATS  # type: ignore[attr-defined]
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=beat)
                if done:
                    return task.result()
                await self._checkpoint(store, job)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def save(self, store, job: db.ExportJob) -> None:
        """A handler's checkpoint: ``job.progress`` saved, the lease renewed (Stopped when
        the job is no longer this worker's)."""
        await self._checkpoint(store, job)

    async def _retry_later(self, store, job, error: Busy) -> bool:
        """Give the job back for a pass ``RETRY_AFTER`` later, from its checkpoint; after
        ``RETRIES`` such tries it fails."""
        progress = job.progress or {}
        tries = progress["retries"] = progress.get("retries", 0) + 1
        job.progress = progress
        if tries > RETRIES:
            return await self._finish(store, job, db.FAILED, {"failure": error.message[:500]})
        log.warning("export retried later", extra={"fields": {"job": job.id, "try": tries}})
        await db.release(store, job, self.worker, until=self.now_ms() + RETRY_AFTER_MS)
        return False

    async def _finish(self, store, job, status: str, output: dict) -> bool:
        now = self.now_ms()
        expires = now + self.settings.export_expire_seconds * 1000  # type: ignore[attr-defined]
        return await db.finish(store, job, self.worker, status, output, now, expires)

    async def _gone(self, store, job_id: str) -> bool:
        async with store.transaction(write=False) as tx:
            return await db.read_job(tx, job_id) is None

    async def _export(self, store, job: db.ExportJob) -> dict:
        params = ExportParams.from_json(job.params)
        policy = await self._policy(store)
        progress = job.progress or await self._start(store, job, params, policy)
        job.progress = progress
        folder = job_dir(self.settings, job.id)
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(progress["type"], len(params.types)):
            await self._export_type(store, job, params, policy, params.types[index], folder)
            progress.update({"type": index + 1, "after": 0, "file": None, "offset": 0, "count": 0})
            progress["part"] = 0
            await self._checkpoint(store, job)
        return {"output": progress["outputs"], "error": self._notes(folder, params)}

    async def _start(self, store, job, params: ExportParams, policy: ExportPolicy) -> dict:
        """The first checkpoint, with the total to report progress against (None when
        counting a huge selection ran past the statement time limit: progress is then the
        count so far)."""
        total: int | None = 0
        try:
            async with store.transaction(write=False) as tx:
                for type_ in params.types:
                    selection = self._selection(params, policy, type_)
                    total = (total or 0) + await db.count_selection(tx, selection)
        except Busy:
            total = None
        return {"type": 0, "after": 0, "file": None, "part": 0, "offset": 0, "count": 0,
                "outputs": [], "done": 0, "total": total}  # fmt: skip

    async def _policy(self, store) -> ExportPolicy:
        """The citizen's controls, read once per job (``privacy.read_policy``)."""
        async with store.transaction(write=False) as tx:
            return await read_policy(tx)

    def _selection(self, params: ExportParams, policy: ExportPolicy, type_: str) -> db.Selection:
        filters = tuple(
            parse_search(type_, parse_qsl(query)) for query in params.type_filters.get(type_, ())
        )
        return db.Selection(
            type_,
            since_ms=params.since_ms,
            filters=filters,
            patients=tuple(params.patients) if params.patients is not None else None,
            any_patient=params.level != "system",
            excluded=tuple(sorted(policy.excluded)),
        )

    async def _export_type(self, store, job, params, policy, type_: str, folder: Path) -> None:
        progress = job.progress
        selection = self._selection(params, policy, type_)
        elements = params.elements_of(type_)
        limit = self.settings.export_batch_bytes  # type: ignore[attr-defined]
        writer = _Writer(folder, type_, progress, self.settings.export_file_bytes)  # type: ignore[attr-defined]
        rows_wanted = 1000
        try:
            while True:
                async with store.transaction(write=False) as tx:
                    rows = await db.read_batch(tx, selection, progress["after"], limit, rows_wanted)
                if not rows:
                    break
                rows_wanted = _rows_for(limit, rows)
                self._count(rows)
                # Renew the lease before writing: a worker that lost the job (stalled past
                # its lease, the job taken over) stops here instead of writing into a file
                # the new owner writes; the lease then holds for the write.
                await self._checkpoint(store, job)
                writer.write(exported_lines(rows, type_, policy, elements))
                progress["after"] = rows[-1][0]
                progress["done"] += len(rows)
                rows.clear()  # not held while the next page is read
                await self._checkpoint(store, job)
                await asyncio.sleep(0)  # SQLite calls never suspend: let requests through
            writer.complete()
        finally:
            writer.close()

    def _count(self, rows: list) -> None:
        size = sum(len(row[2]) for row in rows)
        stats = self.stats
        stats.largest_batch_bytes = max(stats.largest_batch_bytes, size)
        if len(rows) > 1:
            stats.largest_shared_batch_bytes = max(stats.largest_shared_batch_bytes, size)
        stats.batches += 1
        stats.resources += len(rows)

    async def _checkpoint(self, store, job) -> None:
        lease = self.settings.export_lease_seconds * 1000  # type: ignore[attr-defined]
        if not await db.checkpoint(store, job, self.worker, self.now_ms() + lease):
            raise Stopped(job.id)

    def _notes(self, folder: Path, params: ExportParams) -> list[dict]:
        """What lenient handling ignored, as one NDJSON file of an OperationOutcome."""
        if not params.notes:
            return []
        issues = [
            {"severity": "warning", "code": "not-supported", "diagnostics": note}
            for note in params.notes
        ]
        outcome = {"resourceType": "OperationOutcome", "issue": issues}
        name = "OperationOutcome-1.ndjson"
        (folder / name).write_bytes(orjson.dumps(outcome) + b"\n")
        return [{"type": "OperationOutcome", "file": name, "count": 1}]

    async def expire(self, store, now_ms: int) -> int:
        """Delete exports past their expiry, and folders whose job no longer exists."""
        expired = await db.expired_jobs(store, now_ms)
        for job_id in expired:
            async with store.transaction(write=True) as tx:
                await db.delete_job(tx, job_id)
            remove_files(self.settings, job_id)
        roots = [jobs_dir(self.settings, kind) for kind in FOLDERS]
        roots = [root for root in roots if root.is_dir()]
        known = await db.job_ids(store) if roots else set()
        for folder in (folder for root in roots for folder in root.iterdir()):
            if folder.is_dir() and folder.name not in known:
                shutil.rmtree(folder, ignore_errors=True)
        return len(expired)


def _rows_for(limit: int, rows: list) -> int:
    """How many rows the next page should ask for: about ``limit`` bytes at the size the
    last page's resources had, so the database does not read rows the byte limit then cuts
    (at most ``MAX_ROWS``)."""
    average = max(1, sum(len(row[2]) for row in rows) // len(rows))
    return max(1, min(MAX_ROWS, limit * 11 // (average * 10) + 1))


class _Writer:
    """The NDJSON files of one type, ``Type-N.ndjson``, a new one past ``max_bytes``; the
    checkpoint (``progress``) names the open file and the offset written, so a resumed job
    cuts off what the crashed worker wrote after its last checkpoint."""

    def __init__(self, folder: Path, type_: str, progress: dict, max_bytes: int):
        self.folder, self.type, self.progress, self.max_bytes = folder, type_, progress, max_bytes
        self.file: BinaryIO | None = None
        if progress.get("file"):
            self.file = open(folder / progress["file"], "r+b")  # noqa: SIM115  # closed in close()
            self.file.truncate(progress["offset"])
            self.file.seek(progress["offset"])

    def write(self, lines: list[bytes]) -> None:
        if not lines:
            return
        size = sum(len(line) for line in lines) + len(lines)
        progress = self.progress
        if self.file is not None and progress["offset"] + size > self.max_bytes:
            self._close_file()
        if self.file is None:
            progress["part"] = progress.get("part", 0) + 1
            progress["file"] = f"{self.type}-{progress['part']}.ndjson"
            progress["offset"], progress["count"] = 0, 0
            self.file = open(self.folder / progress["file"], "wb")  # noqa: SIM115
        file = self.file
        for line in lines:  # no joined copy of the page: a 5 MB resource stays one copy
            file.write(line)
            file.write(b"\n")
        file.flush()  # on disk (the OS's) before the checkpoint says so
        progress["offset"] += size
        progress["count"] += len(lines)

    def _close_file(self) -> None:
        progress = self.progress
        if self.file is not None:
            self.file.close()
            self.file = None
        progress["outputs"].append(
            {"type": self.type, "file": progress["file"], "count": progress["count"]}
        )
        progress["file"], progress["offset"], progress["count"] = None, 0, 0

    def close(self) -> None:
        """Close the open file; a finished type's last file joins the outputs (only when the
        type is done: on a stop the checkpoint keeps it open for the resumed job)."""
        if self.file is not None:
            self.file.close()
            self.file = None

    def complete(self) -> None:
        """The type is done: its last file joins the outputs."""
        if self.progress.get("file"):
            self._close_file()
