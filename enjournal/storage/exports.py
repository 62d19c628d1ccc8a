"""Bulk export's SQL (services/registers/bulk.py, docs/registers.md): the job table and the
reader that streams stored resources out.

Jobs (table ``export_jobs``, migration 5; ``kind`` added by migration 6: ``bulk`` for
``$export``, ``views`` for ``$viewdefinition-export``, ``register`` for ``$register-export``)
live in the database, so an export survives a worker restart: a worker *claims* a job
with a lease (``lease_owner``, ``lease_until``) and renews it with every checkpoint; a job
whose lease ran out is claimed again by any worker, which resumes from the checkpoint
(``progress``).  A checkpoint succeeds only while the
worker still holds the lease and the job still exists, so a cancelled (deleted) job or one
taken over by another worker stops at its next batch.

The reader (``read_batch``) pages by keyset on the surrogate key ``rid`` and bounds each page
by **bytes** as well as by count: the running sum of the stored JSON's length over the page
(a window function) cuts it where it would pass ``max_bytes``, keeping at least one row, so a
page holds at most ``max(max_bytes, one resource)`` whatever the resources hold.  It returns
the stored JSON bytes as they are (no parse).  Selections: one type, ``_since``, ``_typeFilter``
queries (the store's own search SQL, ``search_sql``), a Patient compartment of a list of
patients or of any patient, and patients left out altogether (the export policy's exclusion
list, ``enjournal.security.exports``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from enjournal.fhir.definitions import patient_compartment

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
_JOB_COLUMNS = (
    "id, client_id, status, request, params, transaction_time, created, lease_owner, "
    "lease_until, progress, output, finished, expires, kind"
)
BULK = "bulk"  # the kind of a Bulk Data ``$export`` job (migration 6 added the column)


@dataclass
class ExportJob:
    """One row of ``export_jobs``; ``params``, ``progress`` and ``output`` as parsed JSON."""

    id: str
    client_id: str
    status: str
    request: str
    params: dict
    transaction_time: int  # epoch ms
    created: int
    lease_owner: str | None = None
    lease_until: int = 0
    progress: dict | None = None
    output: dict | None = None
    finished: int | None = None
    expires: int | None = None
    kind: str = BULK  # which handler runs it: "bulk", "views", "register"


@dataclass(frozen=True)
class Selection:
    """Which resources of one type an export reads."""

    type: str
    since_ms: int | None = None
    filters: tuple[Any, ...] = ()  # parsed _typeFilter SearchQuery objects, any may match
    patients: tuple[str, ...] | None = None  # their compartments only (None: no limit)
    any_patient: bool = False  # in some patient's compartment (Patient-level, all patients)
    excluded: tuple[str, ...] = field(default=())  # patients whose data is left out


def _conn(tx: Any) -> Any:
    return tx._conn


def _job(row: tuple) -> ExportJob:
    values = list(row)
    for n in (4, 9, 10):
        values[n] = json.loads(values[n]) if values[n] else None
    return ExportJob(*values)


# ---- jobs ---------------------------------------------------------------------------------


async def create_job(tx: Any, job: ExportJob) -> None:
    """Queue ``job`` in the kick-off's own write transaction (with its audit event)."""
    await _conn(tx).execute(
        f"INSERT INTO export_jobs ({_JOB_COLUMNS}) VALUES ({_marks(range(14))})",
        job.id,
        job.client_id,
        job.status,
        job.request,
        json.dumps(job.params),
        job.transaction_time,
        job.created,
        None,
        0,
        None,
        None,
        None,
        None,
        job.kind,
    )


async def active_jobs(tx: Any, client_id: str) -> int:
    """How many of ``client_id``'s jobs are queued or running (a cap on what one client
    may have the workers and the disk do at once)."""
    row = await _conn(tx).fetchrow(
        "SELECT count(*) FROM export_jobs WHERE client_id = ? AND status IN (?, ?)",
        client_id,
        QUEUED,
        RUNNING,
    )
    return int(row[0])


