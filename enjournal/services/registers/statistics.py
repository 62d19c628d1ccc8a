"""``POST $register-statistics``: counts from the shared record that never reveal a person.

Input (a Parameters body or query parameters):

- ``measure`` (required): ``contacts`` (every encounter), ``gp-contacts`` (GP and
  out-of-hours contacts: an ICPC-2 diagnosis or a KPR contact type), ``gp-patients``
  (persons with a GP contact) or ``home-nursing-patients`` (persons with home nursing,
  KPR service 15, in the period);
- ``dimension``: some of municipality, age, sex, chapter, period (repeated or comma
  separated; none: the total alone);
- ``period``: ``2025``, ``2025-Q2``, ``2025-03`` or a range of months ``2025-01/2025-06``;
- ``grain`` (month, quarter, year) for the period dimension, ``ageBands`` (the first year
  of each band, e.g. ``0,18,67``), ``threshold`` (default 5, at least 3) and ``protection``
  (the width a hidden cell's range needs; default the threshold).

The answer is a ``MeasureReport`` (type summary): the grand total as the group's
population, one stratifier per combination of the dimensions (the margins and the full
table); a hidden cell has no count and the extension ``SUPPRESSED`` (primary or
secondary).  The report is stored through the request's guarded repository: the stored
reports of a measure are its publication log, and each new table is audited against
them (``suppression``), so two publications cannot be differenced.  Publications of a
measure are serialised by a lock on that measure.

Only system clients may ask (the guard's policy and the client's SMART scopes then decide
what they read); personnel and citizens get 403.  The log is append-only: a guard hook
(``log_append_only``) refuses any other create, update or delete of a report carrying the
publication identifier.  The rows come from SQL-on-FHIR views
(``enjournal.storage.views.run_view``) over the resources read through the guard.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import orjson

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Invalid
from enjournal.fhir.search import parse_search
from enjournal.rest.message import FhirResponse
from enjournal.rest.operations import Operation
from enjournal.services import Job
from enjournal.services.inputs import operation_parameters, refused
from enjournal.services.registers import pseudonyms, tables
from enjournal.services.registers.suppression import PUBLISHED, Protected, Release, Rules, protect
from enjournal.services.registers.tables import TOTAL, Dimension, Table

OPERATION = "$register-statistics"
DEFINITION = "https://enjournal.no/fhir/OperationDefinition/register-statistics"
MEASURE_BASE = "https://enjournal.no/fhir/Measure/"
SUPPRESSED = "https://enjournal.no/fhir/StructureDefinition/statistics-suppressed"
# Bounds of what may be asked: years a register holds (and Python's calendar can end), and a
# threshold or protection no table needs more of (a huge one overflowed the stored report).
FIRST_YEAR, LAST_YEAR = "1900", "2999"
MAX_THRESHOLD = 10_000
THRESHOLD = "https://enjournal.no/fhir/StructureDefinition/statistics-threshold"
PROTECTION = "https://enjournal.no/fhir/StructureDefinition/statistics-protection"
LINKED = "https://enjournal.no/fhir/StructureDefinition/statistics-audited-with"
UNLINKED = "https://enjournal.no/fhir/StructureDefinition/statistics-not-linked"
DIMENSION = "https://enjournal.no/fhir/CodeSystem/statistics-dimension"
PUBLICATION = "urn:enjournal:register-statistics"
POPULATION = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/measure-population",
            "code": "initial-population",
        }
    ]
}
KPR_SERVICE = "https://enjournal.no/fhir/CodeSystem/kpr-tjeneste"
KPR_CONTACT = "https://enjournal.no/fhir/CodeSystem/kpr-kontakttype"
HOME_NURSING = "15"
PRIMARY_CARE_KINDS = frozenset({"fastlege", "legevakt"})
NOT_HAPPENED = frozenset({"planned", "cancelled", "entered-in-error"})
MIN_THRESHOLD = 3  # Helsedataservice hides "under three": no caller goes below it
DEFAULT_THRESHOLD = 5
MAX_CELLS = 20_000  # cells of one table, margins included
MAX_RESOURCES = 500_000  # resources one request reads
PAGE = 1_000
CHUNK = 100  # ids in one _id search
CHUNK_CHARS = 2_000  # a search value has at most 2,048 characters (fhir/search)
PROPERTY_INFO = pseudonyms.PROPERTY_INFO


@dataclass(frozen=True)
class Measure:
    name: str
    persons: bool  # count each person once (else each contact)
    source: str  # "encounters" | "home-nursing"
    primary_care: bool = False

    @property
    def canonical(self) -> str:
        return MEASURE_BASE + self.name

    @property
    def kinds(self) -> frozenset[str]:
        """The kinds of unit it counts: GP contacts are a part of all contacts, so the two
        measures' releases are audited together (the ``kind`` of the scope)."""
        if self.persons:
            return frozenset({self.name})
        return frozenset({"primary-care"} if self.primary_care else {"primary-care", "other"})

    @property
    def family(self) -> tuple[Measure, ...]:
        """The measures whose releases count the same units as this one."""
        return tuple(m for m in MEASURES.values() if m.kinds & self.kinds)


