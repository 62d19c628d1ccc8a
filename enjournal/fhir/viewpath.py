"""FHIRPath for SQL on FHIR v2 views: a small parser into an AST that the SQL engines compile.

Why our own parser rather than fhirpathpy's ANTLR grammar: the view runner never evaluates
FHIRPath in Python; it needs a small, typed tree to translate into SQL (DuckDB, Spark,
PostgreSQL).  fhirpathpy's parse tree is ANTLR's concrete syntax (dozens of context classes
per expression) and would be walked into such a tree anyway; the grammar the SQL on FHIR
spec requires (its "FHIRPath subset": paths, indexers, function calls, literals, %constants,
$this, boolean logic, comparison and arithmetic) is a precedence-climbing parser of ~200
lines, with no dependency and messages that point at the view's own text.

The tree (frozen dataclasses): ``Literal``, ``Member`` (``base.name``; base ``None`` means
the current context, ``$this``), ``Call`` (``base.name(args)``), ``Index`` (``base[i]``),
``Binary``, ``Unary``, ``Variable`` (``$this``, ``%rowIndex``, ``%resource``...) and
``Constant`` (``%name``, replaced by a ``Literal`` when the view's constants are known).
Operator precedence follows the FHIRPath 2.0 grammar.

Bounds (a view comes from any authenticated caller, and the parser, the tree walks and the
SQL compilers all recurse on the tree): an expression is at most ``MAX_LENGTH`` characters,
``MAX_NESTING`` levels of brackets, parentheses, calls and signs (checked while parsing, before
Python's recursion limit is near), ``MAX_NODES`` nodes and ``MAX_DEPTH`` levels of tree
(``a.b.c`` is three); an integer fits FHIR's 32-bit ``integer``, a number has at most
``MAX_DIGITS`` digits.  Each is far above what the SQL on FHIR test suite and the
platform's own views use (at most 175 characters, 16 nodes, 9 levels); past one the
expression is ``Invalid`` (400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from enjournal.fhir.errors import Invalid


@dataclass(frozen=True)
class Literal:
    value: object  # str | int | Decimal | bool | None (the empty collection {})
    type: str  # string | integer | decimal | boolean | date | dateTime | time | empty


@dataclass(frozen=True)
class Member:
    base: Node | None
    name: str


@dataclass(frozen=True)
class Call:
    base: Node | None
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Index:
    base: Node
    index: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "+"
    operand: Node


@dataclass(frozen=True)
class Variable:
    name: str  # "$this", "$index", "%rowIndex", "%resource", "%rootResource", "%context"


@dataclass(frozen=True)
class Constant:
    name: str


@dataclass(frozen=True)
class TypeOp:
    op: str  # "is" | "as"
    operand: Node
    type: str


Node = Literal | Member | Call | Index | Binary | Unary | Variable | Constant | TypeOp

# Binary operators by precedence, lowest first (FHIRPath 2.0 grammar).
LEVELS: tuple[tuple[str, ...], ...] = (
    ("implies",),
    ("or", "xor"),
    ("and",),
    ("in", "contains"),
    ("=", "~", "!=", "!~"),
    ("<=", "<", ">", ">="),
    ("|",),
    ("is", "as"),
    ("+", "-", "&"),
    ("*", "/", "div", "mod"),
)
KEYWORD_OPS = {op for level in LEVELS for op in level if op.isalpha()}
ENVIRONMENT = {"%rowIndex", "%resource", "%rootResource", "%context", "%ucum"}
MAX_LENGTH = 4_000  # characters of one expression
MAX_NESTING = 32  # brackets, parentheses, call arguments and signs inside each other
MAX_NODES = 300  # nodes of one expression's tree
MAX_DEPTH = 40  # levels of one expression's tree
MAX_DIGITS = 38  # digits of a number literal (a SQL DECIMAL's precision)
INTEGER_RANGE = range(-(2**31), 2**31)  # FHIR integer: 32 bits

TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\]|\\.)*')
    | (?P<datetime>@T?[0-9][0-9:\-T.+Z]*)
    | (?P<number>[0-9]+(?:\.[0-9]+)?)
    | (?P<delimited>`(?:[^`\\]|\\.)*`)
    | (?P<external>%(?:[A-Za-z_][A-Za-z0-9_]*|`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*'))
    | (?P<special>\$(?:this|index|total))
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op><=|>=|!=|!~|[.\[\](),=~<>|+\-*/&{}])
    )""",
    re.VERBOSE,
)
ESCAPES = {
    "'": "'",
    '"': '"',
    "`": "`",
    "\\": "\\",
    "/": "/",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    at: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    at = 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = TOKEN.match(text, at)
        if not match or match.end() == at:
            raise Invalid(f"FHIRPath {shown(text)}: unexpected character at {at}")
        kind = match.lastgroup or ""
        tokens.append(Token(kind, match.group(kind), match.start(kind)))
        at = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def shown(text: str) -> str:
    """The expression as a message quotes it: a long one cut."""
    return repr(text) if len(text) <= 80 else repr(text[:80]) + "..."


def unquote(text: str) -> str:
    """The body of a '...' or `...` token with FHIRPath's escapes resolved."""
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and i + 6 <= len(body):
                out.append(chr(hex_code(body[i + 2 : i + 6])))
                i += 6
                continue
            out.append(ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(body[i])
        i += 1
    return "".join(out)


def hex_code(digits: str) -> int:
    if not re.fullmatch(r"[0-9A-Fa-f]{4}", digits):
        raise Invalid(f"FHIRPath: \\u{digits} is not a unicode escape (four hex digits)")
    return int(digits, 16)


class Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.nesting = 0  # how deep the recursive descent is in brackets and calls

    def enter(self) -> None:
        """One level deeper (a bracket, a call's arguments, a sign); refused past
        ``MAX_NESTING``, long before Python's recursion limit."""
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise self.fail(f"nested more than {MAX_NESTING} levels deep")

    def leave(self) -> None:
        self.nesting -= 1

    def fail(self, why: str) -> Invalid:
        token = self.peek()
        return Invalid(f"FHIRPath {shown(self.text)}: {why} at {token.at}")

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, text: str) -> None:
        if self.peek().text != text or self.peek().kind == "string":
            raise self.fail(f"expected {text!r}")
        self.take()

    def is_operator(self, ops: tuple[str, ...]) -> bool:
        token = self.peek()
        return token.kind in ("op", "ident") and token.text in ops

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.fail("empty expression")
        node = self.binary(0)
        if self.peek().kind != "end":
            raise self.fail(f"unexpected {self.peek().text!r}")
        return node

    def binary(self, level: int) -> Node:
        if level == len(LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while self.is_operator(LEVELS[level]):
            op = self.take().text
            if op in ("is", "as"):
                node = TypeOp(op, node, self.type_name())
                continue
            node = Binary(op, node, self.binary(level + 1))
        return node

    def type_name(self) -> str:
        parts = [self.identifier()]
        while self.peek().text == ".":
            self.take()
            parts.append(self.identifier())
        return ".".join(parts)

    def unary(self) -> Node:
        if self.peek().kind == "op" and self.peek().text in ("+", "-"):
            op = self.take().text
            self.enter()
            operand = self.unary()
            self.leave()
            return Unary(op, operand)
        return self.postfix(self.term())

    def postfix(self, node: Node) -> Node:
        while True:
            if self.peek().text == "." and self.peek().kind == "op":
                self.take()
                node = self.invocation(node)
            elif self.peek().text == "[" and self.peek().kind == "op":
                self.take()
                self.enter()
                index = self.binary(0)
                self.expect("]")
                self.leave()
                node = Index(node, index)
            else:
                return node

    def invocation(self, base: Node | None) -> Node:
        token = self.peek()
        if token.kind == "special":
            self.take()
            return Variable(token.text)
        name = self.identifier()
        if self.peek().text == "(" and self.peek().kind == "op":
            return Call(base, name, self.arguments())
        return Member(base, name)

    def arguments(self) -> tuple[Node, ...]:
        self.expect("(")
        self.enter()
        args: list[Node] = []
        if self.peek().text != ")":
            args.append(self.binary(0))
            while self.peek().text == ",":
                self.take()
                args.append(self.binary(0))
        self.expect(")")
        self.leave()
        return tuple(args)

    def identifier(self) -> str:
        token = self.peek()
        if token.kind == "ident" and token.text not in KEYWORD_OPS | {"true", "false"}:
            return self.take().text
        if token.kind == "ident" and token.text in ("as", "is", "contains", "in", "div", "mod"):
            return self.take().text  # keywords double as function/member names: as(), is()
        if token.kind == "delimited":
            return unquote(self.take().text)
        raise self.fail("expected a name")

    def term(self) -> Node:
        token = self.peek()
        if token.kind == "op" and token.text == "(":
            self.take()
            self.enter()
            node = self.binary(0)
            self.expect(")")
            self.leave()
            return node
        if token.kind == "op" and token.text == "{":
            self.take()
            self.expect("}")
            return Literal(None, "empty")
        literal = self.literal()
        if literal is not None:
            return literal
        if token.kind == "external":
            self.take()
            return external(token.text)
        return self.invocation(None)

    def literal(self) -> Literal | None:
        token = self.peek()
        if token.kind == "string":
            self.take()
            return Literal(unquote(token.text), "string")
        if token.kind == "number":
            if len(token.text.replace(".", "").lstrip("0")) > MAX_DIGITS:
                raise self.fail(f"a number of more than {MAX_DIGITS} digits")
            self.take()
            if "." in token.text:
                return Literal(Decimal(token.text), "decimal")
            if int(token.text) not in INTEGER_RANGE:
                raise Invalid(
                    f"FHIRPath {shown(self.text)}: {token.text} is out of an integer's range"
                )
            return Literal(int(token.text), "integer")
        if token.kind == "ident" and token.text in ("true", "false"):
            self.take()
            return Literal(token.text == "true", "boolean")
        if token.kind == "datetime":
            self.take()
            return date_literal(token.text)
        return None


def date_literal(text: str) -> Literal:
    body = text[1:]
    if body.startswith("T"):
        return Literal(body[1:], "time")
    if "T" in body:
        return Literal(body.rstrip("T"), "dateTime")
    return Literal(body, "date")


def external(text: str) -> Node:
    name = text[1:]
    if name[:1] in ("`", "'"):
        name = unquote(name)
    if "%" + name in ENVIRONMENT:
        return Variable("%" + name)
    return Constant(name)


def parse(text: str) -> Node:
    """Parse a FHIRPath expression; a syntax error, or one past the bounds (module
    docstring), raises ``Invalid``."""
    if not isinstance(text, str):
        raise Invalid(f"FHIRPath expression must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise Invalid(f"FHIRPath expression of {len(text)} characters; at most {MAX_LENGTH}")
    node = Parser(text).parse()
    nodes, depth = size(node)
    if nodes > MAX_NODES:
        raise Invalid(f"FHIRPath {shown(text)}: {nodes} nodes; at most {MAX_NODES}")
    if depth > MAX_DEPTH:
        raise Invalid(f"FHIRPath {shown(text)}: {depth} levels deep; at most {MAX_DEPTH}")
    return node


def size(node: Node) -> tuple[int, int]:
    """The number of nodes and the depth of a tree, without recursion (a left-leaning tree
    such as ``a.b.c...`` or ``1 + 1 + ...`` is deep although the parser loops over it)."""
    nodes, deepest, stack = 0, 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        nodes, deepest = nodes + 1, max(deepest, depth)
        stack += [(child, depth + 1) for child in children(current)]
    return nodes, deepest


def children(node: Node) -> tuple[Node, ...]:
    """The direct sub-expressions of ``node``."""
    own: tuple[Node, ...] = ()
    match node:
        case Member(base=base) | Call(base=base) if base is not None:
            own = (base,)
        case Index(base=base, index=index):
            return (base, index)
        case Binary(left=left, right=right):
            return (left, right)
        case Unary(operand=operand) | TypeOp(operand=operand):
            return (operand,)
    args = node.args if isinstance(node, Call) else ()
    return own + args


def walk(node: Node):
    """Every node of the tree, ``node`` first."""
    yield node
    for child in children(node):
        yield from walk(child)


def substitute(node: Node, constants: dict[str, Literal]) -> Node:
    """Replace each ``%name`` by the view's constant; an unknown one raises ``Invalid``."""
    match node:
        case Constant(name=name):
            if name not in constants:
                raise Invalid(f"FHIRPath uses %{name}, which the view does not define")
            return constants[name]
        case Member(base=base, name=name):
            return Member(sub(base, constants), name)
        case Call(base=base, name=name, args=args):
            return Call(sub(base, constants), name, tuple(substitute(a, constants) for a in args))
        case Index(base=base, index=index):
            return Index(substitute(base, constants), substitute(index, constants))
        case Binary(op=op, left=left, right=right):
            return Binary(op, substitute(left, constants), substitute(right, constants))
        case Unary(op=op, operand=operand):
            return Unary(op, substitute(operand, constants))
        case TypeOp(op=op, operand=operand, type=type_):
            return TypeOp(op, substitute(operand, constants), type_)
    return node


def sub(node: Node | None, constants: dict[str, Literal]) -> Node | None:
    return None if node is None else substitute(node, constants)
