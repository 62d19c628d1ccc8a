"""SQL on FHIR v2 ViewDefinitions: parse and check one into a plan the SQL engines compile.

https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html

``plan(view_dict) -> View`` is pure (no I/O, no engine): it checks the definition (resource,
select tree, column names, unionAll branches, constants, FHIRPath syntax), parses every
FHIRPath expression with ``enjournal.fhir.viewpath`` and puts the view's ``%constants`` in
as literals, so an engine sees only the tree below.  A definition the spec forbids raises
``Invalid`` (a 400 OperationOutcome) naming what is wrong.

    View(resource, constants, where, select)
      resource   the resource type the view runs over ("Patient")
      constants  name -> viewpath.Literal (already substituted into every expression)
      where      tuple of FHIRPath ASTs; a resource is kept when each is true
      select     the root Select (no columns of its own; the view's selects in ``select``)
    Select(columns, for_each, for_each_or_null, repeat, union_all, select)
      columns    tuple of Column(name, path: AST, collection: bool, type: str | None,
                 expression: the path's text); ``type`` is the declared FHIR type, or the
                 type the expression plainly has (boolean for a comparison, integer for
                 %rowIndex), or None
      for_each / for_each_or_null   an AST or None; repeat: tuple of ASTs (spec ``repeat``)
      union_all  tuple of Selects with the same columns; select: nested Selects

The row set of a Select (the spec's "process" algorithm): for each focus element (the
resource, or each result of forEach/forEachOrNull/repeat), the cross product of its own
column row, each nested select's rows and the concatenated unionAll rows; forEachOrNull
over nothing gives one row of nulls.  ``column_names(view)`` lists the columns in that
order.  Sequences are tuples so a plan is hashable and can be cached.

Bounds: any authenticated caller may run an inline view, and a view's cost on the SQL
engines grows with its size and, steeply, with its nesting (DuckDB's time is about
exponential in nested lambdas), so a plan past one of these is ``Invalid`` (400) before any
engine sees it: ``MAX_COLUMNS`` columns, ``MAX_SELECTS`` selects (unionAll branches
included), ``MAX_BRANCHES`` branches in one unionAll, ``MAX_SELECT_DEPTH`` selects inside
each other, ``MAX_REPEAT_PATHS`` repeat paths in the whole view (each is followed ten levels
down), ``MAX_WHERE`` where paths, ``MAX_CONSTANTS`` constants, a string constant of at most
``MAX_CONSTANT_CHARS`` characters, integer constants in range (32 bits; integer64 64 bits)
and ``MAX_VIEW_NODES`` FHIRPath nodes in all; one expression's own bounds are
``viewpath``'s.  The SQL on FHIR test suite and the platform's views use at most 10
columns, 6 selects, 2 branches, 3 levels, 2 repeat paths and 2 constants; the compiler
bounds the SQL it makes (``storage.views.compile``).  ``parse_limit`` checks
``$viewdefinition-run``'s ``_limit`` (1 to ``MAX_LIMIT``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from enjournal.fhir import viewpath
from enjournal.fhir.errors import Invalid
from enjournal.fhir.viewpath import Binary, Call, Literal, Node, Unary, Variable

COLUMN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]+$")
SELECT_KEYS = {"column", "select", "forEach", "forEachOrNull", "repeat", "unionAll"}
# The FHIRPath functions the spec's subset names, plus a few plain ones every engine has.
FUNCTIONS = {
    "exists": (0, 1),
    "empty": (0, 0),
    "first": (0, 0),
    "last": (0, 0),
    "count": (0, 0),
    "not": (0, 0),
    "where": (1, 1),
    "ofType": (1, 1),
    "extension": (1, 1),
    "join": (0, 1),
    "getResourceKey": (0, 0),
    "getReferenceKey": (0, 1),
    "lowBoundary": (0, 1),
    "highBoundary": (0, 1),
}
BOOLEAN_OPS = {"=", "!=", "~", "!~", "<", ">", "<=", ">=", "and", "or", "xor", "implies"}
BOOLEAN_OPS |= {"in", "contains"}
BOOLEAN_FUNCTIONS = {"exists", "empty", "not"}
NUMERIC_OPS = {"+", "-", "*", "/", "div", "mod"}
# valueX of a constant -> the FHIRPath literal type it becomes
CONSTANT_TYPES = {
    "Base64Binary": "string",
    "Boolean": "boolean",
    "Canonical": "string",
    "Code": "string",
    "Date": "date",
    "DateTime": "dateTime",
    "Decimal": "decimal",
    "Id": "string",
    "Instant": "dateTime",
    "Integer": "integer",
    "Integer64": "integer",
    "Oid": "string",
    "PositiveInt": "integer",
    "String": "string",
    "Time": "time",
    "UnsignedInt": "integer",
    "Uri": "string",
    "Url": "string",
    "Uuid": "string",
}
MAX_COLUMNS = 300
MAX_SELECTS = 50
MAX_BRANCHES = 50
MAX_SELECT_DEPTH = 10
MAX_REPEAT_PATHS = 4
MAX_WHERE = 50
MAX_CONSTANTS = 100
MAX_CONSTANT_CHARS = 10_000
MAX_VIEW_NODES = 10_000
MAX_LIMIT = 10_000_000  # rows of one $viewdefinition-run
INTEGER_RANGES = {
    "Integer64": range(-(2**63), 2**63),
    "UnsignedInt": range(0, 2**31),
    "PositiveInt": range(1, 2**31),
}
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "integer": (int,),
    "decimal": (int, float),
}


@dataclass(frozen=True)
class Column:
    name: str
    path: Node
    collection: bool = False
    type: str | None = None
    expression: str = ""


@dataclass(frozen=True)
class Select:
    columns: tuple[Column, ...] = ()
    for_each: Node | None = None
    for_each_or_null: Node | None = None
    repeat: tuple[Node, ...] = ()
    union_all: tuple[Select, ...] = ()
    select: tuple[Select, ...] = ()


@dataclass(frozen=True)
class View:
    resource: str
    constants: dict[str, Literal]
    where: tuple[Node, ...]
    select: Select
    name: str | None = None

    def __hash__(self) -> int:
        return hash((self.resource, self.where, self.select))


def plan(definition: object) -> View:
    """Check ``definition`` (a ViewDefinition as JSON) and turn it into a ``View``."""
    if not isinstance(definition, dict) or not definition:
        raise Invalid("ViewDefinition: expected a non-empty JSON object")
    resource = definition.get("resource")
    if not isinstance(resource, str) or not RESOURCE_TYPE.match(resource):
        raise Invalid("ViewDefinition.resource: a FHIR resource type is required")
    constants = read_constants(definition.get("constant", []))
    selects = definition.get("select")
    if not isinstance(selects, list) or not selects:
        raise Invalid("ViewDefinition.select: at least one select is required")
    root = Select(
        select=tuple(read_select(s, constants, f"select[{i}]") for i, s in enumerate(selects))
    )
    view = View(resource, constants, read_where(definition.get("where", []), constants), root)
    unique_names(column_names(view))
    within_bounds(view)
    return view


def parse_limit(value: object) -> int | None:
    """``$viewdefinition-run``'s ``_limit``: None when absent, else a whole number from 1 to
    ``MAX_LIMIT`` (a larger one would reach the engine's LIMIT as an out-of-range integer)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Invalid("_limit must be a whole number")
    text = str(value).strip()
    if not text.isdigit() or len(text) > 9:  # not int(): "1_000" and 10**4300 digits
        raise Invalid(f"_limit must be a whole number from 1 to {MAX_LIMIT:,}")
    number = int(text)
    if not 1 <= number <= MAX_LIMIT:
        raise Invalid(f"_limit must be a whole number from 1 to {MAX_LIMIT:,}")
    return number


def within_bounds(view: View) -> None:
    """Refuse a plan past the module's bounds (the docstring says why)."""
    selects = list(all_selects(view.select, 0))
    counts = {
        "columns": (sum(len(s.columns) for s, _ in selects), MAX_COLUMNS),
        "selects": (len(selects) - 1, MAX_SELECTS),  # the root is not the view's own
        "repeat paths": (sum(len(s.repeat) for s, _ in selects), MAX_REPEAT_PATHS),
        "levels of nested selects": (max(depth for _, depth in selects), MAX_SELECT_DEPTH),
        "FHIRPath nodes": (view_nodes(view, selects), MAX_VIEW_NODES),
    }
    for what, (count, most) in counts.items():
        if count > most:
            raise Invalid(f"ViewDefinition: {count} {what}; at most {most}")


def all_selects(select: Select, depth: int):
    """Every select of the tree with its depth (the root 0), without recursion limits
    mattering: the depth is checked as the selects are read (``read_select``)."""
    yield select, depth
    for child in select.select + select.union_all:
        yield from all_selects(child, depth + 1)


def view_nodes(view: View, selects: list[tuple[Select, int]]) -> int:
    paths = list(view.where)
    for select, _ in selects:
        paths += [c.path for c in select.columns] + list(select.repeat)
        paths += [p for p in (select.for_each, select.for_each_or_null) if p is not None]
    return sum(viewpath.size(path)[0] for path in paths)


def column_names(view: View | Select) -> list[str]:
    """The view's column names in the spec's order: columns, nested selects, unionAll."""
    select = view.select if isinstance(view, View) else view
    names = [column.name for column in select.columns]
    for child in select.select:
        names += column_names(child)
    if select.union_all:
        names += column_names(select.union_all[0])
    return names


def read_constants(raw: object) -> dict[str, Literal]:
    if not isinstance(raw, list):
        raise Invalid("ViewDefinition.constant: expected a list")
    if len(raw) > MAX_CONSTANTS:
        raise Invalid(f"ViewDefinition.constant: {len(raw)} constants; at most {MAX_CONSTANTS}")
    constants: dict[str, Literal] = {}
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not COLUMN_NAME.match(name):
            raise Invalid(f"ViewDefinition.constant[{i}]: a name is required")
        constants[name] = constant_value(item, f"constant[{i}]")
    return constants


def constant_value(item: dict, where: str) -> Literal:
    values = [key for key in item if key.startswith("value")]
    if len(values) != 1 or values[0][5:] not in CONSTANT_TYPES:
        raise Invalid(
            f"ViewDefinition.{where}: exactly one value[x] of a primitive type is required"
        )
    kind = CONSTANT_TYPES[values[0][5:]]
    value = item[values[0]]
    expected = PYTHON_TYPES.get(kind, (str,))
    if not isinstance(value, expected) or (kind != "boolean" and isinstance(value, bool)):
        raise Invalid(f"ViewDefinition.{where}.{values[0]}: not a {kind}")
    if kind == "decimal":
        value = Decimal(str(value))
        if not value.is_finite():
            raise Invalid(f"ViewDefinition.{where}.{values[0]}: not a finite number")
    if kind == "integer" and value not in INTEGER_RANGES.get(values[0][5:], viewpath.INTEGER_RANGE):
        raise Invalid(f"ViewDefinition.{where}.{values[0]}: {value} is out of range")
    if isinstance(value, str) and len(value) > MAX_CONSTANT_CHARS:
        raise Invalid(
            f"ViewDefinition.{where}.{values[0]}: {len(value)} characters;"
            f" at most {MAX_CONSTANT_CHARS}"
        )
    return Literal(value, kind)


def read_where(raw: object, constants: dict[str, Literal]) -> tuple[Node, ...]:
    if not isinstance(raw, list):
        raise Invalid("ViewDefinition.where: expected a list")
    if len(raw) > MAX_WHERE:
        raise Invalid(f"ViewDefinition.where: {len(raw)} paths; at most {MAX_WHERE}")
    paths = []
    for i, item in enumerate(raw):
        path = item.get("path") if isinstance(item, dict) else None
        node = expression(path, constants, f"where[{i}].path")
        if plainly_not_boolean(node):
            raise Invalid(f"ViewDefinition.where[{i}].path: {path!r} is not a boolean expression")
        paths.append(node)
    return tuple(paths)


def read_select(raw: object, constants: dict[str, Literal], where: str) -> Select:
    if not isinstance(raw, dict):
        raise Invalid(f"ViewDefinition.{where}: expected an object")
    if where.count("[") > MAX_SELECT_DEPTH:  # select[0].select[1]...: one "[" a level
        raise Invalid(f"ViewDefinition.{where}: selects nested more than {MAX_SELECT_DEPTH} deep")
    unknown = set(raw) - SELECT_KEYS
    if unknown:
        raise Invalid(f"ViewDefinition.{where}: unknown element {sorted(unknown)[0]!r}")
    iterations = [key for key in ("forEach", "forEachOrNull", "repeat") if key in raw]
    if len(iterations) > 1:
        raise Invalid(f"ViewDefinition.{where}: only one of forEach, forEachOrNull, repeat")
    select = Select(
        columns=read_columns(raw.get("column", []), constants, where),
        for_each=optional(raw, "forEach", constants, where),
        for_each_or_null=optional(raw, "forEachOrNull", constants, where),
        repeat=read_repeat(raw.get("repeat", []), constants, where),
        union_all=read_selects(raw, "unionAll", constants, where),
        select=read_selects(raw, "select", constants, where),
    )
    same_union_columns(select, where)
    return select


def read_selects(
    raw: dict, key: str, constants: dict[str, Literal], where: str
) -> tuple[Select, ...]:
    items = raw.get(key, [])
    if not isinstance(items, list):
        raise Invalid(f"ViewDefinition.{where}.{key}: expected a list")
    most = MAX_BRANCHES if key == "unionAll" else MAX_SELECTS
    if len(items) > most:
        raise Invalid(f"ViewDefinition.{where}.{key}: {len(items)} selects; at most {most}")
    return tuple(read_select(s, constants, f"{where}.{key}[{i}]") for i, s in enumerate(items))


def read_columns(raw: object, constants: dict[str, Literal], where: str) -> tuple[Column, ...]:
    if not isinstance(raw, list):
        raise Invalid(f"ViewDefinition.{where}.column: expected a list")
    if len(raw) > MAX_COLUMNS:
        raise Invalid(f"ViewDefinition.{where}.column: {len(raw)} columns; at most {MAX_COLUMNS}")
    return tuple(read_column(c, constants, f"{where}.column[{i}]") for i, c in enumerate(raw))


def read_column(raw: object, constants: dict[str, Literal], where: str) -> Column:
    if not isinstance(raw, dict):
        raise Invalid(f"ViewDefinition.{where}: expected an object")
    name = raw.get("name")
    if not isinstance(name, str) or not COLUMN_NAME.match(name):
        raise Invalid(f"ViewDefinition.{where}.name: {name!r} is not a valid column name")
    collection = raw.get("collection", False)
    if not isinstance(collection, bool):
        raise Invalid(f"ViewDefinition.{where}.collection: expected true or false")
    declared = raw.get("type")
    if declared is not None and not isinstance(declared, str):
        raise Invalid(f"ViewDefinition.{where}.type: expected a type name")
    node = expression(raw.get("path"), constants, f"{where}.path")
    return Column(name, node, collection, declared or inferred_type(node), raw["path"])


def optional(raw: dict, key: str, constants: dict[str, Literal], where: str) -> Node | None:
    if key not in raw:
        return None
    return expression(raw[key], constants, f"{where}.{key}")


def read_repeat(raw: object, constants: dict[str, Literal], where: str) -> tuple[Node, ...]:
    if not isinstance(raw, list):
        raise Invalid(f"ViewDefinition.{where}.repeat: expected a list of paths")
    if len(raw) > MAX_REPEAT_PATHS:
        raise Invalid(
            f"ViewDefinition.{where}.repeat: {len(raw)} paths; at most {MAX_REPEAT_PATHS}"
        )
    return tuple(expression(p, constants, f"{where}.repeat[{i}]") for i, p in enumerate(raw))


def expression(text: object, constants: dict[str, Literal], where: str) -> Node:
    if not isinstance(text, str) or not text.strip():
        raise Invalid(f"ViewDefinition.{where}: a FHIRPath expression (string) is required")
    try:
        node = viewpath.substitute(viewpath.parse(text), constants)
    except Invalid as error:
        raise Invalid(f"ViewDefinition.{where}: {error.message}") from None
    check_functions(node, where)
    return node


def check_functions(node: Node, where: str) -> None:
    for part in viewpath.walk(node):
        if isinstance(part, Call):
            arity = FUNCTIONS.get(part.name)
            if arity is None:
                raise Invalid(
                    f"ViewDefinition.{where}: FHIRPath function {part.name}() is not supported"
                )
            if not arity[0] <= len(part.args) <= arity[1]:
                raise Invalid(
                    f"ViewDefinition.{where}: {part.name}() takes {arity[0]}-{arity[1]} arguments"
                )
        if isinstance(part, Variable) and part.name not in (
            "$this",
            "%rowIndex",
            "%resource",
            "%rootResource",
        ):
            raise Invalid(f"ViewDefinition.{where}: {part.name} is not supported in views")


def same_union_columns(select: Select, where: str) -> None:
    if not select.union_all:
        return
    first = column_names(select.union_all[0])
    for i, branch in enumerate(select.union_all[1:], start=1):
        if column_names(branch) != first:
            raise Invalid(
                f"ViewDefinition.{where}.unionAll[{i}]: columns {column_names(branch)}"
                f" differ from {first}"
            )


def unique_names(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise Invalid(f"ViewDefinition: column name {name!r} is used twice")
        seen.add(name)


def inferred_type(node: Node) -> str | None:
    """The type an expression plainly has, for a column that declares none."""
    match node:
        case Literal(type=kind) if kind != "empty":
            return kind
        case Binary(op=op) if op in BOOLEAN_OPS:
            return "boolean"
        case Call(name=name) if name in BOOLEAN_FUNCTIONS:
            return "boolean"
        case Call(name="count"):
            return "integer"
        case Call(name="join"):
            return "string"
        case Variable(name="%rowIndex"):
            return "integer"
    return None


def plainly_not_boolean(node: Node) -> bool:
    """A where path that can never be boolean (a literal, arithmetic, a string join)."""
    if isinstance(node, Literal):
        return node.type not in ("boolean", "empty")
    if isinstance(node, Binary) and node.op in NUMERIC_OPS | {"&"}:
        return True
    return isinstance(node, Unary) or inferred_type(node) in ("integer", "string")
