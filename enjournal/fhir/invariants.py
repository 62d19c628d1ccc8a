"""The FHIRPath invariants (``constraint`` of severity error) of the R4 StructureDefinitions.

The table ``definitions/constraints.json`` is derived by ``scripts/build_structures.py``: one
row per invariant a type defines itself (``per-1`` on Period, ``obs-7`` on Observation,
``que-1`` on ``Questionnaire.item``, ``dom-2`` .. ``dom-5`` on DomainResource, ...).
``enjournal.fhir.validation`` calls :func:`failures` for each element it walks, so an invariant
is evaluated only where its element is present.  Each expression is compiled once, with
``fhirpathpy``.

Not evaluated with fhirpathpy, and why:

* ``ele-1`` (every element has a value or children): checked structurally by the validator
  (no empty objects, arrays or strings; an object with only ``id`` is refused there);
* ``ext-1`` (an extension has a value or nested extensions, not both), ``ref-1`` (a ``#id``
  reference names a contained resource) and ``dom-3`` (every contained resource is
  referenced; fhirpathpy cannot evaluate its expression): evaluated natively by the validator
  and :func:`unreferenced_contained`;
* ``txt-1`` / ``txt-2`` (``htmlChecks()``): ``enjournal.fhir.narrative`` checks the XHTML;
* anything else that calls ``resolve()``, ``conformsTo()``, ``memberOf()`` or
  ``htmlChecks()`` is skipped: those need other resources, profiles or terminology this pure
  module does not have (in R4 only ``ctm-1``, on CareTeam; ``skipped()`` lists all);
* ``sdf-3``, ``sdf-8``, ``sdf-8a``, ``sdf-9``, ``sdf-19``, ``sdf-20``, ``sdf-22``, ``sdf-23``
  and ``eld-19`` are evaluated by the Python functions in ``NATIVE_CHECKS`` (same result,
  checked against fhirpathpy; each walks every element of a StructureDefinition).

``ERRATA`` corrects a known error in an R4 expression (que-12).  An invariant whose result
is empty, or whose evaluation fails inside ``fhirpathpy``, counts as met: a write is never
refused on a doubt.  (The reference validator counts empty as failed, so a Period from
``2023-06-21`` to ``2023-06-21T06:20:00Z``, whose order FHIRPath cannot tell, breaks per-1
there and passes here.)

Cost, on the write path: an invariant is evaluated only where its element is present, and
not at all when the element settles it by itself: a top-level ``x.empty() or ...`` with no
``x``, ``x.exists() implies ...`` with no ``x``, ``type = 'document' implies ...`` with
another type (``_shortcut``); when none of the names the expression reads is present, the
result is that on an empty element, computed once.  Results are memoised on the part of the
element an expression reads (``_MEMO``, bounded), which makes the thousands of
ElementDefinitions of a StructureDefinition cheap.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources as _resources

import orjson

log = logging.getLogger("enjournal.fhir.invariants")

__all__ = ["Invariant", "failures", "invariants_for", "skipped"]

NATIVE = {
    "ele-1": "checked structurally by enjournal.fhir.validation",
    "ext-1": "checked by enjournal.fhir.validation (value[x] xor nested extensions)",
    "ref-1": "evaluated natively (a '#id' reference names a contained resource)",
    "dom-3": "evaluated natively (each contained resource is referenced; fhirpathpy fails on it)",
}
_UNAVAILABLE = ("resolve(", "conformsTo(", "memberOf(", "htmlChecks(")

# Functions and variables that look at the whole element, not only at named children: an
# expression using one is always evaluated.
_WHOLE = re.compile(r"children\(|descendants\(|repeat\(|\$this|%|\$index|\$total|trace\(")
_NAME = re.compile(r"`([^`]+)`|([A-Za-z_][A-Za-z0-9_]*)\s*(\()?")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")

# R4 resources that are not DomainResources (dom-* do not apply to them).
_NOT_DOMAIN = frozenset({"Bundle", "Binary", "Parameters"})


@dataclass
class Invariant:
    key: str
    path: str  # the element the definition puts it on, e.g. "Questionnaire.item"
    expression: str
    human: str
    names: frozenset[str] | None = None  # child names it reads; None: it reads everything
    shortcut: tuple | None = None  # (premises, disjuncts): see _shortcut
    _fn: dict | None = field(default=None, repr=False)
    _empty: bool | None = field(default=None, repr=False)

    def holds(self, value, base: str, resource: dict, root: dict, present) -> bool:
        native = NATIVE_CHECKS.get((self.key, self.path))
        if native is not None:
            return not isinstance(value, dict) or native(value, resource)
        if self.shortcut is not None and _settled(self.shortcut, value, present):
            return True
        if self.names is not None and self.names.isdisjoint(present()):
            if self._empty is None:
                empty = {"resourceType": value["resourceType"]} if "resourceType" in value else {}
                self._empty = self._run(empty, base, empty, empty)
            return self._empty
        key = self._memo_key(value, base)
        if key is None:
            return self._run(value, base, resource, root)
        found = _MEMO.get(key)
        if found is None:
            if len(_MEMO) >= _MEMO_SIZE:
                _MEMO.clear()  # crude, but bounded; refills with what is common
            found = _MEMO[key] = self._run(value, base, resource, root)
        return found

    def _memo_key(self, value, base: str):
        """When the result depends only on a small part of ``value``: that part, as bytes.
        (Repeated shapes are common: every ElementDefinition has min and max.)"""
        if "%" in self.expression:
            return None
        if not isinstance(value, dict):
            part = value
        elif self.names is None:
            return None
        else:
            part = {k: v for k, v in value.items() if _named(k, self.names)}
        try:
            text = orjson.dumps(part, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return None
        return (self.key, self.path, base, text) if len(text) <= _MEMO_PART else None

    def _run(self, value, base: str, resource: dict, root: dict) -> bool:
        from fhirpathpy.engine import do_eval
        from fhirpathpy.engine.nodes import ResourceNode

        data = [ResourceNode.create_node(value, base)]
        ctx = {
            "dataRoot": data,
            "vars": {"context": value, "resource": resource, "rootResource": root},
            "model": _model(),
            "userInvocationTable": _invocations(),
            "traceFn": _no_trace,  # dom-3 traces; nothing is printed
        }
        try:
            # What fhirpathpy.apply_parsed_path does, less the clock reset (no invariant
            # reads now() or today()) and the per-call set-up of the extra functions.
            result = do_eval(ctx, data, self._fn["children"][0])
        except Exception:  # fhirpathpy's own failure is not the resource's fault
            _failed_once(self.key)
            return True
        # Empty counts as met (the reference validator counts it as failed: a Period from
        # 2023-06-21 to 2023-06-21T06:20Z breaks per-1 there, not here); else not false.
        return not result or getattr(result[0], "data", result[0]) is not False


_CAMEL = re.compile(r"(?=[A-Z])")
_MEMO: dict[tuple, bool] = {}
_MEMO_SIZE = 50_000
_MEMO_PART = 2_000  # bytes of the part an invariant reads; larger parts are not memoised


@lru_cache(maxsize=8192)
def _key_names(key: str) -> frozenset[str]:
    """The FHIRPath names a JSON key may answer to: ``_given`` is ``given``, and
    ``multipleBirthBoolean`` may be ``multipleBirth`` (or ``multiple``: more is only safer)."""
    key = key[1:] if key[:1] == "_" else key
    if key.islower():
        return frozenset((key,))
    parts = _CAMEL.split(key)
    return frozenset("".join(parts[:i]) for i in range(1, len(parts) + 1))


def _named(key: str, names: frozenset[str]) -> bool:
    return not names.isdisjoint(_key_names(key))


def present_names(value) -> frozenset[str]:
    """The names an element's keys may answer to (see ``_key_names``)."""
    if not isinstance(value, dict):
        return _EVERYTHING
    return frozenset().union(*map(_key_names, value))


