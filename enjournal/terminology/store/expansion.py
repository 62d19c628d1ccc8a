"""$expand, and $validate-code against a value set, over its compiled compose."""

from __future__ import annotations

import time
import uuid

from enjournal.fhir.errors import Invalid, Unprocessable
from enjournal.terminology.store.code_systems import find_code_system, system_label
from enjournal.terminology.store.concepts import Validation, check_display, code_exists
from enjournal.terminology.store.resources import split_canonical
from enjournal.terminology.store.value_sets import Compiler

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
    compiler = Compiler(tx, filter_text=filter, active_only=active_only, code=None)
    sql, args = await compiler.compose(value_set)
    conn = tx.conn
    rows: list[tuple] = []
    total = None
    if compiler.tokens:
        # Filtered, the compose yields few rows: join from them, and count them in the same
        # statement (one round trip).  A page past the end falls back to a count below.
        limit = max_size + 1 if count is None else count
        if limit:
            found = await conn.fetch(
                "SELECT c.cs, c.code, c.display, c.inactive, count(*) OVER () "
                f"FROM ({sql}) v JOIN tx_concepts c ON c.cs = v.cs AND c.code = v.code "
                "ORDER BY c.cs, c.code LIMIT ? OFFSET ?",
                *args,
                limit,
                offset,
            )
            if found:
                total = int(found[0][4])
                rows = [r[:4] for r in found]
    if total is None:
        total = int((await conn.fetchrow(f"SELECT count(*) FROM ({sql}) v", *args))[0])
    if count is None and total - offset > max_size:
        raise TooCostly(
            f"the expansion has {total} concepts, more than {max_size}: "
            "use count and offset, or a filter"
        )
    limit = (total if count is None else count) or 0
    if limit and not compiler.tokens:
        # Unfiltered: walk the concepts in code order and stop after the page.
        rows = await conn.fetch(
            "SELECT c.cs, c.code, c.display, c.inactive FROM tx_concepts c "
            f"WHERE (c.cs, c.code) IN ({sql}) ORDER BY c.cs, c.code LIMIT ? OFFSET ?",
            *args,
            limit,
            offset,
        )
    systems = compiler.systems
    designations: dict[tuple[int, str], list[tuple]] = {}
    if rows and (include_designations or display_language):
        designations = await _designations(conn, [(r[0], r[1]) for r in rows])
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
        contains = await _nest(conn, rows, contains)

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


async def _designations(conn, keys: list[tuple[int, str]]) -> dict[tuple[int, str], list[tuple]]:
    out: dict[tuple[int, str], list[tuple]] = {}
    by_cs: dict[int, list[str]] = {}
    for cs, code in keys:
        by_cs.setdefault(cs, []).append(code)
    for cs, codes in by_cs.items():
        for i in range(0, len(codes), 500):
            chunk = codes[i : i + 500]
            rows = await conn.fetch(
                "SELECT code, language, use_system, use_code, value FROM tx_designations "
                f"WHERE cs = ? AND code IN ({', '.join('?' for _ in chunk)})",
                cs,
                *chunk,
            )
            for code, *rest in rows:
                out.setdefault((cs, code), []).append(tuple(rest))
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


async def _nest(conn, rows: list[tuple], contains: list[dict]) -> list[dict]:
    """Hang each entry under its nearest ancestor among the entries (per code system)."""
    index = {(r[0], r[1]): i for i, r in enumerate(rows)}
    ancestors: dict[tuple[int, str], set[str]] = {key: set() for key in index}
    by_cs: dict[int, list[str]] = {}
    for cs, code in index:
        by_cs.setdefault(cs, []).append(code)
    for cs, codes in by_cs.items():
        for i in range(0, len(codes), 400):
            chunk = codes[i : i + 400]
            marks = ", ".join("?" for _ in chunk)
            found = await conn.fetch(
                "SELECT ancestor, descendant FROM tx_closure WHERE cs = ? "
                f"AND descendant IN ({marks}) AND ancestor <> descendant",
                cs,
                *chunk,
            )
            for ancestor, descendant in found:
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
    conn = tx.conn
    info = await find_code_system(conn, system_url, version)
    if info is None:
        return Validation(
            False,
            f"the code system {split_canonical(system_url, version)[0]} is not known to "
            "this server",
            system=system_url,
            code=code,
        )
    compiler = Compiler(tx, filter_text=None, active_only=False, code=code)
    sql, args = await compiler.compose(value_set)
    row = await conn.fetchrow(
        f"SELECT c.display FROM tx_concepts c WHERE c.cs = ? AND c.code = ? "
        f"AND (c.cs, c.code) IN ({sql})",
        info.id,
        code,
        *args,
    )
    label = value_set.get("url") or value_set.get("id") or "the value set"
    if row is None:
        exists = await code_exists(conn, info.url, code, info.version)
        why = (
            "is not in the value set"
            if exists
            else f"is not in the code system {system_label(info)}"
        )
        return Validation(
            False, f"the code {code!r} {why} {label}", None, info.url, info.version, code
        )
    return await check_display(conn, info, code, row[0], display)
