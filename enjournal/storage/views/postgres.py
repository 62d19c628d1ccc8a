"""The PostgreSQL engine: the same compiled view as PostgreSQL SQL over ``jsonb``, over
resources given to it or over the platform's own store.

A collection is a ``jsonb`` array.  A field is read with lax SQL/JSON path
(``jsonb_path_query_array(v, 'lax $."name"[*]')``: an array field spreads into its items, a
missing one is empty); the list work the other engines do with lambdas is a correlated
subquery over ``jsonb_array_elements(...) WITH ORDINALITY`` (its order kept), and a chain of
fields (``name.given``) becomes one path.  The whole view is one query: the resources of the
view's type that pass its ``where``, each joined LATERAL to ``jsonb_array_elements`` of its
rows (or, when a view has one row per resource, to a subquery of its values).  JIT is off
for it: compiling one deep expression costs seconds.  Nothing is evaluated in Python.

Two sources:

- ``run_view(view, source, engine="postgres")`` (the engine contract of
  ``enjournal.storage.views``): ``source`` is resource dicts or NDJSON (``.gz``) / Parquet
  paths, copied (``COPY``) into a temporary table on a connection of its own, run, dropped.
  The server is ``PostgresEngine.dsn``: ``configure(dsn)``, else the environment's
  ``ENJOURNAL_VIEWS_POSTGRES``, else ``ENJOURNAL_DATABASE_URL`` when it names PostgreSQL.
  It may be called from inside an event loop (it then runs on a thread of its own).

- **Over the store** (async, on the store's own pool; the store must be PostgreSQL)::

      async for batch in view_batches(store, view, since_ms=..., patients=[...],
                                      policy=ViewPolicy(...), batch_rows=5000):
          ...   # batch: list of row tuples, columns in column_names(view) order
      result = await run_store_view(store, view, ...)   # the same, collected: ViewResult

  It reads the current, not deleted version of each resource of the view's type from
  ``resources`` (the stored JSON, ``content``), selected as bulk export selects
  (``storage.exports``, the same SQL): ``since_ms`` (epoch ms, ``_since`` on
  ``last_updated``), ``patients`` (their Patient compartments only), ``type_filters``
  (parsed ``_typeFilter`` searches, any may match).  ``policy`` (a ``ViewPolicy``) is the
  register export policy as plain values, applied in SQL to those rows before the view
  sees them, so a view over the store gives what the same view gives over a bulk
  ``$export``'s files: excluded patients (nothing that is, or refers to, one of them),
  kjernejournal-tagged rows of the patients whose kjernejournal is reserved or restricted,
  privacy-locked prescriptions, and the redacted elements of a protected or reserved
  patient's Patient and RelatedPersons (jsonb ``-``; national ids filtered out of
  ``identifier``; the REDACTED label added), then every row still holding the national id
  of an excluded patient or of one reserved against disclosure with it (``ViewPolicy``
  ``hidden_numbers``: stricter than ``$export`` for the latter).  Storage may not import
  ``enjournal.security``, so the caller translates ``security.exports.ExportPolicy``
  (built once per run from ``storage.exports.protected_patients`` /
  ``consents_of_category``): ``enjournal.services.registers.privacy.view_policy``.
  Without a policy nothing is left out or redacted.  This SQL is not the export's (no
  ``display`` scrub in references, no contained persons, no references the index does not
  hold), so the services run it only under a policy that protects nobody.  The rows come
  from a server-side cursor in a read-only REPEATABLE READ transaction, ``batch_rows`` at a
  time, so a view over millions of resources holds one batch in memory.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Invalid, NotSupported
from enjournal.fhir.viewdefinition import Column, View, column_names, plan
from enjournal.fhir.viewpath import Node
from enjournal.storage.postgres import _numbered, storage_error
from enjournal.storage.views import ViewResult, file_paths, register_engine
from enjournal.storage.views.compile import (
    ERROR_MARK,
    INTEGER_TYPES,
    Compiler,
    Context,
    Dialect,
    type_name,
)

EMPTY = "'[]'::jsonb"
DEFAULT_BATCH_ROWS = 5000
NOT_NULL = '? (@.type() != "null")'
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ID_CHARACTERS = LETTERS + "0123456789.-"
FIRST_REFERENCE = f'lax $."reference"[*] {NOT_NULL}'


@dataclass(frozen=True)
class Cast:
    sql_type: str
    json_type: str
    convert: str  # {} is the jsonb value


CASTS = {
    "boolean": Cast("boolean", "boolean", "({})::boolean"),
    "integer": Cast("bigint", "number", "({})::numeric::bigint"),
    "decimal": Cast("double precision", "number", "({})::double precision"),
}


def cast_of(column: Column) -> Cast | None:
    if column.type in INTEGER_TYPES:
        return CASTS["integer"]
    return CASTS.get(column.type or "")


class PgDialect(Dialect):
    """PostgreSQL over jsonb.  In a list's subquery, ``var`` names both the subquery and
    its element column."""

    name = "postgres"
    error_type = "jsonb"

    def __init__(self) -> None:
        # Paths made by ``child`` and ``flatten``: SQL text -> (jsonb base, lax path), so
        # ``flatten(transform(path, v, child(v, name)))`` becomes one longer path.
        self.paths: dict[str, tuple[str, str]] = {}
        self.mapped: dict[str, tuple[str, str]] = {}
        # Lists built here of items known in SQL: SQL text -> the items (rows of one row
        # need no unnest; lists of known lists concatenate at compile time).
        self.known: dict[str, tuple[str, ...]] = {EMPTY: ()}

    def elements(self, items: str, var: str, index: str) -> str:
        """A FROM item: the elements of ``items`` as ``var``, 1-based position ``index``."""
        return (
            f"(SELECT _e.e AS {var}, _e.n AS {index} "
            f"FROM jsonb_array_elements({items}) WITH ORDINALITY AS _e(e, n)) AS {var}"
        )

    def transform(self, items: str, var: str, body: str) -> str:
        sql = self.transform_indexed(items, var, f"{var}_n", body)
        found = self.paths.get(body)
        if found is not None and found[0] == var:
            self.mapped[sql] = (items, found[1])
        return sql

    def transform_indexed(self, items: str, var: str, index: str, body: str) -> str:
        return (
            f"(SELECT coalesce(jsonb_agg({body} ORDER BY {index}), {EMPTY}) "
            f"FROM {self.elements(items, var, index)})"
        )

    def position(self, index: str) -> str:
        return f"({index} - 1)"

    def filter(self, items: str, var: str, condition: str) -> str:
        index = f"{var}_n"
        return (
            f"(SELECT coalesce(jsonb_agg({var} ORDER BY {index}), {EMPTY}) "
            f"FROM {self.elements(items, var, index)} WHERE {condition})"
        )

    def flatten(self, lists: str) -> str:
        mapped = self.mapped.get(lists)
        if mapped is not None:
            items, step = mapped
            step = step.removeprefix("lax $")
            inner = self.paths.get(items)
            if inner is not None:  # a path of a path: one path
                return self.path(inner[0], inner[1] + step)
            return self.path(items, "lax $[*]" + step)
        return f"jsonb_path_query_array({lists}, 'lax $[*][*]')"

    def path(self, base: str, path: str) -> str:
        sql = f"jsonb_path_query_array({base}, '{path}')"
        self.paths[sql] = (base, path)
        return sql

    def concat(self, *lists: str) -> str:
        if len(lists) == 1:
            return lists[0]
        if all(items in self.known for items in lists):
            return self.array(*[item for items in lists for item in self.known[items]])
        return "(" + " || ".join(lists) + ")"

    def size(self, items: str) -> str:
        return f"jsonb_array_length({items})"

    def slice(self, items: str, start: str, length: str) -> str:
        if start.isdigit() and length.isdigit():
            first = int(start) - 1
            return f"jsonb_path_query_array({items}, 'lax $[{first} to {first + int(length) - 1}]')"
        return (
            f"(SELECT coalesce(jsonb_agg(_s.e ORDER BY _s.n), {EMPTY}) "
            f"FROM jsonb_array_elements({items}) WITH ORDINALITY AS _s(e, n) "
            f"WHERE _s.n >= {start} AND _s.n < {start} + {length})"
        )

    def item(self, items: str, index: int) -> str:
        return f"(({items}) -> {index})"

    def array(self, *items: str) -> str:
        if not items:
            return EMPTY
        sql = f"jsonb_build_array({', '.join(items)})"
        self.known[sql] = items
        return sql

    def single(self, rows: str) -> str | None:
        """The one row of ``rows`` when it is known to be exactly one."""
        items = self.known.get(rows)
        return items[0] if items is not None and len(items) == 1 else None

    def empty(self) -> str:
        return EMPTY

    def null(self) -> str:
        return "NULL::jsonb"

    def child(self, value: str, name: str) -> str:
        return self.path(value, f'lax $."{name}"[*] {NOT_NULL}')

    def json(self, text: str) -> str:
        return f"{self.quote(text)}::jsonb"

    def typed(self, value: str, kind: str) -> str:
        return f"(jsonb_typeof({value}) = '{kind}')"

    def is_number(self, value: str) -> str:
        return self.typed(value, "number")

    def is_integer(self, value: str) -> str:
        return f"({self.typed(value, 'number')} AND ({value})::text !~ '[.eE]')"

    def is_string(self, value: str) -> str:
        return self.typed(value, "string")

    def is_boolean(self, value: str) -> str:
        return self.typed(value, "boolean")

    def is_object(self, value: str) -> str:
        return self.typed(value, "object")

    def convert(self, value: str, cast: Cast) -> str:
        converted = cast.convert.format(value)
        return f"(CASE WHEN {self.typed(value, cast.json_type)} THEN {converted} END)"

    def as_double(self, value: str) -> str:
        return self.convert(value, CASTS["decimal"])

    def as_bigint(self, value: str) -> str:
        return self.convert(value, CASTS["integer"])

    def as_string(self, value: str) -> str:
        return f"(({value}) #>> '{{}}')"

    def as_boolean(self, value: str) -> str:
        return self.convert(value, CASTS["boolean"])

    def from_sql(self, scalar: str) -> str:
        return f"to_jsonb({scalar})"

    def to_json_array(self, items: str) -> str:
        return items

    def error(self, message: str) -> str:
        """An expression that raises with ``message`` when evaluated: a cast of text that
        is not a boolean (``now()`` keeps the planner from folding it in a branch never
        run).  SQL has no value of every type: it is a jsonb, or a BOOLEAN while
        ``error_type`` says so (the compiler's boolean tests, ``PgCompiler``)."""
        text = self.quote(f"{ERROR_MARK} {message}")
        raised = f"(({text} || left(now()::text, 0))::boolean)"
        return raised if self.error_type == "boolean" else f"to_jsonb({raised})"

    def join(self, strings: str, separator: str) -> str:
        return (
            f"(SELECT coalesce(string_agg(_j.s, {separator} ORDER BY _j.n), '') "
            f"FROM jsonb_array_elements_text({strings}) WITH ORDINALITY AS _j(s, n))"
        )

    def regexp_extract(self, text: str, pattern: str, group: int) -> str:
        return f"(regexp_match({text}, {self.quote(pattern)}))[{group}]"

    def output(self, value: str, column: Column) -> str:
        cast = cast_of(column)
        if not column.collection:
            return self.convert(value, cast) if cast else self.as_string(value)
        each = self.convert("_o.e", cast) if cast else self.as_string("_o.e")
        return (
            f"(CASE WHEN {self.typed(value, 'array')} THEN ARRAY(SELECT {each} "
            f"FROM jsonb_array_elements({value}) WITH ORDINALITY AS _o(e, n) ORDER BY _o.n) END)"
        )

    def query(self, rows: str, source: str, resource: str, where: str, outputs: list[str]) -> str:
        """``source``: a relation with ``type`` (text) and ``resource`` (jsonb).  OFFSET 0
        keeps the type test before ``where`` (which may raise on other types), and
        computes a row's values once however often the outputs name them."""
        resources = (
            f"(SELECT resource AS _resource FROM {source} "
            f"WHERE type = {self.quote(resource)} OFFSET 0) AS _s"
        )
        row = self.single(rows)
        values = self.known.get(row or "")
        if values is None or len(values) != len(outputs):
            names = ", ".join(f"{out} AS c{i}" for i, out in enumerate(outputs))
            return (
                f"SELECT {names} FROM {resources} "
                f"CROSS JOIN LATERAL jsonb_array_elements({rows}) AS _x(_row) WHERE {where}"
            )
        # one row per resource: its values as columns, no list built and unnested
        columns = ", ".join(f"{value} AS v{i}" for i, value in enumerate(values))
        names = ", ".join(
            f"{out.replace(self.item('_row', i), f'_x.v{i}')} AS c{i}"
            for i, out in enumerate(outputs)
        )
        return (
            f"SELECT {names} FROM {resources} "
            f"CROSS JOIN LATERAL (SELECT {columns} OFFSET 0) AS _x WHERE {where}"
        )


class PgCompiler(Compiler):
    """The shared compiler, where PostgreSQL differs: a ``let`` keeps its value's SQL type
    (a subquery, not a one-element list); errors are typed by where they stand; and, for
    speed, rows known to be one are not built as lists, a Reference's key is matched once."""

    d: PgDialect

    def let(self, value: str, body) -> str:
        var = self.fresh()
        # OFFSET 0: evaluated once, not pulled up into each place ``body`` names it
        return f"(SELECT {body(var)} FROM (SELECT {value} AS {var} OFFSET 0) AS {var})"

    def cross(self, left: str, right: str) -> str:
        """Rows crossed; a side known to be one row is concatenated to each row of the
        other without a list of lists (the common select without forEach)."""
        d = self.d
        one_left, one_right = d.single(left), d.single(right)
        if one_left is not None and one_right is not None:
            return d.array(d.concat(one_left, one_right))
        if one_left == EMPTY:
            return right
        if one_left is not None:
            var = self.fresh()
            return d.transform(right, var, d.concat(one_left, var))
        if one_right is not None:
            var = self.fresh()
            return d.transform(left, var, d.concat(var, one_right))
        return super().cross(left, right)

    def reference_key(self, base: Node | None, args: tuple[Node, ...], ctx: Context) -> str:
        """The shared compiler's ``[url/]Type/id[/_history/v]``, by splitting on "/" rather
        than a regular expression (several times faster in PostgreSQL): the id is the last
        segment, or the third from last after ``_history``; the type the one before it."""
        d = self.d
        references = d.array(ctx.focus) if base is None else self.collection(base, ctx)
        reference = f"jsonb_path_query_first(_e.e, '{FIRST_REFERENCE}') #>> '{{}}'"
        size = "cardinality(_a.p)"
        history = f"{size} >= 4 AND _a.p[{size} - 1] = '_history' AND _a.p[{size}] <> ''"
        wanted = f"_k.type = {d.quote(type_name(args[0]))}" if args else only("_k.type", LETTERS)
        return (
            f"(SELECT coalesce(jsonb_agg(to_jsonb(_k.id) ORDER BY _e.n), {EMPTY}) "
            f"FROM jsonb_array_elements({references}) WITH ORDINALITY AS _e(e, n), "
            f"LATERAL (SELECT string_to_array({reference}, '/') AS p OFFSET 0) AS _a, "
            f"LATERAL (SELECT {size} - CASE WHEN {history} THEN 2 ELSE 0 END AS last "
            "OFFSET 0) AS _l, "
            "LATERAL (SELECT _a.p[_l.last] AS id, _a.p[_l.last - 1] AS type OFFSET 0) AS _k "
            f"WHERE {wanted} AND {only('_k.id', ID_CHARACTERS)})"
        )

    def singleton_boolean(self, items: str, strict: str = "") -> str:
        """The shared one, whose errors stand where a BOOLEAN is expected."""
        self.d.error_type = "boolean"
        try:
            return super().singleton_boolean(items, strict)
        finally:
            self.d.error_type = "jsonb"


def only(text: str, characters: str) -> str:
    """Whether ``text`` is not empty and made of ``characters`` only."""
    return f"({text} <> '' AND translate({text}, '{characters}', '') = '')"


def compile_view(view: View, source: str, limit: int | None = None) -> str:
    sql = PgCompiler(PgDialect(), view).query(source)
    return sql if limit is None else f"{sql} LIMIT {int(limit)}"


def view_error(error: Exception) -> Exception:
    """A row that breaks the view -> Invalid; a driver error -> the store's FHIR error."""
    message = str(error)
    if ERROR_MARK in message:
        return Invalid("view: " + message.split(ERROR_MARK, 1)[1].strip().rstrip('"'))
    return storage_error(error) or error


# ---- resources given to the engine -------------------------------------------------------

SOURCE_TABLE = "_sof_source"
# A view is one deep expression: JIT compiling it takes seconds (more than it saves).
SESSION = {"jit": "off"}


class PostgresEngine:
    """Views on PostgreSQL over resource dicts or NDJSON/Parquet paths (a temporary table
    on a connection of its own to ``dsn``); over the store: ``view_batches``."""

    name = "postgres"

    def __init__(self, dsn: str | None = None) -> None:
        self.dsn = dsn

    def configure(self, dsn: str | None) -> None:
        self.dsn = dsn

    def server(self) -> str:
        dsn = self.dsn or os.environ.get("ENJOURNAL_VIEWS_POSTGRES")
        if not dsn:
            database = os.environ.get("ENJOURNAL_DATABASE_URL", "")
            dsn = database if database.startswith(("postgresql:", "postgres:")) else None
        if not dsn:
            raise NotSupported(
                "the postgres view engine has no server: set ENJOURNAL_VIEWS_POSTGRES"
            )
        return dsn

    def run(self, view: View, source: Any, limit: int | None = None) -> ViewResult:
        sql = compile_view(view, SOURCE_TABLE, limit)
        dsn = self.server()
        rows = in_own_loop(lambda: run_inline(dsn, sql, records(source)))
        return ViewResult(column_names(view), rows)


async def run_inline(dsn: str, sql: str, source: Iterable[tuple[str, str]]) -> list[tuple]:
    connection = await asyncpg.connect(dsn, server_settings=SESSION)
    try:
        async with connection.transaction():
            await connection.execute(
                f"CREATE TEMP TABLE {SOURCE_TABLE} (type text, resource jsonb) ON COMMIT DROP"
            )
            await connection.copy_records_to_table(SOURCE_TABLE, records=source)
            try:
                return [tuple(row) for row in await connection.fetch(sql)]
            except asyncpg.PostgresError as error:
                raise view_error(error) from None
    finally:
        await connection.close()


def in_own_loop(make):
    """Run the coroutine ``make()`` to its end, also when called inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(lambda: asyncio.run(make())).result()


def records(source: Any) -> Iterator[tuple[str, str]]:
    """(resourceType, JSON text) of each resource of ``source``."""
    paths = file_paths(source)
    if paths is None:
        for resource in source:
            yield resource.get("resourceType", ""), jsonio.dumps(resource).decode()
        return
    parquet = [p for p in paths if p.endswith(".parquet")]
    if parquet and len(parquet) != len(paths):
        raise Invalid("a view's source files are either all NDJSON or all Parquet")
    for path in paths:
        yield from (parquet_records(path) if parquet else ndjson_records(path))


def ndjson_records(path: str) -> Iterator[tuple[str, str]]:
    opener: Any = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line).get("resourceType", ""), line


def parquet_records(path: str) -> Iterator[tuple[str, str]]:
    import pyarrow.parquet

    table = pyarrow.parquet.read_table(path)
    for row in table.to_pylist():
        text = row["resource"] if "resource" in row else json.dumps(row, default=str)
        yield json.loads(text).get("resourceType", ""), text


# ---- over the store ----------------------------------------------------------------------


@dataclass(frozen=True)
class ViewPolicy:
    """A register export policy as plain values, applied in SQL to the store's rows before
    a view reads them (storage may not import ``enjournal.security``, which owns the rules:
    its caller translates ``security.exports.ExportPolicy`` into this, markers included).

    - ``excluded``: patients left out altogether (nothing that is, or refers to, one);
    - ``kj_hidden`` + ``kj_tag``: rows tagged ``meta.tag.system == kj_tag`` whose patient is
      one of these are left out;
    - ``locks``: (type, extension url): a row of that type with a top-level extension of
      that url is left out whoever it belongs to;
    - ``redactions``: type -> patient -> elements removed from that type's rows of the
      patient (``identifier`` loses only the systems in ``national_ids``, and goes when
      none is left); a redacted row gets ``redacted_label`` added to ``meta.security``;
    - ``hidden_numbers``: national ids no row may hold (of excluded patients, and of those
      reserved against disclosure with the number): a row holding one as a run of exactly
      11 digits anywhere, after the redactions, is left out.  Bulk ``$export`` leaves out
      the first kind too, but scrubs the second from references and keeps the row; the
      view leaves the row out (stricter, docs/registers.md "SQL on FHIR v2").  Empty: no
      clause, no cost.

    A row's patient is the Patient itself, else the first of its ``patient``, ``subject``,
    ``beneficiary`` references that reads ``Patient/<id>`` (as the policy's own reader)."""

    excluded: frozenset[str] = frozenset()
    kj_hidden: frozenset[str] = frozenset()
    kj_tag: str = ""
    locks: tuple[tuple[str, str], ...] = ()
    redactions: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    national_ids: frozenset[str] = frozenset()
    redacted_label: Mapping[str, str] = field(default_factory=dict)
    hidden_numbers: frozenset[str] = frozenset()


NO_POLICY = ViewPolicy()


async def view_batches(
    store: Any,
    view: dict | View,
    *,
    since_ms: int | None = None,
    patients: Sequence[str] | None = None,
    policy: ViewPolicy | None = None,
    type_filters: Sequence[Any] = (),
    batch_rows: int = DEFAULT_BATCH_ROWS,
    limit: int | None = None,
) -> AsyncIterator[list[tuple]]:
    """The view's rows over the store's current resources, ``batch_rows`` at a time (see
    the module docstring); ``Invalid`` for a bad view or a row that breaks it."""
    planned = view if isinstance(view, View) else plan(view)
    if store.dialect != "postgres":
        raise NotSupported(
            f"the postgres view engine runs on a PostgreSQL store, not {store.dialect}"
        )
    if batch_rows < 1:
        raise Invalid("batch_rows must be positive")
    args: list[Any] = []
    source = store_source(
        planned.resource, since_ms, patients, policy or NO_POLICY, type_filters, args
    )
    sql = compile_view(planned, source, limit)
    async with store.transaction(write=False) as tx:
        raw = tx._conn.raw
        try:
            async with raw.transaction(isolation="repeatable_read", readonly=True):
                await raw.execute("SET LOCAL jit = off")
                cursor = await raw.cursor(sql, *args)
                while batch := await cursor.fetch(batch_rows):
                    yield [tuple(row) for row in batch]
        except asyncpg.PostgresError as error:
            raise view_error(error) from None


async def run_store_view(store: Any, view: dict | View, **selection: Any) -> ViewResult:
    """``view_batches`` collected into one ViewResult (for small selections)."""
    planned = view if isinstance(view, View) else plan(view)
    rows: list[tuple] = []
    async for batch in view_batches(store, planned, **selection):
        rows.extend(batch)
    return ViewResult(column_names(planned), rows)


def store_source(
    type_: str,
    since_ms: int | None,
    patients: Sequence[str] | None,
    policy: ViewPolicy,
    type_filters: Sequence[Any],
    args: list,
) -> str:
    """The store's resources as the relation the compiled query reads (``type``,
    ``resource``), selected by bulk export's own WHERE and then ``policy`` (its arguments
    go to ``args``, in order)."""
    from enjournal.storage.exports import Selection, _where

    selection = Selection(
        type_,
        since_ms=since_ms,
        filters=tuple(type_filters),
        patients=tuple(patients) if patients is not None else None,
        excluded=tuple(sorted(policy.excluded)),
    )
    rows = (
        "SELECT r.type, r.id, convert_from(r.content, 'UTF8')::jsonb AS resource "
        f"FROM resources r WHERE {_numbered(_where('postgres', selection, 0, args))}"
    )
    hidden = hidden_rows(type_, policy, args)
    redacted = policy.redactions.get(type_) or {}
    if hidden or redacted:
        # OFFSET 0: each row's JSON is converted once, not once per place that names it
        owner = "_r.id" if type_ == "Patient" else patient_of("_r.resource")
        kept = (
            f"SELECT _r.type, _r.resource, {owner} AS patient FROM ({rows} OFFSET 0) AS _r OFFSET 0"
        )
        if hidden:
            kept = f"SELECT * FROM ({kept}) AS _h WHERE NOT ({' OR '.join(hidden)})"
        resource = redaction(policy, redacted, args) if redacted else "_k.resource"
        rows = f"SELECT _k.type, {resource} AS resource FROM ({kept}) AS _k"
    if policy.hidden_numbers:  # after the redactions: a Patient's own number is gone
        named = holds_number("_n.resource", policy.hidden_numbers, args)
        rows = f"SELECT _n.type, _n.resource FROM ({rows} OFFSET 0) AS _n WHERE NOT {named}"
    return f"({rows}) AS _store"


def hidden_rows(type_: str, policy: ViewPolicy, args: list) -> list[str]:
    """Conditions on ``_h`` (``resource``, ``patient``) of rows the policy leaves out."""
    hidden = []
    for locked_type, url in policy.locks:
        if locked_type == type_:
            lock = arg(args, json.dumps([{"url": url}]))
            hidden.append(f"coalesce(_h.resource -> 'extension' @> {lock}::jsonb, false)")
    if policy.kj_hidden and policy.kj_tag:
        tag = arg(args, json.dumps([{"system": policy.kj_tag}]))
        patients = arg(args, keyed(policy.kj_hidden))
        hidden.append(
            f"(coalesce(_h.resource -> 'meta' -> 'tag' @> {tag}::jsonb, false) "
            f"AND ({patients}::jsonb -> _h.patient) IS NOT NULL)"
        )
    return hidden


def redaction(policy: ViewPolicy, redacted: Mapping[str, frozenset[str]], args: list) -> str:
    """``_k.resource`` without the elements its patient's entry in ``redacted`` names (a
    national id goes from ``identifier``, other identifiers stay), labelled as redacted."""
    elements = arg(args, json.dumps({p: sorted(e) for p, e in redacted.items()}))
    removed = f"({elements}::jsonb -> _k.patient)"
    national = arg(args, sorted(policy.national_ids))
    kept_ids = (
        "(SELECT coalesce(jsonb_agg(_i.i ORDER BY _i.n), '[]'::jsonb) "
        "FROM jsonb_array_elements(_k.resource -> 'identifier') WITH ORDINALITY AS _i(i, n) "
        f"WHERE NOT coalesce(_i.i ->> 'system' = ANY({national}::text[]), false))"
    )
    label = arg(args, json.dumps([dict(policy.redacted_label)]))
    meta = (
        "jsonb_build_object('meta', coalesce(_k.resource -> 'meta', '{}'::jsonb) || "
        "jsonb_build_object('security', "
        f"coalesce(_k.resource -> 'meta' -> 'security', '[]'::jsonb) || {label}::jsonb))"
    )
    return (
        f"(CASE WHEN {removed} IS NULL THEN _k.resource ELSE "
        f"(_k.resource - ARRAY(SELECT jsonb_array_elements_text({removed}))) || "
        f"(CASE WHEN {removed} @> '[\"identifier\"]' "
        "AND _k.resource -> 'identifier' IS NOT NULL "
        f"AND {kept_ids} <> '[]'::jsonb THEN jsonb_build_object('identifier', {kept_ids}) "
        f"ELSE '{{}}'::jsonb END) || {meta} END)"
    )


# A national id (FNR, D-number) in JSON text: a run of exactly 11 digits, as the export
# policy finds it (security.exports.numbers_in).
NUMBER_RUN = "(?<![0-9])[0-9]{11}(?![0-9])"


def holds_number(resource: str, numbers: Collection[str], args: list) -> str:
    """Whether the jsonb ``resource`` holds one of ``numbers`` as a run of 11 digits (in a
    string or a number, anywhere: a reference's identifier, a contained Patient, text)."""
    wanted = arg(args, sorted(numbers))
    return (
        f"EXISTS (SELECT 1 FROM regexp_matches(({resource})::text, '({NUMBER_RUN})', 'g') "
        f"AS _m(m) WHERE _m.m[1] = ANY({wanted}::text[]))"
    )


def patient_of(resource: str) -> str:
    """The patient id a (non-Patient) row refers to first by ``patient``, ``subject`` or
    ``beneficiary`` (``Patient/<id>``), else NULL."""
    branches = " ".join(
        f"WHEN starts_with({resource} -> '{key}' ->> 'reference', 'Patient/') "
        f"THEN substr({resource} -> '{key}' ->> 'reference', 9)"
        for key in ("patient", "subject", "beneficiary")
    )
    return f"(CASE {branches} END)"


def arg(args: list, value: Any) -> str:
    """``value`` as the query's next argument: its placeholder."""
    args.append(value)
    return f"${len(args)}"


def keyed(ids: Collection[str]) -> str:
    """A set of ids as a JSON object (its keys found by ``->`` in log time)."""
    return json.dumps(dict.fromkeys(sorted(ids), True))


register_engine(PostgresEngine())