class _Everything(frozenset):
    def isdisjoint(self, other) -> bool:
        return False


_EVERYTHING = _Everything()


# Top-level parts that settle an ``or`` chain (or the premise of an ``implies``) from the
# element's own keys, without FHIRPath: ``x.empty()`` with no x, ``x.exists()`` with x,
# ``x = 'lit'`` / ``x != 'lit'`` on a string.  Anything else is left to fhirpathpy.
_PART = re.compile(
    r"\(?\s*(?:"
    r"(?P<absent>[A-Za-z]+)(?:\.[A-Za-z]+)*\.(?:empty\(\)|hasValue\(\)\.not\(\))"
    r"|(?P<present>[A-Za-z]+)\.exists\(\)"
    r"|(?P<name>[A-Za-z]+)\s*(?P<op>!?=)\s*'(?P<lit>[^'\\]*)'"
    r")\s*\)?"
)


def _split_top(expression: str, word: str) -> list[str]:
    """Split on `` word `` outside parentheses and strings."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    token = f" {word} "
    while i < len(expression):
        ch = expression[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch in "()":
            depth += 1 if ch == "(" else -1
        elif not quoted and depth == 0 and expression.startswith(token, i):
            parts.append(expression[start:i])
            start = i = i + len(token)
            continue
        i += 1
    parts.append(expression[start:])
    return [p.strip() for p in parts]


# Steps that give nothing from nothing: after them an absent first name still means empty.
_EMPTY_PRESERVING = re.compile(
    r"\.(?:(?:where|select|ofType|as)\((?P<arg>)|(?:first|last|tail)\(\)|[A-Za-z]+(?![A-Za-z(]))"
)


def _absent_chain(part: str) -> str | None:
    """The first name of ``a.b.where(...).c.empty()``: empty whenever ``a`` is absent."""
    part = part.strip()
    if part.startswith("(") and part.endswith(")"):
        part = part[1:-1].strip()
    m = re.match(r"[A-Za-z]+", part)
    if m is None or not part.endswith(".empty()"):
        return None
    pos, end = m.end(), len(part) - len(".empty()")
    while pos < end:
        step = _EMPTY_PRESERVING.match(part, pos)
        if step is None:
            return None
        pos = step.end()
        if step.group("arg") is not None:  # skip the balanced argument
            depth, quoted = 1, False
            while pos < end and depth:
                ch = part[pos]
                quoted = not quoted if ch == "'" else quoted
                if not quoted:
                    depth += {"(": 1, ")": -1}.get(ch, 0)
                pos += 1
            if depth:
                return None
    return m[0] if pos == end else None


def _simple(part: str):
    m = _PART.fullmatch(part)
    if m is None:
        chain = _absent_chain(part)
        return ("absent", chain, None) if chain else None
    if m["absent"]:
        return ("absent", m["absent"], None)
    if m["present"]:
        return ("present", m["present"], None)
    return ("equals" if m["op"] == "=" else "differs", m["name"], m["lit"])


def _shortcut(expression: str) -> tuple | None:
    """``(premises, disjuncts)``: the expression holds when a premise (of ``implies``) is
    surely false or a disjunct (of the top-level ``or`` chain) surely true."""
    if len(_split_top(expression, "xor")) > 1:
        return None  # xor shares or's precedence: splitting on or would misread it
    premises: list = []
    sides = _split_top(expression, "implies")
    if len(sides) == 2:
        premise = _simple(sides[0])
        if premise is not None and premise[0] in ("present", "equals"):
            premises.append(premise)
        expression = sides[1]
    elif len(sides) > 2:
        return None
    disjuncts = [d for d in map(_simple, _split_top(expression, "or")) if d is not None]
    return (tuple(premises), tuple(disjuncts)) if premises or disjuncts else None


def _true(part: tuple, value: dict, present) -> bool:
    kind, name, literal = part
    if kind == "absent":
        return name not in present()
    if kind == "present":
        return name in value or "_" + name in value
    got = value.get(name)
    return type(got) is str and (got == literal) == (kind == "equals")


def _settled(shortcut: tuple, value, present) -> bool:
    if not isinstance(value, dict):
        return False
    premises, disjuncts = shortcut
    for kind, name, literal in premises:  # a false premise: "x.exists() implies ..."
        if kind == "present" and name not in present():
            return True
        if kind == "equals" and _true(("differs", name, literal), value, present):
            return True
    return any(_true(d, value, present) for d in disjuncts)


def _names(expression: str) -> frozenset[str] | None:
    if _WHOLE.search(expression):
        return None
    text = _STRING.sub("''", expression)
    found = set()
    for m in _NAME.finditer(text):
        if m.group(3) is None:
            found.add(m.group(1) or m.group(2))
    return frozenset(found)


_SYSTEM_TYPE = re.compile(r"\b(is|as)\s+(Boolean|String|Integer|Decimal|Date|DateTime|Time)\b")


def _fhir_type_names(expression: str) -> str:
    """``answer is Boolean`` (que-7) as ``answer is boolean``: fhirpathpy does not see a FHIR
    boolean as a System Boolean, so the System name would never match."""
    return _SYSTEM_TYPE.sub(lambda m: f"{m[1]} {m[2][0].lower()}{m[2][1:]}", expression)


def _has_value(inputs: list) -> bool:
    """FHIRPath ``hasValue()``, which fhirpathpy lacks: one primitive with a value."""
    return len(inputs) == 1 and isinstance(inputs[0], (str, int, float, Decimal, bool))


def _no_trace(*_args) -> None:
    return None


@cache
def _invocations() -> dict:
    from fhirpathpy.engine.util import process_user_invocation_table

    return process_user_invocation_table({"hasValue": {"fn": _has_value}})


@cache
def _failed_once(key: str) -> None:
    """An invariant fhirpathpy cannot evaluate counts as met; said once per key, for tuning."""
    log.warning("fhirpathpy could not evaluate invariant %s; it is counted as met", key)


@cache
def _model():
    from fhirpathpy.models import models

    return models["r4"]


def _skip_reason(row: dict) -> str | None:
    if row["key"] in NATIVE:
        return NATIVE[row["key"]]
    expression = row.get("expression") or ""
    if not expression:
        return "no FHIRPath expression"
    for call in _UNAVAILABLE:
        if call in expression:
            return f"uses {call[:-1]}(), which needs more than the resource"
    return None


# Known errors in the R4 expressions, as the reference validator corrects them: que-12 says
# "more than one enableWhen" but its R4 expression counts "> 2".
ERRATA = {"que-12": ("enableWhen.count() > 2", "enableWhen.count() > 1")}


def _corrected(key: str, expression: str) -> str:
    wrong, right = ERRATA.get(key, ("", ""))
    return expression.replace(wrong, right) if wrong else expression


@cache
def _table() -> tuple[dict[str, list[Invariant]], dict[str, str]]:
    text = _resources.files("enjournal.fhir.definitions").joinpath("constraints.json")
    rows = json.loads(text.read_text("utf-8"))["constraints"]
    by_path: dict[str, list[Invariant]] = {}
    skips: dict[str, str] = {}
    for row in rows:
        reason = _skip_reason(row)
        if reason:
            skips[f"{row['key']} ({row['path']})"] = reason
            continue
        expression = _corrected(row["key"], row["expression"])
        inv = Invariant(row["key"], row["path"], expression, row.get("human", ""))
        by_path.setdefault(row["path"], []).append(inv)
    return by_path, skips


def skipped() -> dict[str, str]:
    """Invariant (key and element) -> why it is not evaluated here."""
    return dict(_table()[1])


@cache
def invariants_for(path: str) -> tuple[Invariant, ...]:
    """The invariants on one element path or type, each compiled once."""
    found = list(_table()[0].get(path, ()))
    if "." not in path and path not in _NOT_DOMAIN and _is_resource(path):
        found += _table()[0].get("DomainResource", ())
    for inv in found:
        if inv._fn is None:
            from fhirpathpy.parser import parse

            inv._fn = parse(_fhir_type_names(inv.expression))
            inv.names = _names(inv.expression)
            inv.shortcut = _shortcut(inv.expression)
    return tuple(found)


def _is_resource(name: str) -> bool:
    from enjournal.fhir.validation import resource_types

    return name in resource_types()


def failures(value, path: str, base: str, resource: dict, root: dict) -> list[Invariant]:
    """The invariants on ``path`` that ``value`` (of FHIRPath type ``base``) breaks."""
    found = invariants_for(path)
    if not found:
        return []
    names: list[frozenset[str]] = []

    def present() -> frozenset[str]:  # computed once, and only when an invariant asks
        if not names:
            names.append(present_names(value))
        return names[0]

    return [inv for inv in found if not inv.holds(value, base, resource, root, present)]


def unreferenced_contained(resource: dict) -> list[int]:
    """dom-3: the indexes of contained resources that nothing in ``resource`` refers to
    (``#id`` as a reference, canonical or uri), unless they refer to their container (``#``)."""
    contained = resource.get("contained")
    if not isinstance(contained, list):
        return []
    strings = set(_strings(resource))
    found = []
    for i, c in enumerate(contained):
        if not isinstance(c, dict) or type(c.get("id")) is not str or "resourceType" not in c:
            continue
        if "#" + c["id"] not in strings and "#" not in _strings(c):
            found.append(i)
    return found


def _strings(value):
    """Every string value (not key) in a JSON value, iteratively (no recursion limit)."""
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)


