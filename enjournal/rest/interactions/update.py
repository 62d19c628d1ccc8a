"""update, update-as-create and conditional update: http://hl7.org/fhir/R4/http.html#update."""

from __future__ import annotations

from enjournal.fhir.errors import Invalid, PreconditionFailed
from enjournal.rest.interactions.common import checked_resource, known_type, stored_response
from enjournal.rest.message import FhirRequest, FhirResponse, parse_etag
from enjournal.security.repository import GuardedRepository


async def update(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    type_, id_ = known_type(request.path[0]), request.path[1]
    resource = checked_resource(request, type_, id_)
    if_match = parse_etag(request.header("if-match"))
    stored = await repo.update(resource, id_, if_match=if_match)
    return stored_response(request, stored, 201 if stored.version == 1 else 200, location=True)


async def conditional_update(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    type_ = known_type(request.path[0])
    if not request.params:
        raise Invalid("PUT on a type needs search criteria (conditional update)")
    criteria = "&".join(f"{k}={v}" for k, v in request.params)
    resource = checked_resource(request, type_)
    await repo.lock_criteria(type_, criteria)
    found = await repo.matches(type_, criteria, limit=2)
    if len(found) > 1:
        raise PreconditionFailed(f"the criteria matched several {type_} resources")
    target = found[0].id if len(found) == 1 else resource.get("id")
    if target:
        await repo.check_update(type_, target, {**resource, "id": target})
    else:
        await repo.check_create(resource)
    if found:
        if resource.get("id") not in (None, found[0].id):
            raise Invalid("the resource id does not match the resource the criteria found")
        if_match = parse_etag(request.header("if-match"))
        stored = await repo.update(resource, found[0].id, if_match=if_match, checked=True)
        return stored_response(request, stored, 200, location=True)
    stored = (
        await repo.update(resource, resource["id"], checked=True)
        if resource.get("id")
        else (await repo.create(resource, checked=True))
    )
    return stored_response(request, stored, 201, location=True)
