"""``_summary`` and ``_elements``: trimmed views of a resource (search.html#summary).

A trimmed resource is tagged SUBSETTED in meta.tag, as the spec requires, so nobody mistakes
it for the whole record, and keeps its top-level mandatory elements (minimum cardinality 1),
so that it is still a valid resource.
"""

from __future__ import annotations

from enjournal.fhir.definitions import mandatory_elements, summary_elements

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = {"resourceType", "id", "meta"}


def _tagged(resource: dict, keep: set[str]) -> dict:
    mandatory = mandatory_elements(resource["resourceType"])
    keep = keep | {k for k in resource if _base_name(k, mandatory) in mandatory}
    out = {k: v for k, v in resource.items() if k in keep or k in _ALWAYS}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return out


def _base_name(key: str, names: frozenset[str]) -> str:
    """``deceasedBoolean`` -> ``deceased`` when ``deceased`` is a choice element."""
    for name in names:
        if key.startswith(name) and key[len(name) : len(name) + 1].isupper():
            return name
    return key


def apply_summary(resource: dict, mode: str) -> dict:
    """Trim ``resource`` for ``_summary=mode`` (true | text | data | false)."""
    if mode == "false":
        return resource
    if mode == "text":
        return _tagged(resource, {"text", "implicitRules"})
    if mode == "data":
        return _tagged(resource, set(resource) - {"text"})
    names = summary_elements(resource["resourceType"])
    return _tagged(resource, {k for k in resource if _base_name(k, names) in names})


def apply_elements(resource: dict, elements: list[str]) -> dict:
    """Keep only the named top-level elements (plus the mandatory ones)."""
    wanted = set(elements)
    keep = {
        k
        for k in resource
        if k in wanted or any(k.startswith(e) and k[len(e) : len(e) + 1].isupper() for e in wanted)
    }
    return _tagged(resource, keep)
