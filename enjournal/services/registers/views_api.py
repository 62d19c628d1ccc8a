"""SQL on FHIR v2 ``$viewdefinition-run``, and the helpers ``views_export`` shares.

https://sql-on-fhir.org/ig/operations.html

``$viewdefinition-run`` (GET or POST; at ``/``, ``/ViewDefinition`` and
``/ViewDefinition/[id]``) runs one view and answers its rows in the body:

- the view: ``viewResource`` (the ViewDefinition inline, POST), ``viewReference``
  (``ViewDefinition/[id]`` or ``Library/[id]``), or the instance the URL names;
- the data: ``resource`` (inline resources, POST, any number) run on DuckDB as given;
  without them, the view's resource type from the store:

  - a **system client** (SMART Backend Services, a register's client too): the view over
    what ``$export`` would write of the type (SQLite, PostgreSQL): its ``system/`` scopes
    must let it read the view's type (else 403, as ``$export``'s), the register export
    policy is read once per run (``privacy.read_policy``), the type is read with the bulk
    export's reader and lines (``privacy.exported_pages``: the same selection, ``_since``,
    ``patient``, excluded patients, and the same policy on each row) into a temporary NDJSON
    spool, byte-bounded page by page (flat memory), that DuckDB reads; the run is one
    AuditEvent (action E; the view, its type, the row count, the patients named; purpose
    PUBHLTH for a register's client).  Only where that is exact, a PostgreSQL store under a
    policy that protects nobody, the PostgreSQL engine runs over the store instead
    (``storage.views.postgres.run_store_view``: no spool);
  - anyone else (citizens, personnel): through the request's guarded repository, page by
    page (``repo.search``: the caller's access policy applies and every page is audited as
    ``$viewdefinition-run``), spooled to a temporary NDJSON file that DuckDB reads, so the
    server's memory stays flat whatever the size;
- ``_format``: ``json`` (default: an array of row objects), ``ndjson``, ``csv`` (``header``
  true by default) or ``parquet``; ``_limit`` (rows), ``_since`` (``meta.lastUpdated`` at
  or after), ``patient`` (``Patient/[id]``, repeatable: only that patient's compartment).

``$viewdefinition-export`` (asynchronous, on the export jobs) is in ``views_export``.

Where a stored view lives: ViewDefinition is a logical model, not an R4 resource type, so
the store cannot hold one as such.  ``ViewDefinition/[id]`` is looked up first among the
views the platform defines (``define_view``: the register feeds' views), then as a
``Library`` with that id whose ``content`` holds the ViewDefinition as an
``application/json`` attachment (base64 ``data``), the usual R4 carrier for such models.
A ViewDefinition that breaks the spec is a 400 OperationOutcome saying what is wrong.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import io
import json
import os
import tempfile
from dataclasses import replace
from datetime import datetime
from typing import Any

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Forbidden, Invalid, NotFound, NotSupported
from enjournal.fhir.search import parse_search
from enjournal.fhir.viewdefinition import View, parse_limit, plan
from enjournal.rest.message import FhirResponse
from enjournal.rest.operations import Operation
from enjournal.security.scopes import grant, is_register_client
from enjournal.services import Job
from enjournal.services.inputs import operation_parameters
from enjournal.services.registers.privacy import (
    exported_pages,
    protects_nobody,
    read_policy,
    view_policy,
)
from enjournal.storage import exports as db
from enjournal.storage.views import ViewResult, run_view
from enjournal.storage.views.postgres import run_store_view

RUN = "viewdefinition-run"
DEFINITIONS = "https://sql-on-fhir.org/ig/OperationDefinition/"
FORMATS = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}
ALIASES = {"application/fhir+ndjson": "ndjson", "application/ndjson": "ndjson"}
ALIASES.update({mime: name for name, mime in FORMATS.items()})
PAGE = 500  # resources per page read from the store
MAX_INLINE = 10_000  # inline resources in one request; more go through the store or $export
DEFINED_VIEWS: dict[str, dict] = {}


def define_view(view_id: str, definition: dict) -> None:
    """Make a platform-defined view reachable as ``ViewDefinition/[view_id]``."""
    plan(definition)  # a broken definition fails where it is defined, not when first run
    DEFINED_VIEWS[view_id] = definition


def register(platform) -> None:
    views = Views(platform)
    for type_, instance in ((None, False), ("ViewDefinition", False), ("ViewDefinition", True)):
        platform.operations.add(
            Operation(
                RUN,
                type_,
                instance,
                views.run,
                ("GET", "POST"),
                definition=DEFINITIONS + "ViewDefinitionRun",
            )
        )


def jobs(platform) -> list[Job]:
    return []


class Views:
    def __init__(self, platform):
        self.platform = platform

    async def run(self, request, repo) -> FhirResponse:
        params = operation_parameters(request, "$" + RUN)
        refuse_unsupported(params)
        view = await view_of(request, repo, params)
        fmt = output_format(params.get("_format"), default="json")
        limit = parse_limit(params.get("_limit"))
        since, patients = since_of(params), patients_of(params)
        inline = inline_resources(params)
        if inline is not None:
            chosen = [r for r in inline if kept(r, since, patients)]
            result = await asyncio.to_thread(run_view, view, chosen, "duckdb", limit=limit)
        else:
            result = await self.from_store(request, repo, view, since, patients, limit, "$" + RUN)
        body = render(result, fmt, header=flag(params.get("header"), True))
        return FhirResponse(200, body, {"Content-Type": FORMATS[fmt]})

    async def from_store(
        self, request, repo, view: View, since, patients, limit, interaction
    ) -> ViewResult:
        """Run ``view`` over its resource type as the caller may read it: a system client
        over what ``$export`` would write (``over_export``); anyone else through the guarded
        repository."""
        if system_client(request) is not None:
            return await over_export(
                request, repo, self.platform, view, since, patients, limit, interaction
            )
        return await self.guarded(repo, view, since, patients, limit, interaction)

    async def guarded(self, repo, view: View, since, patients, limit, interaction) -> ViewResult:
        """The guarded repository's pages written to a temporary NDJSON file (flat memory)
        that DuckDB then reads."""
        handle, name = tempfile.mkstemp(suffix=".ndjson", prefix="view-")
        seen: set[str] = set()  # a resource in two named patients' records, once
        try:
            with os.fdopen(handle, "wb") as spool:
                for patient in patients or [None]:
                    await spool_pages(repo, view, since, patient, interaction, spool, seen)
            return await asyncio.to_thread(run_view, view, [name], "duckdb", limit=limit)
        finally:
            os.unlink(name)


# -- a system client: the view over what $export would write


def system_client(request):
    """The caller when it is a system client (SMART Backend Services), else None."""
    context = request.context
    if context is None or context.principal.kind != "system":
        return None
    return context.principal


async def over_export(
    request, repo, platform, view: View, since, patients, limit, interaction
) -> ViewResult:
    """The view over what ``$export`` would write for the client: its ``system/`` scopes
    must let it read the view's type (as ``$export``'s), the register export policy is read
    once for the run, and the run is one AuditEvent."""
    principal = request.context.principal
    if grant(principal.scopes, view.resource, "r") != "system":
        raise Forbidden(f"the token's system/ scopes do not allow reading {view.resource}")
    policy = await read_policy(repo.trusted)  # the policy decides what the rows hold
    max_bytes = platform.settings.export_batch_bytes
    result = await exported_view(platform.store, view, since, patients, policy, max_bytes, limit)
    audit_run(request, principal, view, patients, len(result.rows), interaction)
    return result


async def exported_view(
    store, view: View, since, patients, policy, max_bytes: int, limit=None
) -> ViewResult:
    """``view`` over the resources of its type as ``$export`` writes them under ``policy``
    (the bulk export's reader and lines: ``privacy.exported_pages``), spooled to a temporary
    NDJSON file a page at a time (flat memory) that DuckDB reads."""
    since_ms = None if since is None else int(instant(since).timestamp() * 1000)
    if store.dialect == "postgres" and protects_nobody(policy):
        # Exact only here: the policy in SQL (ViewPolicy) does not redact references, find
        # contained persons or non-indexed references as the export's lines do; with nobody
        # protected it only leaves out locked prescriptions, as they do.
        return await run_store_view(
            store, view, since_ms=since_ms, patients=patients or None,
            policy=view_policy(policy), limit=limit,
        )  # fmt: skip
    selection = db.Selection(
        view.resource,
        since_ms=since_ms,
        patients=tuple(patients) if patients else None,
        excluded=tuple(sorted(policy.excluded)),
    )
    handle, name = tempfile.mkstemp(suffix=".ndjson", prefix="view-")
    try:
        with os.fdopen(handle, "wb") as spool:
            async for lines in exported_pages(store, selection, policy, max_bytes):
                for line in lines:
                    spool.write(line)
                    spool.write(b"\n")
        return await asyncio.to_thread(run_view, view, [name], "duckdb", limit=limit)
    finally:
        os.unlink(name)


def audit_run(request, principal, view: View, patients, rows: int, interaction) -> None:
    """One AuditEvent for a system client's run: which view, which type, how many rows."""
    register = is_register_client(principal.scopes)
    request.context.record(
        action="E",
        subtype=interaction,
        patient_id=patients[0] if len(patients) == 1 else None,
        entities=[f"Patient/{p}" for p in patients[:100]],
        purpose="PUBHLTH" if register else "HOPERAT",
        query=f"view={view.name or '-'} type={view.resource} rows={rows} "
        f"patients={len(patients) if patients else 'all'} "
        f"request={request.base_url}/{'/'.join(request.path)}"[:2000],
    )


async def spool_pages(repo, view: View, since, patient, interaction, out, seen: set[str]) -> None:
    """Write the view's resources the caller may read to ``out``, one a line, page by page;
    ``patient``: only that patient's compartment."""
    criteria = [("_count", str(PAGE)), ("_total", "none")]
    if since is not None:
        criteria.append(("_lastUpdated", f"ge{since}"))
    compartment = ("Patient", patient) if patient else None
    cursor = None
    while True:
        pairs = criteria + ([("_cursor", cursor)] if cursor else [])
        query = parse_search(
            view.resource,
            pairs,
            strict=True,
            compartment=compartment,
            parameters=repo.search_parameters,
        )
        page = await repo.search(query, interaction)
        for stored in page.matches:
            if stored.content is None or (patient is not None and stored.id in seen):
                continue
            if patient is not None:
                seen.add(stored.id)
            out.write(stored.content + b"\n")
        cursor = page.next_cursor
        if not cursor or not page.matches:
            return


# -- the view a request names


async def view_of(request, repo, params: dict) -> View:
    given = [name for name in ("viewResource", "viewReference") if params.get(name)]
    on_instance = len(request.path) == 3
    if len(given) + on_instance != 1:
        raise Invalid(
            "name one view: viewResource, viewReference, or ViewDefinition/[id]/$viewdefinition-run"
        )
    if on_instance:
        reference = f"ViewDefinition/{request.path[1]}"
        return named(plan(await stored_view(repo, reference)), reference)
    if given == ["viewResource"]:
        definition = view_resource(params["viewResource"])
        return named(plan(definition), definition.get("name") or definition.get("url"))
    reference = reference_text(params["viewReference"])
    return named(plan(await stored_view(repo, reference)), reference)


def named(view: View, name: Any) -> View:
    """``view`` with the name its audit event gives it (a reference, or the definition's
    own ``name``/``url``)."""
    return replace(view, name=str(name)[:200]) if name else view


def view_resource(value: Any) -> dict:
    if isinstance(value, list):
        raise Invalid("give one viewResource")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise Invalid("viewResource is not JSON") from None
    if not isinstance(value, dict):
        raise Invalid("viewResource must be a ViewDefinition resource")
    return value


def reference_text(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("reference")
    if not isinstance(value, str) or not value:
        raise Invalid("viewReference must be a Reference to ViewDefinition/[id] or Library/[id]")
    return value


async def stored_view(repo, reference: str) -> dict:
    """A ViewDefinition by reference: a platform-defined one, or a Library carrying it."""
    kind, _, view_id = reference.rstrip("/").rpartition("/")
    kind = kind.rpartition("/")[2]
    if kind not in ("ViewDefinition", "Library") or not view_id:
        raise Invalid(f"viewReference {reference!r}: expected ViewDefinition/[id] or Library/[id]")
    if kind == "ViewDefinition" and view_id in DEFINED_VIEWS:
        return DEFINED_VIEWS[view_id]
    library = jsonio.loads((await repo.read("Library", view_id, "$" + RUN)).content)
    return library_view(library, reference)


def library_view(library: dict, reference: str) -> dict:
    for content in library.get("content") or []:
        if not isinstance(content, dict) or "json" not in str(content.get("contentType", "")):
            continue
        try:
            definition = json.loads(base64.b64decode(content.get("data") or "", validate=True))
        except (binascii.Error, ValueError):
            raise Invalid(f"{reference}: its content is not a base64 JSON ViewDefinition") from None
        return view_resource(definition)
    raise NotFound(f"{reference} holds no ViewDefinition (an application/json content)")


# -- the other inputs


def refuse_unsupported(params: dict) -> None:
    """Inputs of the spec's operations this server does not take: a 400 that says so,
    rather than an answer that silently ignored them."""
    for name, why in (
        ("source", "external data sources are not read; the view runs over this server's data"),
        ("group", "group is not supported; name the patients with patient"),
    ):
        if params.get(name) not in (None, ""):
            raise NotSupported(f"{name}: {why}")


def output_format(value: Any, default: str) -> str:
    if value in (None, ""):
        return default
    if not isinstance(value, str) or (value not in FORMATS and value not in ALIASES):
        raise Invalid(f"_format {value!r}: one of {', '.join(FORMATS)}")
    return ALIASES.get(value, value)


def flag(value: Any, default: bool) -> bool:
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise Invalid(f"expected true or false, not {value!r}")


def since_of(params: dict) -> str | None:
    value = params.get("_since")
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"_since {value!r} is not an instant") from None
    if moment.tzinfo is None:
        raise Invalid("_since needs a time zone")
    return moment.isoformat()


def patients_of(params: dict) -> list[str]:
    value = params.get("patient")
    values = value if isinstance(value, list) else [] if value in (None, "") else [value]
    ids = []
    for item in values:
        text = reference_text(item) if isinstance(item, dict) else str(item)
        kind, _, patient_id = text.rpartition("/")
        if kind not in ("", "Patient") or not patient_id:
            raise Invalid(f"patient {text!r}: expected Patient/[id]")
        ids.append(patient_id)
    return ids


def inline_resources(params: dict) -> list[dict] | None:
    value = params.get("resource")
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_INLINE:
        raise Invalid(f"at most {MAX_INLINE} inline resources; use the store or $export")
    if not all(isinstance(r, dict) and isinstance(r.get("resourceType"), str) for r in items):
        raise Invalid("each resource parameter must be a FHIR resource")
    return items


def kept(resource: dict, since: str | None, patients: list[str]) -> bool:
    """An inline resource passes ``_since`` and ``patient`` (the store's search does this
    for stored ones)."""
    if since is not None:
        updated = (resource.get("meta") or {}).get("lastUpdated")
        if not updated or instant(updated) < instant(since):
            return False
    return not patients or any(about(resource, p) for p in patients)


def instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"meta.lastUpdated {text!r} is not an instant") from None


def about(resource: dict, patient_id: str) -> bool:
    if resource.get("resourceType") == "Patient":
        return resource.get("id") == patient_id
    target = f"Patient/{patient_id}"
    return any(
        (resource.get(key) or {}).get("reference") == target
        for key in ("subject", "patient", "beneficiary")
    )


# -- output


def render(result: ViewResult, fmt: str, header: bool) -> bytes:
    if fmt == "json":
        return json.dumps(result.to_dicts(), ensure_ascii=False, default=str).encode()
    if fmt == "ndjson":
        lines = (json.dumps(row, ensure_ascii=False, default=str) for row in result.to_dicts())
        return "".join(line + "\n" for line in lines).encode()
    if fmt == "csv":
        return csv_bytes(result, header)
    import pyarrow.parquet

    sink = io.BytesIO()
    pyarrow.parquet.write_table(result.to_arrow(), sink)
    return sink.getvalue()


def csv_bytes(result: ViewResult, header: bool) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    if header:
        writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow([cell_text(cell) for cell in row])
    return text.getvalue().encode()


def cell_text(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, list):
        return json.dumps(cell, ensure_ascii=False)
    return str(cell)
