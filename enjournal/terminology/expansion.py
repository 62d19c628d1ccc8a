"""$expand, and $validate-code against a value set, over its compiled compose (the
queries are ``enjournal.storage.terminology.expansion``)."""

from __future__ import annotations

import time
import uuid

from enjournal.fhir.errors import Invalid, Unprocessable
from enjournal.storage.terminology import expansion as queries
from enjournal.storage.terminology.code_systems import find_code_system, system_label
from enjournal.storage.terminology.compose import Compiler
from enjournal.storage.terminology.concepts import Validation, check_display, code_exists
from enjournal.terminology.resources import split_canonical
from enjournal.terminology.value_sets import find_value_set

MAX_EXPANSION = 10_000  # an expansion without count larger than this is refused


class TooCostly(Unprocessable):
    code = "too-costly"


async def expand(
    tx,
    value_set: dict,
    *,
    filter: str | None = None,
    count: int | None = None,
    offset: int = 0,
    include_designations: bool = False,
    display_language: str | None = None,
    active_only: bool = False,
    nested: bool = False,
    max_size: int = MAX_EXPANSION,
) -> dict:
    """$expand: ``value_set`` with an ``expansion`` (total, offset, contains).  Concepts are
    ordered by code system then code; ``nested`` puts each concept of the page under its
    nearest ancestor on the page (ValueSet.expansion.contains.contains)."""
    if offset < 0 or (count is not None and count < 0):
        raise Invalid("count and offset must not be negative")
    compiler = Compiler(
        tx,
        filter_text=filter,
        active_only=active_only,
        code=None,
        find_value_set=find_value_set,
    )
    sql, args = await compiler.compose(value_set)
    rows: list[tuple] = []
    total = None
    if compiler.tokens:
        # Filtered: the page and its total in one round trip.  A page past the end falls
        # back to a count below.
        limit = max_size + 1 if count is None else count
        if limit:
            rows, total = await queries.filtered_page(tx, sql, args, limit, offset)
    if total is None:
        total = await queries.count(tx, sql, args)
    if count is None and total - offset > max_size:
        raise TooCostly(
            f"the expansion has {total} concepts, more than {max_size}: "
            "use count and offset, or a filter"
        )
    limit = (total if count is None else count) or 0
    if limit and not compiler.tokens:
        rows = await queries.ordered_page(tx, sql, args, limit, offset)
    systems = compiler.systems
    designations: dict[tuple[int, str], list[tuple]] = {}
    if rows and (include_designations or display_language):
        designations = await queries.designations(tx, [(r[0], r[1]) for r in rows])
    contains = []
    for cs, code, display, inactive in rows:
        info = systems[cs]
        entry: dict = {"system": info.url}
        if info.version:
            entry["version"] = info.version
        entry["code"] = code
        shown = display
        if display_language:
            shown = _in_language(designations.get((cs, code), []), display_language) or display
        if shown:
            entry["display"] = shown
        if inactive:
            entry["inactive"] = True
        if include_designations:
            ds = [_designation_json(d) for d in designations.get((cs, code), [])]
            if ds:
                entry["designation"] = ds
        contains.append(entry)
    if nested and contains:
        contains = await _nest(tx, rows, contains)

    params: list[dict] = []
    if filter:
        params.append({"name": "filter", "valueString": filter})
    if count is not None:
        params.append({"name": "count", "valueInteger": count})
    params.append({"name": "offset", "valueInteger": offset})
    if include_designations:
        params.append({"name": "includeDesignations", "valueBoolean": True})
    if display_language:
        params.append({"name": "displayLanguage", "valueCode": display_language})
    for info in systems.values():
        canonical = f"{info.url}|{info.version}" if info.version else info.url
        params.append({"name": "version", "valueUri": canonical})
    expansion: dict = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "total": total,
        "offset": offset,
        "parameter": params,
    }
    if contains:
        expansion["contains"] = contains
    out = {k: v for k, v in value_set.items() if k not in ("expansion", "meta", "text")}
    out["resourceType"] = "ValueSet"
    out["expansion"] = expansion
    return out


def _in_language(designations: list[tuple], language: str) -> str | None:
    wanted = [p.strip().split(";")[0].lower() for p in language.split(",") if p.strip()]
    for want in wanted:
        for lang, _system, _code, value in designations:
            if lang and (lang.lower() == want or lang.lower().split("-")[0] == want):
                return value
    return None


def _designation_json(d: tuple) -> dict:
    language, use_system, use_code, value = d
    out: dict = {}
    if language:
        out["language"] = language
    if use_code:
        out["use"] = {"system": use_system, "code": use_code} if use_system else {"code": use_code}
    out["value"] = value
    return out


async def _nest(tx, rows: list[tuple], contains: list[dict]) -> list[dict]:
    """Hang each entry under its nearest ancestor among the entries (per code system)."""
    index = {(r[0], r[1]): i for i, r in enumerate(rows)}
    ancestors: dict[tuple[int, str], set[str]] = {key: set() for key in index}
    by_cs: dict[int, list[str]] = {}
    for cs, code in index:
        by_cs.setdefault(cs, []).append(code)
    for cs, codes in by_cs.items():
        for ancestor, descendant in await queries.proper_ancestors(tx, cs, codes):
            if (cs, ancestor) in index:
                ancestors[(cs, descendant)].add(ancestor)
    top = []
    for key, i in index.items():
        mine = ancestors[key]
        if not mine:
            top.append(contains[i])
            continue
        # The nearest ancestor is the one with the most ancestors of its own on the page.
        parent = max(sorted(mine), key=lambda a: len(ancestors[(key[0], a)]))
        contains[index[(key[0], parent)]].setdefault("contains", []).append(contains[i])
    return top


async def validate_vs_code(
    tx,
    value_set: dict,
    system_url: str,
    code: str,
    version: str | None = None,
    display: str | None = None,
) -> Validation:
    """$validate-code against a value set: is (system, code) in its expansion?"""
    info = await find_code_system(tx, system_url, version)
    if info is None:
        return Validation(
            False,
            f"the code system {split_canonical(system_url, version)[0]} is not known to "
            "this server",
            system=system_url,
            code=code,
        )
    compiler = Compiler(
        tx, filter_text=None, active_only=False, code=code, find_value_set=find_value_set
    )
    sql, args = await compiler.compose(value_set)
    row = await queries.display_in(tx, info.id, code, sql, args)
    label = value_set.get("url") or value_set.get("id") or "the value set"
    if row is None:
        exists = await code_exists(tx, info.url, code, info.version)
        why = (
            "is not in the value set"
            if exists
            else f"is not in the code system {system_label(info)}"
        )
        return Validation(
            False, f"the code {code!r} {why} {label}", None, info.url, info.version, code
        )
    return await check_display(tx, info, code, row[0], display)
