"""The DuckDB engine (embedded, the default): views over resource dicts, NDJSON or Parquet.

A collection is ``JSON[]``; an element's field is read with ``json_extract`` (an array
field spreads with ``$.name[*]``).  Each run opens an in-memory DuckDB, exposes the source
as a relation with one JSON column, and runs the one query ``compile.py`` makes.  Resource
dicts go in as an Arrow table of JSON texts; files are read by DuckDB itself
(``read_json_objects`` for NDJSON, ``read_parquet`` for Parquet), so a view over an export
never passes through Python.

Memory: DuckDB parses a JSON document anew in every call on it, into a buffer per call
site the size of a whole vector of documents, so the view's top-level elements are taken
out of each resource by one ``json_extract`` with a list of paths and the expressions work
on those small values (``DuckDialect.query``); each run's threads are bounded, and its
buffers when configured (``settings``).  Figures: docs/performance.md, "SQL-on-FHIR views
(issue 15)".
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Invalid, Issue
from enjournal.fhir.viewdefinition import Column, View, column_names
from enjournal.storage.base import unavailable
from enjournal.storage.views import ViewResult, file_paths, register_engine
from enjournal.storage.views.compile import ERROR_MARK, INTEGER_TYPES, Dialect, compile_view

BOOLEAN, INTEGER, DECIMAL = "BOOLEAN", "BIGINT", "DOUBLE"
RESOURCE = "_resource"  # the compiler's name of the resource a view reads
MAX_RESOURCE_BYTES = 256 * 1024 * 1024  # one NDJSON line (DuckDB's default is 16 MB)
THREADS = 4  # a run's threads at most (national volumes go to Spark)


def sql_type(column: Column) -> str | None:
    if column.type == "boolean":
        return BOOLEAN
    if column.type in INTEGER_TYPES:
        return INTEGER
    if column.type == "decimal":
        return DECIMAL
    return None


class DuckDialect(Dialect):
    """One per compiled view: it remembers the resource's top-level elements the view
    reads (``fields``), so each resource is parsed once for all of them (``query``)."""

    name = "duckdb"
    fields_once = True  # False: parse the whole resource at each call (bench/views_memory.py)

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}  # element name -> the column holding its JSON

    def field(self, name: str) -> str:
        return self.fields.setdefault(name, f"_f{len(self.fields)}")

    def lam(self, params: list[str], body: str) -> str:
        return f"lambda {', '.join(params)}: {body}"

    def transform(self, items: str, var: str, body: str) -> str:
        return f"list_transform({items}, {self.lam([var], body)})"

    def transform_indexed(self, items: str, var: str, index: str, body: str) -> str:
        return f"list_transform({items}, {self.lam([var, index], body)})"

    def position(self, index: str) -> str:
        return f"({index} - 1)"

    def filter(self, items: str, var: str, condition: str) -> str:
        return f"list_filter({items}, {self.lam([var], condition)})"

    def concat(self, *lists: str) -> str:
        if len(lists) == 1:
            return lists[0]
        return f"list_concat({', '.join(lists)})"

    def size(self, items: str) -> str:
        return f"len({items})"

    def slice(self, items: str, start: str, length: str) -> str:
        return f"list_slice({items}, {start}, {start} + {length} - 1)"

    def item(self, items: str, index: int) -> str:
        return f"({items})[{index + 1}]"

    def array(self, *items: str) -> str:
        return f"[{', '.join(items)}]"

    def empty(self) -> str:
        return "CAST([] AS JSON[])"

    def null(self) -> str:
        return "CAST(NULL AS JSON)"

    def child(self, value: str, name: str) -> str:
        if value == RESOURCE and self.fields_once:  # a top-level element: its own column
            column = self.field(name)
            return (
                f"list_concat(json_extract({column}, '$[*]'), "
                f"CASE WHEN json_type({column}) NOT IN ('ARRAY', 'NULL') THEN [{column}] "
                f"ELSE {self.empty()} END)"
            )
        path = f"'$.\"{name}\"'"
        kind = f"json_type({value}, {path})"
        return (
            f"list_concat(json_extract({value}, '$.\"{name}\"[*]'), "
            f"CASE WHEN {kind} NOT IN ('ARRAY', 'NULL') THEN [json_extract({value}, {path})] "
            f"ELSE {self.empty()} END)"
        )

    def json(self, text: str) -> str:
        return f"CAST({self.quote(text)} AS JSON)"

    def is_number(self, value: str) -> str:
        return f"(json_type({value}) IN ('BIGINT', 'UBIGINT', 'DOUBLE'))"

    def is_integer(self, value: str) -> str:
        return f"(json_type({value}) IN ('BIGINT', 'UBIGINT'))"

    def is_string(self, value: str) -> str:
        return f"(json_type({value}) = 'VARCHAR')"

    def is_boolean(self, value: str) -> str:
        return f"(json_type({value}) = 'BOOLEAN')"

    def is_object(self, value: str) -> str:
        return f"(json_type({value}) = 'OBJECT')"

    def as_double(self, value: str) -> str:
        return f"TRY_CAST({value} AS DOUBLE)"

    def as_bigint(self, value: str) -> str:
        return f"TRY_CAST({value} AS BIGINT)"

    def as_string(self, value: str) -> str:
        return f"json_extract_string({value}, '$')"

    def as_boolean(self, value: str) -> str:
        return f"TRY_CAST({value} AS BOOLEAN)"

    def from_sql(self, scalar: str) -> str:
        return f"to_json({scalar})"

    def to_json_array(self, items: str) -> str:
        return f"to_json({items})"

    def error(self, message: str) -> str:
        return f"error({self.quote(f'{ERROR_MARK} {message}')})"

    def join(self, strings: str, separator: str) -> str:
        return f"array_to_string({strings}, {separator})"

    def output(self, value: str, column: Column) -> str:
        cast = sql_type(column)
        if column.collection:
            var = "_item"
            each = f"TRY_CAST({var} AS {cast})" if cast else self.as_string(var)
            return f"list_transform(CAST({value} AS JSON[]), lambda {var}: {each})"
        return f"TRY_CAST({value} AS {cast})" if cast else self.as_string(value)

    def query(self, rows: str, source: str, resource: str, where: str, outputs: list[str]) -> str:
        """The view's rows.  The top-level elements it reads are taken out of each
        resource by one ``json_extract`` with a list of paths (one parse), and the view's
        expressions parse only those small values: DuckDB parses a document anew in each
        call on it, into a buffer per call site as large as a whole vector (2,048
        resources), so a view calling it on the whole resource at fifty places held some
        700 MB on a 2-core machine (docs/performance.md, "SQL-on-FHIR views")."""
        names = ", ".join(f"{out} AS c{i}" for i, out in enumerate(outputs))
        paths = [self.quote("$.resourceType")]
        paths += [self.quote(f'$."{name}"') for name in self.fields]
        columns = "".join(
            f", _top[{n}] AS {column}" for n, column in enumerate(self.fields.values(), start=2)
        )
        return (
            f"SELECT {names} FROM (SELECT UNNEST({rows}) AS _row FROM "
            f"(SELECT resource AS {RESOURCE}{columns} FROM "
            f"(SELECT resource, json_extract(resource, [{', '.join(paths)}]) AS _top "
            f"FROM {source}) WHERE json_extract_string(_top[1], '$') = {self.quote(resource)}) "
            f"WHERE {where})"
        )


DIALECT = DuckDialect()


class DuckDBEngine:
    """Views on an in-memory DuckDB; ``source``: resource dicts, or NDJSON/Parquet paths."""

    name = "duckdb"

    def run(self, view: View, source: Any, limit: int | None = None) -> ViewResult:
        import duckdb  # here, not at import: every worker imports the engines (~50 MB)

        sql = compile_view(DuckDialect(), view, "_source")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with (
            tempfile.TemporaryDirectory(prefix="view-duckdb-") as spill,
            duckdb.connect(config=settings(spill)) as connection,
        ):
            expose(connection, source)
            try:
                rows = connection.execute(sql).fetchall()
            except duckdb.Error as error:
                raise view_error(error) from None
        return ViewResult(column_names(view), rows)


def settings(spill: str) -> dict[str, str | bool | int | float | list[str]]:
    """Each run's DuckDB: at most ``THREADS`` threads (or ``ENJOURNAL_VIEWS_DUCKDB_THREADS``:
    each holds its own working buffers), spilling what it can to a folder of its own (two
    runs never share DuckDB's temporary files), and, when ``ENJOURNAL_VIEWS_DUCKDB_MEMORY``
    says so, a cap on its buffers (past it a run fails: 503, too-costly).  No cap by
    default: the NDJSON reader reserves twice ``MAX_RESOURCE_BYTES`` per thread and file
    (address space, touched only as far as the lines fill it, but DuckDB counts it), so a
    cap low enough to matter would refuse a run over a few files."""
    threads = int(os.environ.get("ENJOURNAL_VIEWS_DUCKDB_THREADS") or 0) or min(
        os.cpu_count() or 1, THREADS
    )
    given: dict[str, str | bool | int | float | list[str]] = {
        "threads": threads,
        "temp_directory": spill,
    }
    if limit := os.environ.get("ENJOURNAL_VIEWS_DUCKDB_MEMORY"):
        given["memory_limit"] = limit
    return given


def expose(connection: Any, source: Any) -> None:
    """Make ``source`` the relation ``_source`` with one JSON column ``resource``."""
    import pyarrow

    paths = file_paths(source)
    if paths is None:
        texts = pyarrow.table({"resource": [jsonio.dumps(r).decode() for r in source]})
        connection.register("_texts", texts)
        connection.execute(
            "CREATE TEMP VIEW _source AS SELECT CAST(resource AS JSON) AS resource FROM _texts"
        )
        return
    parquet = [p for p in paths if p.endswith(".parquet")]
    if parquet and len(parquet) != len(paths):
        raise Invalid("a view's source files are either all NDJSON or all Parquet")
    connection.execute(parquet_view(paths) if parquet else ndjson_view(paths))


def ndjson_view(paths: list[str]) -> str:
    listed = ", ".join(DIALECT.quote(p) for p in paths)
    return (
        "CREATE TEMP VIEW _source AS SELECT json AS resource FROM "
        f"read_json_objects([{listed}], format = 'newline_delimited', "
        f"maximum_object_size = {MAX_RESOURCE_BYTES})"
    )


def parquet_view(paths: list[str]) -> str:
    import duckdb

    listed = ", ".join(DIALECT.quote(p) for p in paths)
    columns = duckdb.execute(f"DESCRIBE SELECT * FROM read_parquet([{listed}])").fetchall()
    resource = "CAST(resource AS JSON)"
    if not any(name == "resource" for name, *_ in columns):
        resource = "to_json(t)"  # one column per element: the row is the resource
    return (
        f"CREATE TEMP VIEW _source AS SELECT {resource} AS resource FROM read_parquet([{listed}]) t"
    )


def view_error(error: Exception) -> Exception:
    """A row that breaks the view -> Invalid; anything else is the engine's own failure."""
    import duckdb

    message = str(error)
    if ERROR_MARK in message:
        return Invalid("view: " + message.split(ERROR_MARK, 1)[1].strip())
    if isinstance(error, duckdb.OutOfMemoryException):
        return out_of_memory()
    # Failures a view's expressions meet in the data (a number past BIGINT, a string that is
    # no date): the caller's view and data, so a 400, never the engine's 500.  The engine's
    # text may quote the data: say what went wrong, not with what.
    data_errors = (
        duckdb.ConversionException,
        duckdb.OutOfRangeException,
        duckdb.InvalidInputException,
    )
    if isinstance(error, data_errors):
        return Invalid(
            "view: a value in the data is out of range or cannot be converted as the view asks"
        )
    return error


def out_of_memory() -> Exception:
    """A run past its memory limit (``settings``): 503, too-costly, as a query past the
    store's time limit is."""
    message = "the view needs more memory than a run may take here; narrow its data"
    busy = unavailable(message, 30)
    busy.issues = [Issue("error", "too-costly", message)]
    return busy


register_engine(DuckDBEngine())
