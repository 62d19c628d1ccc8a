"""FHIR Bulk Data Access IG 2.0 ``$export`` (https://hl7.org/fhir/uv/bulkdata/STU2/export.html):
the asynchronous request pattern over the job runner in ``bulk_runner`` (docs/registers.md,
"Bulk export").

- Kick-off: ``GET|POST [base]/$export``, ``[base]/Patient/$export``,
  ``[base]/Group/[id]/$export`` with ``Prefer: respond-async``: the parameters are checked
  (``bulk_params``), the job is queued in the database (``enjournal.storage.exports``) with
  its AuditEvent, and the answer is 202 with ``Content-Location`` naming the status URL.
- Status: ``GET [base]/$export-poll-status?_jobId=...``: 202 with ``X-Progress`` and
  ``Retry-After`` while it runs, then 200 with the manifest; ``DELETE`` cancels the job and
  deletes its files (202).
- Files: ``GET [base]/$export-file?_jobId=...&file=...``: the NDJSON, streamed from disk by
  the route in ``bulk_routes`` (the operation authorises and audits it).

The same status, result and file operations serve the other exports that run on these
jobs (``KINDS``: ``$viewdefinition-export`` in ``views_export``, ``$register-export`` in
``feeds``): each kind says how its progress, its finished answer and its files look, and
may add an access rule; ``$export-result?_jobId=...`` is the result URL a kind that
answers ``303 See Other`` on completion (SQL on FHIR) points to.

Who may export: system clients (SMART Backend Services, client credentials with
``private_key_jwt``) for the types their ``system/`` scopes let them read, register clients
included (``policy.py`` rule 1: they read only through export operations).  Only the client
that started an export sees its status and files; anyone else gets 404, as for a job that
does not exist.  What the files hold of each patient follows ``enjournal.security.exports``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from enjournal.fhir.errors import Forbidden, Invalid, NotFound, TooManyRequests
from enjournal.rest.message import FhirResponse, info_outcome
from enjournal.rest.operations import Operation
from enjournal.security.scopes import grant, is_register_client
from enjournal.services import Job
from enjournal.services.registers import bulk_params
from enjournal.services.registers.bulk_runner import Exporter, job_dir, remove_files
from enjournal.storage import Transaction
from enjournal.storage import exports as db

BULK_DATA = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
STATUS, FILE, RESULT = "export-poll-status", "export-file", "export-result"
RETRY_AFTER = "2"
# Queued or running jobs a client may have at once: each is a copy of (part of) the store
# on disk for an hour, so one client must not fill the disk or hold every worker (attack C-1).
MAX_ACTIVE_JOBS = 5
NDJSON = "application/fhir+ndjson"


@dataclass(frozen=True)
class Kind:
    """How the status, result and file operations answer for one kind of export job."""

    progress: Callable[[db.ExportJob], str]  # X-Progress while it runs
    answer: Callable[..., FhirResponse]  # (request, job): the finished job's answer
    files: Callable[[db.ExportJob], dict[str, str]]  # file name -> its content type
    allowed: Callable[..., None] | None = None  # (request, job): raises if the caller may not
    waiting: Callable[..., dict | None] | None = None  # (request, job): a 202's body
    redirect: bool = False  # finished: 303 See Other to $export-result (else the answer)
    handler: Callable[..., object] | None = None  # (platform) -> the runner's handler


KINDS: dict[str, Kind] = {}


def add_kind(name: str, kind: Kind) -> None:
    """Serve a kind of job through the status, result and file operations (idempotent)."""
    KINDS[name] = kind


class FileReply(FhirResponse):
    """A file to send: the route streams ``path``; anyone else gets its bytes as the body."""

    path: Path | None = None


def register(platform) -> None:
    """The three kick-off levels, the status and file operations, and (serving) the route
    that streams files."""
    settings = platform.settings

    async def kick_off(request, repo) -> FhirResponse:
        return await export(request, repo)

    async def status(request, repo) -> FhirResponse:
        return await poll(request, repo, settings)

    async def file(request, repo) -> FhirResponse:
        return await fetch(request, repo, settings)

    async def result(request, repo) -> FhirResponse:
        return await poll(request, repo, settings, result=True)

    definition = f"{BULK_DATA}/export"
    for type_, instance in ((None, False), ("Patient", False), ("Group", True)):
        platform.operations.add(Operation("export", type_, instance, kick_off, writes=True,
                                          definition=definition))  # fmt: skip
    platform.operations.add(Operation(STATUS, None, False, status, ("GET", "DELETE"), ("DELETE",)))
    platform.operations.add(Operation(FILE, None, False, file, ("GET",)))
    platform.operations.add(Operation(RESULT, None, False, result, ("GET",)))
    if platform.serving:
        from enjournal.services.registers.bulk_routes import routes

        platform.routes.extend(routes(platform))


def jobs(platform) -> list[Job]:
    """``bulk-export``: runs the queued exports and deletes expired ones (``bulk_runner``)."""
    handlers = {name: kind.handler(platform) for name, kind in KINDS.items() if kind.handler}
    exporter = Exporter(platform.settings, platform.clock, handlers=handlers)  # type: ignore[arg-type]
    platform.bulk_exporter = exporter  # tests and the benchmark read its stats
    return [Job("bulk-export", 1.0, exporter.run_pass)]


# ---- kick-off -------------------------------------------------------------------------------


async def export(request, repo) -> FhirResponse:
    if "respond-async" not in bulk_params.preferences(request):
        raise Invalid("$export is asynchronous: send Prefer: respond-async")
    tx = _sql(repo)
    principal = system_client(request)
    params = bulk_params.parse_request(request, _granted(principal), _traversal(request))
    if params.group is not None:
        params.patients = await _group_patients(tx, params.group, params.patients)
    job, location = await queue(request, repo, db.BULK, params.to_json())
    _audit_kick_off(request, principal, params, job)
    body = info_outcome(f"export {job.id} queued; poll {location}")
    return FhirResponse.of(body, 202, **{"Content-Location": location})


async def queue(request, repo, kind: str, params: dict) -> tuple[db.ExportJob, str]:
    """Queue a job of ``kind`` for the caller (a system client) in the kick-off's
    transaction; the job and its status URL (the kick-off answers 202 with it as
    ``Content-Location``)."""
    job = new_job(request, kind, params)
    await create_job(_sql(repo), job)
    return job, status_url(request, job.id)


async def create_job(tx, job: db.ExportJob) -> None:
    """Store a queued job, unless its client has ``MAX_ACTIVE_JOBS`` queued or running."""
    if await db.active_jobs(tx, job.client_id) >= MAX_ACTIVE_JOBS:
        error = TooManyRequests(
            f"{MAX_ACTIVE_JOBS} exports of yours are queued or running: wait for one to "
            "finish, or cancel one (DELETE its status URL)"
        )
        error.retry_after = 60
        raise error
    await db.create_job(tx, job)


def _traversal(request) -> bulk_params.CheckSearch | None:
    """A ``_typeFilter``'s chains and ``_has`` look into other types: the same check as a
    search's, or an export would answer for records the client may not search (attack
    A-4: a client with Observation scopes finding a person's Observations by national id
    through ``subject:Patient.identifier``).  Run on each filter as it is parsed, before
    the export policy's check (bulk_params), so a chain out of scope is a 403."""
    guard = request.guard
    if guard is None:
        return None
    return lambda query: guard.check_traversal(query, "$export")


