"""A small, fast FHIRPath evaluator for search parameter expressions.

``compile_path(expression)`` returns a function from a resource (parsed JSON) to the
``(value, type)`` pairs the expression selects.  ``type`` is the FHIR type code of the value
(``"Quantity"``, ``"dateTime"``, ``"Observation"``); for an inline structure (a
BackboneElement) it is the element's path, e.g. ``"Observation.component"``, so a further
expression can be evaluated relative to it (``compile_path("code", "Observation.component")``).

The hand-written evaluator covers what the R4 search parameters use: paths, choice elements
(``Observation.value`` finds ``valueQuantity``), ``|``, ``as``/``is``/``ofType``,
``where(...)`` with ``resolve() is T`` and ``=``/``!=`` comparisons, ``exists()``, ``and``,
``[n]``, ``%resource`` and parentheses.  Element types come from the R4 StructureDefinitions
(``enjournal.fhir.element_types``).  Anything else is handed to ``fhirpathpy`` and the types are
guessed from the shape of the values (``CompiledPath.fallback`` is then true).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from enjournal.fhir.element_types import (
    PRIMITIVE_TYPES,
    base_types,
    children,
    is_subtype,
    resource_type_names,
)

Item = tuple[Any, str]
Step = Callable[[list[Item], Item], list[Item]]

_DYNAMIC = frozenset({"Resource", "DomainResource"})
_SYSTEM_TYPES = {
    "String": "string",
    "Boolean": "boolean",
    "Integer": "integer",
    "Decimal": "decimal",
    "Date": "date",
    "DateTime": "dateTime",
    "Time": "time",
}


class Unsupported(Exception):
    """The expression uses FHIRPath the fast evaluator does not implement."""


# --------------------------------------------------------------------------- tokenizer

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<str>'(?:[^'\\]|\\.)*')"
    r"|(?P<num>\d+(?:\.\d+)?)"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
    r"|(?P<var>[%$][A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>!=|<=|>=|[.()\[\]|=,<>])"
    r")"
)


def _tokenize(expression: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = expression.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot tokenize at {text[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif kind == "id" and value.startswith("`"):
            value = value[1:-1]
        tokens.append((kind, value))
    tokens.append(("end", None))
    return tokens


# --------------------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over FHIRPath precedence: or < and < = != < | < is/as < postfix."""

    def __init__(self, expression: str) -> None:
        self.tokens = _tokenize(expression)
        self.pos = 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.pos]

    def next(self) -> tuple[str, Any]:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def accept(self, kind: str, value: Any = None) -> bool:
        tok = self.peek()
        if tok[0] == kind and (value is None or tok[1] == value):
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, value: Any = None) -> Any:
        tok = self.next()
        if tok[0] != kind or (value is not None and tok[1] != value):
            raise Unsupported(f"expected {value or kind}, got {tok[1]!r}")
        return tok[1]

    def parse(self) -> tuple:
        node = self.or_expr()
        if self.peek()[0] != "end":
            raise Unsupported(f"unexpected {self.peek()[1]!r}")
        return node

    def or_expr(self) -> tuple:
        node = self.and_expr()
        while self.peek() == ("id", "or"):
            self.next()
            node = ("or", node, self.and_expr())
        return node

    def and_expr(self) -> tuple:
        node = self.eq_expr()
        while self.peek() == ("id", "and"):
            self.next()
            node = ("and", node, self.eq_expr())
        return node

    def eq_expr(self) -> tuple:
        node = self.union_expr()
        while self.peek()[0] == "op" and self.peek()[1] in ("=", "!="):
            op = self.next()[1]
            node = ("eq", node, self.union_expr(), op == "!=")
        return node

    def union_expr(self) -> tuple:
        node = self.type_expr()
        while self.accept("op", "|"):
            node = ("union", node, self.type_expr())
        return node

    def type_expr(self) -> tuple:
        node = self.postfix()
        while self.peek() in (("id", "is"), ("id", "as")):
            op = self.next()[1]
            node = (op, node, self.type_name())
        return node

    def type_name(self) -> str:
        name = self.expect("id")
        while self.accept("op", "."):
            name = self.expect("id")  # FHIR.Quantity / System.String -> the last part
        return name

    def postfix(self) -> tuple:
        node = self.term()
        while True:
            if self.accept("op", "."):
                node = self.invocation(node)
            elif self.accept("op", "["):
                index = self.or_expr()
                self.expect("op", "]")
                if index[0] != "lit" or not isinstance(index[1], int):
                    raise Unsupported("non-literal indexer")
                node = ("index", node, index[1])
            else:
                return node

    def invocation(self, base: tuple | None) -> tuple:
        name = self.expect("id")
        if self.accept("op", "("):
            args = []
            if not self.accept("op", ")"):
                args.append(self.or_expr())
                while self.accept("op", ","):
                    args.append(self.or_expr())
                self.expect("op", ")")
            return ("call", base, name, args)
        return ("member", base, name)

    def term(self) -> tuple:
        kind, value = self.peek()
        if kind == "op" and value == "(":
            self.next()
            node = self.or_expr()
            self.expect("op", ")")
            return node
        if kind == "str":
            self.next()
            return ("lit", value, "string")
        if kind == "num":
            self.next()
            return (
                ("lit", int(value), "integer")
                if "." not in value
                else ("lit", Decimal(value), "decimal")
            )
        if kind == "var":
            self.next()
            return ("var", value[1:])
        if kind == "id":
            if value in ("true", "false"):
                self.next()
                return ("lit", value == "true", "boolean")
            return self.invocation(None)
        raise Unsupported(f"unexpected {value!r}")