async def read_job(tx: Any, job_id: str) -> ExportJob | None:
    row = await _conn(tx).fetchrow(
        f"SELECT {_JOB_COLUMNS} FROM export_jobs WHERE id = ?", job_id[:100]
    )
    return _job(row) if row is not None else None


async def delete_job(tx: Any, job_id: str) -> bool:
    """Remove a job (cancelled or expired); False if there was none."""
    row = await _conn(tx).fetchrow("DELETE FROM export_jobs WHERE id = ? RETURNING id", job_id)
    return row is not None


async def claimable(store: Any, now: int) -> bool:
    """Whether any job waits to be claimed: a read, so an idle worker's pass (every second
    in every server process) takes no write lock."""
    async with store.transaction(write=False) as tx:
        row = await _conn(tx).fetchrow(
            "SELECT 1 FROM export_jobs WHERE status IN (?, ?) AND lease_until < ? LIMIT 1",
            QUEUED,
            RUNNING,
            now,
        )
    return row is not None


async def claim_jobs(store: Any, worker: str, now: int, lease_ms: int, limit: int) -> list:
    """Claim up to ``limit`` jobs that are queued, or running under a lease that ran out (a
    worker that died): each claimed job is this worker's until ``now + lease_ms``.  Two
    workers never claim the same job: PostgreSQL skips rows another claim has locked, SQLite
    has one writer."""
    if limit <= 0:
        return []
    skip = " FOR UPDATE SKIP LOCKED" if store.dialect == "postgres" else ""
    async with store.transaction(write=True) as tx:
        conn = _conn(tx)
        rows = await conn.fetch(
            "SELECT id FROM export_jobs WHERE status IN (?, ?) AND lease_until < ? "
            f"ORDER BY created LIMIT ?{skip}",
            QUEUED,
            RUNNING,
            now,
            limit,
        )
        claimed = []
        for (job_id,) in rows:
            row = await conn.fetchrow(
                "UPDATE export_jobs SET status = ?, lease_owner = ?, lease_until = ? "
                f"WHERE id = ? RETURNING {_JOB_COLUMNS}",
                RUNNING,
                worker,
                now + lease_ms,
                job_id,
            )
            claimed.append(_job(row))
        return claimed


async def checkpoint(
    store: Any, job: ExportJob, worker: str, lease_until: int, output: dict | None = None
) -> bool:
    """Save ``job.progress`` (and ``output``) and renew the lease; False when the worker no
    longer holds the job (cancelled, or taken over after its lease ran out): it must stop."""
    async with store.transaction(write=True) as tx:
        row = await _conn(tx).fetchrow(
            "UPDATE export_jobs SET progress = ?, output = COALESCE(?, output), lease_until = ? "
            "WHERE id = ? AND lease_owner = ? AND status = ? RETURNING id",
            json.dumps(job.progress),
            json.dumps(output) if output is not None else None,
            lease_until,
            job.id,
            worker,
            RUNNING,
        )
        return row is not None


async def finish(
    store: Any, job: ExportJob, worker: str, status: str, output: dict, now: int, expires: int
) -> bool:
    """Mark the job done (or failed) with its manifest's output; False if no longer ours."""
    async with store.transaction(write=True) as tx:
        row = await _conn(tx).fetchrow(
            "UPDATE export_jobs SET status = ?, output = ?, progress = ?, finished = ?, "
            "expires = ?, lease_owner = NULL, lease_until = 0 "
            "WHERE id = ? AND lease_owner = ? AND status = ? RETURNING id",
            status,
            json.dumps(output),
            json.dumps(job.progress),
            now,
            expires,
            job.id,
            worker,
            RUNNING,
        )
        return row is not None