MEASURES = {
    m.name: m
    for m in (
        Measure("contacts", False, "encounters"),
        Measure("gp-contacts", False, "encounters", primary_care=True),
        Measure("gp-patients", True, "encounters", primary_care=True),
        Measure("home-nursing-patients", True, "home-nursing"),
    )
}


@dataclass(frozen=True)
class Ask:
    """One request, parsed."""

    measure: Measure
    dimensions: tuple[str, ...]
    start: str  # first month, YYYY-MM
    end: str  # last month
    grain: str
    age_bands: tuple[str, ...]
    rules: Rules

    @property
    def months(self) -> tuple[str, ...]:
        return tables.months(self.start + "-01", self.end + "-01")


# ---- input ---------------------------------------------------------------------------------


def parse(params: dict) -> Ask:
    measure = MEASURES.get(str(params.get("measure") or ""))
    if measure is None:
        raise Invalid(f"'measure' is one of {', '.join(MEASURES)}")
    dims = _dimensions(params.get("dimension"))
    if measure.source == "home-nursing" and "chapter" in dims:
        raise Invalid("home nursing has no diagnosis: leave out the chapter dimension")
    start, end = _period(params.get("period"))
    grain = str(params.get("grain") or "month")
    if grain not in tables.GRAINS:
        raise Invalid(f"'grain' is one of {', '.join(tables.GRAINS)}")
    bands = tables.band_labels(_numbers(params.get("ageBands"), tables.DEFAULT_AGE_BANDS))
    threshold = _whole(params.get("threshold"), DEFAULT_THRESHOLD, "threshold")
    protection = _whole(params.get("protection"), threshold, "protection")
    if min(threshold, protection) < MIN_THRESHOLD:
        raise Invalid(f"'threshold' and 'protection' are at least {MIN_THRESHOLD}")
    rules = Rules(threshold=threshold, protection=protection)
    return Ask(measure, dims, start, end, grain, bands, rules)


def _dimensions(value) -> tuple[str, ...]:
    given = value if isinstance(value, list) else [value] if value else []
    names = tuple(n.strip() for v in given for n in str(v).split(",") if n.strip())
    unknown = [n for n in names if n not in tables.DIMENSIONS]
    if unknown or len(set(names)) != len(names):
        raise Invalid(f"'dimension' names some of {', '.join(tables.DIMENSIONS)}, each once")
    return names


