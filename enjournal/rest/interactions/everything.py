"""Patient $everything: http://hl7.org/fhir/R4/patient-operation-everything.html.

The patient, every resource in the patient's compartment, and the resources those refer to
(practitioners, organisations, medications), paged like a search.
"""

from __future__ import annotations

from enjournal.rest.message import FhirRequest, FhirResponse
from enjournal.security.repository import GuardedRepository


async def everything(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    from enjournal.fhir.search import parse_search
    from enjournal.rest.interactions.search import _link, bundle_bytes

    id_ = request.path[1]
    await repo.read("Patient", id_, "everything")
    params = [(k, v) for k, v in request.params if k in ("_count", "_cursor", "_since", "_type")]
    query = parse_search(
        None,
        [*params, ("_include", "*")],
        compartment=("Patient", id_),
        parameters=repo.search_parameters,
    )
    result = await repo.search(query, "everything", scoped=False)
    base = f"{request.base_url}/Patient/{id_}/$everything"
    links = {"self": _link(base, params)}
    if result.next_cursor:
        kept = [(k, v) for k, v in params if k != "_cursor"]
        links["next"] = _link(base, [*kept, ("_cursor", result.next_cursor)])
    body = bundle_bytes(
        "searchset",
        request.base_url,
        [r.content for r in result.matches],
        [(r, r.content) for r in result.included],
        total=result.total,
        links=links,
        stored=result.matches,
    )
    return FhirResponse(200, body)