def contained_reference_problem(reference: str, root: dict) -> bool:
    """ref-1: True when a ``#id`` reference names no resource contained in ``root``."""
    if not reference.startswith("#") or reference == "#":
        return False
    ids = {c.get("id") for c in root.get("contained") or () if isinstance(c, dict)}
    return reference[1:] not in ids


# --------------------------------------------------------------------------- native invariants
# Invariants that walk every element of a StructureDefinition cost 1-11 ms each in fhirpathpy
# (40 ms per StructureDefinition in all); these are the same rules in Python.  Each function
# takes the element the invariant is on and the resource, and says whether it holds.


def _elements(sd: dict, part: str) -> list[dict]:
    holder = sd.get(part)
    found = holder.get("element") if isinstance(holder, dict) else None
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _path(element: dict) -> str:
    return element.get("path") if type(element.get("path")) is str else ""


def _roots(elements: list[dict]) -> list[dict]:
    return [e for e in elements if "." not in _path(e)]


def _sdf_3(snapshot: dict, _sd: dict) -> bool:
    return all(
        "definition" in e and "min" in e and "max" in e for e in _elements({"s": snapshot}, "s")
    )


def _sdf_8(snapshot: dict, sd: dict) -> bool:
    elements = _elements({"s": snapshot}, "s")
    if not elements:
        return True
    first = _path(elements[0])
    if sd.get("kind") != "logical" and first != sd.get("type"):
        return False
    return all(_path(e).startswith(first + ".") for e in elements[1:])