def _period(value) -> tuple[str, str]:
    text = str(value or "")
    first, _, last = text.partition("/")
    try:
        start = min(tables.atoms("period", first))
        end = max(tables.atoms("period", last or first))
        date.fromisoformat(start + "-01"), date.fromisoformat(end + "-01")
    except (ValueError, IndexError):
        raise Invalid("'period' is YYYY, YYYY-Qn, YYYY-MM or YYYY-MM/YYYY-MM") from None
    if start > end or len(tables.months(start + "-01", end + "-01")) > 120:
        raise Invalid("'period' runs forwards, ten years at most")
    if not FIRST_YEAR <= start[:4] <= end[:4] <= LAST_YEAR:
        raise Invalid(f"'period' lies within {FIRST_YEAR}-{LAST_YEAR}")
    return start, end


def _whole(value, default: int, name: str) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise Invalid(f"'{name}' is a whole number") from None
    if number > MAX_THRESHOLD:
        raise Invalid(f"'{name}' is at most {MAX_THRESHOLD}")
    return number


def _numbers(value, default: Sequence[int]) -> list[int]:
    if value in (None, ""):
        return list(default)
    try:
        return [int(part) for part in str(value).split(",")]
    except ValueError:
        raise Invalid("'ageBands' lists whole years, e.g. 0,18,67") from None


# ---- the operation -------------------------------------------------------------------------


class Statistics:
    def __init__(self, platform):
        self.platform = platform

    async def run(self, request, repo) -> FhirResponse:
        _system_only(request)
        ask = parse(operation_parameters(request, OPERATION, required=("measure", "period")))
        units = await read_units(repo, ask)
        table = build_table(ask, units)
        family = ask.measure.family[0].canonical  # one lock for measures audited together
        await repo.lock_criteria("MeasureReport", f"measure={family}")
        earlier = await publications(repo, ask)
        # the audit's linear programs take a while: off the event loop
        protected = await asyncio.to_thread(protect, table, ask.rules, earlier)
        report = to_report(protected, ask, self.platform.clock())
        stored = await _publish(request, repo, report)
        return FhirResponse.of(jsonio.loads(stored.content))


async def _publish(request, repo, report: dict):
    """Store the report in the log: the one create ``log_append_only`` lets through."""
    cache = request.guard.request_cache if request.guard is not None else {}
    cache[OPERATION] = {"publishing": True}
    try:
        return await repo.create(report, OPERATION)
    finally:
        cache.pop(OPERATION, None)


LOG_MARKER = PUBLICATION.encode()


async def log_append_only(guard, tx, action: str, resource: dict, patients) -> str | None:
    """A guard hook: the publication log is written only by this operation and never
    changed or deleted.  An edited or deleted entry would let the next release be audited
    without it (differencing); a forged one would make the answer tell whether a guess
    about a hidden cell agrees with the data (linked or not)."""
    if resource.get("resourceType") != "MeasureReport" or not _ours(resource):
        return None
    if action == "c" and guard.request_cache.get(OPERATION, {}).get("publishing"):
        return None
    if action in ("c", "u", "d"):
        return f"the statistics publication log ({PUBLICATION}) is written only by {OPERATION}"
    return None


def _system_only(request) -> None:
    principal = request.guard.principal if request.guard is not None else None
    if request.guard is not None and (principal is None or principal.kind != "system"):
        who = principal.kind if principal is not None else "an anonymous caller"
        message = f"{OPERATION} is for system clients (registers, statistics), not {who}"
        raise refused(request, "s", OPERATION, message)


def build_table(ask: Ask, units: list[dict]) -> Table:
    fixed: dict[str, Sequence[str]] = {"age": ask.age_bands}
    fixed["period"] = list(dict.fromkeys(tables.period_label(m, ask.grain) for m in ask.months))
    rows = [{**u, "period": tables.period_label(u["period"], ask.grain)} for u in units]
    scope = {"period": frozenset(ask.months), "kind": ask.measure.kinds}
    table = tables.build(ask.measure.name, rows, ask.dimensions, scope, fixed)
    if len(table.counts) > MAX_CELLS:
        raise Invalid(f"the table would have {len(table.counts)} cells; ask for fewer")
    return table


