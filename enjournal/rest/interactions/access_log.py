"""Patient $access-log: who has read or changed this patient's record (newest first).

The answer to the citizen's question "who has looked at my record": a searchset Bundle of
the AuditEvents about the patient from the tamper-evident audit log, each naming the
reader (HPR number, name, profession), their organisation, when, the purpose (treatment,
emergency with its reason) and whether anything was changed.  Only the patient themself
(or a parent, for a child in their care) may ask; the caller's own look-ups are left out.
Paged with ``_count`` and ``_cursor``.
"""

from __future__ import annotations

from urllib.parse import urlencode

from enjournal.fhir.errors import Forbidden, Invalid
from enjournal.rest.message import FhirRequest, FhirResponse
from enjournal.security.audit import access_events, citizen_actors
from enjournal.security.repository import GuardedRepository

DEFAULT_COUNT, MAX_COUNT = 50, 500


async def access_log(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    id_ = request.path[1]
    context = request.context
    if context is None or context.principal.kind != "citizen":
        # Before the patient is looked up: the same answer whether or not it exists.
        raise Forbidden("the access log is for the patient (or a parent) to read")
    patient = await repo.current("Patient", id_, "access-log")
    await repo.check_read(patient, "access-log")
    context.events.clear()  # reading one's own log is not itself logged as record access
    count, cursor = _paging(request)
    own = citizen_actors(context.principal.pid)
    page = await access_events(repo.trusted, id_, count=count, before_seq=cursor, skip_actors=own)
    entries = page.events
    base = f"{request.base_url}/Patient/{id_}/$access-log"
    links = [{"relation": "self", "url": base}]
    if page.next_seq is not None:
        next_params = urlencode({"_count": count, "_cursor": page.next_seq})
        links.append({"relation": "next", "url": f"{base}?{next_params}"})
    from enjournal.fhir import jsonio

    head = jsonio.dumps({"resourceType": "Bundle", "type": "searchset", "link": links})
    body = (
        head[:-1]
        + b',"entry":['
        + b",".join(b'{"resource":' + e + b',"search":{"mode":"match"}}' for e in entries)
        + b"]}"
    )
    return FhirResponse(200, body)


def _paging(request: FhirRequest) -> tuple[int, int | None]:
    count, cursor = request.param("_count"), request.param("_cursor")
    if count is not None and not (count.isascii() and count.isdigit()):
        raise Invalid("_count must be a whole number")
    if cursor is not None and not (cursor.isascii() and cursor.isdigit()):
        raise Invalid("bad _cursor")
    return min(int(count or DEFAULT_COUNT), MAX_COUNT) or 1, int(cursor) if cursor else None
