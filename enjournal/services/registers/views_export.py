"""SQL on FHIR v2 ``$viewdefinition-export``, asynchronous, on the export jobs of
``bulk_runner`` (docs/registers.md, "SQL on FHIR v2").

https://sql-on-fhir.org/ig/OperationDefinition-ViewDefinitionExport.html: the FHIR
asynchronous request pattern with a 303 to the result.

- Kick-off: ``POST [base]/$viewdefinition-export``, ``[base]/ViewDefinition/$viewdefinition-
  export`` (``view`` parts, each with ``name`` and ``viewResource`` or ``viewReference``; or
  a top-level ``viewResource``/``viewReference``) or ``[base]/ViewDefinition/[id]/$viewdefinition-
  export``, with ``Prefer: respond-async`` (the spec requires it: without it, 400).  The views
  are checked and resolved, the caller's scopes must let it read each view's resource type,
  and the job is queued (kind ``views``): 202, ``Content-Location`` the status URL
  ``[base]/$export-poll-status?_jobId=...``, and a Parameters with ``exportId``,
  ``clientTrackingId``, ``status`` ``accepted`` and ``location``.
- Status: 202 with ``X-Progress`` (``33% (1 of 3 views)``), ``Retry-After`` and a
  Parameters with ``status`` ``in-progress``; when done, ``303 See Other`` with ``Location``
  ``[base]/$export-result?_jobId=...``, which answers 200 with the Parameters the spec names
  (``exportId``, ``clientTrackingId``, ``status`` ``completed``, ``_format``,
  ``exportStartTime``, ``exportEndTime``, one ``output`` per view: ``name``, ``location`` (the
  file's HTTP URL, ``$export-file``), ``rows``) and ``Expires``, or 500 with an
  OperationOutcome if the export failed.  ``DELETE`` on the status URL cancels (202, then 404).
- Files: ``$export-file?_jobId=...&file=<name>.<format>``, for the client that started it.

Who: system clients only, as for ``$export``, with the scopes checked at the kick-off (each
view's type).  The job runs later, in a worker, and reads as ``$viewdefinition-run`` reads
for a system client: each view over what ``$export`` would write of its type (the bulk
export's reader and lines under the register export policy, read once per job, spooled to
NDJSON for DuckDB: ``views_api.exported_view``; on PostgreSQL under a policy that protects
nobody, the PostgreSQL engine over the store).  A health worker's or a citizen's access
rests on their own request (an access basis, a session), which a job cannot replay: they
use ``$viewdefinition-run``.

A job's checkpoint is per view: a worker that dies resumes with the first view not yet
written (a half-written file is written again).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enjournal.fhir.datetime import format_instant
from enjournal.fhir.errors import Forbidden, Invalid
from enjournal.fhir.viewdefinition import plan
from enjournal.rest.message import FhirResponse
from enjournal.rest.operations import Operation
from enjournal.security.exports import ExportPolicy
from enjournal.security.scopes import grant
from enjournal.services import Job
from enjournal.services.inputs import operation_parameters
from enjournal.services.registers import bulk
from enjournal.services.registers.bulk_params import preferences
from enjournal.services.registers.bulk_runner import job_dir
from enjournal.services.registers.privacy import read_policy
from enjournal.services.registers.views_api import (
    DEFINITIONS,
    FORMATS,
    exported_view,
    output_format,
    patients_of,
    reference_text,
    refuse_unsupported,
    render,
    since_of,
    stored_view,
    view_resource,
)
from enjournal.storage import exports as db

EXPORT, KIND = "viewdefinition-export", "views"
MAX_NAME = 100  # characters of a view's name (its file's name)


def register(platform) -> None:
    """The kick-off at the system, type and instance levels (the status, result and file
    operations are the export jobs', ``bulk``)."""

    async def kick_off(request, repo) -> FhirResponse:
        return await export(request, repo)

    definition = DEFINITIONS + "ViewDefinitionExport"
    for type_, instance in ((None, False), ("ViewDefinition", False), ("ViewDefinition", True)):
        platform.operations.add(
            Operation(EXPORT, type_, instance, kick_off, ("POST",), True, definition)
        )


def jobs(platform) -> list[Job]:
    return []  # the jobs are run by ``bulk-export`` (the ``views`` handler below)


# ---- kick-off -------------------------------------------------------------------------------


async def export(request, repo) -> FhirResponse:
    if "respond-async" not in preferences(request):
        raise Invalid(f"${EXPORT} is asynchronous: send Prefer: respond-async")
    principal = bulk.system_client(request)
    params = operation_parameters(request, "$" + EXPORT)
    refuse_unsupported(params)
    views = await definitions(request, repo, params)
    _check_scopes(principal, views)
    tracking = params.get("clientTrackingId")
    if tracking is not None and not isinstance(tracking, str):
        raise Invalid("clientTrackingId is a string")
    job_params = {
        "views": [[name, definition] for name, definition in views],
        "format": output_format(params.get("_format"), default="ndjson"),
        "since": since_of(params),
        "patients": patients_of(params),
        "clientTrackingId": tracking,
    }
    job, location = await bulk.queue(request, repo, KIND, job_params)
    _audit_kick_off(request, job)
    body = _status_parameters(job, "accepted", location)
    return FhirResponse.of(body, 202, **{"Content-Location": location})


async def definitions(request, repo, params: dict) -> list[tuple[str, dict]]:
    """The views to export, named, each checked against the spec (400 otherwise): the
    instance the URL names, the ``view`` parts, or the one top-level view."""
    body = request.json() if request.body else {}
    parts = [p for p in body.get("parameter") or [] if p.get("name") == "view"]
    named = [name for name in ("viewResource", "viewReference") if params.get(name)]
    views: list[tuple[str | None, dict]]
    if len(request.path) == 3:
        if parts or named:
            raise Invalid("ViewDefinition/[id]/$viewdefinition-export exports that view only")
        views = [(None, await stored_view(repo, f"ViewDefinition/{request.path[1]}"))]
    elif parts:
        views = [await _part_view(repo, part) for part in parts]
    elif len(named) == 1:
        views = [(None, await _top_view(repo, params, named[0]))]
    else:
        raise Invalid("name the views to export: view parts, viewResource or viewReference")
    return _named(views)


async def _part_view(repo, part: dict) -> tuple[str | None, dict]:
    values = {p.get("name"): p for p in part.get("part") or [] if isinstance(p, dict)}
    name = (values.get("name") or {}).get("valueString")
    if "viewResource" in values:
        return name, view_resource(values["viewResource"].get("resource"))
    if "viewReference" in values:
        reference = reference_text(values["viewReference"].get("valueReference"))
        return name, await stored_view(repo, reference)
    raise Invalid(f"view {name or ''!r} needs a viewResource or a viewReference")


async def _top_view(repo, params: dict, given: str) -> dict:
    if given == "viewResource":
        return view_resource(params["viewResource"])
    return await stored_view(repo, reference_text(params["viewReference"]))


def _named(views: list[tuple[str | None, dict]]) -> list[tuple[str, dict]]:
    """Each view's output name (given, else the ViewDefinition's ``name``, else ``viewN``):
    a file name, so letters, digits, - and _ only, and one per view."""
    named = []
    for n, (given, definition) in enumerate(views):
        plan(definition)  # a view that breaks the spec is a 400 before anything is queued
        name = given or definition.get("name") or f"view{n + 1}"
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise Invalid(f"view name {str(name)[:80]!r}: letters, digits, - and _ only")
        if len(name) > MAX_NAME:
            raise Invalid(f"view name {name[:80]!r}...: at most {MAX_NAME} characters")
        named.append((name, definition))
    if len({name for name, _ in named}) != len(named):
        raise Invalid("each exported view needs its own name")
    return named


def _check_scopes(principal, views: list[tuple[str, dict]]) -> None:
    """The client's ``system/`` scopes must let it read every view's resource type: the
    job reads with them, and a refusal found at the kick-off is better than a failed job."""
    if principal is None:
        return
    for name, definition in views:
        if grant(principal.scopes, definition["resource"], "r") != "system":
            raise Forbidden(f"view {name!r}: the token's scopes do not allow reading "
                            f"{definition['resource']}")  # fmt: skip


def _audit_kick_off(request, job: db.ExportJob) -> None:
    """One AuditEvent for the export asked for; the job's reads are audited as they run."""
    if request.context is None:
        return
    params = job.params
    names = ",".join(name for name, _ in params["views"])
    types = ",".join(sorted({definition["resource"] for _, definition in params["views"]}))
    patients = params["patients"]
    request.context.record(
        action="E",
        subtype="$" + EXPORT,
        patient_id=patients[0] if len(patients) == 1 else None,
        entities=[f"Patient/{p}" for p in patients[:100]],
        purpose="PUBHLTH" if bulk.is_register(request.context.principal) else "HOPERAT",
        query=f"job={job.id} views={names} types={types} "
        f"patients={len(patients) or 'all'} since={params['since']}"[:2000],
    )


# ---- the status and the result --------------------------------------------------------------


def _status_parameters(job: db.ExportJob, status: str, location: str) -> dict:
    parameters = [{"name": "exportId", "valueString": job.id}]
    if job.params.get("clientTrackingId"):
        parameters.append(
            {"name": "clientTrackingId", "valueString": job.params["clientTrackingId"]}
        )
    parameters += [
        {"name": "status", "valueCode": status},
        {"name": "location", "valueUri": location},
    ]
    return {"resourceType": "Parameters", "parameter": parameters}


def _waiting(request, job: db.ExportJob) -> dict:
    status = "accepted" if job.status == db.QUEUED else "in-progress"
    return _status_parameters(job, status, bulk.status_url(request, job.id))


def _progress(job: db.ExportJob) -> str:
    if job.status == db.QUEUED:
        return "queued"
    done, total = (job.progress or {}).get("view", 0), len(job.params["views"])
    return f"{done * 100 // total}% ({done} of {total} views)"


def _answer(request, job: db.ExportJob) -> FhirResponse:
    """The result: what a synchronous call would have answered (the spec)."""
    output = job.output or {}
    parameters = _status_parameters(job, "completed", bulk.status_url(request, job.id))
    parameters["parameter"] = [p for p in parameters["parameter"] if p["name"] != "location"]
    parameters["parameter"] += [
        {"name": "_format", "valueCode": output["format"]},
        {"name": "exportStartTime", "valueInstant": format_instant(output["started"])},
        {"name": "exportEndTime", "valueInstant": format_instant(job.finished or 0)},
        *(_output_part(request, job, entry) for entry in output["output"]),
    ]
    return FhirResponse.of(parameters, 200, **bulk.expires(job))


def _output_part(request, job: db.ExportJob, entry: dict) -> dict:
    return {
        "name": "output",
        "part": [
            {"name": "name", "valueString": entry["name"]},
            {"name": "location", "valueUri": bulk.file_url(request, job.id, entry["file"])},
            {"name": "rows", "valueInteger": entry["rows"]},
        ],
    }


def _files(job: db.ExportJob) -> dict[str, str]:
    output = job.output or {}
    return {entry["file"]: FORMATS[output["format"]] for entry in output.get("output", [])}


# ---- the job --------------------------------------------------------------------------------


def handler(platform):
    """The runner's handler for ``views`` jobs: each view in turn, a checkpoint after each."""

    async def run(exporter, store, job: db.ExportJob) -> dict:
        params = job.params
        progress = job.progress or {"view": 0, "outputs": [], "started": exporter.now_ms()}
        job.progress = progress
        folder = job_dir(platform.settings, job.id, KIND)
        folder.mkdir(parents=True, exist_ok=True)
        source = await _source(platform, store)
        for index in range(progress["view"], len(params["views"])):
            name, definition = params["views"][index]
            file = f"{name}.{params['format']}"
            rows = await write_view(source, definition, params, folder / file)
            progress["outputs"].append({"name": name, "file": file, "rows": rows})
            progress["view"] = index + 1
            await exporter.save(store, job)
        return {"output": progress["outputs"], "format": params["format"],
                "started": progress["started"]}  # fmt: skip

    return run


@dataclass(frozen=True)
class Source:
    """What a job's views read: the store, under the export policy read once for the job,
    in pages of at most ``max_bytes`` of stored JSON (the bulk runner's)."""

    store: Any
    policy: ExportPolicy
    max_bytes: int


async def _source(platform, store) -> Source:
    async with store.transaction(write=False) as tx:
        policy = await read_policy(tx)
    return Source(store, policy, platform.settings.export_batch_bytes)


async def write_view(source: Source, definition: dict, params: dict, path: Path) -> int:
    """Run one view over what ``$export`` would write of its type and write its file (whole,
    or not at all: a resumed job writes it again); its row count."""
    view = plan(definition)
    result = await exported_view(
        source.store, view, params["since"], params["patients"], source.policy, source.max_bytes
    )
    written = path.with_name(f".{path.name}.part")
    written.write_bytes(render(result, params["format"], header=True))
    os.replace(written, path)
    return len(result.rows)


bulk.add_kind(
    KIND,
    bulk.Kind(
        progress=_progress,
        answer=_answer,
        files=_files,
        waiting=_waiting,
        redirect=True,
        handler=handler,
    ),
)