# --------------------------------------------------------------------------- types


def _type_name(name: str) -> str:
    if name in _SYSTEM_TYPES:
        return _SYSTEM_TYPES[name]
    return name


def is_type(type_code: str, name: str) -> bool:
    """FHIRPath ``is``: ``type_code`` is ``name`` or one of its subtypes."""
    if type_code == name:
        return True
    if "." in type_code:  # backbone element path
        return name in ("BackboneElement", "Element")
    if type_code in base_types():
        return is_subtype(type_code, name)
    return False


def _is_type_name(name: str) -> bool:
    return (
        name in base_types()
        or name in _SYSTEM_TYPES
        or name in _DYNAMIC
        or name in ("Element", "BackboneElement")
    )


@cache
def _plan(type_code: str, name: str) -> tuple[tuple[str, str], ...]:
    """JSON keys to read for child ``name`` of a value of ``type_code``, with their types."""
    info = children().get(type_code, {}).get(name)
    if info is None:
        if type_code == "?" or type_code not in children():
            return ((name, "?"),)
        return ()
    codes, choice = info
    if choice:
        return tuple((name + c[0].upper() + c[1:], c) for c in codes)
    return ((name, codes[0]),)


def _resource_type(value: Any) -> str:
    if type(value) is dict:
        return value.get("resourceType") or "?"
    return "?"


# --------------------------------------------------------------------------- compiler


def _member(name: str, only: str | None = None) -> Step:
    """Child ``name`` of each item; with ``only``, just the children of that type (``as``)."""
    plans: dict[str, tuple[tuple[str, str], ...]] = {}

    def make_plan(tp: str) -> tuple[tuple[str, str], ...]:
        plan = _plan(tp, name)
        if only is not None:
            plan = tuple((k, t) for k, t in plan if t in _DYNAMIC or t == "?" or is_type(t, only))
        plans[tp] = plan
        return plan

    def step(items: list[Item], root: Item) -> list[Item]:
        out: list[Item] = []
        for value, tp in items:
            if type(value) is not dict:
                continue
            plan = plans.get(tp) or make_plan(tp)
            for key, ctp in plan:
                v = value.get(key)
                if v is None:
                    continue
                if ctp in _DYNAMIC or ctp == "?":
                    found = [
                        (x, _resource_type(x) if ctp != "?" else "?")
                        for x in (v if type(v) is list else (v,))
                        if x is not None
                    ]
                    if only is not None:
                        found = [f for f in found if f[1] == "?" or is_type(f[1], only)]
                    out.extend(found)
                elif type(v) is list:
                    out.extend([(x, ctp) for x in v if x is not None])
                else:
                    out.append((v, ctp))
        return out

    return step


