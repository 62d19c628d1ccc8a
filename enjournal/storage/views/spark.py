"""The Apache Spark engine: the same compiled view as Spark SQL, local in tests, a cluster
at national scale.

A collection is ``array<variant>`` (Spark 4's VARIANT: parsed JSON that keeps its types, so
"1" and 1 stay apart): a field is read with ``try_variant_get(v, '$.name', ...)``, a type
told by ``schema_of_variant``, and the list work is Spark's higher-order functions
(``transform``, ``filter``, ``flatten``), so the whole view is one
projection plus one ``explode`` that Spark runs in parallel over the partitions.

The session: the active SparkSession when there is one (a cluster job builds its own with
its master and resources, then calls ``run_view(..., engine="spark")``); otherwise one
local session per process, started on first use (``local[2]``, two shuffle partitions, no
UI, quiet logs) and stopped by ``stop()``.  ``source``: resource dicts, or NDJSON/Parquet
paths, which Spark reads itself (``spark.read.text`` / ``spark.read.parquet``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Invalid
from enjournal.fhir.viewdefinition import Column, View, column_names
from enjournal.storage.views import ViewResult, file_paths, register_engine
from enjournal.storage.views.compile import ERROR_MARK, INTEGER_TYPES, Dialect, compile_view

NUMBER_TYPES = "('BIGINT', 'INT', 'SMALLINT', 'TINYINT', 'DOUBLE', 'FLOAT')"
INTEGER_SCHEMAS = "('BIGINT', 'INT', 'SMALLINT', 'TINYINT')"
LOCAL_CONFIG = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.driver.memory": "1g",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}


def spark_type(column: Column) -> str:
    if column.type == "boolean":
        return "boolean"
    if column.type in INTEGER_TYPES:
        return "bigint"
    if column.type == "decimal":
        return "double"
    return "string"


class SparkDialect(Dialect):
    name = "spark"

    def quote(self, text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def lam(self, params: list[str], body: str) -> str:
        names = params[0] if len(params) == 1 else f"({', '.join(params)})"
        return f"{names} -> {body}"

    def transform(self, items: str, var: str, body: str) -> str:
        return f"transform({items}, {self.lam([var], body)})"

    def transform_indexed(self, items: str, var: str, index: str, body: str) -> str:
        return f"transform({items}, {self.lam([var, index], body)})"

    def position(self, index: str) -> str:
        return index

    def filter(self, items: str, var: str, condition: str) -> str:
        return f"filter({items}, {self.lam([var], condition)})"

    def concat(self, *lists: str) -> str:
        return lists[0] if len(lists) == 1 else f"concat({', '.join(lists)})"

    def size(self, items: str) -> str:
        return f"size({items})"

    def slice(self, items: str, start: str, length: str) -> str:
        return f"slice({items}, {start}, {length})"

    def item(self, items: str, index: int) -> str:
        return f"try_element_at({items}, {index + 1})"

    def array(self, *items: str) -> str:
        return f"array({', '.join(items)})"

    def empty(self) -> str:
        return "CAST(array() AS array<variant>)"

    def null(self) -> str:
        return "CAST(NULL AS variant)"

    def child(self, value: str, name: str) -> str:
        one = f"try_variant_get({value}, '$.{name}')"
        return (
            f"coalesce(try_variant_get({value}, '$.{name}', 'array<variant>'), "
            f"CASE WHEN {one} IS NULL OR is_variant_null({one}) THEN {self.empty()} "
            f"ELSE array({one}) END)"
        )

    def json(self, text: str) -> str:
        return f"parse_json({self.quote(text)})"

    def is_number(self, value: str) -> str:
        schema = f"schema_of_variant({value})"
        return f"({schema} IN {NUMBER_TYPES} OR {schema} LIKE 'DECIMAL%')"

    def is_integer(self, value: str) -> str:
        schema = f"schema_of_variant({value})"
        return f"({schema} IN {INTEGER_SCHEMAS} OR {schema} LIKE 'DECIMAL(%,0)')"

    def is_string(self, value: str) -> str:
        return f"(schema_of_variant({value}) = 'STRING')"

    def is_boolean(self, value: str) -> str:
        return f"(schema_of_variant({value}) = 'BOOLEAN')"

    def is_object(self, value: str) -> str:
        return f"(schema_of_variant({value}) LIKE 'OBJECT%')"

    def as_double(self, value: str) -> str:
        return f"try_variant_get({value}, '$', 'double')"

    def as_bigint(self, value: str) -> str:
        return f"try_variant_get({value}, '$', 'bigint')"

    def as_string(self, value: str) -> str:
        return f"try_variant_get({value}, '$', 'string')"

    def as_boolean(self, value: str) -> str:
        return f"try_variant_get({value}, '$', 'boolean')"

    def from_sql(self, scalar: str) -> str:
        return f"CAST({scalar} AS variant)"

    def to_json_array(self, items: str) -> str:
        return f"parse_json(to_json({items}))"

    def error(self, message: str) -> str:
        return f"raise_error({self.quote(f'{ERROR_MARK} {message}')})"

    def join(self, strings: str, separator: str) -> str:
        return f"array_join({strings}, {separator})"

    def text(self, value: str) -> str:
        return f"CAST({value} AS STRING)"

    def truncate(self, number: str) -> str:
        return f"CAST({number} AS BIGINT)"

    def output(self, value: str, column: Column) -> str:
        kind = spark_type(column)
        if column.collection:
            return f"coalesce(try_variant_get({value}, '$', 'array<{kind}>'), array())"
        return f"try_variant_get({value}, '$', '{kind}')"

    def query(self, rows: str, source: str, resource: str, where: str, outputs: list[str]) -> str:
        names = ", ".join(f"{out} AS c{i}" for i, out in enumerate(outputs))
        resource_type = "try_variant_get(resource, '$.resourceType', 'string')"
        return (
            f"SELECT {names} FROM (SELECT explode({rows}) AS _row FROM "
            f"(SELECT resource AS _resource FROM {source} "
            f"WHERE {resource_type} = {self.quote(resource)}) "
            f"WHERE {where})"
        )


DIALECT = SparkDialect()


class SparkEngine:
    """Views as Spark SQL; ``source``: resource dicts, or NDJSON/Parquet paths."""

    name = "spark"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local: Any = None

    def session(self) -> Any:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        with self.lock:
            if self.local is None:
                # py4j logs each connection it closes at INFO, the last ones from __del__
                # after logging has shut down ("--- Logging error ---" at exit).
                logging.getLogger("py4j").setLevel(logging.WARNING)
                builder = SparkSession.builder.master("local[2]").appName("enjournal-views")
                for key, value in LOCAL_CONFIG.items():
                    builder = builder.config(key, value)
                self.local = builder.getOrCreate()
                self.local.sparkContext.setLogLevel("OFF")
            return self.local

    def stop(self) -> None:
        with self.lock:
            if self.local is not None:
                self.local.stop()
                self.local = None

    def run(self, view: View, source: Any, limit: int | None = None) -> ViewResult:
        from pyspark.errors import PySparkException

        spark = self.session()
        name = f"_source_{uuid.uuid4().hex}"
        frame(spark, source).createOrReplaceTempView(name)
        sql = compile_view(DIALECT, view, name)
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        try:
            rows = [tuple(row) for row in spark.sql(sql).collect()]
        except PySparkException as error:
            raise view_error(error) from None
        finally:
            spark.catalog.dropTempView(name)
        return ViewResult(column_names(view), rows)


def frame(spark: Any, source: Any) -> Any:
    """A DataFrame of one VARIANT column ``resource``."""
    paths = file_paths(source)
    if paths is None:
        texts = [(jsonio.dumps(r).decode(),) for r in source]
        return spark.createDataFrame(texts, "text string").selectExpr(
            "parse_json(text) AS resource"
        )
    parquet = [p for p in paths if p.endswith(".parquet")]
    if not parquet:
        lines = spark.read.text(paths).where("trim(value) <> ''")
        return lines.selectExpr("parse_json(value) AS resource")
    if len(parquet) != len(paths):
        raise Invalid("a view's source files are either all NDJSON or all Parquet")
    table = spark.read.parquet(*paths)
    if "resource" in table.columns:
        return table.selectExpr("parse_json(CAST(resource AS STRING)) AS resource")
    return table.selectExpr("parse_json(to_json(struct(*))) AS resource")


def view_error(error: Exception) -> Exception:
    message = str(error)
    if ERROR_MARK in message:
        reason = message.split(ERROR_MARK, 1)[1].split(" SQLSTATE", 1)[0]
        return Invalid("view: " + reason.strip())
    return error


register_engine(SparkEngine())
