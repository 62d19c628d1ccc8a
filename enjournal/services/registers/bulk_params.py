"""The ``$export`` kick-off's parameters (Bulk Data Access IG 2.0, "Query Parameters"):
https://hl7.org/fhir/uv/bulkdata/STU2/export.html#query-parameters

``parse_request`` turns a kick-off request's parameters into ``ExportParams`` (plain values
the job stores as JSON), or raises Invalid (400).  An unsupported parameter is refused unless
the client asked for lenient handling (``Prefer: handling=lenient``), when it is ignored and
named in the manifest's ``error`` file instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from urllib.parse import parse_qsl

from enjournal.fhir.datetime import date_range
from enjournal.fhir.definitions import patient_compartment, resource_types
from enjournal.fhir.errors import FhirError, Invalid, NotSupported
from enjournal.fhir.search import SearchQuery, parse_search
from enjournal.rest.operations import parameters
from enjournal.security.exports import hidden_search

NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
SUPPORTED = frozenset({"_outputFormat", "_type", "_since", "_typeFilter", "_elements", "patient"})
# Not data but how a client asks; never refused.
IGNORED = frozenset({"_format"})
# The job runs every filter in one statement (SQLite failed at 1,000 of them; 600 ran).
MAX_TYPE_FILTERS = 100
MAX_FILTER_CHARS = 16_000
CheckSearch = Callable[[SearchQuery], None]


@dataclass
class ExportParams:
    """What one export reads: the level, the types, and the narrowing parameters."""

    level: str  # system | patient | group
    types: list[str]
    since_ms: int | None = None
    type_filters: dict[str, list[str]] = field(default_factory=dict)  # type -> queries
    elements: list[str] = field(default_factory=list)
    patients: list[str] | None = None  # None: every patient (or no patient limit)
    group: str | None = None
    notes: list[str] = field(default_factory=list)  # what lenient handling ignored

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict) -> ExportParams:
        return cls(**value)

    def elements_of(self, type_: str) -> list[str]:
        """The ``_elements`` that apply to ``type_`` (``Type.name`` or a bare ``name``)."""
        found = []
        for element in self.elements:
            owner, _, name = element.rpartition(".")
            if not owner or owner == type_:
                found.append(name)
        return found


def preferences(request) -> dict[str, str]:
    """The Prefer header's preferences (RFC 7240: comma-separated, as the IG sends
    ``respond-async, handling=lenient``; a semicolon accepted alike)."""
    found = {}
    for part in (request.header("prefer") or "").replace(";", ",").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip():
            found[name.strip().lower()] = value.strip().strip('"').lower()
    return found


def level_of(path: list[str]) -> str:
    if len(path) == 1:
        return "system"
    return "patient" if path[0] == "Patient" else "group"


def parse_request(request, granted_types, check_search: CheckSearch | None = None) -> ExportParams:
    """The kick-off's parameters, checked.  ``granted_types(types)`` narrows the types to
    those the caller's scopes grant (raising Forbidden, or dropping them when lenient);
    ``check_search(query)`` checks each parsed ``_typeFilter`` as the caller's search
    (raising Forbidden), before it is checked against the export policy."""
    lenient = preferences(request).get("handling") == "lenient"
    given = parameters(request)
    level = level_of(request.path)
    notes: list[str] = []
    for name in given:
        if name not in SUPPORTED and name not in IGNORED:
            _unsupported(f"the parameter {name!r} is not supported", lenient, notes)
    _check_format(given.get("_outputFormat"), lenient, notes)
    named = _values(given.get("_type"))
    params = ExportParams(
        level,
        granted_types(_types(named, level), bool(named), lenient, notes),
        since_ms=_since(given.get("_since")),
        type_filters=_type_filters(
            _split_filters(given.get("_typeFilter")), lenient, notes, check_search
        ),
        elements=_elements(_values(given.get("_elements"))),
        patients=_patients(given.get("patient"), level, lenient, notes),
        group=request.path[1] if level == "group" else None,
        notes=notes,
    )
    return params


def _unsupported(message: str, lenient: bool, notes: list[str]) -> None:
    if not lenient:
        raise Invalid(f"{message} (Prefer: handling=lenient ignores it)")
    notes.append(message)


def _values(value: object) -> list[str]:
    """A parameter's values: repeated and comma-separated alike."""
    items = value if isinstance(value, list) else [] if value is None else [value]
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise Invalid("export parameters are strings")
        out.extend(v.strip() for v in item.split(",") if v.strip())
    return out


def _check_format(value: object, lenient: bool, notes: list[str]) -> None:
    for fmt in _values(value):
        if fmt not in OUTPUT_FORMATS:
            raise Invalid(f"_outputFormat {fmt[:60]!r} is not supported: use {NDJSON}")