# ---- reading the units through the guard ---------------------------------------------------

ENCOUNTER_VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "Encounter",
    "status": "active",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "start", "path": "period.start"},
                {"name": "status", "path": "status"},
                {"name": "kinds", "path": "type.coding.code", "collection": True},
                {
                    "name": "conditions",
                    "path": "diagnosis.condition.getReferenceKey(Condition)",
                    "collection": True,
                },
            ]
        }
    ],
}
CONDITION_VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "Condition",
    "status": "active",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "encounter", "path": "encounter.getReferenceKey(Encounter)"},
                {"name": "system", "path": "code.coding.first().system"},
                {"name": "code", "path": "code.coding.first().code"},
            ]
        }
    ],
}
PATIENT_VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "Patient",
    "status": "active",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "birth", "path": "birthDate"},
                {"name": "sex", "path": "gender"},
                {
                    "name": "codes",
                    "path": f"address.where(use = 'home' or use.empty()).extension("
                    f"'{PROPERTY_INFO}').extension('municipality').value.ofType(Coding).code",
                    "collection": True,
                },
                {"name": "districts", "path": "address.district", "collection": True},
            ]
        }
    ],
}
EPISODE_VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "EpisodeOfCare",
    "status": "active",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "patient.getReferenceKey(Patient)"},
                {"name": "status", "path": "status"},
                {"name": "start", "path": "period.start"},
                {"name": "end", "path": "period.end"},
                {
                    "name": "services",
                    "path": f"type.coding.where(system = '{KPR_SERVICE}').code",
                    "collection": True,
                },
            ]
        }
    ],
}


def view(definition: dict, resources: list[dict]) -> list[dict]:
    from enjournal.storage.views import run_view

    return run_view(definition, resources).to_dicts()


async def read_units(repo, ask: Ask) -> list[dict]:
    """One row per unit counted (a contact, or a person), with its category in every
    dimension: municipality, age (band), sex, chapter, period (its month)."""
    if ask.measure.source == "home-nursing":
        return await _home_nursing(repo, ask)
    return await _contacts(repo, ask)


async def _contacts(repo, ask: Ask) -> list[dict]:
    dates = [("date", f"ge{ask.start}-01"), ("date", f"le{_last_day(ask.end)}")]
    found = await _search_all(repo, "Encounter", dates)
    encounters = [e for e in view(ENCOUNTER_VIEW, found) if _happened(e, ask)]
    diagnoses = await _diagnoses(repo, encounters)
    if ask.measure.primary_care:
        encounters = [e for e in encounters if _primary_care(e, diagnoses.get(e["id"]))]
    people = await _patients(repo, {e["patient"] for e in encounters if e["patient"]})
    if ask.measure.persons:
        encounters = _first_per_person(encounters)
    period_start = date.fromisoformat(ask.start + "-01")
    units = []
    for e in encounters:  # a person's age when the period starts, a contact's on its day
        on = period_start if ask.measure.persons else _day(e["start"])
        person = people.get(e["patient"], {})
        units.append(_unit(person, ask, on, e["start"][:7], _chapter(diagnoses, e)))
    return units


def _day(instant: str) -> date:
    try:
        return date.fromisoformat(instant[:10])
    except ValueError:
        return date.fromisoformat(instant[:7] + "-01")


def _unit(person: dict, ask: Ask, on: date, month: str, chapter: str) -> dict:
    age = tables.age_on(person.get("birth"), on)
    return {
        "municipality": person.get("municipality") or tables.UNKNOWN,
        "age": tables.age_band(age, ask.age_bands),
        "sex": person.get("sex") or tables.UNKNOWN,
        "chapter": chapter,
        "period": month,
    }


def _happened(encounter: dict, ask: Ask) -> bool:
    start = str(encounter.get("start") or "")[:7]
    return encounter.get("status") not in NOT_HAPPENED and ask.start <= start <= ask.end


