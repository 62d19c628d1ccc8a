"""The FHIR router: which interaction serves a request, and its error policy.

Routes are matched on the method and the shape of the path after the FHIR base.  Each
interaction runs inside one store transaction (read-only for GET), so everything a request
writes commits together.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager

from enjournal.fhir.errors import FhirError, Forbidden, MethodNotAllowed, NotFound
from enjournal.rest import operations
from enjournal.rest.bundle import process_bundle
from enjournal.rest.errors import error_response
from enjournal.rest.interactions import (
    access_log,
    capabilities,
    create,
    delete,
    everything,
    history,
    patch,
    read,
    search,
    update,
    validate,
)
from enjournal.rest.message import FhirRequest, FhirResponse
from enjournal.security.repository import GuardedRepository
from enjournal.storage import Store, Transaction

log = logging.getLogger("enjournal.rest")
# Every interaction and operation gets the request's guarded repository: the store as the
# caller may use it (enjournal.security.repository).
Interaction = Callable[[FhirRequest, GuardedRepository], Awaitable[FhirResponse]]


def route(request: FhirRequest) -> Interaction:
    """Pick the interaction for ``request``; NotFound / MethodNotAllowed otherwise."""
    m, p = request.method, request.path
    n = len(p)
    table: dict[str, Interaction] = {}
    if n == 0:
        table = {"GET": search.search_system, "POST": _bundle_marker}
    elif n == 1 and p[0] == "metadata":
        table = {"GET": capabilities.capabilities}
    elif n == 1 and p[0] == "_history":
        table = {"GET": history.history}
    elif n == 1 and not p[0].startswith(("$", "_")):
        table = {
            "GET": search.search_type,
            "POST": create.create,
            "PUT": update.conditional_update,
            "DELETE": delete.conditional_delete,
            "PATCH": patch.patch,
        }
    elif n == 2 and p[1] == "_search":
        table = {"POST": search.search_type}
    elif n == 2 and p[1] == "_history":
        table = {"GET": history.history}
    elif n == 2 and p[1] == "$validate":
        table = {"POST": validate.validate}
    elif n == 2 and not p[1].startswith(("$", "_")):
        table = {
            "GET": read.read,
            "HEAD": read.read,
            "PUT": update.update,
            "DELETE": delete.delete,
            "PATCH": patch.patch,
        }
    elif n == 3 and p[0] == "Patient" and p[2] == "$everything":
        table = {"GET": everything.everything}
    elif n == 3 and p[0] == "Patient" and p[2] == "$access-log":
        table = {"GET": access_log.access_log}
    elif n == 3 and p[2] == "_history":
        table = {"GET": history.history}
    elif n == 3 and p[0] == "Patient" and not p[2].startswith(("$", "_")):
        table = {"GET": search.search_compartment}
    elif n == 4 and p[2] == "_history":
        table = {"GET": read.vread}
    if not table:
        table = _operation_table(request)
    if not table:
        raise NotFound(f"no FHIR interaction at /{'/'.join(p)}")
    if m not in table:
        raise MethodNotAllowed(f"{m} is not allowed on /{'/'.join(p)}", allow=tuple(table))
    return table[m]


def _operation_table(request: FhirRequest) -> dict[str, Interaction]:
    """Registered operations: /$op, /Type/$op, /Type/id/$op."""
    op = _operation_for(request)
    return {method: op.handler for method in op.methods} if op is not None else {}


def writes(request: FhirRequest) -> bool:
    """Whether the request needs a write transaction."""
    p = request.path
    op = _operation_for(request)
    if op is not None:
        return op.writes_for(request.method)
    if request.method in READ_ONLY or p[-1:] in READ_ONLY_PATHS:
        # The first page of a sorted search stores its ordered result for paging.
        return request.param("_sort") is not None and request.param("_cursor") is None
    return True


def _operation_for(request: FhirRequest):
    """The operation the request's path names, in its platform's table (or None)."""
    p = request.path
    if not p or not p[-1].startswith("$") or len(p) > 3:
        return None
    name, table = p[-1][1:], operations.of(request)
    if len(p) == 1:
        return table.find(None, name, False)
    return table.find(p[0], name, len(p) == 3)


async def _bundle_marker(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    raise AssertionError("bundles are dispatched by handle()")


READ_ONLY = {"GET", "HEAD"}
READ_ONLY_PATHS = (["_search"], ["$validate"])


async def dispatch(request: FhirRequest, tx: Transaction) -> FhirResponse:
    """Run one request inside an open transaction (used by bundles)."""
    return await run(route(request), request, tx)


async def run(interaction: Interaction, request: FhirRequest, tx: Transaction) -> FhirResponse:
    """Run an interaction on the guarded repository of ``tx``; a refusal that left no audit
    event gets one here, so every refused access is audited whichever rule refused it."""
    guard = request.guard
    before = guard.refusals if guard is not None else 0
    try:
        return await interaction(request, GuardedRepository(tx, guard))
    except Forbidden as error:
        if guard is not None and guard.refusals == before:
            guard.record_refusal(
                _action(request), _name(request, interaction), error.message, _patient(request)
            )
        raise


def _action(request: FhirRequest) -> str:
    """The guard's action letter for a refused request's audit event."""
    if request.method in READ_ONLY or request.path[-1:] == ["_search"]:
        return "r"
    return {"POST": "c", "DELETE": "d"}.get(request.method, "u")


def _name(request: FhirRequest, interaction: Interaction) -> str:
    """The restful interaction or operation name recorded for a refusal."""
    last = request.path[-1] if request.path else ""
    if last.startswith("$"):
        return last
    name = getattr(interaction, "__name__", "operation").removeprefix("conditional_")
    return {"search_system": "search-system", "search_compartment": "search-type"}.get(
        name, name.replace("_", "-")
    )


def _patient(request: FhirRequest) -> str | None:
    """The patient a request names in its path, if it names one."""
    p = request.path
    return p[1] if len(p) >= 2 and p[0] == "Patient" and not p[1].startswith(("$", "_")) else None


class Unit:
    """Opens store transactions for one request.  With a guard, the audit events a write
    produced are appended inside its transaction, so the write and its trace commit
    together; events of reads and refusals go to the audit writer afterwards."""

    def __init__(self, store: Store, guard, audit):
        self.store, self.guard, self.audit = store, guard, audit

    @asynccontextmanager
    async def transaction(self, *, write: bool):
        async with self.store.transaction(write=write) as tx:
            yield tx
            if write and self.guard is not None and self.guard.context.events:
                from enjournal.security.audit import append

                # Write the pending version and index rows first: appending locks the
                # audit chain's head for every writer until commit, so hold it briefly.
                await tx.flush()
                await append(tx, self.guard.context.take_events())

    async def record_rest(self) -> None:
        if self.guard is not None and self.guard.context.events and self.audit is not None:
            await self.audit.record(self.guard.context.take_events())


async def handle(request: FhirRequest, store: Store, audit=None) -> FhirResponse:
    """Serve one request; every FhirError becomes an OperationOutcome with its status.

    ``audit`` (an ``enjournal.security.audit.AuditWriter``) receives the audit events of
    reads and refused requests when the request carries a guard."""
    unit = Unit(store, request.guard, audit)
    try:
        return await _handle(request, unit)
    finally:
        await unit.record_rest()


async def _handle(request: FhirRequest, unit: Unit) -> FhirResponse:
    try:
        interaction = route(request)
        if interaction is _bundle_marker:
            return await process_bundle(request, unit, dispatch)
        write = writes(request)
        async with unit.transaction(write=write) as tx:
            return await run(interaction, request, tx)
    except FhirError as error:
        return error_response(error)