def _sdf_8a(differential: dict, sd: dict) -> bool:
    elements = _elements({"d": differential}, "d")
    if not elements:
        return True
    first = _path(elements[0])
    if sd.get("kind") != "logical" and not first.startswith(str(sd.get("type"))):
        return False
    head = first.split(".", 1)[0] + "."
    return all(_path(e).startswith(head) for e in elements[1:])


def _sdf_9(sd: dict, _resource: dict) -> bool:
    roots = _roots(_elements(sd, "snapshot") + _elements(sd, "differential"))
    return not any(k in e for e in roots for k in ("label", "code", "requirements"))


_DIFF_CODE = re.compile(r"[a-zA-Z0-9]+|http://hl7\.org/fhirpath/System\.[A-Z][A-Za-z]+")
_SNAP_CODE = re.compile(r"[a-zA-Z0-9.]+|http://hl7\.org/fhirpath/System\.[A-Z][A-Za-z]+")


def _type_codes(elements: list[dict]):
    for e in elements:
        for t in e.get("type") or ():
            if isinstance(t, dict) and type(t.get("code")) is str:
                yield t["code"]


def _core_sd(sd: dict) -> bool:
    url = sd.get("url")
    return type(url) is str and url.startswith("http://hl7.org/fhir/StructureDefinition")


