"""update, update-as-create and conditional update: http://hl7.org/fhir/R4/http.html#update."""

from __future__ import annotations

from enjournal.fhir.errors import Invalid, NotFound, PreconditionFailed
from enjournal.rest.interactions.common import (
    checked_resource,
    known_type,
    readable,
    stored_response,
)
from enjournal.rest.interactions.conditional import matches
from enjournal.rest.message import FhirRequest, FhirResponse, parse_etag
from enjournal.storage import Transaction


async def update(request: FhirRequest, tx: Transaction) -> FhirResponse:
    type_, id_ = known_type(request.path[0]), request.path[1]
    resource = checked_resource(request, type_, id_)
    if request.guard:
        await guard_update(request, tx, type_, id_, resource)
    if_match = parse_etag(request.header("if-match"))
    stored = await tx.update(resource, id_, if_match=if_match)
    return stored_response(request, stored, 201 if stored.version == 1 else 200, location=True)


async def guard_update(
    request: FhirRequest, tx: Transaction, type_: str, id_: str, resource: dict
) -> None:
    """Both the current version (whose record it is now) and the new content are checked,
    so nobody can move a resource into or out of a record they cannot reach.

    A resource the caller may not read answers 404, as a missing one does; so update-as-
    create (a client-chosen id) is for system clients only: for anyone else a 201 for a free
    id against a 404 for a hidden one would tell which ids exist."""
    guard = request.guard
    if await tx.exists(type_, id_):
        current = await readable(request, tx, type_, id_, "update")
        await guard.check_stored(tx, current, "u", "update")
        await guard.check_write(tx, resource, "u", "update")
    elif guard.principal.kind != "system":
        raise NotFound(f"{type_}/{id_} is not known")  # word for word as for a hidden one
    else:
        await guard.check_write(tx, resource, "c", "create")


async def conditional_update(request: FhirRequest, tx: Transaction) -> FhirResponse:
    type_ = known_type(request.path[0])
    if not request.params:
        raise Invalid("PUT on a type needs search criteria (conditional update)")
    criteria = "&".join(f"{k}={v}" for k, v in request.params)
    resource = checked_resource(request, type_)
    await tx.lock_criteria(type_, criteria)
    found = await matches(tx, type_, criteria, limit=2, guard=request.guard)
    if len(found) > 1:
        raise PreconditionFailed(f"the criteria matched several {type_} resources")
    if request.guard:
        target = found[0].id if len(found) == 1 else resource.get("id")
        if target:
            await guard_update(request, tx, type_, target, {**resource, "id": target})
        else:
            await request.guard.check_write(tx, resource, "c", "create")
    if found:
        if resource.get("id") not in (None, found[0].id):
            raise Invalid("the resource id does not match the resource the criteria found")
        stored = await tx.update(
            resource, found[0].id, if_match=parse_etag(request.header("if-match"))
        )
        return stored_response(request, stored, 200, location=True)
    stored = (
        await tx.update(resource, resource["id"])
        if resource.get("id")
        else (await tx.create(resource))
    )
    return stored_response(request, stored, 201, location=True)
