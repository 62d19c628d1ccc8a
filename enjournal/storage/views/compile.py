"""The shared compiler: a planned ViewDefinition -> one SQL query, for any dialect.

The model, the same on every engine:

- A FHIRPath collection is a SQL list of JSON values (DuckDB ``JSON[]``, Spark
  ``array<variant>``).  Navigation ``a.b`` maps each element to its ``b`` (an array field
  spreads into its items) and flattens; ``where`` is a list filter, ``first()`` a slice,
  ``[i]`` a one-element slice.  Comparison, ``and``/``or``/``not`` and ``exists()`` give a
  nullable SQL BOOLEAN (NULL = the empty collection, so SQL's three-valued logic is
  FHIRPath's).  Lambdas keep it one expression per resource: no row-by-row Python.
- A Select's rows are a SQL list of rows, a row being a list of JSON values in column
  order.  Its own columns make one row; nested selects and the unionAll (the branches'
  lists concatenated) are crossed with it (``flatten(transform(A, a -> transform(B, b ->
  concat(a, b))))``); forEach/forEachOrNull/repeat map that over the focus collection with
  the element's index as ``%rowIndex``, forEachOrNull giving a row of nulls over nothing.
- The query unnests the root Select's list per resource of the view's type that passes the
  ``where`` paths, and casts each column by its type (boolean, integer, decimal, else text;
  a ``collection: true`` column is a list).

``repeat`` follows its paths to a fixed depth (``REPEAT_DEPTH``) as nested lambdas, each
element followed by what is under it, so ``%rowIndex`` counts in document order; an element
with children below that depth raises rather than being cut silently.

Bounds: the front end bounds a plan's size (``fhir.viewdefinition``, ``fhir.viewpath``), so
this compiler's recursion on the expression and select trees stays shallow; but what an
engine pays depends on the SQL made from it, DuckDB's binder taking time about exponential
in lambdas nested in lambdas (a forEach in a forEach ... eight deep: seconds, in 5 KB).  So
``Compiler.query`` refuses (``Invalid``, 400) SQL of more than ``MAX_SQL_CHARS``
characters, ``MAX_SQL_NESTING`` brackets inside each other (DuckDB stops at an expression
depth of 1,000), ``MAX_LAMBDA_DEPTH`` bound variables inside each other, or a cost above
``MAX_SQL_COST``: each character weighs ``LAMBDA_WEIGHT`` to the power of the variables
around it (width times nesting; ``sql_depths``).  The official suite's and the register
feeds' views reach 34 KB, 68 brackets, 12 variables and a cost of 3.6 million (``repeat``
with a unionAll; a ``repeat`` alone nests ``REPEAT_DEPTH`` variables); at the limits a view
runs on one small resource in about half a second on DuckDB (tests/storage/views/
test_limits.py, with the figures).

A row that breaks the view at run time (several values in a non-collection column, a
non-boolean ``where``) raises an error carrying ``ERROR_MARK``, which the engines turn into
``Invalid``.  What an engine cannot do raises ``NotSupported``
while compiling, before any data is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from enjournal.fhir.errors import Invalid, NotSupported
from enjournal.fhir.viewdefinition import Column, Select, View
from enjournal.fhir.viewpath import (
    Binary,
    Call,
    Constant,
    Index,
    Literal,
    Member,
    Node,
    TypeOp,
    Unary,
    Variable,
)

ERROR_MARK = "sof-error:"
REPEAT_DEPTH = 10
MAX_SQL_CHARS = 150_000
MAX_SQL_NESTING = 400
MAX_LAMBDA_DEPTH = 16
LAMBDA_WEIGHT = 2
MAX_SQL_COST = 12_000_000
# what sql_depths looks at: quotes, brackets, the compiler's bound variables (``fresh``)
SQL_MARKS = re.compile(r"""['"()\[\]]|(?<![A-Za-z0-9_])_v[0-9]+""")
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
INTEGER_TYPES = {"integer", "positiveInt", "unsignedInt", "integer64"}
STRING_TYPES = {"string", "code", "id", "uri", "url", "canonical", "oid", "uuid", "markdown"}
STRING_TYPES |= {"base64Binary", "date", "dateTime", "instant", "time", "xhtml"}
COMPARISONS = {"<", ">", "<=", ">="}
ARITHMETIC = {"+", "-", "*", "/"}
BIGINT_SAFE = "9.0e18"  # below 2**63: a whole-number result past it would overflow BIGINT


class Dialect:
    """The SQL of one engine: each method returns SQL text.  ``list`` means a list of JSON
    values (a collection); ``value`` one JSON value; indexes are 0-based here."""

    name = ""

    def quote(self, text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    def lam(self, params: list[str], body: str) -> str:
        raise NotImplementedError

    def transform(self, items: str, var: str, body: str) -> str:
        raise NotImplementedError

    def transform_indexed(self, items: str, var: str, index: str, body: str) -> str:
        """Map with ``index`` bound to the element's 1-based (DuckDB) or 0-based position;
        ``position(index)`` is its 0-based position in the body."""
        raise NotImplementedError

    def position(self, index: str) -> str:
        raise NotImplementedError

    def filter(self, items: str, var: str, condition: str) -> str:
        raise NotImplementedError

    def flatten(self, lists: str) -> str:
        return f"flatten({lists})"

    def concat(self, *lists: str) -> str:
        raise NotImplementedError

    def size(self, items: str) -> str:
        raise NotImplementedError

    def slice(self, items: str, start: str, length: str) -> str:
        """``length`` items from the 1-based ``start``; fewer (or none) past the end."""
        raise NotImplementedError

    def item(self, items: str, index: int) -> str:
        """The 0-based item, NULL past the end."""
        raise NotImplementedError

    def array(self, *items: str) -> str:
        raise NotImplementedError

    def empty(self) -> str:
        raise NotImplementedError

    def empty_row(self) -> str:
        return self.empty()

    def null(self) -> str:
        raise NotImplementedError

    def child(self, value: str, name: str) -> str:
        raise NotImplementedError

    def json(self, text: str) -> str:
        """A JSON value from its JSON text."""
        raise NotImplementedError

    def is_number(self, value: str) -> str:
        raise NotImplementedError

    def is_integer(self, value: str) -> str:
        raise NotImplementedError

    def is_string(self, value: str) -> str:
        raise NotImplementedError

    def is_boolean(self, value: str) -> str:
        raise NotImplementedError

    def is_object(self, value: str) -> str:
        raise NotImplementedError

    def as_double(self, value: str) -> str:
        raise NotImplementedError

    def as_bigint(self, value: str) -> str:
        raise NotImplementedError

    def as_string(self, value: str) -> str:
        raise NotImplementedError

    def as_boolean(self, value: str) -> str:
        raise NotImplementedError

    def from_sql(self, scalar: str) -> str:
        """A JSON value from a SQL boolean, number or string."""
        raise NotImplementedError

    def to_json_array(self, items: str) -> str:
        raise NotImplementedError

    def error(self, message: str) -> str:
        raise NotImplementedError

    def join(self, strings: str, separator: str) -> str:
        raise NotImplementedError

    def regexp_extract(self, text: str, pattern: str, group: int) -> str:
        return f"regexp_extract({text}, {self.quote(pattern)}, {group})"

    def days_in_month(self, year: str, month: str) -> str:
        """The number of days of a month, as a SQL integer (plain arithmetic: every
        engine's SQL has it, not every one has ``last_day``)."""
        leap = f"(({year} % 4 = 0 AND {year} % 100 <> 0) OR {year} % 400 = 0)"
        return (
            f"CASE WHEN {month} = 2 THEN (CASE WHEN {leap} THEN 29 ELSE 28 END) "
            f"WHEN {month} IN (4, 6, 9, 11) THEN 30 ELSE 31 END"
        )

    def text(self, value: str) -> str:
        """A SQL value as a SQL string."""
        return f"CAST({value} AS VARCHAR)"

    def truncate(self, number: str) -> str:
        """A double cut towards zero, as a BIGINT."""
        return f"CAST(trunc({number}) AS BIGINT)"

    def output(self, value: str, column: Column) -> str:
        """The column's SQL value from its JSON value (a list when ``collection``)."""
        raise NotImplementedError

    def query(self, rows: str, source: str, resource: str, where: str, outputs: list[str]) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Compiled:
    sql: str
    kind: str  # "list" (a collection) or "boolean" (a nullable SQL BOOLEAN)


@dataclass(frozen=True)
class Context:
    focus: str  # the current element ($this): one JSON value
    resource: str  # the resource's JSON value
    row_index: str  # %rowIndex: a SQL integer
    type_hint: str | None = None  # the column's declared type (what a boundary gives)


class Compiler:
    def __init__(self, dialect: Dialect, view: View):
        self.d = dialect
        self.view = view
        self.counter = 0

    def fresh(self) -> str:
        self.counter += 1
        return f"_v{self.counter}"

    def let(self, value: str, body) -> str:
        """``body(var)`` with ``var`` bound to ``value``, evaluated once."""
        var = self.fresh()
        return self.d.item(self.d.transform(self.d.array(value), var, body(var)), 0)

    # -- FHIRPath -> SQL

    def collection(self, node: Node, ctx: Context) -> str:
        compiled = self.expr(node, ctx)
        return compiled.sql if compiled.kind == "list" else self.from_boolean(compiled.sql)

    def boolean(self, node: Node, ctx: Context) -> str:
        compiled = self.expr(node, ctx)
        return compiled.sql if compiled.kind == "boolean" else self.singleton_boolean(compiled.sql)

    def from_boolean(self, sql: str) -> str:
        d = self.d
        return self.let(
            sql,
            lambda b: f"CASE WHEN {b} IS NULL THEN {d.empty()} ELSE {d.array(d.from_sql(b))} END",
        )

    def singleton_boolean(self, items: str, strict: str = "") -> str:
        """FHIRPath's singleton evaluation: empty -> NULL, one boolean -> it; ``strict``
        names the place where anything else is an error (else one item is true)."""
        d = self.d

        def body(v: str) -> str:
            first = d.item(v, 0)
            other = d.error(f"{strict} is not boolean") if strict else "TRUE"
            several = d.error(f"{strict or 'a boolean expression'} gives several values")
            return (
                f"CASE WHEN {d.size(v)} = 0 THEN NULL "
                f"WHEN {d.size(v)} = 1 AND {d.is_boolean(first)} THEN {d.as_boolean(first)} "
                f"WHEN {d.size(v)} = 1 THEN {other} "
                f"ELSE {several} END"
            )

        return self.let(items, body)

    def expr(self, node: Node, ctx: Context) -> Compiled:
        match node:
            case Literal():
                return self.literal(node)
            case Member(base=base, name=name):
                return Compiled(self.member(base, name, ctx), "list")
            case Call():
                return self.call(node, ctx)
            case Index(base=base, index=index):
                return Compiled(self.index(base, index, ctx), "list")
            case Binary():
                return self.binary(node, ctx)
            case Unary(op=op, operand=operand):
                return Compiled(
                    self.negate(operand, ctx) if op == "-" else self.collection(operand, ctx),
                    "list",
                )
            case Variable(name=name):
                return Compiled(self.variable(name, ctx), "list")
            case Constant(name=name):
                raise NotSupported(f"%{name} was not substituted")
            case TypeOp(op=op):
                raise NotSupported(
                    f"the FHIRPath '{op}' operator is not supported by {self.d.name}"
                )
        raise NotSupported(f"FHIRPath {node!r} is not supported by {self.d.name}")

    def literal(self, node: Literal) -> Compiled:
        d = self.d
        if node.type == "boolean":
            return Compiled("TRUE" if node.value else "FALSE", "boolean")
        if node.type == "empty":
            return Compiled(d.empty(), "list")
        if node.type in ("integer", "decimal"):
            return Compiled(d.array(d.json(str(node.value))), "list")
        return Compiled(d.array(d.json(json_string(str(node.value)))), "list")

    def variable(self, name: str, ctx: Context) -> str:
        d = self.d
        if name == "$this":
            return d.array(ctx.focus)
        if name == "%rowIndex":
            return d.array(d.from_sql(ctx.row_index))
        return d.array(ctx.resource)

    def each(self, base: Node | None, ctx: Context, body) -> str:
        """The flattened lists ``body(element)`` gives for each element of ``base``."""
        if base is None:
            return body(ctx.focus)
        var = self.fresh()
        return self.d.flatten(self.d.transform(self.collection(base, ctx), var, body(var)))

    def member(self, base: Node | None, name: str, ctx: Context) -> str:
        if not FIELD.match(name):
            raise NotSupported(f"FHIRPath element name {name!r} is not supported")
        if base is None and name == self.view.resource:
            return self.d.array(ctx.focus)  # Patient.name: the type names the resource
        return self.each(base, ctx, lambda v: self.d.child(v, name))

    def index(self, base: Node, index: Node, ctx: Context) -> str:
        d = self.d
        items = self.collection(base, ctx)
        if isinstance(index, Literal) and index.type == "integer":
            return d.slice(items, str(int(index.value) + 1), "1")  # type: ignore[call-overload]
        position = d.as_bigint(d.item(self.collection(index, ctx), 0))
        return d.slice(items, f"({position} + 1)", "1")

    def negate(self, operand: Node, ctx: Context) -> str:
        d = self.d
        return self.let(
            self.collection(operand, ctx),
            lambda v: (
                f"CASE WHEN {d.size(v)} = 0 THEN {d.empty()} "
                f"ELSE {d.array(d.from_sql(f'(0 - {d.as_double(d.item(v, 0))})'))} END"
            ),
        )

    # -- operators

    def binary(self, node: Binary, ctx: Context) -> Compiled:
        op = node.op
        if op in ("and", "or", "xor", "implies"):
            left, right = self.boolean(node.left, ctx), self.boolean(node.right, ctx)
            logic = {
                "and": f"({left} AND {right})",
                "or": f"({left} OR {right})",
                "xor": f"({left} <> {right})",
                "implies": f"((NOT {left}) OR {right})",
            }
            return Compiled(logic[op], "boolean")
        if op in ("=", "!=", "~", "!~") or op in COMPARISONS:
            return Compiled(self.compare(op, node.left, node.right, ctx), "boolean")
        if op in ARITHMETIC or op in ("&", "div", "mod"):
            return Compiled(self.arithmetic(op, node.left, node.right, ctx), "list")
        raise NotSupported(f"the FHIRPath '{op}' operator is not supported by {self.d.name}")

    def compare(self, op: str, left: Node, right: Node, ctx: Context) -> str:
        if is_scalar_literal(left) and not is_scalar_literal(right):
            left, right, op = right, left, MIRRORED.get(op, op)
        if is_scalar_literal(right):
            assert isinstance(right, Literal)
            items = self.collection(left, ctx)
            return self.let(items, lambda a: self.compare_literal(op, a, right))
        left_sql, right_sql = self.collection(left, ctx), self.collection(right, ctx)

        def on_both(a: str) -> str:
            return self.let(right_sql, lambda b: self.compare_items(op, a, b))

        return self.let(left_sql, on_both)

    def compare_literal(self, op: str, a: str, literal: Literal) -> str:
        """A collection against a literal: the literal's type says how to compare, so the
        engine reads one SQL type (the common ``status = 'final'``)."""
        d = self.d
        x = d.item(a, 0)
        sql_op = {"=": "=", "~": "=", "!=": "<>", "!~": "<>"}.get(op, op)
        if literal.type == "boolean":
            single = f"{d.as_boolean(x)} {sql_op} {'TRUE' if literal.value else 'FALSE'}"
        elif literal.type in ("integer", "decimal"):
            single = f"{d.as_double(x)} {sql_op} {literal.value}"
        elif op in ("~", "!~"):
            single = f"lower({d.as_string(x)}) {sql_op} {d.quote(str(literal.value).lower())}"
        else:
            single = f"{d.as_string(x)} {sql_op} {d.quote(str(literal.value))}"
        several = {"=": "FALSE", "~": "FALSE", "!=": "TRUE", "!~": "TRUE"}.get(op, "NULL")
        return (
            f"CASE WHEN {d.size(a)} = 0 THEN NULL WHEN {d.size(a)} = 1 THEN {single} "
            f"ELSE {several} END"
        )

    def compare_items(self, op: str, a: str, b: str) -> str:
        """FHIRPath's comparison of two collections (empty -> NULL), by their first items
        when both are singletons; equality of longer collections compares them whole."""
        d = self.d
        x, y = d.item(a, 0), d.item(b, 0)
        sql_op = {"=": "=", "~": "=", "!=": "<>", "!~": "<>"}.get(op, op)
        numeric = f"{d.as_double(x)} {sql_op} {d.as_double(y)}"
        text = f"{d.as_string(x)} {sql_op} {d.as_string(y)}"
        if op in ("~", "!~"):
            text = f"lower({d.as_string(x)}) {sql_op} lower({d.as_string(y)})"
        single = f"CASE WHEN {d.is_number(x)} AND {d.is_number(y)} THEN {numeric} ELSE {text} END"
        if op in COMPARISONS:
            return single
        texts = d.as_string(d.to_json_array(a)), d.as_string(d.to_json_array(b))
        whole = f"({d.size(a)} = {d.size(b)} AND {texts[0]} = {texts[1]})"
        if op in ("!=", "!~"):
            whole = f"(NOT {whole})"
        return (
            f"CASE WHEN {d.size(a)} = 0 OR {d.size(b)} = 0 THEN NULL "
            f"WHEN {d.size(a)} = 1 AND {d.size(b)} = 1 THEN {single} ELSE {whole} END"
        )

    def arithmetic(self, op: str, left: Node, right: Node, ctx: Context) -> str:
        d = self.d
        left_sql, right_sql = self.collection(left, ctx), self.collection(right, ctx)

        def result(a: str, b: str) -> str:
            x, y = d.item(a, 0), d.item(b, 0)
            if op == "&":
                joined = f"concat(coalesce({d.as_string(x)}, ''), coalesce({d.as_string(y)}, ''))"
                return d.array(d.from_sql(joined))
            value = self.number(op, x, y)
            return (
                f"CASE WHEN {d.size(a)} = 0 OR {d.size(b)} = 0 THEN {d.empty()} "
                f"WHEN {value} IS NULL THEN {d.empty()} ELSE {d.array(d.from_sql(value))} END"
            )

        return self.let(left_sql, lambda a: self.let(right_sql, lambda b: result(a, b)))

    def number(self, op: str, x: str, y: str) -> str:
        d = self.d
        # whole numbers as BIGINT while the result fits (else as a double: an overflow
        # would be the engine's error, a 500)
        if op in ("+", "-", "*"):
            integers = f"{d.as_bigint(x)} {op} {d.as_bigint(y)}"
            doubles = f"{d.as_double(x)} {op} {d.as_double(y)}"
            whole = f"{d.is_integer(x)} AND {d.is_integer(y)} AND abs({doubles}) < {BIGINT_SAFE}"
            strings = f"concat({d.as_string(x)}, {d.as_string(y)})"
            text = f"WHEN {d.is_string(x)} AND {d.is_string(y)} THEN {d.from_sql(strings)} "
            return (
                f"CASE {text if op == '+' else ''}WHEN {whole} THEN {d.from_sql(integers)} "
                f"ELSE {d.from_sql(doubles)} END"
            )
        divisor = d.as_double(y)
        ratio = f"{d.as_double(x)} / {divisor}"
        quotient = d.truncate(ratio)
        result = {
            "/": ratio,
            "div": quotient,
            "mod": f"{d.as_bigint(x)} - {d.as_bigint(y)} * {quotient}",
        }[op]
        too_large = {
            "/": "FALSE",
            "div": f"abs({ratio}) >= {BIGINT_SAFE}",
            "mod": f"abs({d.as_double(x)}) >= {BIGINT_SAFE}",  # |y * quotient| <= |x|
        }[op]
        return f"CASE WHEN {divisor} = 0 OR {too_large} THEN NULL ELSE {d.from_sql(result)} END"

    # -- functions

    def call(self, node: Call, ctx: Context) -> Compiled:
        d = self.d
        name, base, args = node.name, node.base, node.args
        if name in ("exists", "empty", "not"):
            return Compiled(self.test(name, base, args, ctx), "boolean")
        if name == "where":
            return Compiled(self.where(base, args[0], ctx), "list")
        if name == "ofType":
            return Compiled(self.of_type(base, type_name(args[0]), ctx), "list")
        if name == "extension":
            url = literal_string(args[0], "extension()")
            return Compiled(
                self.where(Member(base, "extension"), Binary("=", Member(None, "url"), url), ctx),
                "list",
            )
        if name == "first":
            return Compiled(d.slice(self.on(base, ctx), "1", "1"), "list")
        if name == "last":
            return Compiled(
                self.let(
                    self.on(base, ctx), lambda v: d.slice(v, f"greatest({d.size(v)}, 1)", "1")
                ),
                "list",
            )
        if name == "count":
            return Compiled(d.array(d.from_sql(d.size(self.on(base, ctx)))), "list")
        if name == "join":
            return Compiled(self.join(base, args, ctx), "list")
        if name == "getResourceKey":
            return Compiled(self.each(base, ctx, lambda v: d.child(v, "id")), "list")
        if name == "getReferenceKey":
            return Compiled(self.reference_key(base, args, ctx), "list")
        if name in ("lowBoundary", "highBoundary"):
            return Compiled(self.boundary(base, args, ctx, high=name == "highBoundary"), "list")
        raise NotSupported(f"FHIRPath {name}() is not supported by {d.name}")

    def on(self, base: Node | None, ctx: Context) -> str:
        return self.d.array(ctx.focus) if base is None else self.collection(base, ctx)

    def test(self, name: str, base: Node | None, args: tuple[Node, ...], ctx: Context) -> str:
        if name == "not":
            operand = (
                self.boolean(base, ctx)
                if base is not None
                else self.singleton_boolean(self.d.array(ctx.focus))
            )
            return f"(NOT {operand})"
        items = self.where(base, args[0], ctx) if args else self.on(base, ctx)
        return f"({self.d.size(items)} {'>' if name == 'exists' else '='} 0)"

    def where(self, base: Node | None, condition: Node, ctx: Context) -> str:
        var = self.fresh()
        test = self.boolean(condition, replace(ctx, focus=var))
        return self.d.filter(self.on(base, ctx), var, f"coalesce({test}, FALSE)")

    def of_type(self, base: Node | None, type_: str, ctx: Context) -> str:
        """Elements of ``base`` of the type; ``value.ofType(Quantity)`` also reads the choice
        element ``valueQuantity`` (no schema needed: a missing element is empty)."""
        d = self.d
        var = self.fresh()
        kept = d.filter(self.on(base, ctx), var, self.type_test(var, type_))
        if isinstance(base, Member) and FIELD.match(base.name + type_):
            choice = self.member(base.base, base.name + type_[:1].upper() + type_[1:], ctx)
            return d.concat(choice, kept)
        return kept

    def type_test(self, value: str, type_: str) -> str:
        d = self.d
        if type_ in INTEGER_TYPES:
            return d.is_integer(value)
        if type_ == "decimal":
            return d.is_number(value)
        if type_ == "boolean":
            return d.is_boolean(value)
        if type_ in STRING_TYPES:
            return d.is_string(value)
        if type_[:1].isupper():
            return d.is_object(value)
        raise NotSupported(f"ofType({type_}) is not supported")

    def join(self, base: Node | None, args: tuple[Node, ...], ctx: Context) -> str:
        d = self.d
        separator = literal_string(args[0], "join()").value if args else ""
        var = self.fresh()
        strings = d.transform(self.on(base, ctx), var, d.as_string(var))
        return d.array(d.from_sql(d.join(strings, d.quote(str(separator)))))

    def reference_key(self, base: Node | None, args: tuple[Node, ...], ctx: Context) -> str:
        """The id a Reference points at, when it is ``[url/]Type/id[/_history/v]`` (and of
        the type asked for)."""
        d = self.d
        wanted = type_name(args[0]) if args else "[A-Za-z]+"
        pattern = f"^(?:.*/)?{wanted}/([A-Za-z0-9.-]+)(?:/_history/[^/]+)?$"

        def key(v: str) -> str:
            reference = d.as_string(d.item(d.child(v, "reference"), 0))
            text = f"coalesce({reference}, '')"
            found = f"nullif({d.regexp_extract(text, pattern, 1)}, '')"
            return (
                f"CASE WHEN {found} IS NULL THEN {d.empty()} ELSE {d.array(d.from_sql(found))} END"
            )

        return self.each(base, ctx, key)

    # -- lowBoundary() / highBoundary(): the ends of the range a value's precision allows

    def extract(self, text: str, pattern: str, group: int) -> str:
        """A regular expression's group, '' when it does not match (on every engine)."""
        return f"coalesce({self.d.regexp_extract(text, pattern, group)}, '')"

    def boundary(self, base: Node | None, args: tuple[Node, ...], ctx: Context, high: bool) -> str:
        """Per element; the kind (decimal, date, dateTime, time) from an ``ofType()`` just
        before, else the column's declared type, else the value's own look."""
        if args:
            raise NotSupported("lowBoundary()/highBoundary() with a precision are not supported")
        d = self.d
        kind = ctx.type_hint
        if isinstance(base, Call) and base.name == "ofType":
            kind = type_name(base.args[0])
        var, found = self.fresh(), self.fresh()
        mapped = d.transform(self.on(base, ctx), var, self.boundary_of(var, kind, high))
        return d.filter(mapped, found, f"{found} IS NOT NULL")

    def boundary_of(self, value: str, kind: str | None, high: bool) -> str:
        d = self.d
        text = d.as_string(value)
        as_json = {
            "decimal": self.decimal_boundary(text, high),
            "date": d.from_sql(self.date_boundary(text, high)),
            "dateTime": d.from_sql(self.datetime_boundary(text, high)),
            "time": d.from_sql(self.time_boundary(text, high)),
        }
        kind = "dateTime" if kind == "instant" else "decimal" if kind in INTEGER_TYPES else kind
        if kind in as_json:
            test = d.is_number(value) if kind == "decimal" else d.is_string(value)
            return f"CASE WHEN {test} THEN {as_json[kind]} ELSE {d.null()} END"
        return (
            f"CASE WHEN {d.is_number(value)} THEN {as_json['decimal']} "
            f"WHEN NOT {d.is_string(value)} THEN {d.null()} "
            f"WHEN {self.extract(text, '^([0-9]{2}:)', 1)} <> '' THEN {as_json['time']} "
            f"WHEN {self.extract(text, '(T)', 1)} <> '' THEN {as_json['dateTime']} "
            f"ELSE {as_json['date']} END"
        )

    def decimal_boundary(self, text: str, high: bool) -> str:
        """Half a unit of the last decimal written: 1.0 -> 0.95 .. 1.05."""
        d = self.d
        scale = f"length({self.extract(text, '[.]([0-9]+)', 1)})"
        half = f"CAST(concat('0.', repeat('0', {scale}), '5') AS DECIMAL(38, 18))"
        number = f"CAST({text} AS DECIMAL(38, 18))"
        return d.from_sql(f"({number} {'+' if high else '-'} {half})")

    def date_boundary(self, text: str, high: bool) -> str:
        d = self.d
        date = self.extract(text, "^([0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?)", 1)
        if not high:
            return f"concat({date}, substr('-01-01', length({date}) - 3))"
        year, month = (
            f"CAST(substr({date}, 1, 4) AS INTEGER)",
            f"CAST(substr({date}, 6, 2) AS INTEGER)",
        )
        last = f"lpad({d.text(d.days_in_month(year, month))}, 2, '0')"
        return (
            f"CASE length({date}) WHEN 4 THEN concat({date}, '-12-31') "
            f"WHEN 7 THEN concat({date}, '-', {last}) ELSE {date} END"
        )

    def time_boundary(self, text: str, high: bool) -> str:
        clock = self.extract(text, "^([0-9]{2}(:[0-9]{2}(:[0-9]{2})?)?)", 1)
        fraction = self.extract(text, "^[0-9:]+([.][0-9]+)", 1)
        fill, digit = (":59:59", "9") if high else (":00:00", "0")
        padded = f"rpad({fraction}, 4, '{digit}')"
        return (
            f"concat({clock}, substr('{fill}', length({clock}) - 1), "
            f"CASE WHEN {fraction} = '' THEN '.{digit * 3}' ELSE {padded} END)"
        )

    def datetime_boundary(self, text: str, high: bool) -> str:
        clock = self.extract(text, "T([0-9:.]+)", 1)
        zone = self.extract(text, "T.*(Z|[+-][0-9]{2}:[0-9]{2})$", 1)
        default_clock, default_zone = (
            ("23:59:59.999", "-12:00") if high else ("00:00:00.000", "+14:00")
        )
        time = self.time_boundary(clock, high)
        return (
            f"concat({self.date_boundary(text, high)}, 'T', "
            f"CASE WHEN {clock} = '' THEN '{default_clock}' ELSE {time} END, "
            f"CASE WHEN {zone} = '' THEN '{default_zone}' ELSE {zone} END)"
        )

    # -- selects -> rows

    def rows(self, select: Select, ctx: Context) -> str:
        d = self.d
        focus = select.for_each or select.for_each_or_null
        if focus is None and not select.repeat:
            return self.body_rows(select, ctx)
        items = self.repeat(select.repeat, ctx) if focus is None else self.collection(focus, ctx)
        if select.for_each_or_null is None:
            return self.rows_for_each(select, items, ctx)
        # over nothing: one row of nulls, where %rowIndex is 0 (the spec's null row)
        empty = [
            d.json("0") if c.path == Variable("%rowIndex") else d.null() for c in columns(select)
        ]
        nulls = d.array(d.array(*empty) if empty else d.empty_row())
        return self.let(
            items,
            lambda v: (
                f"CASE WHEN {d.size(v)} = 0 THEN {nulls} "
                f"ELSE {self.rows_for_each(select, v, ctx)} END"
            ),
        )

    def rows_for_each(self, select: Select, items: str, ctx: Context) -> str:
        d = self.d
        var, index = self.fresh(), self.fresh()
        inner = replace(ctx, focus=var, row_index=d.position(index))
        return d.flatten(d.transform_indexed(items, var, index, self.body_rows(select, inner)))

    def body_rows(self, select: Select, ctx: Context) -> str:
        d = self.d
        own = (
            d.array(*[self.column(c, ctx) for c in select.columns])
            if select.columns
            else d.empty_row()
        )
        factors = [self.rows(child, ctx) for child in select.select]
        if select.union_all:
            factors.append(d.concat(*[self.rows(branch, ctx) for branch in select.union_all]))
        if not select.columns and factors:  # no own row: the first factor's rows are it
            own_rows, factors = factors[0], factors[1:]
        else:
            own_rows = d.array(own)
        rows = own_rows
        for factor in factors:
            rows = self.cross(rows, factor)
        return rows

    def cross(self, left: str, right: str) -> str:
        d = self.d
        a, b = self.fresh(), self.fresh()
        return d.flatten(d.transform(left, a, d.transform(right, b, d.concat(a, b))))

    def column(self, column: Column, ctx: Context) -> str:
        d = self.d
        compiled = self.expr(column.path, replace(ctx, type_hint=column.type))
        if compiled.kind == "boolean" and not column.collection:
            return self.let(
                compiled.sql,
                lambda b: f"CASE WHEN {b} IS NULL THEN {d.null()} ELSE {d.from_sql(b)} END",
            )
        items = self.collection(column.path, ctx) if compiled.kind == "boolean" else compiled.sql
        if column.collection:
            return d.to_json_array(items)
        message = (
            f"column {column.name} ({column.expression}) gives several values; set collection: true"
        )
        return self.let(
            items,
            lambda v: f"CASE WHEN {d.size(v)} > 1 THEN {d.error(message)} ELSE {d.item(v, 0)} END",
        )

    def repeat(self, paths: tuple[Node, ...], ctx: Context) -> str:
        """Every element reached by following ``paths`` again and again, in document order
        (each element, then what is under it), to ``REPEAT_DEPTH`` levels; an element with
        children below that depth is an error, never a silent cut."""
        d = self.d

        def children(parent: str) -> str:
            return d.concat(*[self.collection(p, replace(ctx, focus=parent)) for p in paths])

        def below(parent: str, depth: int) -> str:
            if depth == 0:
                deeper = d.error(f"repeat goes deeper than {REPEAT_DEPTH} levels")
                return (
                    f"CASE WHEN {d.size(children(parent))} > 0 THEN {deeper} ELSE {d.empty()} END"
                )
            var = self.fresh()
            return d.flatten(
                d.transform(children(parent), var, d.concat(d.array(var), below(var, depth - 1)))
            )

        return below(ctx.focus, REPEAT_DEPTH)

    # -- the query

    def query(self, source: str) -> str:
        d = self.d
        resource = "_resource"
        ctx = Context(focus=resource, resource=resource, row_index="0")
        tests = [
            self.singleton_boolean(self.collection(p, ctx), "where path") for p in self.view.where
        ]
        where = [f"coalesce({test}, FALSE)" for test in tests]
        rows = self.rows(self.view.select, ctx)
        outputs = [d.output(d.item("_row", i), c) for i, c in enumerate(columns(self.view.select))]
        sql = d.query(rows, source, self.view.resource, " AND ".join(where) or "TRUE", outputs)
        within_bounds(sql, backslash_escapes=d.quote("\\") != "'\\'")
        return sql


MIRRORED = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}


def within_bounds(sql: str, backslash_escapes: bool = False) -> None:
    """Refuse SQL too large or too deeply nested for an engine to take it in good time
    (module docstring, "Bounds")."""
    if len(sql) > MAX_SQL_CHARS:
        raise Invalid(
            f"the view compiles to {len(sql):,} characters of SQL; at most {MAX_SQL_CHARS:,}:"
            " make it smaller (fewer columns, selects or repeat paths)"
        )
    nesting, lambdas, cost = sql_depths(sql, backslash_escapes)
    if nesting > MAX_SQL_NESTING:
        raise Invalid(
            f"the view's expressions nest {nesting} levels deep in SQL; at most"
            f" {MAX_SQL_NESTING}: split long chains of operators"
        )
    if lambdas > MAX_LAMBDA_DEPTH:
        raise Invalid(
            f"the view nests {lambdas} iterations inside each other (forEach, repeat, where,"
            f" comparisons); at most {MAX_LAMBDA_DEPTH}: nest fewer selects or functions"
        )
    if cost > MAX_SQL_COST:
        raise Invalid(
            f"the view is too costly to compile ({cost:,} units, at most {MAX_SQL_COST:,}):"
            " fewer columns or paths inside nested forEach, repeat or where"
        )


def sql_depths(sql: str, backslash_escapes: bool = False) -> tuple[int, int, int]:
    """How deep ``sql`` nests parentheses and brackets, and bound variables (a variable's
    scope runs from its first mention, where it is bound, to the end of the bracket around
    it), and its cost: each character weighs ``LAMBDA_WEIGHT`` to the power of the
    variables around it.  Quoted text (string literals, quoted names) is skipped, as the
    dialect quotes it."""
    depth = deepest = most = at = 0
    cost = 0.0
    scopes: list[int] = []  # the bracket depth of each open variable's scope
    seen: set[str] = set()
    while (found := SQL_MARKS.search(sql, at)) is not None:
        cost += (found.end() - at) * LAMBDA_WEIGHT ** len(scopes)
        mark, at = found.group(), found.end()
        if mark in ("'", '"'):
            at = end_of_quoted(sql, found.start(), backslash_escapes)
        elif mark in ("(", "["):
            depth += 1
            deepest = max(deepest, depth)
        elif mark in (")", "]"):
            depth -= 1
            while scopes and scopes[-1] > depth:
                scopes.pop()
        elif mark not in seen:  # a variable, bound here
            seen.add(mark)
            scopes.append(depth)
            most = max(most, len(scopes))
    cost += len(sql) - at
    return deepest, most, round(cost)


def end_of_quoted(sql: str, start: int, backslash_escapes: bool) -> int:
    """The index after the quoted text opening at ``start`` ('...' or "..."; a doubled
    quote, or a backslash where the dialect escapes so, stays inside)."""
    quote, at = sql[start], start + 1
    while at < len(sql):
        escaped = backslash_escapes and sql[at] == "\\"
        if escaped or (sql[at] == quote and sql[at + 1 : at + 2] == quote):
            at += 2
        elif sql[at] == quote:
            return at + 1
        else:
            at += 1
    return at


def is_scalar_literal(node: Node) -> bool:
    return isinstance(node, Literal) and node.type != "empty"


def columns(select: Select) -> list[Column]:
    """The view's columns in output order (one per name; unionAll: the first branch's)."""
    out = list(select.columns)
    for child in select.select:
        out += columns(child)
    if select.union_all:
        out += columns(select.union_all[0])
    return out


def compile_view(dialect: Dialect, view: View, source: str) -> str:
    return Compiler(dialect, view).query(source)


def type_name(node: Node) -> str:
    if isinstance(node, Member):
        return node.name
    if isinstance(node, Literal) and node.type == "string":
        return str(node.value)
    raise NotSupported("a type name is expected here")


def literal_string(node: Node, where: str) -> Literal:
    if isinstance(node, Literal) and node.type == "string":
        return node
    raise NotSupported(f"{where} takes a string literal")


def json_string(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)