def _member_of(base: tuple | None, name: str, only: str | None = None) -> Step:
    step = _member(name, only)
    if base is None:
        return step
    _check_base(base)
    if base[0] == "member" and base[1] is None and base[2][0].isupper():
        # `Type.name`: the type test on the focus, fused with the step
        type_name = _type_name(base[2])
        if not _is_type_name(type_name):
            raise Unsupported(f"unknown type {type_name}")

        def typed_step(items: list[Item], root: Item) -> list[Item]:
            for item in items:
                if item[1] != type_name and not is_type(item[1], type_name):
                    return step([i for i in items if is_type(i[1], type_name)], root)
            return step(items, root)

        return typed_step
    inner = _compile(base)
    return lambda items, root: step(inner(items, root), root)


def _type_filter(name: str) -> Callable[[list[Item]], list[Item]]:
    name = _type_name(name)

    def filt(items: list[Item]) -> list[Item]:
        return [item for item in items if is_type(item[1], name)]

    return filt


def _reference_type(value: Any, tp: str, root: Item) -> str | None:
    """The resource type a Reference (or canonical) points at, as ``resolve()`` would find."""
    if tp == "Reference" or (tp == "?" and type(value) is dict):
        ref = value.get("reference") if type(value) is dict else None
        if not ref:
            return value.get("type") if type(value) is dict else None
    elif is_type(tp, "uri") or (tp == "?" and type(value) is str):
        ref = value
    else:
        return None
    if type(ref) is not str:
        return None
    if ref.startswith("#"):
        for contained in root[0].get("contained", ()) if type(root[0]) is dict else ():
            if contained.get("id") == ref[1:]:
                return contained.get("resourceType")
        return None
    parts = ref.split("|", 1)[0].split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] in resource_type_names():
        return parts[-2]
    return None


def _truth(items: list[Item]) -> bool | None:
    if not items:
        return None
    if len(items) == 1 and type(items[0][0]) is bool:
        return items[0][0]
    return True  # FHIRPath: a non-empty collection is true in a boolean context


def _compile(node: tuple) -> Step:
    kind = node[0]
    if kind == "lit":
        lit = [(node[1], node[2])]
        return lambda items, root: lit
    if kind == "var":
        if node[1] in ("resource", "rootResource", "context"):
            return lambda items, root: [root]
        if node[1] == "this":
            return lambda items, root: items
        raise Unsupported(f"variable %{node[1]}")
    if kind == "member":
        base, name = node[1], node[2]
        if base is None and name[0].isupper():
            if not _is_type_name(name):
                raise Unsupported(f"unknown type {name}")
            filt = _type_filter(name)
            return lambda items, root: filt(items)
        return _member_of(base, name)
    if kind == "index":
        inner = _compile(node[1])
        n = node[2]
        return lambda items, root: inner(items, root)[n : n + 1]
    if kind == "union":
        left, right = _compile(node[1]), _compile(node[2])

        def union(items: list[Item], root: Item) -> list[Item]:
            a = left(items, root)
            b = right(items, root)
            if not a:
                return b
            if not b:
                return a
            seen = {(id(v) if type(v) in (dict, list) else v, t) for v, t in a}
            return a + [
                (v, t) for v, t in b if (id(v) if type(v) in (dict, list) else v, t) not in seen
            ]

        return union
    if kind == "as" and node[1][0] == "member" and not node[1][2][0].isupper():
        return _member_of(node[1][1], node[1][2], _type_name(node[2]))
    if kind in ("as", "is"):
        inner = _compile(node[1])
        filt = _type_filter(node[2])
        if kind == "as":
            return lambda items, root: filt(inner(items, root))
        return lambda items, root: _is_result(inner(items, root), filt)
    if kind == "eq":
        left, right, negate = _compile(node[1]), _compile(node[2]), node[3]

        def eq(items: list[Item], root: Item) -> list[Item]:
            a, b = left(items, root), right(items, root)
            if not a or not b:
                return []
            result = len(a) == len(b) and all(x[0] == y[0] for x, y in zip(a, b, strict=True))
            return [(result != negate, "boolean")]

        return eq
    if kind in ("and", "or"):
        left, right = _compile(node[1]), _compile(node[2])
        is_and = kind == "and"

        def logic(items: list[Item], root: Item) -> list[Item]:
            a, b = _truth(left(items, root)), _truth(right(items, root))
            if is_and:
                if a is False or b is False:
                    return [(False, "boolean")]
                if a is None or b is None:
                    return []
                return [(True, "boolean")]
            if a is True or b is True:
                return [(True, "boolean")]
            if a is None or b is None:
                return []
            return [(False, "boolean")]

        return logic
    if kind == "call":
        return _compile_call(node)
    raise Unsupported(kind)


