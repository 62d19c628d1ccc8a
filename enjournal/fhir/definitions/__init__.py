"""The official FHIR R4 definitions enjournal runs on, as compact tables.

The tables are derived by ``scripts/build_definitions.py`` from the HL7 package named in their
``source`` field; nothing here is written by hand.  A service may add search parameters of
its own, as FHIR SearchParameter resources, as FHIR lets a server do: they are added to the
platform's ``SearchParameters`` (one per platform, built by ``enjournal.bootstrap``), then
indexed on every later write and searchable like the official ones.  The tables loaded here
are read-only caches.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Component:
    code: str
    type: str
    expression: str


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str  # number | date | string | token | reference | composite | quantity | uri | special
    expression: str | None
    url: str
    target: tuple[str, ...] = ()
    modifier: tuple[str, ...] = ()
    comparator: tuple[str, ...] = ()
    component: tuple[Component, ...] = ()


def _load(name: str) -> dict:
    return json.loads(resources.files(__package__).joinpath(name).read_text("utf-8"))


@cache
def _search_table() -> dict:
    return _load("search.json")


@cache
def resource_types() -> frozenset[str]:
    return frozenset(_search_table()["resourceTypes"])


# base type -> code -> compact entry, as in search.json
Entries = dict[str, dict[str, dict]]


def _entry(resource: dict) -> dict:
    """The compact entry of a SearchParameter resource (R4 shape: url, code, base, type,
    expression, target)."""
    if resource.get("resourceType") != "SearchParameter":
        raise ValueError("not a SearchParameter resource")
    entry = {"type": resource["type"], "expression": resource["expression"], "url": resource["url"]}
    if resource.get("target"):
        entry["target"] = list(resource["target"])
    return entry


def _param(code: str, raw: dict) -> SearchParam:
    return SearchParam(
        code=code,
        type=raw["type"],
        expression=raw.get("expression"),
        url=raw["url"],
        target=tuple(raw.get("target", ())),
        modifier=tuple(raw.get("modifier", ())),
        comparator=tuple(raw.get("comparator", ())),
        component=tuple(Component(**c) for c in raw.get("component", ())),
    )


class SearchParameters:
    """The search parameters one platform indexes, searches and lists: the official R4 ones
    plus those its services add.  The composition root (``enjournal.bootstrap``) builds one
    per platform and gives it to the store (its indexer and transactions), from where the
    search parser and the CapabilityStatement read it; nothing here is process-wide.

    Values derived from the parameters (the indexer's compiled paths, the capability
    statement) are kept with them (``memo``) and forgotten when a parameter is added."""

    def __init__(self, added: Iterable[dict] = ()):
        self._added: Entries = {}
        self._memo: dict[Any, Any] = {}
        for resource in added:
            self.add(resource)

    def add(self, resource: dict) -> None:
        """Add a SearchParameter resource (R4 shape: url, code, base, type, expression).
        Idempotent; resources written before it was added are not re-indexed, so a service
        adds its own before anything is written (at registration)."""
        entry = _entry(resource)
        changed = False
        for base in resource["base"]:
            if self._added.setdefault(base, {}).get(resource["code"]) != entry:
                self._added[base][resource["code"]] = entry
                changed = True
        if changed:
            self._memo.clear()

    def __eq__(self, other: object) -> bool:
        """The same parameters added (two platforms composed alike index alike)."""
        return isinstance(other, SearchParameters) and self._added == other._added

    __hash__ = None  # type: ignore[assignment]  # mutable: compared, never a key

    def of(self, resource_type: str) -> dict[str, SearchParam]:
        """All search parameters of ``resource_type``: the common Resource ones, the type's
        own and the added ones."""
        return self.memo(("of", resource_type), lambda: self._merged(resource_type))

    def _merged(self, resource_type: str) -> dict[str, SearchParam]:
        table = _search_table()["searchParameters"]
        merged = {
            **table["Resource"],
            **table.get(resource_type, {}),
            **self._added.get(resource_type, {}),
        }
        return {code: _param(code, raw) for code, raw in merged.items()}

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per ``key`` until a parameter is added (for values derived from
        these parameters)."""
        try:
            return self._memo[key]
        except KeyError:
            value = self._memo[key] = compute()
            return value


class _Official(SearchParameters):
    """The official R4 parameters alone, shared by code outside any platform: read-only."""

    def add(self, resource: dict) -> None:
        raise TypeError("the official search parameters are read-only: add to a platform's")


@cache
def official_search_parameters() -> SearchParameters:
    """The official R4 search parameters alone (read-only), for code that runs outside a
    platform: tests of the FHIR layer, a store opened without a platform."""
    return _Official()


@cache
def patient_compartment() -> dict[str, tuple[str, ...]]:
    """Resource type -> the search parameters that place a resource in a Patient's compartment."""
    return {t: tuple(p) for t, p in _search_table()["compartments"]["Patient"].items()}


@cache
def summary_elements(resource_type: str) -> frozenset[str]:
    """Top-level elements of ``resource_type`` that ``_summary=true`` keeps (isSummary)."""
    return frozenset(_search_table()["summaryElements"].get(resource_type, ()))


@cache
def mandatory_elements(resource_type: str) -> frozenset[str]:
    """Top-level elements of ``resource_type`` with a minimum cardinality of 1 or more:
    ``_summary`` and ``_elements`` keep them whatever was asked (search.html#summary)."""
    structure = structures()["types"].get(resource_type) or {}
    prefix = f"{resource_type}."
    return frozenset(
        e["path"][len(prefix) :].removesuffix("[x]")
        for e in structure.get("elements", ())
        if e.get("min") and e["path"].startswith(prefix) and "." not in e["path"][len(prefix) :]
    )


@cache
def structures() -> dict:
    """The element tables derived from the R4 StructureDefinitions, parsed once per process."""
    return _load("structures.json")
