"""delete and conditional delete: http://hl7.org/fhir/R4/http.html#delete.

Deleting something already deleted or never created succeeds (delete is idempotent).  With
security on, a resource the caller may not read, and one that never existed, answer 404 alike,
so the answer never tells that a hidden resource exists.
"""

from __future__ import annotations

from enjournal.fhir.errors import Gone, Invalid
from enjournal.rest.interactions.common import known_type
from enjournal.rest.message import FhirRequest, FhirResponse, etag, info_outcome, parse_etag
from enjournal.security.repository import GuardedRepository

MAX_CONDITIONAL_DELETES = 100


async def delete(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    type_, id_ = known_type(request.path[0]), request.path[1]
    try:
        version = await repo.delete(type_, id_, if_match=parse_etag(request.header("if-match")))
    except Gone:  # a deletion the caller could read is done (missing and hidden are 404)
        return _deleted(None, f"{type_}/{id_}")
    return _deleted(version, f"{type_}/{id_}")


async def conditional_delete(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    type_ = known_type(request.path[0])
    if not request.params:
        raise Invalid("DELETE on a type needs search criteria (conditional delete)")
    criteria = "&".join(f"{k}={v}" for k, v in request.params)
    await repo.lock_criteria(type_, criteria)
    found = await repo.matches(type_, criteria, limit=MAX_CONDITIONAL_DELETES + 1)
    if len(found) > MAX_CONDITIONAL_DELETES:
        raise Invalid(f"the criteria match more than {MAX_CONDITIONAL_DELETES} resources")
    await repo.delete_found(found)
    return _deleted(None, f"{len(found)} {type_} resource(s)")


def _deleted(version: int | None, what: str) -> FhirResponse:
    response = FhirResponse.of(info_outcome(f"deleted {what}"), 200)
    if version is not None:
        response.headers["ETag"] = etag(version)
    return response