def _types(names: list[str], level: str) -> list[str]:
    """The types asked for (all the level holds when none are named), each known."""
    known = resource_types()
    for name in names:
        if name not in known:
            raise Invalid(f"_type: {name[:64]!r} is not a resource type")
    if level != "system":
        scope = {"Patient", *patient_compartment()}
        return sorted(dict.fromkeys(n for n in names if n in scope)) if names else sorted(scope)
    return sorted(dict.fromkeys(names)) if names else sorted(known)


def _since(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid("_since must be a FHIR instant")
    try:
        return date_range(value)[0]
    except (ValueError, FhirError):
        raise Invalid(f"_since: {value[:40]!r} is not a FHIR instant") from None


def _type_filters(
    queries: list[str], lenient: bool, notes: list[str], check_search: CheckSearch | None = None
) -> dict[str, list[str]]:
    """``Type?search``: parsed now (strictly) so a bad one is refused at the kick-off; kept as
    text, and parsed again by the job."""
    _check_filter_count(queries)
    found: dict[str, list[str]] = {}
    for text in queries:
        type_, sep, query = text.partition("?")
        if not sep or type_ not in resource_types():
            raise Invalid(f"_typeFilter {text[:80]!r} must be Type?search")
        try:
            _check_filter(type_, parse_qsl(query), check_search)
        except (Invalid, NotSupported) as error:
            if not lenient:
                raise Invalid(f"_typeFilter {text[:80]!r}: {error.message}") from None
            notes.append(f"_typeFilter {text[:80]!r} ignored: {error.message}")
            continue
        found.setdefault(type_, []).append(query)
    return found


def _check_filter(
    type_: str, pairs: list[tuple[str, str]], check_search: CheckSearch | None = None
) -> None:
    """A filter the job can run, the caller may search, and that selects by nothing the
    export policy removes (attack F-1: ``Patient?identifier=<FNR>`` found a patient the
    file names by no number)."""
    query = parse_search(type_, pairs, strict=True)
    if check_search is not None:
        check_search(query)  # Forbidden is not lenient's to ignore
    hidden = hidden_search(type_, query.criteria, [value for _, value in pairs])
    if hidden is not None:
        raise Invalid(
            f"{hidden} searches what the export may remove of a patient (her identity or "
            "address): a filter may not select by it"
        )


def _check_filter_count(queries: list[str]) -> None:
    """At most MAX_TYPE_FILTERS filters of MAX_FILTER_CHARS in all: each is a part of the
    job's statement (attack L-1: 1,000 made a statement larger than SQLite takes)."""
    if len(queries) > MAX_TYPE_FILTERS:
        raise Invalid(f"at most {MAX_TYPE_FILTERS} _typeFilters, not {len(queries)}")
    total = sum(len(q) for q in queries)
    if total > MAX_FILTER_CHARS:
        raise Invalid(f"_typeFilter: at most {MAX_FILTER_CHARS} characters in all, not {total}")


def _split_filters(value: object) -> list[str]:
    """_typeFilter values: repeated, or comma-separated where the next piece starts a new
    ``Type?`` (a comma inside a query, between search values, is not a separator)."""
    items = value if isinstance(value, list) else [] if value is None else [value]
    found: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise Invalid("_typeFilter values are strings")
        pieces: list[str] = []
        for piece in item.split(","):
            if pieces and not ("?" in piece and piece.split("?", 1)[0] in resource_types()):
                pieces[-1] += "," + piece
            else:
                pieces.append(piece)
        found.extend(pieces)
    return [f.strip() for f in found if f.strip()]


def _elements(names: list[str]) -> list[str]:
    for name in names:
        owner, _, element = name.rpartition(".")
        if not element or (owner and owner not in resource_types()) or "." in owner:
            raise Invalid(f"_elements: {name[:64]!r} is not Type.element or element")
    return names


def _patients(value: object, level: str, lenient: bool, notes: list[str]) -> list[str] | None:
    """``patient`` (POST, valueReference ``Patient/[id]``) narrows a Patient or Group export."""
    if value is None:
        return None
    if level == "system":
        raise Invalid("patient applies to Patient/$export and Group/[id]/$export only")
    items = value if isinstance(value, list) else [value]
    ids = []
    for item in items:
        reference = item.get("reference") if isinstance(item, dict) else None
        kind, _, id_ = (reference or "").partition("/")
        if kind != "Patient" or not id_ or "/" in id_:
            raise Invalid("patient must be a Reference to Patient/[id]")
        ids.append(id_)
    return sorted(dict.fromkeys(ids))
