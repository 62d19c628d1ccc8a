"""create and conditional create: http://hl7.org/fhir/R4/http.html#create and #ccreate."""

from __future__ import annotations

from enjournal.fhir.errors import PreconditionFailed
from enjournal.rest.interactions.common import checked_resource, known_type, stored_response
from enjournal.rest.interactions.conditional import matches
from enjournal.rest.message import FhirRequest, FhirResponse, version_headers
from enjournal.storage import Transaction


async def create(request: FhirRequest, tx: Transaction) -> FhirResponse:
    type_ = known_type(request.path[0])
    resource = checked_resource(request, type_)
    resource.pop("id", None)  # the server assigns ids on create
    if request.guard:
        await request.guard.check_write(tx, resource, "c", "create")
    criteria = request.header("if-none-exist")
    if criteria:
        await tx.lock_criteria(type_, criteria)
        found = await matches(tx, type_, criteria, limit=2, guard=request.guard)
        if len(found) > 1:
            raise PreconditionFailed(f"If-None-Exist matched several {type_} resources")
        if found:
            if request.guard:
                await request.guard.check_stored(tx, found[0], "r", "read")
            headers = version_headers(found[0], request.base_url, location=True)
            return FhirResponse(
                200,
                found[0].content if request.prefer("return") != "minimal" else None,
                headers,
                found[0],
            )
    stored = await tx.create(resource)
    return stored_response(request, stored, 201, location=True)