def new_job(request, kind: str, params: dict) -> db.ExportJob:
    """A queued job of ``kind`` for the caller, who must be a system client."""
    principal = system_client(request)
    now = int(time.time() * 1000)
    client_id = principal.client_id if principal else ""
    url = _request_url(request)
    return db.ExportJob(uuid.uuid4().hex, client_id, db.QUEUED, url, params, now, now, kind=kind)


def status_url(request, job_id: str) -> str:
    return f"{request.base_url}/${STATUS}?_jobId={job_id}"


def result_url(request, job_id: str) -> str:
    return f"{request.base_url}/${RESULT}?_jobId={job_id}"


def file_url(request, job_id: str, name: str) -> str:
    return f"{request.base_url}/${FILE}?_jobId={job_id}&file={name}"


def _sql(repo) -> Transaction:
    """The store's transaction under the guarded repository: the export's own rules
    (``system_client``, ``_granted``) decide access, the export policy what the files hold."""
    tx = repo.trusted  # its own access rules decide, above and in security/exports.py
    if not isinstance(tx, Transaction):
        raise Invalid("an asynchronous export needs the SQLite or PostgreSQL store")
    return tx


def system_client(request):
    """The caller, who must be a system client (None: a server without security): every
    kind of export job is a system client's."""
    context = request.context
    if context is None:
        return None
    principal = context.principal
    if principal.kind != "system":
        raise Forbidden("bulk export is for system clients (SMART Backend Services)")
    return principal