def _check_base(base: tuple | None) -> None:
    # resolve() yields the referenced type only, good for `resolve() is T` and nothing else.
    if base is not None and base[0] == "call" and base[2] == "resolve":
        raise Unsupported("navigation through resolve()")


def _is_result(items: list[Item], filt: Callable[[list[Item]], list[Item]]) -> list[Item]:
    if not items:
        return []
    return [(bool(filt(items[:1])), "boolean")]


def _compile_call(node: tuple) -> Step:
    _, base, name, args = node
    _check_base(base)
    inner: Step = _compile(base) if base is not None else (lambda items, root: items)
    if name in ("as", "ofType", "is"):
        if len(args) != 1 or args[0][0] != "member" or args[0][1] is not None:
            raise Unsupported(f"{name} argument")
        if name != "is" and base is not None and base[0] == "member" and not base[2][0].isupper():
            return _member_of(base[1], base[2], _type_name(args[0][2]))
        filt = _type_filter(args[0][2])
        if name == "is":
            return lambda items, root: _is_result(inner(items, root), filt)
        return lambda items, root: filt(inner(items, root))
    if name == "where":
        if len(args) != 1:
            raise Unsupported("where arguments")
        arg = args[0]
        if (
            arg[0] == "is"
            and arg[1][0] == "call"
            and arg[1][1] is None
            and arg[1][2] == "resolve"
            and not arg[1][3]
        ):
            target = _type_name(arg[2])

            def where_resolves(items: list[Item], root: Item) -> list[Item]:
                out = []
                for value, tp in inner(items, root):
                    found = _reference_type(value, tp, root)
                    if found is not None and (found == target or is_type(found, target)):
                        out.append((value, tp))
                return out

            return where_resolves
        if (
            arg[0] == "eq"
            and arg[1][0] == "member"
            and arg[1][1] is None
            and not arg[1][2][0].isupper()
            and arg[2][0] == "lit"
        ):
            field, literal, negate = arg[1][2], arg[2][1], arg[3]
            plans: dict[str, tuple[str, ...]] = {}

            def where_equals(items: list[Item], root: Item) -> list[Item]:
                out = []
                for value, tp in inner(items, root):
                    if type(value) is not dict:
                        continue
                    plan = plans.get(tp)
                    if plan is None:
                        plan = plans[tp] = tuple(k for k, _ in _plan(tp, field))
                    found = [value[k] for k in plan if value.get(k) is not None]
                    if len(found) != 1:
                        continue  # empty (or ambiguous): the comparison is not true
                    v = found[0]
                    if (v == literal or v == [literal]) != negate:
                        out.append((value, tp))
                return out

            return where_equals
        pred = _compile(arg)

        def where(items: list[Item], root: Item) -> list[Item]:
            return [item for item in inner(items, root) if _truth(pred([item], root)) is True]

        return where
    if name == "resolve" and not args:

        def resolve(items: list[Item], root: Item) -> list[Item]:
            out = []
            for value, tp in inner(items, root):
                target = _reference_type(value, tp, root)
                if target:
                    out.append((value, target))
            return out

        return resolve
    if name == "exists":
        if args:
            pred = _compile(args[0])
            return lambda items, root: [
                (any(_truth(pred([i], root)) is True for i in inner(items, root)), "boolean")
            ]
        return lambda items, root: [(bool(inner(items, root)), "boolean")]
    if name == "empty" and not args:
        return lambda items, root: [(not inner(items, root), "boolean")]
    if name == "not" and not args:

        def negate(items: list[Item], root: Item) -> list[Item]:
            value = _truth(inner(items, root))
            return [] if value is None else [(not value, "boolean")]

        return negate
    if name == "first" and not args:
        return lambda items, root: inner(items, root)[:1]
    if name == "last" and not args:
        return lambda items, root: inner(items, root)[-1:]
    raise Unsupported(f"function {name}()")


