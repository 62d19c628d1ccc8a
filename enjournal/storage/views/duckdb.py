"""The DuckDB engine (embedded, the default): views over resource dicts, NDJSON or Parquet.

A collection is ``JSON[]``; an element's field is read with ``json_extract`` (an array
field spreads with ``$.name[*]``).  Each run opens an in-memory DuckDB, exposes the source
as a relation with one JSON column, and runs the one query ``compile.py`` makes.  Resource
dicts go in as an Arrow table of JSON texts; files are read by DuckDB itself
(``read_json_objects`` for NDJSON, ``read_parquet`` for Parquet), so a view over an export
never passes through Python.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pyarrow

from enjournal.fhir.errors import Invalid
from enjournal.fhir.viewdefinition import Column, View, column_names
from enjournal.storage.views import ViewResult, file_paths, register_engine
from enjournal.storage.views.compile import ERROR_MARK, INTEGER_TYPES, Dialect, compile_view

BOOLEAN, INTEGER, DECIMAL = "BOOLEAN", "BIGINT", "DOUBLE"
MAX_RESOURCE_BYTES = 256 * 1024 * 1024  # one NDJSON line (DuckDB's default is 16 MB)


def sql_type(column: Column) -> str | None:
    if column.type == "boolean":
        return BOOLEAN
    if column.type in INTEGER_TYPES:
        return INTEGER
    if column.type == "decimal":
        return DECIMAL
    return None


class DuckDialect(Dialect):
    name = "duckdb"

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
        names = ", ".join(f"{out} AS c{i}" for i, out in enumerate(outputs))
        return (
            f"SELECT {names} FROM (SELECT UNNEST({rows}) AS _row FROM "
            f"(SELECT resource AS _resource FROM {source} "
            f"WHERE json_extract_string(resource, '$.resourceType') = {self.quote(resource)}) "
            f"WHERE {where})"
        )


DIALECT = DuckDialect()


class DuckDBEngine:
    """Views on an in-memory DuckDB; ``source``: resource dicts, or NDJSON/Parquet paths."""

    name = "duckdb"

    def run(self, view: View, source: Any, limit: int | None = None) -> ViewResult:
        sql = compile_view(DIALECT, view, "_source")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with duckdb.connect() as connection:
            expose(connection, source)
            try:
                rows = connection.execute(sql).fetchall()
            except duckdb.Error as error:
                raise view_error(error) from None
        return ViewResult(column_names(view), rows)


def expose(connection: Any, source: Any) -> None:
    """Make ``source`` the relation ``_source`` with one JSON column ``resource``."""
    paths = file_paths(source)
    if paths is None:
        texts = pyarrow.table({"resource": [json.dumps(r) for r in source]})
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
    message = str(error)
    if ERROR_MARK in message:
        return Invalid("view: " + message.split(ERROR_MARK, 1)[1].strip())
    return error


register_engine(DuckDBEngine())