def _sdf_19(sd: dict, _resource: dict) -> bool:
    if not _core_sd(sd):
        return True
    return all(_DIFF_CODE.search(c) for c in _type_codes(_elements(sd, "differential"))) and all(
        _SNAP_CODE.search(c) for c in _type_codes(_elements(sd, "snapshot"))
    )


def _sdf_20(differential: dict, _sd: dict) -> bool:
    return not any("slicing" in e for e in _roots(_elements({"d": differential}, "d")))


def _sdf_22(sd: dict, _resource: dict) -> bool:
    if not _core_sd(sd):
        return True
    elements = _elements(sd, "snapshot") + _elements(sd, "differential")
    return not any(k.startswith("defaultValue") for e in elements for k in e)


def _sdf_23(sd: dict, _resource: dict) -> bool:
    roots = _roots(_elements(sd, "snapshot") + _elements(sd, "differential"))
    return not any("sliceName" in e for e in roots)


NATIVE_CHECKS = {
    ("sdf-3", "StructureDefinition.snapshot"): _sdf_3,
    ("sdf-8", "StructureDefinition.snapshot"): _sdf_8,
    ("sdf-8a", "StructureDefinition.differential"): _sdf_8a,
    ("sdf-9", "StructureDefinition"): _sdf_9,
    ("sdf-19", "StructureDefinition"): _sdf_19,
    ("sdf-20", "StructureDefinition.differential"): _sdf_20,
    ("sdf-22", "StructureDefinition"): _sdf_22,
    ("sdf-23", "StructureDefinition"): _sdf_23,
}


@cache
def _eld_19_pattern() -> re.Pattern:
    """The regex of eld-19's ``path.matches('...')``, unescaped by fhirpathpy itself, as it
    compiles it (once: eld-19 runs on every element of a StructureDefinition)."""
    from fhirpathpy import evaluate

    expression = next(i.expression for i in _table()[0]["ElementDefinition"] if i.key == "eld-19")
    literal = expression[expression.index("(") + 1 : expression.rindex(")")]
    return re.compile(evaluate({}, literal)[0], re.DOTALL)


def _eld_19(element: dict, _resource: dict) -> bool:
    """eld-19: an element's path has the expected form (fhirpathpy's ``matches`` is a search)."""
    path = element.get("path")
    return type(path) is not str or _eld_19_pattern().search(path) is not None


NATIVE_CHECKS[("eld-19", "ElementDefinition")] = _eld_19
