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

FHIRPath invariants (``constraint``) and profiles are not evaluated here.

Each issue's expression is a path like ``Patient.identifier[0].value``; choice elements are
named by their JSON name (``Observation.valueQuantity``).
"""

from __future__ import annotations

import calendar
import importlib
import json
import math
import re
import time
from decimal import Decimal
from functools import cache
from importlib import resources as _resources

from enjournal.fhir.errors import Issue, Unprocessable

__all__ = ["check", "resource_types", "validate"]

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


@cache
def _load(name: str) -> dict:
    package = "enjournal.fhir.definitions"
    return json.loads(_resources.files(package).joinpath(name).read_text("utf-8"))


def _structures() -> dict:
    return _load("structures.json")


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

    def check_string(v):
        if type(v) is not str:
            return f"must be a JSON string ({name}), not {_json_kind(v)}"
        if not v:
            return "empty strings are not allowed in FHIR; omit the element instead"
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
        "targets",
        "weak_binding",
    )

    def __init__(self, row: dict, name: str):
        self.name = name  # as in the definition, e.g. "value[x]"
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
        self.slots: dict[str, tuple[_Field, str, object]] = {}
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
                and t != "string"
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

_norwegian = None
_norwegian_retry = 0.0


def _identifier_problem(system: str, value: str) -> str | None:
    """Ask ``enjournal.fhir.norwegian_ids`` (imported lazily; skipped while it is absent)."""
    global _norwegian, _norwegian_retry
    if _norwegian is None:
        now = time.monotonic()
        if now < _norwegian_retry:
            return None
        try:
            _norwegian = importlib.import_module("enjournal.fhir.norwegian_ids")
        except ImportError:
            _norwegian_retry = now + 5.0  # look again later, not on every identifier
            return None
    return _norwegian.identifier_problem(system, value)


class _Walker:
    __slots__ = ("checkers", "issues")

    def __init__(self):
        self.issues: list[Issue] = []
        self.checkers = _primitive_checkers()

    def error(self, code: str, path: str, message: str) -> None:
        self.issues.append(Issue("error", code, message, [path]))

    def warning(self, code: str, path: str, message: str) -> None:
        self.issues.append(Issue("warning", code, message, [path]))

    # -- resources

    def resource(self, resource, path: str | None) -> None:
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
        self.obj(resource, node, path or rtype)

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
        field = slot[0]
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
                    self.element(item, element, f"{where}[{i}]")
            return
        if value is None:
            self.error("structure", where, f"'{key}' must not be null")
            return
        self.element(value, element, where)

    def element(self, value, node: _Node, path: str) -> bool:
        if not isinstance(value, dict):
            self.error("structure", path, f"must be a JSON object, not {_json_kind(value)}")
            return False
        if not value:
            self.error(
                "structure", path, "empty objects are not allowed in FHIR; omit the element instead"
            )
            return False
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
            self.resource(value, path)
            return
        node = field.inline or _type_node(tcode)
        if node is None:  # xhtml or an unknown type: nothing to check against
            if tcode == "xhtml" and (type(value) is not str or not value):
                self.error("value", path, "Narrative div must be a non-empty string of XHTML")
            return
        if not self.element(value, node, path):
            return
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


def validate(resource) -> list[Issue]:
    """Every structural problem of ``resource`` (a parsed JSON resource), errors first."""
    walker = _Walker()
    try:
        walker.resource(resource, None)
    except RecursionError:
        walker.error("too-costly", "Resource", "The resource is nested too deeply to validate")
    walker.issues.sort(key=lambda i: i.severity != "error")
    return walker.issues


def check(resource) -> None:
    """Raise :class:`Unprocessable` with all issues when ``resource`` has any error."""
    issues = validate(resource)
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if errors:
        first = errors[0]
        where = f" at {first.expression[0]}" if first.expression else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise Unprocessable(f"{first.diagnostics}{where}{more}", issues=issues)