def _primary_care(encounter: dict, diagnosis: tuple[str, str] | None) -> bool:
    kinds = set(encounter.get("kinds") or ())
    return bool(kinds & PRIMARY_CARE_KINDS) or (
        diagnosis is not None and diagnosis[0] in tables.ICPC2_SYSTEMS
    )


def _chapter(diagnoses: dict, encounter: dict) -> str:
    system, code = diagnoses.get(encounter["id"], (None, None))
    return tables.chapter(system, code)


def _first_per_person(encounters: list[dict]) -> list[dict]:
    """Each person's first contact of the period (its month and chapter place them)."""
    first: dict[str, dict] = {}
    for e in sorted(encounters, key=lambda e: (e["start"], e["id"])):
        first.setdefault(e["patient"], e)
    return list(first.values())


async def _diagnoses(repo, encounters: list[dict]) -> dict[str, tuple[str, str]]:
    """Encounter id -> (system, code) of its main diagnosis: the first condition its
    ``diagnosis`` names, else the first (by id) Condition that names the encounter."""
    named = {c for e in encounters for c in (e.get("conditions") or ())}
    ids = [e["id"] for e in encounters]
    found = await _by_ids(repo, "Condition", "_id", sorted(named))
    found += await _by_ids(repo, "Condition", "encounter", [f"Encounter/{i}" for i in ids])
    rows = {r["id"]: r for r in view(CONDITION_VIEW, found) if r.get("code")}
    out: dict[str, tuple[str, str]] = {}
    for row in sorted(rows.values(), key=lambda r: r["id"]):
        if row.get("encounter"):
            out.setdefault(row["encounter"], (row["system"], row["code"]))
    for e in encounters:  # the encounter's own ranking wins
        ranked = [rows[c] for c in e.get("conditions") or () if c in rows]
        if ranked:
            out[e["id"]] = (ranked[0]["system"], ranked[0]["code"])
    return out


async def _patients(repo, ids: set[str]) -> dict[str, dict]:
    found = await _by_ids(repo, "Patient", "_id", sorted(ids))
    out = {}
    for row in view(PATIENT_VIEW, found):
        codes = [c for c in row.get("codes") or () if c]
        districts = [{"district": d} for d in row.get("districts") or () if d]
        place = codes[0] if codes else pseudonyms.municipality(districts)
        out[row["id"]] = {"birth": row.get("birth"), "sex": row.get("sex"), "municipality": place}
    return out


async def _home_nursing(repo, ask: Ask) -> list[dict]:
    dates = [("date", f"le{_last_day(ask.end)}")]
    found = await _search_all(repo, "EpisodeOfCare", dates)
    first: dict[str, str] = {}
    for row in view(EPISODE_VIEW, found):
        month = _overlap_start(row, ask)
        if HOME_NURSING in (row.get("services") or ()) and month and row.get("patient"):
            first[row["patient"]] = min(month, first.get(row["patient"], month))
    people = await _patients(repo, set(first))
    on = date.fromisoformat(ask.start + "-01")
    return [_unit(people.get(p, {}), ask, on, m, tables.UNKNOWN) for p, m in first.items()]


def _overlap_start(row: dict, ask: Ask) -> str | None:
    """The first month of the period the episode is open in, or None."""
    if row.get("status") in ("entered-in-error", "planned", "waitlist"):
        return None
    start = str(row.get("start") or "0000-01")[:7]
    end = str(row.get("end") or "9999-12")[:7]
    if start > ask.end or end < ask.start:
        return None
    return max(start, ask.start)