async def release(store: Any, job: ExportJob, worker: str, until: int = 0) -> None:
    """Give a claimed job back with its checkpoint (a worker stopping cleanly): the next
    claim resumes it without waiting for the lease to run out, or not before ``until``."""
    async with store.transaction(write=True) as tx:
        await _conn(tx).execute(
            "UPDATE export_jobs SET lease_until = ?, progress = ? WHERE id = ? AND lease_owner = ?",
            until,
            json.dumps(job.progress),
            job.id,
            worker,
        )


async def expired_jobs(store: Any, now: int) -> list[str]:
    """Ids of finished jobs whose files are past their time."""
    async with store.transaction(write=False) as tx:
        rows = await _conn(tx).fetch(
            "SELECT id FROM export_jobs WHERE status IN (?, ?) AND expires < ?", DONE, FAILED, now
        )
    return [row[0] for row in rows]


async def job_ids(store: Any) -> set[str]:
    """Every job id (the expiry job deletes file folders of jobs that no longer exist)."""
    async with store.transaction(write=False) as tx:
        return {row[0] for row in await _conn(tx).fetch("SELECT id FROM export_jobs")}


# ---- the citizen's controls ---------------------------------------------------------------


async def protected_patients(tx: Any, system: str) -> list[tuple[str, str]]:
    """(patient id, code) of each Patient labelled by ``system`` in ``meta.security`` (the
    address protection, strengt fortrolig / fortrolig): one indexed query per job."""
    rows = await _conn(tx).fetch(
        "SELECT r.id, t.code FROM idx_token t JOIN resources r ON r.rid = t.rid "
        "WHERE t.type = 'Patient' AND t.param = '_security' AND t.system = ? AND NOT r.deleted",
        system,
    )
    return [(row[0], row[1]) for row in rows]


async def consents_of_category(tx: Any, systems: Sequence[str]) -> list[tuple[str, bytes]]:
    """(patient id, stored JSON) of each current Consent with a category coded in one of
    ``systems`` (the citizen's privacy choices a register export honours)."""
    if not systems:
        return []
    rows = await _conn(tx).fetch(
        "SELECT DISTINCT c.target_id, r.rid, r.content FROM idx_token t "
        "JOIN resources r ON r.rid = t.rid "
        "JOIN idx_reference c ON c.rid = r.rid AND c.param = 'patient' "
        "AND c.target_type = 'Patient' "
        f"WHERE t.type = 'Consent' AND t.param = 'category' AND t.system IN ({_marks(systems)}) "
        "AND NOT r.deleted",
        *systems,
    )
    return [(row[0], bytes(row[2])) for row in rows]


async def group_members(tx: Any, group_id: str) -> list[str] | None:
    """The ids of the Patients a Group lists (``member.entity``), or None if no such Group:
    read from the Group's index rows (its ``member`` references)."""
    conn = _conn(tx)
    found = await conn.fetchrow(
        "SELECT rid FROM resources WHERE type = 'Group' AND id = ? AND NOT deleted", group_id
    )
    if found is None:
        return None
    rows = await conn.fetch(
        "SELECT DISTINCT target_id FROM idx_reference WHERE rid = ? AND param = 'member' "
        "AND target_type = 'Patient' ORDER BY target_id",
        found[0],
    )
    return [row[0] for row in rows]


# ---- the reader ---------------------------------------------------------------------------


async def read_batch(
    tx: Any, selection: Selection, after: int, max_bytes: int, max_rows: int = 10_000
) -> list[tuple[int, str, bytes]]:
    """The next page of ``selection`` after surrogate key ``after``: (rid, id, stored JSON),
    at most ``max_rows`` rows and ``max_bytes`` bytes of JSON (at least one row)."""
    conn = _conn(tx)
    args: list[Any] = []
    where = _where(conn.dialect, selection, after, args)
    length = "octet_length" if conn.dialect == "postgres" else "length"
    sql = (
        "SELECT rid, id, content FROM ("
        "SELECT rid, id, content, size, "
        "sum(size) OVER (ORDER BY rid ROWS UNBOUNDED PRECEDING) AS running FROM ("
        f"SELECT r.rid, r.id, r.content, {length}(r.content) AS size FROM resources r "
        f"WHERE {where} ORDER BY r.rid LIMIT ?) AS page) AS sized "
        "WHERE running <= ? OR running = size ORDER BY rid"
    )
    rows = await conn.fetch(sql, *args, max_rows, max_bytes)
    return [(row[0], row[1], bytes(row[2])) for row in rows]


