"""FHIR R4 CodeSystem resources (JSON), alone or in a Bundle.

The JSON is parsed whole (CodeSystem resources are rarely large); the concepts are then
flattened lazily, depth first, parents before children.  Hierarchy comes from nesting
(``concept.concept``) and from the ``parent`` property; ``inactive``/``status = retired``
mark inactive concepts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from enjournal.terminology.loaders import LoadError, Source, checked, open_text, source_name
from enjournal.terminology.model import CodeSystemDraft, Concept, Designation

_VALUE_KEYS = (
    ("valueCode", str),
    ("valueString", str),
    ("valueBoolean", bool),
    ("valueInteger", int),
    ("valueDecimal", (int, float)),
    ("valueDateTime", str),
    ("valueCoding", dict),
)


def _read_json(src: Source) -> Any:
    with open_text(src) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise LoadError(
                f"invalid JSON: {e.msg}", f"line {e.lineno}, column {e.colno}"
            ) from None
        except UnicodeDecodeError as e:
            raise LoadError(f"not UTF-8 text ({e.reason})") from None


def load_fhir_json(src: Source, **options: Any) -> CodeSystemDraft:
    """One CodeSystem resource; a Bundle holding exactly one is accepted too."""
    drafts = load_fhir_json_all(src, **options)
    if len(drafts) != 1:
        raise LoadError(
            f"expected one CodeSystem, found {len(drafts)}: use load_fhir_json_all",
            source=source_name(src),
        )
    return drafts[0]


def load_fhir_json_all(src: Source, **options: Any) -> list[CodeSystemDraft]:
    """Every CodeSystem in the file: the resource itself, or each one in a Bundle."""
    name = source_name(src)
    try:
        data = _read_json(src)
        if not isinstance(data, dict):
            raise LoadError("expected a JSON object (a FHIR resource)", "$")
        rtype = data.get("resourceType")
        if rtype == "CodeSystem":
            return [checked(draft_from_resource(data, "$", **options), name)]
        if rtype == "Bundle":
            drafts = []
            for i, entry in enumerate(data.get("entry") or []):
                res = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(res, dict) and res.get("resourceType") == "CodeSystem":
                    where = f"entry[{i}].resource"
                    drafts.append(checked(draft_from_resource(res, where, **options), name))
            if not drafts:
                raise LoadError("the Bundle holds no CodeSystem", "$.entry")
            return drafts
        raise LoadError(f"expected a CodeSystem or a Bundle, not {rtype!r}", "$.resourceType")
    except LoadError as e:
        raise e.with_source(name) from None


def draft_from_resource(
    res: dict[str, Any],
    where: str = "$",
    *,
    url: str | None = None,
    version: str | None = None,
    **_: Any,
) -> CodeSystemDraft:
    """A draft from a parsed CodeSystem resource (``where`` names it in error messages)."""
    cs_url = url or res.get("url")
    if not isinstance(cs_url, str) or not cs_url:
        raise LoadError("the CodeSystem has no url", f"{where}.url")
    props = []
    for i, p in enumerate(res.get("property") or []):
        if not isinstance(p, dict) or not isinstance(p.get("code"), str):
            raise LoadError("property without a code", f"{where}.property[{i}]")
        props.append((p["code"], p.get("type") or "string"))
    concepts = res.get("concept") or []
    if not isinstance(concepts, list):
        raise LoadError("concept must be an array", f"{where}.concept")
    return CodeSystemDraft(
        url=cs_url,
        version=version or res.get("version"),
        name=res.get("name") or res.get("id") or res.get("title") or cs_url,
        title=res.get("title"),
        publisher=res.get("publisher"),
        copyright=res.get("copyright"),
        language=res.get("language"),
        hierarchy_meaning=res.get("hierarchyMeaning") or "is-a",
        content="fragment" if res.get("content") == "fragment" else "complete",
        properties=props,
        concepts=_concepts(concepts, f"{where}.concept"),
    )


def _concepts(items: list[Any], where: str, parent: str | None = None) -> Iterator[Concept]:
    for i, item in enumerate(items):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise LoadError("a concept must be an object", here)
        code = item.get("code")
        if not isinstance(code, str) or not code.strip():
            raise LoadError("concept without a code", here)
        concept = Concept(code=code, display=item.get("display"))
        if parent is not None:
            concept.parents.append(parent)
        for j, d in enumerate(item.get("designation") or []):
            if not isinstance(d, dict) or not isinstance(d.get("value"), str):
                raise LoadError("designation without a value", f"{here}.designation[{j}]")
            use = d.get("use")
            concept.designations.append(
                Designation(
                    value=d["value"],
                    language=d.get("language"),
                    use=use.get("code") if isinstance(use, dict) else None,
                )
            )
        for j, p in enumerate(item.get("property") or []):
            pcode = p.get("code") if isinstance(p, dict) else None
            if not isinstance(pcode, str):
                raise LoadError("property without a code", f"{here}.property[{j}]")
            value = _property_value(p, f"{here}.property[{j}]")
            if pcode == "parent":
                if value not in concept.parents:
                    concept.parents.append(str(value))
            elif pcode == "child":
                continue  # implied by the children's parents
            elif pcode == "inactive" and isinstance(value, bool):
                concept.inactive = value
            else:
                if pcode == "status" and value == "retired":
                    concept.inactive = True
                concept.properties.setdefault(pcode, []).append(value)
        yield concept
        children = item.get("concept")
        if children:
            if not isinstance(children, list):
                raise LoadError("concept must be an array", f"{here}.concept")
            yield from _concepts(children, f"{here}.concept", code)


def _property_value(p: dict[str, Any], where: str) -> object:
    for key, kind in _VALUE_KEYS:
        if key in p:
            value = p[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise LoadError(f"{key} has the wrong type", where)
            if isinstance(value, dict):  # valueCoding
                if not isinstance(value.get("code"), str):
                    raise LoadError("valueCoding without a code", where)
                return value["code"]
            return value
    raise LoadError("property without a value[x]", where)