def _last_day(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    following = date(year + number // 12, number % 12 + 1, 1)
    return date.fromordinal(following.toordinal() - 1).isoformat()


async def _search_all(repo, type_: str, criteria: list[tuple[str, str]]) -> list[dict]:
    """Every match the caller may read, page by page (bounded by MAX_RESOURCES)."""
    out: list[dict] = []
    cursor = None
    while True:
        params = [*criteria, ("_count", str(PAGE)), ("_total", "none")]
        params += [("_cursor", cursor)] if cursor else []
        query = parse_search(type_, params, strict=True, parameters=repo.search_parameters)
        result = await repo.search(query, OPERATION)
        # plain floats, not jsonio's Decimals: the DuckDB engine serialises with json.dumps
        out.extend(orjson.loads(s.content) for s in result.matches if s.content)
        if len(out) > MAX_RESOURCES:
            raise Invalid(f"more than {MAX_RESOURCES} resources: ask for a shorter period")
        if not result.next_cursor:
            return out
        cursor = result.next_cursor


async def _by_ids(repo, type_: str, name: str, values: list[str]) -> list[dict]:
    out: list[dict] = []
    for chunk in _chunks(values):
        out += await _search_all(repo, type_, [(name, ",".join(chunk))])
    return out


def _chunks(values: list[str]) -> list[list[str]]:
    """Comma lists within a search value's limit (CHUNK_CHARS) and CHUNK values."""
    chunks: list[list[str]] = [[]]
    size = 0
    for value in values:
        if chunks[-1] and (len(chunks[-1]) >= CHUNK or size + len(value) + 1 > CHUNK_CHARS):
            chunks.append([])
            size = 0
        chunks[-1].append(value)
        size += len(value) + 1
    return [c for c in chunks if c]


# ---- the publication log: the stored MeasureReports ----------------------------------------


async def publications(repo, ask: Ask) -> list[Release]:
    """The earlier releases of this measure (and of the measures counting the same units:
    GP contacts are part of all contacts) the new table must not undo.  Persons are counted
    once per period, so a persons measure links only releases of the same period (see
    docs/registers.md); a contacts measure those whose period overlaps this one (the others
    share no unit with it)."""
    reports = []
    for measure in ask.measure.family:  # GP contacts and all contacts: one log
        reports += await _search_all(repo, "MeasureReport", [("measure", measure.canonical)])
    releases = []
    for report in sorted(reports, key=lambda r: str(r.get("id"))):
        months = _months_of(report)
        if not _ours(report):
            continue
        if ask.measure.persons and months != ask.months:
            continue
        if not set(months) & set(ask.months):
            continue
        releases.append(to_release(report))
    return releases


def _ours(report: dict) -> bool:
    return any(i.get("system") == PUBLICATION for i in report.get("identifier") or ())


def _months_of(report: dict) -> tuple[str, ...]:
    period = report.get("period") or {}
    return tables.months(str(period.get("start")), str(period.get("end")))


def to_report(protected: Protected, ask: Ask, now) -> dict:
    """The published table as a MeasureReport: no count of a hidden cell anywhere."""
    table = protected.table
    stratifiers = []
    names = table.names
    for size in range(1, len(names) + 1):
        for chosen in itertools.combinations(range(len(names)), size):
            stratifiers.append(_stratifier(protected, chosen))
    group: dict = {
        "code": {"text": ask.measure.name},
        "population": [_population(protected, table.grand_total())],
    }
    if stratifiers:
        group["stratifier"] = stratifiers
    return {
        "resourceType": "MeasureReport",
        "identifier": [{"system": PUBLICATION, "value": f"{ask.measure.name}-{now.isoformat()}"}],
        "extension": _report_extensions(protected),
        "status": "complete",
        "type": "summary",
        "measure": ask.measure.canonical,
        "date": now.isoformat(),
        "period": {"start": ask.start + "-01", "end": _last_day(ask.end)},
        "group": [group],
    }


def _report_extensions(protected: Protected) -> list[dict]:
    rules = protected.rules
    out = [
        {"url": THRESHOLD, "valueInteger": rules.threshold},
        {"url": PROTECTION, "valueInteger": rules.width},
    ]
    out += [{"url": LINKED, "valueString": r} for r in protected.linked]
    out += [{"url": UNLINKED, "valueString": r} for r in protected.unlinked]
    return out


def _stratifier(protected: Protected, chosen: tuple[int, ...]) -> dict:
    table = protected.table
    dims = [table.dimensions[i] for i in chosen]
    strata = []
    for key in table.cells():
        if all((key[i] != TOTAL) == (i in chosen) for i in range(len(key))):
            components = [_component(d.name, key[i]) for d, i in zip(dims, chosen, strict=True)]
            strata.append({"component": components, "population": [_population(protected, key)]})
    return {"code": [_dimension_code(d.name) for d in dims], "stratum": strata}


def _dimension_code(name: str) -> dict:
    return {"coding": [{"system": DIMENSION, "code": name}], "text": name}


def _component(name: str, category: str) -> dict:
    value = {"coding": [{"system": f"{DIMENSION}/{name}", "code": category}], "text": category}
    return {"code": _dimension_code(name), "value": value}


def _population(protected: Protected, key) -> dict:
    status = protected.status[key]
    if status == PUBLISHED:
        return {"code": POPULATION, "count": protected.table.counts[key]}
    return {"code": POPULATION, "extension": [{"url": SUPPRESSED, "valueCode": status}]}


def to_release(report: dict) -> Release:
    """What a stored report published, as the audit reads it."""
    group = (report.get("group") or [{}])[0]
    stratifiers = group.get("stratifier") or []
    full = stratifiers[-1] if stratifiers else {"code": [], "stratum": []}
    names = [_code_of(c) for c in full.get("code") or ()]
    categories: dict[str, list[str]] = {n: [] for n in names}
    published: dict[tuple, int] = {}
    hidden: dict[tuple, str] = {}
    cells: list[tuple[dict[str, str], dict]] = [({}, (group.get("population") or [{}])[0])]
    for stratifier in stratifiers:
        for stratum in stratifier.get("stratum") or ():
            parts = {_code_of(c["code"]): _code_of(c["value"]) for c in stratum["component"]}
            cells.append((parts, (stratum.get("population") or [{}])[0]))
    for given, population in cells:
        for name, category in given.items():
            if category not in categories[name]:
                categories[name].append(category)
        key = tuple(given.get(n, TOTAL) for n in names)
        _place(key, population, published, hidden)
    dims = tuple(Dimension(n, tuple(categories[n])) for n in names)
    measure = MEASURES.get(str(report.get("measure")).removeprefix(MEASURE_BASE))
    kinds = measure.kinds if measure is not None else frozenset({str(report.get("measure"))})
    scope = {"period": frozenset(_months_of(report)), "kind": kinds}
    return Release(str(report.get("id")), dims, scope, published, hidden, _protection(report))


def _place(key, population: dict, published: dict, hidden: dict) -> None:
    if "count" in population:
        published[key] = int(population["count"])
        return
    reasons = [e.get("valueCode") for e in population.get("extension") or ()]
    hidden[key] = reasons[0] if reasons else "secondary"


def _code_of(concept: dict) -> str:
    return str(((concept.get("coding") or [{}])[0]).get("code") or concept.get("text"))


def _protection(report: dict) -> int:
    for ext in report.get("extension") or ():
        if ext.get("url") == PROTECTION:
            return int(ext["valueInteger"])
    return DEFAULT_THRESHOLD


# ---- registration --------------------------------------------------------------------------


def register(platform) -> None:
    platform.add_hook(LOG_MARKER, log_append_only)
    statistics = Statistics(platform)
    platform.operations.add(
        Operation(
            OPERATION[1:],
            None,
            False,
            statistics.run,
            ("POST",),
            writes=True,
            definition=DEFINITION,
        )
    )


def jobs(platform) -> list[Job]:
    return []
