"""delete and conditional delete: http://hl7.org/fhir/R4/http.html#delete.

Deleting something already deleted or never created succeeds (delete is idempotent).  With
security on, a resource the caller may not read, and one that never existed, answer 404 alike,
so the answer never tells that a hidden resource exists.
"""

from __future__ import annotations

from enjournal.fhir.errors import Gone, Invalid
from enjournal.rest.interactions.common import known_type, readable
from enjournal.rest.interactions.conditional import matches
from enjournal.rest.message import FhirRequest, FhirResponse, etag, info_outcome, parse_etag
from enjournal.storage import Transaction

MAX_CONDITIONAL_DELETES = 100


async def delete(request: FhirRequest, tx: Transaction) -> FhirResponse:
    type_, id_ = known_type(request.path[0]), request.path[1]
    if request.guard:
        # Missing and hidden alike answer 404; a deletion the caller could read is done.
        try:
            current = await readable(request, tx, type_, id_, "delete")
        except Gone:
            return _deleted(None, f"{type_}/{id_}")
        await request.guard.check_stored(tx, current, "d", "delete")
    version = await tx.delete(type_, id_, if_match=parse_etag(request.header("if-match")))
    return _deleted(version, f"{type_}/{id_}")


async def conditional_delete(request: FhirRequest, tx: Transaction) -> FhirResponse:
    type_ = known_type(request.path[0])
    if not request.params:
        raise Invalid("DELETE on a type needs search criteria (conditional delete)")
    criteria = "&".join(f"{k}={v}" for k, v in request.params)
    await tx.lock_criteria(type_, criteria)
    found = await matches(
        tx, type_, criteria, limit=MAX_CONDITIONAL_DELETES + 1, guard=request.guard
    )
    if len(found) > MAX_CONDITIONAL_DELETES:
        raise Invalid(f"the criteria match more than {MAX_CONDITIONAL_DELETES} resources")
    for stored in found:
        if request.guard:
            await request.guard.check_stored(tx, stored, "d", "delete")
    for stored in found:
        await tx.delete(type_, stored.id)
    return _deleted(None, f"{len(found)} {type_} resource(s)")


def _deleted(version: int | None, what: str) -> FhirResponse:
    response = FhirResponse.of(info_outcome(f"deleted {what}"), 200)
    if version is not None:
        response.headers["ETag"] = etag(version)
    return response
