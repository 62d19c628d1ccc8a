"""The official FHIR R4 definitions enjournal runs on, as compact tables.

The tables are derived by ``scripts/build_definitions.py`` from the HL7 package named in their
``source`` field; nothing here is written by hand.  A service may add search parameters of
its own, as FHIR SearchParameter resources (``add_search_parameter``), as FHIR lets a
server do: they are indexed on every later write and searchable like the official ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources


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


# base type -> code -> compact entry, from add_search_parameter
_added: dict[str, dict[str, dict]] = {}
# caches derived from search_parameters elsewhere (indexing, capabilities) register here
_on_change: list = []


def add_search_parameter(resource: dict) -> None:
    """Add a SearchParameter resource (R4 shape: url, code, base, type, expression) to the
    definitions.  Idempotent; resources written before it was added are not re-indexed, so
    a service adds its own before it writes (at registration)."""
    if resource.get("resourceType") != "SearchParameter":
        raise ValueError("not a SearchParameter resource")
    entry = {"type": resource["type"], "expression": resource["expression"], "url": resource["url"]}
    if resource.get("target"):
        entry["target"] = list(resource["target"])
    changed = False
    for base in resource["base"]:
        if _added.setdefault(base, {}).get(resource["code"]) != entry:
            _added[base][resource["code"]] = entry
            changed = True
    if changed:
        search_parameters.cache_clear()
        for clear in _on_change:
            clear()


def on_search_parameters_change(clear) -> None:
    """Call ``clear()`` whenever a search parameter is added (for caches derived from them)."""
    _on_change.append(clear)


@cache
def search_parameters(resource_type: str) -> dict[str, SearchParam]:
    """All search parameters of ``resource_type``, including the common Resource ones and
    any added with ``add_search_parameter``."""
    table = _search_table()["searchParameters"]
    merged = {**table["Resource"], **table.get(resource_type, {}), **_added.get(resource_type, {})}
    return {
        code: SearchParam(
            code=code,
            type=raw["type"],
            expression=raw.get("expression"),
            url=raw["url"],
            target=tuple(raw.get("target", ())),
            modifier=tuple(raw.get("modifier", ())),
            comparator=tuple(raw.get("comparator", ())),
            component=tuple(Component(**c) for c in raw.get("component", ())),
        )
        for code, raw in merged.items()
    }


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