async def count_selection(tx: Any, selection: Selection) -> int:
    """How many resources ``selection`` holds (the progress a status poll reports)."""
    conn = _conn(tx)
    args: list[Any] = []
    where = _where(conn.dialect, selection, 0, args)
    row = await conn.fetchrow(f"SELECT count(*) FROM resources r WHERE {where}", *args)
    return int(row[0])


def _where(dialect: str, selection: Selection, after: int, args: list) -> str:
    """The WHERE clause over ``resources r``, its arguments appended to ``args`` in order."""
    conds = ["r.type = ?", "NOT r.deleted", "r.rid > ?"]
    args.extend([selection.type, after])
    if selection.since_ms is not None:
        conds.append("r.last_updated >= ?")
        args.append(selection.since_ms)
    if selection.filters:
        conds.append(_filters(dialect, selection.filters, args))
    if selection.patients is not None:
        conds.append(_compartment(dialect, selection.type, selection.patients, args))
    elif selection.any_patient:
        conds.append(_any_patient(selection.type, args))
    if selection.excluded:
        conds.append(_not_excluded(dialect, selection.type, selection.excluded, args))
    return " AND ".join(conds)


def _filters(dialect: str, queries: tuple[Any, ...], args: list) -> str:
    """``_typeFilter``: the store's own search SQL for each query, OR'ed."""
    from enjournal.storage.search_sql import _Sql

    parts = [f"({_Sql(dialect).where(query, args)})" for query in queries]
    return "(" + " OR ".join(parts) + ")"


def _id_list(dialect: str, ids: Sequence[str], args: list) -> str:
    """A list of ids as one argument: an array on PostgreSQL, JSON on SQLite."""
    if dialect == "postgres":
        args.append(list(ids))
        return "SELECT unnest(?::text[])"
    args.append(json.dumps(list(ids)))
    return "SELECT value FROM json_each(?)"


def _compartment(dialect: str, type_: str, patients: Sequence[str], args: list) -> str:
    if type_ == "Patient":
        return f"r.id IN ({_id_list(dialect, patients, args)})"
    params = patient_compartment().get(type_)
    if not params:
        return "1 = 0"
    args.extend([type_, *params])
    ids = _id_list(dialect, patients, args)
    return (
        "r.rid IN (SELECT c.rid FROM idx_reference c WHERE c.type = ? "
        f"AND c.param IN ({_marks(params)}) AND c.target_type = 'Patient' "
        f"AND c.target_id IN ({ids}))"
    )


def _any_patient(type_: str, args: list) -> str:
    if type_ == "Patient":
        return "1 = 1"
    params = patient_compartment().get(type_)
    if not params:
        return "1 = 0"
    args.extend([type_, *params])
    return (
        "EXISTS (SELECT 1 FROM idx_reference c WHERE c.rid = r.rid AND c.type = ? "
        f"AND c.param IN ({_marks(params)}) AND c.target_type = 'Patient')"
    )


def _not_excluded(dialect: str, type_: str, excluded: Sequence[str], args: list) -> str:
    """Nothing that is, or refers to, an excluded patient (by any reference, not only the
    compartment's: a conservative cut)."""
    if type_ == "Patient":
        return f"r.id NOT IN ({_id_list(dialect, excluded, args)})"
    ids = _id_list(dialect, excluded, args)
    return (
        "NOT EXISTS (SELECT 1 FROM idx_reference x WHERE x.rid = r.rid "
        f"AND x.target_type = 'Patient' AND x.target_id IN ({ids}))"
    )


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)
