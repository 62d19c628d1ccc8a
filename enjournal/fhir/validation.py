"""Structural validation of FHIR R4 resources against the official StructureDefinitions.

``validate(resource)`` returns every problem it finds as an :class:`Issue` (errors and
warnings) and never raises on bad input; ``check(resource)`` raises
:class:`Unprocessable` when at least one issue is an error.

What is checked (tables: ``definitions/structures.json`` and
``definitions/required_valuesets.json``, built by ``scripts/build_structures.py``):

* ``resourceType`` is a known resource type; contained resources, ``Bundle.entry.resource``
  and ``Parameters.parameter.resource`` are validated recursively;
* unknown elements (``_x`` siblings of primitives are allowed, and validated as Element);
* JSON type and lexical form of every primitive (the spec's regular expressions, integer
  ranges, real calendar dates);
* arrays exactly where the element repeats, never empty; cardinality (min/max);
* choice elements ``x[x]``: an allowed type suffix and at most one of them;
* required bindings on code, Coding and CodeableConcept (value sets that cannot be
  expanded from the package are skipped, never guessed); extensible and preferred
  bindings the same way, but as warnings (shown by ``$validate``, never refusing a write);
* literal references point at an allowed target type;
* empty objects and empty strings (FHIR forbids them);
* Norwegian identifiers, via ``enjournal.fhir.norwegian_ids.identifier_problem``.

* narrative XHTML (every element of type ``xhtml``, i.e. ``Narrative.div`` wherever a
  Narrative is: ``text``, ``Composition.section.text``, contained and entry resources):
  ``enjournal.fhir.narrative``; a div that is not well-formed XML makes :func:`check` raise
  :class:`Invalid` (400) rather than :class:`Unprocessable`;
* the FHIRPath invariants of severity error (``enjournal.fhir.invariants``, which lists the
  few it skips), ``ele-1`` (no element with only an id), ``ext-1`` (an extension has a value
  or nested extensions, not both) and ``ref-1`` (a ``#id`` reference names a contained
  resource) natively;
* absolute URIs where the spec requires them (``Coding.system``, ``Identifier.system``,
  ``Quantity.system``, a top-level ``Extension.url``, ``Bundle.entry.fullUrl``,
  ``ValueSet.compose.include.system``, a canonical resource's ``url``: ``_absolute()``);
* strings of at most 1 MB (the R4 limit on ``string`` and ``markdown``);
* Bundle entries: ``fullUrl`` unique per resource version (bdl-7), a RESTful ``fullUrl``
  that ends in ``<type>/<id>`` names the entry resource's type and id;
* core extensions (``definitions/extensions.json``): the type of ``value[x]``, a value
  only on a simple extension, nested extensions only on a complex one, and their ``element``
  contexts (the path, data type or a base type of the element the extension sits on;
  ``extension`` and ``fhirpath`` contexts are accepted unchecked);
* Attachment: ``size`` agrees with ``data`` when both are given (``hash`` is not checked: an
  official example has one that does not match, and the reference validator lets it be).

Profiles are not evaluated here.

Each issue's expression is a path like ``Patient.identifier[0].value``; choice elements are
named by their JSON name (``Observation.valueQuantity``).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from importlib import resources as _resources

from enjournal.fhir import invariants, narrative
from enjournal.fhir.errors import Invalid, Issue, Unprocessable

__all__ = ["check", "resource_types", "validate"]

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


@cache
def _load(name: str) -> dict:
    package = "enjournal.fhir.definitions"
    return json.loads(_resources.files(package).joinpath(name).read_text("utf-8"))


def _structures() -> dict:
    from enjournal.fhir.definitions import structures

    return structures()


@cache
def resource_types() -> frozenset[str]:
    return frozenset(n for n, t in _structures()["types"].items() if t["kind"] == "resource")


# --------------------------------------------------------------------------- value sets


class _ValueSet:
    __slots__ = ("all_codes", "systems", "url")

    def __init__(self, url: str, codes: dict[str, list[str]]):
        self.url = url
        self.systems = {s: frozenset(c) for s, c in codes.items()}
        self.all_codes = frozenset().union(*self.systems.values())

    def describe(self) -> str:
        if len(self.all_codes) <= 12:
            return f"{self.url} ({', '.join(sorted(self.all_codes))})"
        return self.url


@cache
def _value_set(url: str) -> _ValueSet | None:
    raw = _load("required_valuesets.json")["valueSets"].get(url)
    if raw is None or "codes" not in raw:
        return None  # not expandable from the package: skip rather than guess
    return _ValueSet(url, raw["codes"])


# --------------------------------------------------------------------------- primitives

_JSON_NAME = {bool: "boolean", int: "number", float: "number", Decimal: "number", str: "string"}


def _json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return _JSON_NAME.get(type(value), type(value).__name__)


_STRING_LIMIT = 1024 * 1024  # bytes of UTF-8: R4 datatypes.html#string
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
_DATE_PREFIX = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


def _calendar_problem(value: str) -> str | None:
    m = _DATE_PREFIX.match(value)
    if m:
        year, month, day = int(m[1]), int(m[2]), int(m[3])
        if day > calendar.monthrange(year, month)[1]:
            return f"{value!r} is not a real calendar date"
    return None


def _make_primitive_checker(name: str, regex: str | None):
    """A function value -> error message or None for one primitive type."""
    if name == "boolean":
        return lambda v: (
            None if v is True or v is False else f"must be a JSON boolean, not {_json_kind(v)}"
        )
    if name in ("integer", "positiveInt", "unsignedInt"):
        low = {"integer": _INT_MIN, "positiveInt": 1, "unsignedInt": 0}[name]

        def check_int(v):
            if type(v) is not int:
                return f"must be a JSON integer ({name}), not {_json_kind(v)}"
            if v < low or v > _INT_MAX:
                return f"{v} is out of range for {name} ({low}..{_INT_MAX})"
            return None

        return check_int
    if name == "decimal":

        def check_decimal(v):
            if type(v) is int or (type(v) in (float, Decimal) and math.isfinite(v)):
                return None
            return f"must be a JSON number (decimal), not {_json_kind(v)}"

        return check_decimal

    pattern = None
    if regex and name not in ("string", "markdown"):  # those two only forbid the empty string
        pattern = re.compile(regex, re.ASCII).fullmatch
    dated = name in ("date", "dateTime", "instant")
    base64 = name == "base64Binary"
    limited = name not in ("base64Binary", "xhtml")  # an attachment may be larger

    def check_string(v):
        if type(v) is not str:
            return f"must be a JSON string ({name}), not {_json_kind(v)}"
        if not v:
            return "empty strings are not allowed in FHIR; omit the element instead"
        if limited and len(v) > _STRING_LIMIT // 4 and len(v.encode()) > _STRING_LIMIT:
            return "is longer than the 1 MB FHIR allows for a string"
        if base64:
            if not _BASE64.fullmatch(v) or len("".join(v.split())) % 4:
                return "is not valid base64Binary"
            return None
        if pattern is not None and pattern(v) is None:
            return f"{v!r} is not a valid {name}"
        if dated:
            return _calendar_problem(v)
        return None

    return check_string


@cache
def _primitive_checkers() -> dict:
    return {n: _make_primitive_checker(n, r) for n, r in _structures()["primitives"].items()}


# --------------------------------------------------------------------------- compiled nodes


class _Field:
    __slots__ = (
        "binding",
        "choice",
        "fast",
        "inline",
        "keys",
        "many",
        "max",
        "min",
        "name",
        "path",
        "targets",
        "weak_binding",
    )

    def __init__(self, row: dict, name: str):
        self.name = name  # as in the definition, e.g. "value[x]"
        self.path = row["path"]  # e.g. "Observation.value[x]": where its invariants are
        self.min = row["min"]
        self.max = None if row["max"] == "*" else int(row["max"])
        self.many = self.max is None or self.max > 1
        self.choice = name.endswith("[x]")
        self.binding = row.get("binding")
        # (strength, value set) of an extensible or preferred binding: warnings only.
        self.weak_binding = tuple(row["weak_binding"]) if row.get("weak_binding") else None
        targets = row.get("targets") or ()
        self.targets = None if not targets or "Resource" in targets else frozenset(targets)
        self.inline: _Node | None = None  # backbone element / contentReference
        self.keys: list[str] = []
        self.fast = False  # a single primitive without binding or whitespace warning


class _Node:
    """The children of one element: JSON key -> (field, type code, primitive checker)."""

    __slots__ = ("is_resource", "name", "required", "slots")

    def __init__(self, name: str, is_resource: bool = False):
        self.name = name
        self.is_resource = is_resource
        self.slots: dict[str, tuple[_Field, str, Callable | None]] = {}
        self.required: list[_Field] = []


_INLINE_TYPES = ("BackboneElement", "Element")


@cache
def _type_node(type_name: str) -> _Node | None:
    spec = _structures()["types"].get(type_name)
    if spec is None:
        return None
    is_resource = spec["kind"] == "resource"
    rows = spec["elements"]
    checkers = _primitive_checkers()
    nodes: dict[str, _Node] = {rows[0]["path"]: _Node(type_name, is_resource)}
    pending: list[tuple[_Field, dict]] = []
    for row in rows[1:]:
        path = row["path"]
        parent_path, _, name = path.rpartition(".")
        parent = nodes.get(parent_path)
        if parent is None:  # child of an element we do not descend into
            continue
        field = _Field(row, name)
        types = row.get("type", ())
        if field.choice:
            base = name[:-3]
            for t in types:
                key = base + t[0].upper() + t[1:]
                field.keys.append(key)
                parent.slots[key] = (field, t, checkers.get(t))
        else:
            field.keys.append(name)
            t = types[0] if types else "Element"
            parent.slots[name] = (field, t, checkers.get(t))
            field.fast = (
                t in checkers
                and not field.many
                and not field.binding
                and not field.weak_binding
                and t not in ("string", "xhtml")
                and field.path not in _absolute()
                and not invariants.invariants_for(field.path)
            )
        if field.min:
            parent.required.append(field)
        if "ref" in row or (types and types[0] in _INLINE_TYPES):
            nodes[path] = _Node(path)
            pending.append((field, row))
    for field, row in pending:
        field.inline = nodes.get(row.get("ref") or row["path"])
    return nodes[rows[0]["path"]]


# --------------------------------------------------------------------------- walking


_REFERENCE = re.compile(
    r"(?:.*/)?([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?"
)

_RESTFUL_URL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S")
_NESTED_EXTENSION = re.compile(r"(?:^|\.)(?:extension|modifierExtension)\[\d+\]\.extension\[\d+\]$")

# uri elements the spec requires to be absolute: a code system, identifier namespace or
# unit system is global, so a relative one means nothing elsewhere.  An extension's url is
# absolute except inside a complex extension, where it names the part.
_ABSOLUTE_ALWAYS = frozenset(
    {
        "Coding.system",
        "Identifier.system",
        "Quantity.system",
        "Age.system",
        "Count.system",
        "Distance.system",
        "Duration.system",
        "Extension.url",
        "ValueSet.compose.include.system",  # a contained code system is named by its url
        "Bundle.entry.fullUrl",  # an absolute URL, or a urn:uuid: / urn:oid:
    }
)
_NOT_CANONICAL_URL = frozenset({"Device", "DeviceDefinition", "Contract"})  # an address or a link


@cache
def _core_extensions() -> dict[str, dict]:
    return _load("extensions.json")["extensions"]


@cache
def _type_and_bases(tcode: str) -> frozenset[str]:
    """A type and the types it derives from: Age -> Quantity, Element; Patient -> Resource."""
    bases = _load("extensions.json").get("bases", {})
    names: list[str] = []
    while tcode and tcode not in names:
        names.append(tcode)
        tcode = bases.get(tcode, "")
    return frozenset(names)


def _context_allows(contexts: list, host: tuple) -> bool:
    """True when an extension may sit on ``host`` (logical path, definition path, type)."""
    # "Element" also admits resources: the official examples put Element-context extensions
    # (structuredefinition-wg, ...) on ValueSet and others, as the reference validator allows.
    # host[3]: the element a contentReference repeats (OperationDefinition.parameter.part is
    # an OperationDefinition.parameter).
    names = _type_and_bases(host[2]) | {host[0], host[1], host[3], "Element"}
    for kind, expression in contexts:
        if kind != "element" or expression in names:
            return True  # extension / fhirpath contexts: not evaluated, so accepted
    return not contexts


@cache
def _absolute() -> frozenset[str]:
    """Those, and the ``url`` of every canonical resource ("an absolute URI that is used to
    identify this ... when it is referenced")."""
    canonical = {
        f"{name}.url"
        for name, spec in _structures()["types"].items()
        if spec["kind"] == "resource"
        and name not in _NOT_CANONICAL_URL
        and any(e["path"] == f"{name}.url" and e.get("type") == ["uri"] for e in spec["elements"])
    }
    return _ABSOLUTE_ALWAYS | canonical


def _identifier_problem(system: str, value: str) -> str | None:
    from enjournal.fhir.norwegian_ids import identifier_problem

    return identifier_problem(system, value)


class _Walker:
    __slots__ = ("checkers", "hosts", "issues", "malformed", "resources", "root")

    def __init__(self):
        self.issues: list[Issue] = []
        self.checkers = _primitive_checkers()
        self.malformed = False  # a narrative that is not XML: 400, not 422
        self.resources: list[dict] = []  # the enclosing resources (FHIRPath %resource)
        self.root: dict = {}  # %rootResource: the container of a contained resource
        # the elements being walked, innermost last, as (logical path, definition path, type,
        # node name): where an extension sits, for its context
        self.hosts: list[tuple[str, str, str, str]] = []

    def error(self, code: str, path: str, message: str) -> None:
        self.issues.append(Issue("error", code, message, [path]))

    def warning(self, code: str, path: str, message: str) -> None:
        self.issues.append(Issue("warning", code, message, [path]))

    # -- resources

    def resource(self, resource, path: str | None, contained: bool = False) -> None:
        if not isinstance(resource, dict):
            self.error(
                "structure",
                path or "Resource",
                f"A resource must be a JSON object, not {_json_kind(resource)}",
            )
            return
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str) or not rtype:
            self.error("required", path or "Resource", "The resource has no resourceType")
            return
        node = _type_node(rtype) if rtype in resource_types() else None
        if node is None:
            self.error("not-supported", path or rtype, f"Unknown resourceType {rtype!r}")
            return
        outer_root = self.root
        if not contained:
            self.root = resource
        self.resources.append(resource)
        self.hosts.append((rtype, rtype, rtype, rtype))
        try:
            self.obj(resource, node, path or rtype)
            self.resource_rules(resource, rtype, path or rtype)
        finally:
            self.hosts.pop()
            self.resources.pop()
            self.root = outer_root

    def resource_rules(self, resource: dict, rtype: str, path: str) -> None:
        self.invariants(resource, rtype, rtype, path)
        contained = resource.get("contained")
        if isinstance(contained, list):
            self.unique_ids(contained, f"{path}.contained")
            for i in invariants.unreferenced_contained(resource):
                self.error(
                    "invariant",
                    f"{path}.contained[{i}]",
                    "Constraint dom-3 failed: a contained resource must be referenced "
                    "from elsewhere in the resource, or refer to its container",
                )
        if rtype == "Bundle":
            self.bundle(resource, path)

    def invariants(self, value, where: str, base: str, path: str) -> None:
        resource = self.resources[-1] if self.resources else {}
        for inv in invariants.failures(value, where, base, resource, self.root):
            human = f": {inv.human}" if inv.human else ""
            self.error("invariant", path, f"Constraint {inv.key} failed{human}")

    def unique_ids(self, contained: list, path: str) -> None:
        seen: set[str] = set()
        for i, r in enumerate(contained):
            rid = r.get("id") if isinstance(r, dict) else None
            if type(rid) is str and rid in seen:
                self.error("invariant", f"{path}[{i}].id", f"Duplicate contained id {rid!r}")
            elif type(rid) is str:
                seen.add(rid)

    def bundle(self, bundle: dict, path: str) -> None:
        entries = bundle.get("entry")
        if not isinstance(entries, list):
            return
        kind = bundle.get("type")
        seen: set[tuple] = set()
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
                continue
            res = entry["resource"]
            where = f"{path}.entry[{i}]"
            full_url = entry.get("fullUrl")
            if type(full_url) is str:
                self.full_url(full_url, res, where)
            rid, meta = res.get("id"), res.get("meta")
            version = meta.get("versionId") if isinstance(meta, dict) else None
            key = (res.get("resourceType"), rid, version)
            if full_url is not None or kind in ("history", "batch") or type(rid) is not str:
                continue  # with a fullUrl, bdl-7 and the fullUrl check above apply
            if key in seen:
                self.error(
                    "invariant",
                    f"{where}.resource.id",
                    f"Duplicate entry: {key[0]}/{rid} occurs more than once in the Bundle",
                )
            seen.add(key)

    def full_url(self, full_url: str, res: dict, where: str) -> None:
        m = _RESTFUL_URL.search(full_url)
        if m is None or m[1] not in resource_types():
            return
        rtype, rid = res.get("resourceType"), res.get("id")
        if m[1] != rtype or (rid is not None and m[2] != rid):
            self.error(
                "invariant",
                f"{where}.fullUrl",
                f"The fullUrl names {m[1]}/{m[2]} but the entry resource is "
                f"{rtype}/{rid if rid is not None else '(no id)'}",
            )

    # -- objects

    def obj(self, obj: dict, node: _Node, path: str) -> None:
        slots = node.slots
        choices: dict[_Field, str] | None = None
        for key, value in obj.items():
            slot = slots.get(key)
            if slot is None:
                if key[:1] == "_":
                    self.primitive_extension(obj, key, node, path)
                elif key == "resourceType" and node.is_resource:
                    continue
                else:
                    self.error(
                        "structure", f"{path}.{key}", f"Unknown element '{key}' in {node.name}"
                    )
                continue
            field, tcode, checker = slot
            if field.choice:
                if choices is None:
                    choices = {}
                other = choices.get(field)
                if other is not None:
                    self.error(
                        "structure",
                        f"{path}.{key}",
                        f"Only one of {other} and {key} may be present "
                        f"({node.name}.{field.name} is a single choice)",
                    )
                else:
                    choices[field] = key
            if field.fast and checker(value) is None:
                continue  # the common case: a valid single primitive without binding
            self.value(value, field, tcode, f"{path}.{key}", field.many and ("_" + key) in obj)
        for field in node.required:
            if not any(k in obj or ("_" + k) in obj for k in field.keys):
                self.error(
                    "required",
                    f"{path}.{field.name}",
                    f"Missing required element '{field.name}' "
                    f"(minimum cardinality {field.min}) in {node.name}",
                )

    def primitive_extension(self, obj: dict, key: str, node: _Node, path: str) -> None:
        base = key[1:]
        slot = node.slots.get(base)
        where = f"{path}.{key}"
        if slot is None or slot[1] not in self.checkers:
            self.error("structure", where, f"Unknown element '{key}' in {node.name}")
            return
        self.enter(slot[0], slot[1], "Element")  # the primitive hosts the _x extensions
        try:
            self.primitive_elements(obj, key, slot[0], where)
        finally:
            self.hosts.pop()

    def primitive_elements(self, obj: dict, key: str, field: _Field, where: str) -> None:
        base = key[1:]
        value = obj[key]
        element = _type_node("Element")
        if field.many:
            if not isinstance(value, list):
                self.error("structure", where, f"'{key}' must be an array because '{base}' repeats")
                return
            main = obj.get(base)
            if isinstance(main, list) and len(main) != len(value):
                self.error("structure", where, f"'{key}' must have as many entries as '{base}'")
            for i, item in enumerate(value):
                if item is not None:
                    self.element(item, element, f"{where}[{i}]", True)
            return
        if value is None:
            self.error("structure", where, f"'{key}' must not be null")
            return
        self.element(value, element, where, True)

    def element(self, value, node: _Node, path: str, primitive: bool = False) -> bool:
        if not isinstance(value, dict):
            self.error("structure", path, f"must be a JSON object, not {_json_kind(value)}")
            return False
        if not value:
            self.error(
                "structure", path, "empty objects are not allowed in FHIR; omit the element instead"
            )
            return False
        if len(value) == 1 and "id" in value and not primitive:
            self.error("invariant", path, "Constraint ele-1 failed: an element needs children")
        self.obj(value, node, path)
        return True

    # -- values

    def value(self, value, field: _Field, tcode: str, path: str, has_extension: bool) -> None:
        if field.many:
            if not isinstance(value, list):
                self.error("structure", path, f"must be a JSON array ({field.name} repeats)")
                return
            if not value:
                self.error(
                    "structure",
                    path,
                    "empty arrays are not allowed in FHIR; omit the element instead",
                )
                return
            if field.max is not None and len(value) > field.max:
                self.error(
                    "structure",
                    path,
                    f"has {len(value)} values but at most {field.max} are allowed",
                )
            if len(value) < field.min:
                self.error(
                    "required",
                    path,
                    f"has {len(value)} values but at least {field.min} are required",
                )
            for i, item in enumerate(value):
                if item is None and has_extension:
                    continue
                self.item(item, field, tcode, f"{path}[{i}]")
            return
        if isinstance(value, list):
            self.error(
                "structure",
                path,
                f"must be a single value, not an array (cardinality {field.min}..{field.max})",
            )
            return
        self.item(value, field, tcode, path)

    def item(self, value, field: _Field, tcode: str, path: str) -> None:
        checker = self.checkers.get(tcode)
        if checker is not None:
            problem = checker(value)
            if problem is not None:
                self.error("value", path, f"Invalid {tcode}: {problem}")
                return
            if tcode == "xhtml":
                self.narrative(value, path)
                return
            if field.path in _absolute():
                self.absolute_uri(value, field.path, path)
            if invariants.invariants_for(field.path):
                self.invariants(value, field.path, tcode, path)
            if field.binding and tcode == "code":
                vs = _value_set(field.binding)
                if vs is not None and value not in vs.all_codes:
                    self.error(
                        "code-invalid",
                        path,
                        f"The code {value!r} is not in the required value set {vs.describe()}",
                    )
            elif field.weak_binding and tcode == "code":
                strength, url = field.weak_binding
                vs = _value_set(url)
                if vs is not None and value not in vs.all_codes:
                    self.warning(
                        "code-invalid",
                        path,
                        f"The code {value!r} is not in the {strength} value set {vs.describe()}",
                    )
            elif tcode == "string" and (value[0].isspace() or value[-1].isspace()):
                self.warning("value", path, "Strings should not start or end with whitespace")
            return
        if tcode == "Resource":
            self.resource(value, path, contained=field.name == "contained")
            return
        node = field.inline or _type_node(tcode)
        if node is None:  # an unknown type: nothing to check against
            return
        self.enter(field, tcode, node.name)
        try:
            entered = self.element(value, node, path)
        finally:
            self.hosts.pop()
        if not entered:
            return
        self.complex_rules(value, field, tcode, node, path)
        if field.binding and tcode in ("Coding", "CodeableConcept"):
            vs = _value_set(field.binding)
            if vs is not None:
                self.binding(value, tcode, vs, path)
        elif field.weak_binding and tcode in ("Coding", "CodeableConcept"):
            strength, url = field.weak_binding
            vs = _value_set(url)
            if vs is not None:
                self.binding(value, tcode, vs, path, strength)
        if tcode == "Identifier":
            system, ident = value.get("system"), value.get("value")
            if type(system) is str and type(ident) is str:
                problem = _identifier_problem(system, ident)
                if problem:
                    self.error("value", f"{path}.value", problem)
        elif tcode == "Reference" and field.targets is not None:
            self.reference(value, field, path)

    def enter(self, field: _Field, tcode: str, node_name: str) -> None:
        """Note the element about to be walked, as a child of the current one."""
        parent = self.hosts[-1] if self.hosts else ("", "", "", "")
        logical = parent[0] + field.path[len(parent[3]) :]  # Observation.code.coding
        self.hosts.append((logical, field.path, tcode, node_name))

    def complex_rules(self, value: dict, field: _Field, tcode: str, node: _Node, path: str) -> None:
        self.invariants(value, field.path, node.name if field.inline else tcode, path)
        if not field.inline:
            self.invariants(value, tcode, tcode, path)
        if tcode == "Extension":
            self.extension(value, path)
        elif tcode == "Reference":
            ref = value.get("reference")
            if type(ref) is str and invariants.contained_reference_problem(ref, self.root):
                self.error(
                    "invariant",
                    f"{path}.reference",
                    "Constraint ref-1 failed: a local reference names no contained resource",
                )
        elif tcode == "Attachment":
            self.attachment(value, path)

    def extension(self, value: dict, path: str) -> None:
        value_keys = [k for k in value if k.startswith(("value", "_value"))]
        if ("extension" in value) == bool(value_keys):
            self.error(
                "invariant",
                path,
                "Constraint ext-1 failed: an extension has nested extensions "
                "or a value[x], not both and not neither",
            )
            return
        known = _core_extensions().get(value.get("url"))
        if known is None:
            return  # not a core extension: its definition is not here
        if self.hosts and not _context_allows(known["context"], self.hosts[-1]):
            self.misplaced_extension(value["url"], known["context"], path)
        types = known["value"]
        if not types and value_keys:
            self.error("structure", path, "This extension is complex: nested extensions only")
        elif types and "extension" in value:
            self.error("structure", path, "This extension is simple: a value[x] only")
        for key in value_keys:
            suffix = key.lstrip("_")[5:]
            if types and suffix[:1].lower() + suffix[1:] not in types and suffix not in types:
                allowed = ", ".join(types) if len(types) <= 8 else f"{len(types)} types"
                self.error(
                    "structure", f"{path}.{key}", f"This extension's value is one of: {allowed}"
                )

    def misplaced_extension(self, url: str, contexts: list, path: str) -> None:
        host = self.hosts[-1]
        allowed = ", ".join(expression for _, expression in contexts[:8])
        more = f" and {len(contexts) - 8} more" if len(contexts) > 8 else ""
        self.error(
            "structure",
            path,
            f"The extension {url} is not allowed on {host[0]} ({host[2]}); "
            f"its context is {allowed}{more}",
        )

    def attachment(self, value: dict, path: str) -> None:
        data = value.get("data")
        if type(data) is not str:
            return
        try:
            raw = base64.b64decode("".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            return  # the base64Binary check has said so
        size = value.get("size")
        if type(size) is int and size != len(raw):
            self.error(
                "invariant",
                f"{path}.size",
                f"Attachment.size is {size} but the data holds {len(raw)} bytes",
            )

    def narrative(self, div: str, path: str) -> None:
        for malformed, message in narrative.problems(div):
            self.malformed = self.malformed or malformed
            self.error("invalid" if malformed else "invariant", path, f"Narrative: {message}")

    def absolute_uri(self, value: str, where: str, path: str) -> None:
        if _ABSOLUTE_URI.match(value):
            return
        if where == "Extension.url" and self.nested_extension(path):
            return  # a complex extension names its parts with relative urls
        self.error("value", path, f"{where} must be an absolute URI")

    def nested_extension(self, path: str) -> bool:
        """True for the url of an extension inside an extension (a relative name is allowed)."""
        head = path.rsplit(".", 1)[0]  # ...extension[1]
        return bool(_NESTED_EXTENSION.search(head))

    def binding(
        self, value: dict, tcode: str, vs: _ValueSet, path: str, strength: str = "required"
    ) -> None:
        """A code outside a required value set is an error; outside an extensible or
        preferred one, a warning (which only ``$validate`` shows: writes are not refused)."""
        report = self.error if strength == "required" else self.warning
        if tcode == "Coding":
            system, code = value.get("system"), value.get("code")
            if type(code) is not str:
                return
            ok = code in vs.all_codes if system is None else code in vs.systems.get(system, ())
            if not ok:
                shown = f"{system}#{code}" if system else repr(code)
                report(
                    "code-invalid",
                    path,
                    f"The coding {shown} is not in the {strength} value set {vs.describe()}",
                )
            return
        codings = value.get("coding")
        if not isinstance(codings, list):
            return
        relevant = [c for c in codings if isinstance(c, dict) and c.get("system") in vs.systems]
        if relevant and not any(c.get("code") in vs.systems[c["system"]] for c in relevant):
            shown = ", ".join(f"{c['system']}#{c.get('code')}" for c in relevant)
            report(
                "code-invalid",
                f"{path}.coding",
                f"None of the codings ({shown}) is in the {strength} value set {vs.describe()}",
            )

    def reference(self, value: dict, field: _Field, path: str) -> None:
        targets = field.targets
        allowed = ", ".join(sorted(targets))
        rtype = value.get("type")
        if type(rtype) is str and rtype in resource_types() and rtype not in targets:
            self.error(
                "value",
                f"{path}.type",
                f"Reference type {rtype} is not allowed here (allowed: {allowed})",
            )
        ref = value.get("reference")
        if type(ref) is not str or ref.startswith("#"):
            return
        m = _REFERENCE.fullmatch(ref)
        if m and m[1] in resource_types() and m[1] not in targets:
            self.error(
                "value",
                f"{path}.reference",
                f"A reference to {m[1]} is not allowed here (allowed: {allowed})",
            )


def _walk(resource) -> _Walker:
    walker = _Walker()
    try:
        walker.resource(resource, None)
    except RecursionError:
        walker.error("too-costly", "Resource", "The resource is nested too deeply to validate")
    walker.issues.sort(key=lambda i: i.severity != "error")
    return walker


def validate(resource) -> list[Issue]:
    """Every problem of ``resource`` (a parsed JSON resource), errors first."""
    return _walk(resource).issues


def check(resource) -> None:
    """Raise :class:`Unprocessable` with all issues when ``resource`` has any error
    (:class:`Invalid` when a narrative is not even well-formed XML)."""
    walker = _walk(resource)
    errors = [i for i in walker.issues if i.severity in ("error", "fatal")]
    if errors:
        first = errors[0]
        where = f" at {first.expression[0]}" if first.expression else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        error = Invalid if walker.malformed else Unprocessable
        raise error(f"{first.diagnostics}{where}{more}", issues=walker.issues)
