"""Helpers shared by the interactions: type checks, write validation, Prefer handling."""

from __future__ import annotations

import orjson

from enjournal.fhir.definitions import resource_types
from enjournal.fhir.errors import Invalid, NotFound
from enjournal.rest.message import (
    FhirRequest,
    FhirResponse,
    info_outcome,
    version_headers,
)
from enjournal.storage.base import StoredResource


def known_type(type_: str) -> str:
    if type_ not in resource_types():
        raise NotFound(f"unknown resource type {type_!r}")
    return type_


def checked_resource(request: FhirRequest, type_: str, id_: str | None = None) -> dict:
    """The request body as a resource of ``type_``, validated for a write."""
    resource = request.resource()
    if resource["resourceType"] != type_:
        raise Invalid(
            f"the body is a {resource['resourceType']}, but the URL names {type_}",
            expression="resourceType",
        )
    if id_ is not None and resource.get("id") != id_:
        raise Invalid(
            f"the resource id {resource.get('id')!r} does not match the URL id {id_!r}",
            expression=f"{type_}.id",
        )
    validate_for_write(resource)
    return resource


def validate_for_write(resource: dict) -> None:
    """Reject a resource that breaks the R4 definitions or the Norwegian identifier rules."""
    from enjournal.fhir.validation import check

    check(resource)


def stored_response(
    request: FhirRequest, stored: StoredResource, status: int, *, location: bool = False
) -> FhirResponse:
    """The response to a write, honouring ``Prefer: return=``."""
    headers = version_headers(stored, request.base_url, location=location)
    prefer = request.prefer("return")
    if prefer == "minimal":
        return FhirResponse(status, None, headers, stored)
    if prefer == "OperationOutcome":
        message = f"{stored.type}/{stored.id} stored as version {stored.version}"
        return FhirResponse(status, orjson.dumps(info_outcome(message)), headers, stored)
    return FhirResponse(status, stored.content, headers, stored)