def _granted(principal):
    """The types of an export narrowed to what the client's ``system/`` scopes let it read:
    a type named in ``_type`` that is not granted is refused (ignored when lenient); without
    ``_type``, the export holds the granted types."""

    def narrow(types: list[str], named: bool, lenient: bool, notes: list[str]) -> list[str]:
        if principal is None:
            return types
        allowed = [t for t in types if grant(principal.scopes, t, "r") == "system"]
        refused = [t for t in types if t not in allowed]
        if not allowed:
            raise Forbidden("the token's system/ scopes allow reading none of the types asked")
        if refused and named:
            if not lenient:
                raise Forbidden(f"the token's system/ scopes do not allow reading {refused[0]}")
            notes.append(f"_type {', '.join(refused)} left out: not in the token's scopes")
        return allowed

    return narrow


async def _group_patients(tx, group_id: str, asked: list[str] | None) -> list[str]:
    members = await db.group_members(tx, group_id)
    if members is None:
        raise NotFound(f"Group/{group_id} is not known")
    if asked is None:
        return members
    return [p for p in asked if p in set(members)]


def _request_url(request) -> str:
    """The kick-off's URL (a POST's parameters are in its body, not here, as the IG says)."""
    query = urlencode(request.params, safe=",")
    url = f"{request.base_url}/{'/'.join(request.path)}"
    return f"{url}?{query}" if query else url


def _audit_kick_off(request, principal, params, job) -> None:
    """One AuditEvent: the export asked for, the types and patients in its query."""
    if request.context is None:
        return
    patients = params.patients or []
    request.context.record(
        action="E",
        subtype="$export",
        patient_id=patients[0] if len(patients) == 1 else None,
        entities=_entities(params),
        purpose="PUBHLTH" if is_register(principal) else "HOPERAT",
        query=f"job={job.id} level={params.level} types={','.join(params.types)} "
        f"patients={len(patients) if params.patients is not None else 'all'} "
        f"request={job.request}"[:2000],
    )


def _entities(params) -> list[str]:
    """The Group and (the first hundred of) the patients an export names."""
    named = [f"Group/{params.group}"] if params.group else []
    return named + [f"Patient/{p}" for p in (params.patients or [])[:100]]


def is_register(principal) -> bool:
    return is_register_client(principal.scopes if principal else ())


# ---- status and cancel ----------------------------------------------------------------------


async def poll(request, repo, settings, result: bool = False) -> FhirResponse:
    """The status URL (``result``: the result URL): 202 while the job runs, then its kind's
    answer, or for a kind that redirects, 303 See Other to the result URL."""
    tx = _sql(repo)
    job = await _own_job(request, tx)
    kind = KINDS[job.kind]
    if request.method == "DELETE":
        await db.delete_job(tx, job.id)
        remove_files(settings, job.id)
        return FhirResponse.of(info_outcome(f"export {job.id} cancelled"), 202)
    if job.status in (db.QUEUED, db.RUNNING):
        headers = {"X-Progress": kind.progress(job), "Retry-After": RETRY_AFTER}
        body = kind.waiting(request, job) if kind.waiting else None
        return FhirResponse.of(body, 202, **headers) if body else FhirResponse(202, None, headers)
    if kind.redirect and not result:
        return FhirResponse(303, None, {"Location": result_url(request, job.id)})
    if job.status == db.FAILED:
        return failed(job)
    return kind.answer(request, job)  # a finished job


