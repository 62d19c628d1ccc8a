"""read and vread: http://hl7.org/fhir/R4/http.html#read and #vread.

Conditional reads (If-None-Match, If-Modified-Since) answer 304 Not Modified.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from enjournal.fhir.errors import Invalid, NotFound
from enjournal.rest.interactions.common import known_type
from enjournal.rest.interactions.search import shaped_content
from enjournal.rest.message import FhirRequest, FhirResponse, etag, version_headers
from enjournal.security.repository import GuardedRepository


async def read(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    type_, id_ = known_type(request.path[0]), request.path[1]
    stored = await repo.read(type_, id_)
    headers = version_headers(stored, request.base_url, location=False)
    if _not_modified(request, stored.version, stored.last_updated):
        return FhirResponse(304, None, headers, stored)
    return FhirResponse(200, shaped_content(request, stored.content), headers, stored)


async def vread(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    type_, id_, version = known_type(request.path[0]), request.path[1], request.path[3]
    if not (version.isascii() and version.isdigit()):
        raise Invalid(f"version {version!r} is not a number")
    if len(version) > 9:  # beyond the store's 32-bit versions (and int()'s digit limit)
        raise NotFound(f"{type_}/{id_} has no version {version[:12]}...")
    stored = await repo.vread(type_, id_, int(version))
    headers = version_headers(stored, request.base_url, location=False)
    return FhirResponse(200, shaped_content(request, stored.content), headers, stored)


def _not_modified(request: FhirRequest, version: int, last_updated_ms: int) -> bool:
    if_none_match = request.header("if-none-match")
    if if_none_match is not None:
        return etag(version) in {t.strip() for t in if_none_match.split(",")} or (
            if_none_match.strip() == "*"
        )
    since = request.header("if-modified-since")
    if since is not None:
        try:
            moment = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            raise Invalid(f"bad If-Modified-Since date: {since!r}") from None
        return last_updated_ms // 1000 <= int(moment.timestamp())
    return False
