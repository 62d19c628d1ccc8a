"""Checking coded data on write: codes must exist in the code systems the server holds, and
Quantity units written in UCUM must be valid UCUM.

Installed as a store write check (``Store.checks``), so every path that writes (REST,
transactions, ``enjournal import``) is covered, inside the write's own transaction.
A code system loaded as a fragment (``content: fragment``, like the shipped LOINC extract)
is not used to refuse codes: a code missing from a fragment may still be a real code.
Codes from systems the server does not hold pass (the server cannot know them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from enjournal.fhir.errors import Issue, Unprocessable
from enjournal.storage.terminology.code_systems import code_system_keys
from enjournal.storage.terminology.concepts import known_codes
from enjournal.terminology.loaders.ucum import is_valid_ucum

UCUM = "http://unitsofmeasure.org"
SYSTEMS_TTL = 10.0  # seconds before a worker notices a code system loaded by another


class CodeCheck:
    """``await check(tx, resource)``; raises Unprocessable naming each bad element."""

    def __init__(self) -> None:
        self._systems: dict[str, list[tuple[str | None, int]]] = {}
        self._fragments: set[int] = set()
        self._expires = 0.0

    async def __call__(self, tx, resource: dict) -> None:
        issues: list[Issue] = []
        wanted: dict[tuple[str, str | None], list[tuple[str, str]]] = {}
        for path, system, code, version, quantity in _codes(resource, resource["resourceType"]):
            if quantity and system == UCUM:
                if not is_valid_ucum(code):
                    issues.append(
                        Issue("error", "code-invalid", f"{code!r} is not a valid UCUM unit", [path])
                    )
                continue
            wanted.setdefault((system, version), []).append((path, code))
        if wanted:
            await self._refresh(tx)
        for (system, version), uses in wanted.items():
            cs = self._code_system(system, version)
            if cs is None or cs in self._fragments:
                continue
            known = await known_codes(tx, cs, sorted({code for _, code in uses}))
            for path, code in uses:
                if code not in known:
                    issues.append(
                        Issue(
                            "error",
                            "code-invalid",
                            f"the code {code!r} is not in the code system {system}"
                            + (f" version {version}" if version else ""),
                            [path],
                        )
                    )
        if issues:
            raise Unprocessable(issues[0].diagnostics, issues=issues)

    def forget(self) -> None:
        """Re-read the list of code systems on the next check (after a load)."""
        self._expires = 0.0

    async def _refresh(self, tx) -> None:
        if time.monotonic() < self._expires:
            return
        systems: dict[str, list[tuple[str | None, int]]] = {}
        fragments = set()
        for id_, url, version, text in await code_system_keys(tx):
            systems.setdefault(url, []).append((version, id_))
            if '"content":"fragment"' in text:
                fragments.add(id_)
        self._systems, self._fragments = systems, fragments
        self._expires = time.monotonic() + SYSTEMS_TTL

    def _code_system(self, url: str, version: str | None) -> int | None:
        versions = self._systems.get(url)
        if not versions:
            return None
        if version is None:
            return versions[-1][1]  # the newest loaded
        return next((id_ for v, id_ in versions if v == version), None)


def _codes(node, path: str) -> Iterator[tuple[str, str, str, str | None, bool]]:
    """(FHIRPath-like location, system, code, version, is-a-Quantity) of every coded value:
    Codings (system + code) and Quantities (system + code beside value/unit)."""
    if isinstance(node, dict):
        system, code = node.get("system"), node.get("code")
        if isinstance(system, str) and isinstance(code, str):
            quantity = any(k in node for k in ("value", "unit", "comparator"))
            version = node.get("version")
            yield path, system, code, version if isinstance(version, str) else None, quantity
        for key, value in node.items():
            if isinstance(value, dict | list):
                yield from _codes(value, f"{path}.{key}")
    elif isinstance(node, list):
        for n, item in enumerate(node):
            yield from _codes(item, f"{path}[{n}]")
