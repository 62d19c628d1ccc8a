"""The type of every R4 element, for the FHIRPath evaluator and the search indexer.

The table ``definitions/element_types.json`` is derived by ``scripts/build_element_types.py``
from the StructureDefinition snapshots of the HL7 package named in its ``source`` field.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

PRIMITIVE_TYPES = frozenset(
    {
        "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
        "instant", "integer", "markdown", "oid", "positiveInt", "string", "time",
        "unsignedInt", "uri", "url", "uuid", "xhtml",
    }
)  # fmt: skip


@cache
def _table() -> dict:
    text = resources.files("enjournal.fhir.definitions").joinpath("element_types.json")
    return json.loads(text.read_text("utf-8"))


def source() -> str:
    return _table()["source"]


@cache
def element_types() -> dict[str, tuple[str, ...]]:
    """Element path (``Observation.value[x]``) -> its type codes."""
    return {path: tuple(codes) for path, codes in _table()["elements"].items()}


@cache
def content_references() -> dict[str, str]:
    """Element path -> the path whose definition it repeats (``Questionnaire.item.item``)."""
    return dict(_table()["contentReference"])


@cache
def base_types() -> dict[str, str]:
    """Type -> its parent type (``Age`` -> ``Quantity``, ``code`` -> ``string``)."""
    return dict(_table()["baseTypes"])


@cache
def resource_type_names() -> frozenset[str]:
    return frozenset(_table()["resourceTypes"])


@cache
def children() -> dict[str, dict[str, tuple[tuple[str, ...], bool]]]:
    """Type or backbone path -> child name -> (type codes, is choice element).

    A child whose type is ``BackboneElement``/``Element`` (an inline structure) gets its own
    path as its type, e.g. ``Observation.component``; a ``contentReference`` child gets the
    path it refers to.
    """
    out: dict[str, dict[str, tuple[tuple[str, ...], bool]]] = {}
    for path, codes in element_types().items():
        parent, _, name = path.rpartition(".")
        choice = name.endswith("[x]")
        if choice:
            name = name[:-3]
        elif codes in (("BackboneElement",), ("Element",)) and parent:
            codes = (path,)
        out.setdefault(parent, {})[name] = (codes, choice)
    for path, target in content_references().items():
        parent, _, name = path.rpartition(".")
        out.setdefault(parent, {})[name] = ((target,), False)
    return out


@cache
def is_subtype(type_code: str, ancestor: str) -> bool:
    """Whether ``type_code`` is ``ancestor`` or derives from it (``Age`` is a ``Quantity``)."""
    bases = base_types()
    seen = type_code
    while seen:
        if seen == ancestor:
            return True
        seen = bases.get(seen, "")
    return False
