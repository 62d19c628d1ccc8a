"""The FHIR R4 terminology operations (http://hl7.org/fhir/R4/terminology-service.html):

- ``CodeSystem/$lookup``, ``CodeSystem/[id]/$lookup``
- ``CodeSystem/$validate-code``, ``CodeSystem/[id]/$validate-code``
- ``CodeSystem/$subsumes``, ``CodeSystem/[id]/$subsumes``
- ``ValueSet/$expand``, ``ValueSet/[id]/$expand``
- ``ValueSet/$validate-code``, ``ValueSet/[id]/$validate-code``
- ``ConceptMap/$translate``, ``ConceptMap/[id]/$translate``

Each takes GET query parameters or a POST Parameters body and answers with Parameters (a
ValueSet for $expand).  Importing this module registers nothing; ``register_all(table)``
adds them to a platform's operations (``enjournal.bootstrap``), any number of times.
"""

from __future__ import annotations

import orjson

from enjournal.fhir.errors import Invalid, NotFound
from enjournal.rest.message import FhirResponse
from enjournal.rest.operations import Operation, Operations, parameters
from enjournal.storage import terminology as ts
from enjournal.terminology import concept_maps, expansion
from enjournal.terminology.resources import split_canonical
from enjournal.terminology.value_sets import find_value_set
from enjournal.terminology.values import split_use, typed_value

_SPEC = "http://hl7.org/fhir/OperationDefinition/"


# ---- parameter helpers ---------------------------------------------------------------------


def _one(params: dict, name: str) -> object | None:
    value = params.get(name)
    if isinstance(value, list):
        if len(value) > 1 and not isinstance(value[0], dict):
            raise Invalid(f"the parameter {name!r} may be given once")
        return value[0] if value else None
    return value


