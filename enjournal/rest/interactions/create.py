"""create and conditional create: http://hl7.org/fhir/R4/http.html#create and #ccreate."""

from __future__ import annotations

from enjournal.fhir.errors import PreconditionFailed
from enjournal.rest.interactions.common import checked_resource, known_type, stored_response
from enjournal.rest.message import FhirRequest, FhirResponse, version_headers
from enjournal.security.repository import GuardedRepository


async def create(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    type_ = known_type(request.path[0])
    resource = checked_resource(request, type_)
    resource.pop("id", None)  # the server assigns ids on create
    await repo.check_create(resource)
    criteria = request.header("if-none-exist")
    if criteria:
        await repo.lock_criteria(type_, criteria)
        found = await repo.matches(type_, criteria, limit=2)
        if len(found) > 1:
            raise PreconditionFailed(f"If-None-Exist matched several {type_} resources")
        if found:
            await repo.check_read(found[0])
            headers = version_headers(found[0], request.base_url, location=True)
            return FhirResponse(
                200,
                found[0].content if request.prefer("return") != "minimal" else None,
                headers,
                found[0],
            )
    stored = await repo.create(resource, checked=True)
    return stored_response(request, stored, 201, location=True)
