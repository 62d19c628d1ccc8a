"""history: http://hl7.org/fhir/R4/http.html#history (instance, type and system level).

Pages run newest first; the ``_cursor`` in a next link is the sequence number to continue
below, so versions written meanwhile never shift a page.
"""

from __future__ import annotations

from urllib.parse import urlencode

import orjson

from enjournal.fhir.datetime import date_range, format_instant
from enjournal.fhir.errors import Invalid
from enjournal.rest.interactions.common import known_type
from enjournal.rest.message import FhirRequest, FhirResponse
from enjournal.security.repository import GuardedRepository
from enjournal.storage import StoredResource

DEFAULT_COUNT, MAX_COUNT = 20, 1000


async def history(request: FhirRequest, repo: GuardedRepository) -> FhirResponse:
    path = request.path
    type_ = known_type(path[0]) if path[0] != "_history" else None
    id_ = path[1] if len(path) == 3 else None
    since, cursor, count = _options(request)
    entries, next_seq = await repo.history(
        type_, id_, since_ms=since, before_seq=cursor, count=count
    )
    base = "/".join([request.base_url, *path])
    kept = [(k, v) for k, v in request.params if k in ("_since", "_count")]
    links = [{"relation": "self", "url": _url(base, request.params)}]
    if next_seq is not None:
        links.append({"relation": "next", "url": _url(base, [*kept, ("_cursor", str(next_seq))])})
    head = orjson.dumps({"resourceType": "Bundle", "type": "history", "link": links})
    body = head
    if entries:  # FHIR JSON has no empty arrays
        body = head[:-1] + b',"entry":[' + b",".join(_entry(request, e) for e in entries) + b"]}"
    return FhirResponse(200, body)


def _url(base: str, params: list[tuple[str, str]]) -> str:
    return f"{base}?{urlencode(params)}" if params else base


def _options(request: FhirRequest) -> tuple[int | None, int | None, int]:
    since = request.param("_since")
    cursor = request.param("_cursor")
    count = request.param("_count")
    try:
        since_ms = date_range(since)[0] if since else None
    except ValueError:
        raise Invalid(f"_since must be a FHIR instant, not {since!r}") from None
    if cursor is not None and not (cursor.isascii() and cursor.isdigit()):
        raise Invalid("bad _cursor")
    if count is not None and not (count.isascii() and count.isdigit()):
        raise Invalid(f"_count must be a whole number, not {count!r}")
    n = min(int(count), MAX_COUNT) if count else DEFAULT_COUNT
    return since_ms, int(cursor) if cursor else None, max(n, 1)


def _entry(request: FhirRequest, record: StoredResource) -> bytes:
    url = f"{request.base_url}/{record.type}/{record.id}"
    method = {"POST": "POST", "DELETE": "DELETE"}.get(record.method, "PUT")
    req_url = record.type if method == "POST" else f"{record.type}/{record.id}"
    status = {"POST": "201 Created", "DELETE": "204 No Content"}.get(method, "200 OK")
    meta = {
        "fullUrl": url,
        "request": {"method": method, "url": req_url},
        "response": {
            "status": status,
            "etag": f'W/"{record.version}"',
            "lastModified": format_instant(record.last_updated),
        },
    }
    raw = orjson.dumps(meta)
    if record.content is None:
        return raw
    return raw[:-1] + b',"resource":' + record.content + b"}"
