"""search: http://hl7.org/fhir/R4/search.html (type, system, compartment; GET and POST).

Result bundles are assembled from the stored JSON bytes without parsing them again, unless
``_summary`` or ``_elements`` asks for a trimmed view.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import orjson

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Invalid
from enjournal.fhir.summary import apply_elements, apply_summary
from enjournal.rest.interactions.common import known_type
from enjournal.rest.message import FhirRequest, FhirResponse, outcome
from enjournal.security.repository import GuardedRepository
from enjournal.storage import StoredResource

MATCH = b'"search":{"mode":"match"}'
INCLUDE = b'"search":{"mode":"include"}'


def strict_handling(request: FhirRequest) -> bool:
    return request.prefer("handling") == "strict"


def search_params(request: FhirRequest) -> list[tuple[str, str]]:
    """Query parameters, plus form parameters for POST ``_search``."""
    params = list(request.params)
    if request.method == "POST":
        content_type = (request.header("content-type") or "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            raise Invalid("POST _search needs an application/x-www-form-urlencoded body")
        params += parse_qsl(request.body.decode(), keep_blank_values=True)
    return params


async def search_type(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    type_ = known_type(request.path[0])
    return await _search(request, repo, type_, f"{request.base_url}/{type_}", None)


async def search_system(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    return await _search(request, repo, None, request.base_url, None)


async def search_compartment(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    compartment, id_, type_ = request.path[0], request.path[1], request.path[2]
    if compartment != "Patient":
        raise Invalid(f"only the Patient compartment is supported, not {compartment}")
    known_type(type_)
    await repo.read("Patient", id_, "search-compartment")
    link = f"{request.base_url}/Patient/{id_}/{type_}"
    return await _search(request, repo, type_, link, ("Patient", id_))


async def _search(request, repo, type_, link_base, compartment) -> FhirResponse:
    from enjournal.fhir.search import parse_search

    query = parse_search(
        type_,
        search_params(request),
        strict=strict_handling(request),
        compartment=compartment,
        parameters=repo.search_parameters,
    )
    result = await repo.search(query)
    applied = query.canonical_params(cursor=False)
    links = {"self": _link(link_base, query.canonical_params())}
    if result.next_cursor:
        links["next"] = _link(link_base, [*applied, ("_cursor", result.next_cursor)])
    if result.previous_cursor:
        links["previous"] = _link(link_base, [*applied, ("_cursor", result.previous_cursor)])
    warnings = None
    if query.ignored:
        warnings = outcome(
            [_warning(f"ignored parameter {name}: {why}") for name, _, why in query.ignored]
        )
    if query.summary == "count":
        return FhirResponse(
            200,
            bundle_bytes("searchset", request.base_url, [], [], total=result.total, links=links),
        )
    body = bundle_bytes(
        "searchset",
        request.base_url,
        [shaped(query, r.content) for r in result.matches],
        [(r, shaped(query, r.content)) for r in result.included],
        total=result.total,
        links=links,
        stored=result.matches,
        warnings=warnings,
    )
    return FhirResponse(200, body)


def _warning(message: str):
    from enjournal.fhir.errors import Issue

    return Issue("warning", "not-supported", message)


def _link(base: str, params: list[tuple[str, str]]) -> str:
    return f"{base}?{urlencode(params)}" if params else base


def shaped(query, content: bytes) -> bytes:
    if query.summary in (None, "false") and not query.elements:
        return content
    resource = jsonio.loads(content)
    if query.elements:
        resource = apply_elements(resource, query.elements)
    elif query.summary:
        resource = apply_summary(resource, query.summary)
    return jsonio.dumps(resource)


def shaped_content(request: FhirRequest, content: bytes) -> bytes:
    """``_summary``/``_elements`` on a read."""
    summary = request.param("_summary")
    elements = request.param("_elements")
    if summary is None and elements is None:
        return content
    resource = jsonio.loads(content)
    if elements:
        resource = apply_elements(resource, [e.strip() for e in elements.split(",")])
    elif summary in ("true", "text", "data", "false"):
        resource = apply_summary(resource, summary)
    else:
        raise Invalid(f"_summary must be true, text, data or false, not {summary!r}")
    return jsonio.dumps(resource)


def bundle_bytes(
    kind: str,
    base_url: str,
    matches: list[bytes],
    included: list[tuple[StoredResource, bytes]],
    *,
    total: int | None,
    links: dict[str, str],
    stored: list[StoredResource] | None = None,
    warnings: dict | None = None,
) -> bytes:
    """A searchset Bundle, spliced together from already-serialised resources."""
    head: dict = {"resourceType": "Bundle", "type": kind}
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": rel, "url": url} for rel, url in links.items()]
    entries = []
    for record, content in zip(stored or [], matches, strict=False):
        entries.append(_entry(base_url, record, content, MATCH))
    for record, content in included:
        entries.append(_entry(base_url, record, content, INCLUDE))
    if warnings is not None:
        entries.append(b'{"resource":' + orjson.dumps(warnings) + b',"search":{"mode":"outcome"}}')
    if not entries:  # FHIR JSON has no empty arrays: no entries, no "entry"
        return orjson.dumps(head)
    return orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}"


def _entry(base_url: str, record: StoredResource, content: bytes, mode: bytes) -> bytes:
    full_url = orjson.dumps(f"{base_url}/{record.type}/{record.id}")
    return b'{"fullUrl":' + full_url + b',"resource":' + content + b"," + mode + b"}"
