"""Patient $access-log: who has read or changed this patient's record (newest first).

The answer to the citizen's question "who has looked at my record": a searchset Bundle of
the AuditEvents about the patient from the tamper-evident audit log, each naming the
reader (HPR number, name, profession), their organisation, when, the purpose and access
basis (treatment, consent, emergency) and whether anything was changed.  Only the patient themself
(or a parent, for a child in their care) may ask; the caller's own look-ups are left out.
Each event is the citizen's copy (``security.audit.redaction``): coded parts only, never the
free text a health worker or a request wrote (the emergency reason, a refusal's message,
the request id ...; domain.md 10).

Parameters: ``date`` (when the event was recorded; FHIR prefixes eq ge gt le lt sa eb, any
precision from a year to an instant, repeated to give a range: ``date=ge2026-11-01&
date=le2026-11-30``), ``organization`` (the reader's organisation number, 9 digits, or
``urn:oid:2.16.578.1.12.4.1.4.101|<number>``), ``_count`` and ``_cursor`` (the next link
carries the filters).  A bad value is a 400.
"""

from __future__ import annotations

from urllib.parse import urlencode

from enjournal.fhir.datetime import MAX_MS, MIN_MS, date_range
from enjournal.fhir.errors import Forbidden, Invalid
from enjournal.fhir.norwegian_ids import OID_ORGNR, is_valid_orgnr
from enjournal.rest.message import FhirRequest, FhirResponse
from enjournal.security.audit import LogFilter, access_events, citizen_actors
from enjournal.security.policy import INSIGHT
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
    facts = await request.guard.facts(repo.trusted, id_)
    if not (facts.own_record or facts.child_in_care or INSIGHT in facts.areas):
        # Who looked at someone's record is part of their record: a representative needs
        # the area "innsyn", not only the digital services.
        # (the router audits the refusal)
        raise Forbidden("the access log is part of the record: it needs the area innsyn")
    if facts.own_record:
        context.events.clear()  # reading one's own log is not itself logged as record access
    count, cursor = _paging(request)
    where = log_filter(request)
    own = citizen_actors(context.principal.pid)
    page = await access_events(
        repo.trusted, id_, count=count, before_seq=cursor, skip_actors=own, where=where
    )
    entries = page.events
    links = _links(request, f"{request.base_url}/Patient/{id_}/$access-log", count, page.next_seq)
    from enjournal.fhir import jsonio

    head = jsonio.dumps({"resourceType": "Bundle", "type": "searchset", "link": links})
    body = (
        head[:-1]
        + b',"entry":['
        + b",".join(b'{"resource":' + e + b',"search":{"mode":"match"}}' for e in entries)
        + b"]}"
    )
    return FhirResponse(200, body)


def _links(request: FhirRequest, base: str, count: int, next_seq: int | None) -> list[dict]:
    """The self link and, unless this is the last page, the next one (with the filters)."""
    filters = [(k, v) for k, v in request.params if k in FILTERS]
    links = [{"relation": "self", "url": _url(base, filters)}]
    if next_seq is not None:
        next_params = [*filters, ("_count", str(count)), ("_cursor", str(next_seq))]
        links.append({"relation": "next", "url": _url(base, next_params)})
    return links


def _paging(request: FhirRequest) -> tuple[int, int | None]:
    count, cursor = request.param("_count"), request.param("_cursor")
    if count is not None and not (count.isascii() and count.isdigit()):
        raise Invalid("_count must be a whole number")
    if cursor is not None and not (cursor.isascii() and cursor.isdigit()):
        raise Invalid("bad _cursor")
    return min(int(count or DEFAULT_COUNT), MAX_COUNT) or 1, int(cursor) if cursor else None


FILTERS = ("date", "organization")
# The FHIR date prefixes that make sense for one instant (ne and ap do not narrow a range).
_PREFIXES = ("eq", "ge", "gt", "le", "lt", "sa", "eb")


def log_filter(request: FhirRequest) -> LogFilter:
    """The ``date`` and ``organization`` parameters as one filter; Invalid for bad values."""
    since, until = MIN_MS, MAX_MS
    for key, value in request.params:
        if key == "date":
            low, high = _date_bounds(value)
            since, until = max(since, low), min(until, high)
    organisations = [value for key, value in request.params if key == "organization"]
    if len(organisations) > 1:
        raise Invalid("give one organization")
    return LogFilter(
        since if since > MIN_MS else None,
        until if until < MAX_MS else None,
        _organisation(organisations[0]) if organisations else None,
    )


def _date_bounds(value: str) -> tuple[int, int]:
    """The inclusive epoch-ms bounds on ``recorded`` of one ``date`` value."""
    prefix, text = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
    if prefix not in _PREFIXES:
        raise Invalid(f"date: use one of the prefixes {', '.join(_PREFIXES)}")
    try:
        low, high = date_range(text.replace(" ", "+"))  # an unescaped + in a time zone
    except (ValueError, OverflowError):
        raise Invalid(f"date: {value[:40]!r} is not a FHIR date or dateTime") from None
    return {
        "eq": (low, high),
        "ge": (low, MAX_MS),
        "le": (MIN_MS, high),
        "gt": (high + 1, MAX_MS),
        "sa": (high + 1, MAX_MS),
        "lt": (MIN_MS, low - 1),
        "eb": (MIN_MS, low - 1),
    }[prefix]


def _organisation(value: str) -> str:
    system, bar, number = value.rpartition("|")
    if bar and system not in ("", OID_ORGNR):
        raise Invalid(f"organization: the system is {OID_ORGNR} (organisasjonsnummer)")
    if not is_valid_orgnr(number):
        raise Invalid("organization: an organisation number is 9 digits with a valid check digit")
    return number


def _url(base: str, params: list[tuple[str, str]]) -> str:
    return f"{base}?{urlencode(params)}" if params else base