def _str(params: dict, name: str) -> str | None:
    value = _one(params, name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Invalid(f"the parameter {name!r} must be a string")
    return value


def _bool(params: dict, name: str, default: bool = False) -> bool:
    value = _one(params, name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise Invalid(f"the parameter {name!r} must be true or false")


def _int(params: dict, name: str) -> int | None:
    value = _one(params, name)
    if value is None or value == "":
        return None
    try:
        number = int(value)  # type: ignore[call-overload]  # a str; TypeError if not
    except (TypeError, ValueError):
        raise Invalid(f"the parameter {name!r} must be an integer") from None
    if number < 0:
        raise Invalid(f"the parameter {name!r} must not be negative")
    return number


def _coding(params: dict, *, system_required: bool = True) -> tuple[str | None, str, str | None,
                                                                    str | None]:  # fmt: skip
    """(system, code, version, display) from system/code/version/display, or coding, or
    the first coding of codeableConcept."""
    coding = _one(params, "coding")
    if coding is None:
        cc = _one(params, "codeableConcept")
        if isinstance(cc, dict) and cc.get("coding"):
            coding = cc["coding"][0]
    if coding is not None:
        if not isinstance(coding, dict):
            raise Invalid("coding must be a Coding")
        system, code = coding.get("system"), coding.get("code")
        version, display = coding.get("version"), coding.get("display")
    else:
        system, code = _str(params, "system"), _str(params, "code")
        version, display = _str(params, "version"), _str(params, "display")
    if not code:
        raise Invalid("a code is needed (code, coding or codeableConcept)")
    if system_required and not system:
        raise Invalid("a system is needed with the code")
    return system, code, _str(params, "version") or version, display


def _reply(parts: list[dict]) -> FhirResponse:
    return FhirResponse.of({"resourceType": "Parameters", "parameter": parts})


async def _instance(tx, request, type_: str) -> dict | None:
    """The resource of an instance-level call (/Type/id/$op), or None at type level."""
    if len(request.path) != 3:
        return None
    stored = await tx.read(type_, request.path[1])
    return orjson.loads(stored.content)


async def _code_system_url(tx, request, params: dict) -> tuple[str | None, str | None]:
    resource = await _instance(tx, request, "CodeSystem")
    if resource is None:
        return None, None
    return resource.get("url"), resource.get("version")


# ---- CodeSystem -----------------------------------------------------------------------------


async def lookup(request, repo) -> FhirResponse:
    tx = repo.trusted  # code systems and value sets are not health data
    params = parameters(request)
    url, version = await _code_system_url(tx, request, params)
    system, code, given_version, _ = _coding(params, system_required=url is None)
    system = system or url
    version = given_version or version
    result = await ts.lookup(tx, system, code, version)
    if result is None:
        info = await ts.require_code_system(tx, system, version)
        raise NotFound(f"the code {code!r} is not in the code system {ts.system_label(info)}")
    wanted = params.get("property")
    wanted = set(wanted if isinstance(wanted, list) else [wanted]) if wanted else None
    parts: list[dict] = [{"name": "name", "valueString": result.system.name or system}]
    if result.system.version:
        parts.append({"name": "version", "valueString": result.system.version})
    if result.display:
        parts.append({"name": "display", "valueString": result.display})
    if result.system.title:
        parts.append({"name": "abstract", "valueBoolean": False})

    def want(name: str) -> bool:
        return wanted is None or name in wanted

    if want("designation"):
        for d in result.designations:
            sub: list[dict] = []
            if d.language:
                sub.append({"name": "language", "valueCode": d.language})
            use_system, use_code = split_use(d.use)
            if use_code:
                use = {"system": use_system, "code": use_code} if use_system else {"code": use_code}
                sub.append({"name": "use", "valueCoding": use})
            sub.append({"name": "value", "valueString": d.value})
            parts.append({"name": "designation", "part": sub})
    for prop, text, type_ in result.properties:
        if want(prop):
            key, value = typed_value(text, type_)
            parts.append(_property(prop, key, value))
    if want("inactive"):
        parts.append(_property("inactive", "valueBoolean", result.inactive))
    if want("parent"):
        parts.extend(_property("parent", "valueCode", p) for p in result.parents)
    if want("child"):
        parts.extend(_property("child", "valueCode", c) for c in result.children)
    return _reply(parts)


def _property(code: str, key: str, value: object) -> dict:
    return {
        "name": "property",
        "part": [{"name": "code", "valueCode": code}, {"name": "value", key: value}],
    }


def _validation_parts(v: ts.Validation) -> list[dict]:
    parts: list[dict] = [{"name": "result", "valueBoolean": v.result}]
    if v.message:
        parts.append({"name": "message", "valueString": v.message})
    if v.display:
        parts.append({"name": "display", "valueString": v.display})
    return parts


async def cs_validate_code(request, repo) -> FhirResponse:
    tx = repo.trusted  # code systems and value sets are not health data
    params = parameters(request)
    url, version = await _code_system_url(tx, request, params)
    url = url or _str(params, "url")
    system, code, given_version, display = _coding(params, system_required=url is None)
    if url and system and split_canonical(system)[0] != split_canonical(url)[0]:
        raise Invalid(f"the coding's system {system} is not the code system {url}")
    result = await ts.validate_code(tx, system or url, code, given_version or version, display)
    return _reply(_validation_parts(result))


async def cs_subsumes(request, repo) -> FhirResponse:
    tx = repo.trusted  # code systems and value sets are not health data
    params = parameters(request)
    url, version = await _code_system_url(tx, request, params)
    coding_a, coding_b = _one(params, "codingA"), _one(params, "codingB")
    system = _str(params, "system") or url
    version = _str(params, "version") or version
    if coding_a is not None or coding_b is not None:
        if not isinstance(coding_a, dict) or not isinstance(coding_b, dict):
            raise Invalid("$subsumes needs both codingA and codingB")
        systems = {c.get("system") for c in (coding_a, coding_b)} - {None}
        if len(systems) > 1:
            raise Invalid("codingA and codingB must be from the same code system")
        system = system or next(iter(systems), None)
        code_a, code_b = coding_a.get("code"), coding_b.get("code")
    else:
        code_a, code_b = _str(params, "codeA"), _str(params, "codeB")
    if not code_a or not code_b:
        raise Invalid("$subsumes needs codeA and codeB (or codingA and codingB)")
    if not system:
        raise Invalid("$subsumes needs a system")
    outcome = await ts.subsumes(tx, system, code_a, code_b, version)
    return _reply([{"name": "outcome", "valueCode": outcome}])


# ---- ValueSet --------------------------------------------------------------------------------


async def _value_set(tx, request, params: dict) -> dict:
    resource = await _instance(tx, request, "ValueSet")
    if resource is not None:
        return resource
    inline = _one(params, "valueSet")
    if isinstance(inline, dict):
        if inline.get("resourceType") != "ValueSet":
            raise Invalid("the valueSet parameter must be a ValueSet")
        return inline
    url = _str(params, "url")
    if url is None:
        raise Invalid("name the value set: /ValueSet/[id]/$op, url or valueSet")
    vs = await find_value_set(tx, url, _str(params, "valueSetVersion"))
    if vs is None:
        raise NotFound(f"the value set {url} is not known to this server")
    return vs


async def expand(request, repo) -> FhirResponse:
    tx = repo.trusted  # code systems and value sets are not health data
    params = parameters(request)
    vs = await _value_set(tx, request, params)
    exclude_nested = _one(params, "excludeNested")
    nested = exclude_nested is not None and not _bool(params, "excludeNested")
    result = await expansion.expand(
        tx,
        vs,
        filter=_str(params, "filter"),
        count=_int(params, "count"),
        offset=_int(params, "offset") or 0,
        include_designations=_bool(params, "includeDesignations"),
        display_language=_str(params, "displayLanguage") or request.header("accept-language"),
        active_only=_bool(params, "activeOnly"),
        nested=nested,
    )
    return FhirResponse.of(result)


async def vs_validate_code(request, repo) -> FhirResponse:
    tx = repo.trusted  # code systems and value sets are not health data
    params = parameters(request)
    vs = await _value_set(tx, request, params)
    system, code, version, display = _coding(params)
    result = await expansion.validate_vs_code(tx, vs, system, code, version, display)
    return _reply(_validation_parts(result))


# ---- ConceptMap ------------------------------------------------------------------------------


async def translate(request, repo) -> FhirResponse:
    tx = repo.trusted  # code systems and value sets are not health data
    params = parameters(request)
    cmap = await _instance(tx, request, "ConceptMap")
    if cmap is None:
        inline = _one(params, "conceptMap")
        url = _str(params, "url")
        if isinstance(inline, dict):
            cmap = inline
        elif url is not None:
            cmap = await concept_maps.find_concept_map(tx, url, _str(params, "conceptMapVersion"))
            if cmap is None:
                raise NotFound(f"the concept map {url} is not known to this server")
    if _bool(params, "reverse"):
        raise Invalid("$translate with reverse=true is not supported")
    system, code, _version, _ = _coding(params)
    target = _str(params, "targetsystem") or _str(params, "targetSystem")
    result = await concept_maps.translate(tx, system, code, concept_map=cmap, target_system=target)
    parts: list[dict] = [{"name": "result", "valueBoolean": result.result}]
    if result.message:
        parts.append({"name": "message", "valueString": result.message})
    for match in result.matches:
        sub: list[dict] = [{"name": "equivalence", "valueCode": match["equivalence"]}]
        if "concept" in match:
            sub.append({"name": "concept", "valueCoding": match["concept"]})
        if "source" in match:
            sub.append({"name": "source", "valueUri": match["source"]})
        if "comment" in match:
            sub.append({"name": "comment", "valueString": match["comment"]})
        parts.append({"name": "match", "part": sub})
    return _reply(parts)


# ---- registration ------------------------------------------------------------------------------

_HANDLERS = (
    ("lookup", "CodeSystem", lookup, "CodeSystem-lookup"),
    ("validate-code", "CodeSystem", cs_validate_code, "CodeSystem-validate-code"),
    ("subsumes", "CodeSystem", cs_subsumes, "CodeSystem-subsumes"),
    ("expand", "ValueSet", expand, "ValueSet-expand"),
    ("validate-code", "ValueSet", vs_validate_code, "ValueSet-validate-code"),
    ("translate", "ConceptMap", translate, "ConceptMap-translate"),
)


def register_all(table: Operations) -> None:
    """Add the terminology operations to ``table`` (idempotent: it is keyed by level)."""
    for name, type_, handler, definition in _HANDLERS:
        for instance in (False, True):
            table.add(
                Operation(
                    name,
                    type_,
                    instance,
                    handler,
                    ("GET", "POST"),
                    writes=False,
                    definition=_SPEC + definition,
                )
            )