# --------------------------------------------------------------------------- static analysis


def _root_keys(node: tuple | None, type_code: str) -> frozenset[str] | None:
    """JSON keys of the focus (of ``type_code``) that ``node`` reads first; None if the
    expression may give a result without reading any (``exists()``, literals, ``%resource``).
    An expression whose keys are all absent from the focus selects nothing."""
    if node is None:
        return None
    kind = node[0]
    if kind == "member":
        base, name = node[1], node[2]
        if base is None:
            if name[0].isupper():
                return None  # the focus itself
            return frozenset(key for key, _ in _plan(type_code, name))
        if base[0] == "member" and base[1] is None and base[2][0].isupper():
            if not is_type(type_code, _type_name(base[2])):
                return frozenset()
            return frozenset(key for key, _ in _plan(type_code, name))
        return _root_keys(base, type_code)
    if kind == "union":
        left, right = _root_keys(node[1], type_code), _root_keys(node[2], type_code)
        if left is None or right is None:
            return None
        return left | right
    if kind == "as" or (kind == "call" and node[2] in ("as", "ofType") and len(node[3]) == 1):
        base = node[1]
        keys = _root_keys(base, type_code)
        target = _type_name(node[2] if kind == "as" else node[3][0][2])
        if (
            keys
            and base[0] == "member"
            and (base[1] is None or (base[1][0] == "member" and base[1][1] is None))
        ):
            # a choice element read from the focus: only the keys of matching types
            return frozenset(
                key
                for key, ctp in _plan(type_code, base[2])
                if key in keys and (is_type(ctp, target) or ctp in _DYNAMIC)
            )
        return keys
    if kind == "index":
        return _root_keys(node[1], type_code)
    if kind == "call" and node[2] in ("where", "first", "last", "resolve"):
        return _root_keys(node[1], type_code)
    return None


def root_keys(expression: str, type_code: str) -> frozenset[str] | None:
    """The top-level JSON keys ``expression`` can read from a ``type_code`` value, or None if
    it cannot be told (see ``_root_keys``).  Lets the indexer skip absent elements cheaply."""
    try:
        return _root_keys(_Parser(expression).parse(), type_code)
    except Unsupported:
        return None


def split_union(expression: str) -> list[str]:
    """The top-level ``|`` parts of ``expression`` (the expression itself if it has none)."""
    try:
        node = _Parser(expression).parse()
    except Unsupported:
        return [expression]
    parts: list[tuple] = []

    def walk(n: tuple) -> None:
        if n[0] == "union":
            walk(n[1])
            walk(n[2])
        else:
            parts.append(n)

    walk(node)
    if len(parts) == 1:
        return [expression]
    return [_unparse(p) for p in parts]


