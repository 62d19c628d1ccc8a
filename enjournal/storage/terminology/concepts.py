"""Questions about the concepts of one code system: $lookup, $validate-code, $subsumes."""

from __future__ import annotations

from dataclasses import dataclass

from enjournal.fhir.errors import Invalid
from enjournal.fhir.text import normalize
from enjournal.storage.terminology.code_systems import (
    CodeSystemInfo,
    find_code_system,
    require_code_system,
    system_label,
)
from enjournal.terminology.model import Designation


@dataclass
class LookupResult:
    system: CodeSystemInfo
    code: str
    display: str | None
    inactive: bool
    designations: list[Designation]
    properties: list[tuple[str, str | None, str]]  # (property, value text, type)
    parents: list[str]
    children: list[str]


async def code_exists(tx, system_url: str, code: str, version: str | None = None) -> bool | None:
    """Whether ``code`` is in the code system; None when the code system is not loaded."""
    info = await find_code_system(tx, system_url, version)
    if info is None:
        return None
    row = await tx._conn.fetchrow(
        "SELECT 1 FROM tx_concepts WHERE cs = ? AND code = ?", info.id, code
    )
    return row is not None


async def lookup(tx, system_url: str, code: str, version: str | None = None) -> LookupResult | None:
    """Everything known about one code; None if the code is not in the (known) system.
    NotFound if the code system is not loaded."""
    info = await require_code_system(tx, system_url, version)
    row = await tx._conn.fetchrow(
        "SELECT display, inactive FROM tx_concepts WHERE cs = ? AND code = ?", info.id, code
    )
    if row is None:
        return None
    designations = [
        Designation(r[3], r[0], f"{r[1]}|{r[2]}" if r[1] else r[2])
        for r in await tx._conn.fetch(
            "SELECT language, use_system, use_code, value FROM tx_designations "
            "WHERE cs = ? AND code = ?",
            info.id,
            code,
        )
    ]
    properties = [
        (r[0], r[1], r[2])
        for r in await tx._conn.fetch(
            "SELECT property, value, type FROM tx_properties WHERE cs = ? AND code = ?",
            info.id,
            code,
        )
    ]
    parents = [
        r[0]
        for r in await tx._conn.fetch(
            "SELECT parent FROM tx_parents WHERE cs = ? AND child = ? ORDER BY parent",
            info.id,
            code,
        )
    ]
    children = [
        r[0]
        for r in await tx._conn.fetch(
            "SELECT child FROM tx_parents WHERE cs = ? AND parent = ? ORDER BY child",
            info.id,
            code,
        )
    ]
    return LookupResult(
        info, code, row[0], bool(row[1]), designations, properties, parents, children
    )


@dataclass
class Validation:
    result: bool
    message: str | None = None
    display: str | None = None
    system: str | None = None
    version: str | None = None
    code: str | None = None


async def _display_ok(tx, cs: int, code: str, display: str, preferred: str | None) -> bool:
    if preferred is not None and normalize(preferred) == normalize(display):
        return True
    row = await tx._conn.fetchrow(
        "SELECT 1 FROM tx_designations WHERE cs = ? AND code = ? AND norm = ?",
        cs,
        code,
        normalize(display),
    )
    return row is not None


async def validate_code(
    tx, system_url: str, code: str, version: str | None = None, display: str | None = None
) -> Validation:
    """$validate-code against a code system: is ``code`` in it (and is ``display`` one of its
    displays or designations, case and accents aside)?  NotFound if the system is unknown."""
    info = await require_code_system(tx, system_url, version)
    row = await tx._conn.fetchrow(
        "SELECT display, inactive FROM tx_concepts WHERE cs = ? AND code = ?", info.id, code
    )
    if row is None:
        return Validation(
            False,
            f"the code {code!r} is not in the code system {system_label(info)}",
            system=info.url,
            version=info.version,
            code=code,
        )
    return await check_display(tx, info, code, row[0], display)


async def check_display(
    tx, info: CodeSystemInfo, code: str, preferred: str | None, display: str | None
) -> Validation:
    if display and not await _display_ok(tx, info.id, code, display, preferred):
        return Validation(
            False,
            f"the display {display!r} is not a display of {code!r} in {system_label(info)}; "
            f"the display is {preferred!r}",
            preferred,
            info.url,
            info.version,
            code,
        )
    return Validation(True, None, preferred, info.url, info.version, code)


async def subsumes(
    tx, system_url: str, code_a: str, code_b: str, version: str | None = None
) -> str:
    """equivalent | subsumes (a is an ancestor of b) | subsumed-by | not-subsumed."""
    info = await require_code_system(tx, system_url, version)
    for code in dict.fromkeys((code_a, code_b)):
        if (
            await tx._conn.fetchrow(
                "SELECT 1 FROM tx_concepts WHERE cs = ? AND code = ?", info.id, code
            )
            is None
        ):
            raise Invalid(f"the code {code!r} is not in the code system {system_label(info)}")
    if code_a == code_b:
        return "equivalent"
    if await tx._conn.fetchrow(
        "SELECT 1 FROM tx_closure WHERE cs = ? AND ancestor = ? AND descendant = ?",
        info.id,
        code_a,
        code_b,
    ):
        return "subsumes"
    if await tx._conn.fetchrow(
        "SELECT 1 FROM tx_closure WHERE cs = ? AND ancestor = ? AND descendant = ?",
        info.id,
        code_b,
        code_a,
    ):
        return "subsumed-by"
    return "not-subsumed"


async def known_codes(tx, cs: int, codes: list[str]) -> set[str]:
    """Those of ``codes`` that are concepts of the code system with id ``cs``."""
    marks = ", ".join("?" for _ in codes)
    rows = await tx._conn.fetch(
        f"SELECT code FROM tx_concepts WHERE cs = ? AND code IN ({marks})", cs, *codes
    )
    return {r[0] for r in rows}