async def _own_job(request, tx) -> db.ExportJob:
    """The job the request names, if the caller started it and its kind's own rule lets the
    caller see it now (404 otherwise, as for none)."""
    job_id = request.param("_jobId") or ""
    principal = system_client(request)  # every kind's jobs are system clients'
    job = await db.read_job(tx, job_id) if job_id else None
    if job is None or job.kind not in KINDS:
        raise NotFound(f"no export {job_id[:64]!r}")
    if principal is not None and job.client_id != principal.client_id:
        raise NotFound(f"no export {job_id[:64]!r}")
    allowed = KINDS[job.kind].allowed
    if allowed is not None:
        allowed(request, job)
    return job


def _bulk_answer(request, job: db.ExportJob) -> FhirResponse:
    return FhirResponse.of(_manifest(request, job), 200, **expires(job))


def failed(job: db.ExportJob) -> FhirResponse:
    """A failed job's answer: 500 with what the client may read of why."""
    failure = (job.output or {}).get("failure", "the export failed")
    return FhirResponse.of(_outcome("error", "exception", failure), 500)


def _bulk_files(job: db.ExportJob) -> dict[str, str]:
    output = job.output or {}
    return {f["file"]: NDJSON for f in [*output.get("output", []), *output.get("error", [])]}


def _progress(job: db.ExportJob) -> str:
    progress = job.progress or {}
    if job.status == db.QUEUED or not progress:
        return "queued" if job.status == db.QUEUED else "started"
    done, total = progress.get("done", 0), progress.get("total")
    if not total:  # not counted (too many to count within the time limit), or none
        return f"{done} resources read"
    return f"{min(100, done * 100 // total)}% ({done} of {total} resources)"


def _manifest(request, job: db.ExportJob) -> dict:
    from enjournal.fhir.datetime import format_instant

    output = job.output or {}

    def entries(files: list[dict]) -> list[dict]:
        return [
            {"type": f["type"], "url": file_url(request, job.id, f["file"]), "count": f["count"]}
            for f in files
        ]

    return {
        "transactionTime": format_instant(job.transaction_time),
        "request": job.request,
        "requiresAccessToken": True,
        "output": entries(output.get("output", [])),
        "error": entries(output.get("error", [])),
    }


def expires(job: db.ExportJob) -> dict[str, str]:
    from enjournal.rest.message import http_date

    return {"Expires": http_date(job.expires)} if job.expires else {}


def _outcome(severity: str, code: str, text: str) -> dict:
    issue = {"severity": severity, "code": code, "diagnostics": text}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


# ---- files ----------------------------------------------------------------------------------


async def fetch(request, repo, settings) -> FhirResponse:
    """One file of a finished export, to the client that started it; audited."""
    job = await _own_job(request, _sql(repo))
    name = request.param("file") or ""
    files = KINDS[job.kind].files(job) if job.status == db.DONE else {}
    path = job_dir(settings, job.id, job.kind) / name
    if name not in files or not path.is_file():
        raise NotFound(f"no file {name[:64]!r} in export {job.id}")
    if request.context is not None:
        request.context.record(
            action="R",
            subtype="$export-file",
            purpose="PUBHLTH" if is_register(request.context.principal) else "HOPERAT",
            query=f"job={job.id} file={name}",
        )
    reply = FileReply(200, None, {"Content-Type": files[name]})
    reply.path = path
    if not getattr(request, "stream_file", False):
        reply.body = path.read_bytes()  # an in-process caller (no route to stream it)
    return reply


add_kind(db.BULK, Kind(progress=_progress, answer=_bulk_answer, files=_bulk_files, allowed=None))