def _unparse(node: tuple) -> str:
    kind = node[0]
    if kind == "member":
        return node[2] if node[1] is None else f"{_unparse(node[1])}.{node[2]}"
    if kind == "lit":
        return repr(node[1]) if node[2] == "string" else str(node[1]).lower()
    if kind == "var":
        return "%" + node[1]
    if kind == "index":
        return f"{_unparse(node[1])}[{node[2]}]"
    if kind == "call":
        args = ", ".join(_unparse(a) for a in node[3])
        prefix = "" if node[1] is None else _unparse(node[1]) + "."
        return f"{prefix}{node[2]}({args})"
    if kind in ("as", "is"):
        return f"({_unparse(node[1])} {kind} {node[2]})"
    if kind == "eq":
        return f"({_unparse(node[1])} {'!=' if node[3] else '='} {_unparse(node[2])})"
    if kind in ("and", "or", "union"):
        op = "|" if kind == "union" else kind
        return f"({_unparse(node[1])} {op} {_unparse(node[2])})"
    raise Unsupported(kind)


# --------------------------------------------------------------------------- fallback

_DATE_LIKE = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2})?)?)?)?$")


def infer_type(value: Any) -> str:
    """Guess the FHIR type of a value found without type information (fhirpathpy results)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float | Decimal):
        return "decimal"
    if isinstance(value, str):
        if _DATE_LIKE.match(value):
            return "dateTime" if "T" in value else "date"
        return "string"
    if not isinstance(value, dict):
        return "?"
    keys = value.keys()
    if "resourceType" in keys:
        return value["resourceType"]
    if "coding" in keys or keys == {"text"}:
        return "CodeableConcept"
    if "reference" in keys:
        return "Reference"
    if "currency" in keys:
        return "Money"
    if "low" in keys or "high" in keys:
        return "Range"
    if "start" in keys or "end" in keys:
        return "Period"
    if keys & {"family", "given", "prefix", "suffix"}:
        return "HumanName"
    if keys & {"line", "city", "postalCode", "country", "district", "state"}:
        return "Address"
    if ("value" in keys and keys & {"unit", "code", "comparator"}) or keys == {"value"}:
        return "Quantity"
    if "code" in keys or "display" in keys:
        return "Coding"
    if "system" in keys and value.get("system") in (
        "phone",
        "fax",
        "email",
        "pager",
        "url",
        "sms",
        "other",
    ):
        return "ContactPoint"
    if "value" in keys or "system" in keys:
        return "Identifier"
    if "event" in keys or "repeat" in keys:
        return "Timing"
    return "?"


class CompiledPath:
    """A compiled expression: call it with a resource, or ``evaluate`` it relative to a value."""

    __slots__ = ("_fn", "expression", "fallback")

    def __init__(self, expression: str, fn: Step, fallback: bool) -> None:
        self.expression = expression
        self._fn = fn
        self.fallback = fallback

    def __call__(self, resource: dict) -> list[Item]:
        root = (resource, resource.get("resourceType") or "?")
        return self._fn([root], root)

    def evaluate(self, value: Any, type_code: str, resource: dict) -> list[Item]:
        """Evaluate relative to ``value`` (of ``type_code``) inside ``resource``."""
        root = (resource, resource.get("resourceType") or "?")
        return self._fn([(value, type_code)], root)

    def __repr__(self) -> str:
        return f"CompiledPath({self.expression!r}, fallback={self.fallback})"


def _fallback(expression: str) -> Step:
    import fhirpathpy
    from fhirpathpy.models import models

    fn = fhirpathpy.compile(expression, model=models["r4"])

    def run(items: list[Item], root: Item) -> list[Item]:
        out: list[Item] = []
        for value, _tp in items:
            try:
                results = fn(value, {"resource": root[0], "rootResource": root[0]})
            except Exception:  # a fallback must never break indexing
                continue
            out.extend((v, infer_type(v)) for v in results if v is not None)
        return out

    return run


@lru_cache(maxsize=4096)
def compile_path(expression: str) -> CompiledPath:
    """Compile a FHIRPath expression; the result maps a resource to ``(value, type)`` pairs."""
    try:
        fn = _compile(_Parser(expression).parse())
        return CompiledPath(expression, fn, False)
    except Unsupported:
        return CompiledPath(expression, _fallback(expression), True)


__all__ = [
    "PRIMITIVE_TYPES",
    "CompiledPath",
    "Unsupported",
    "compile_path",
    "infer_type",
    "root_keys",
    "split_union",
]
