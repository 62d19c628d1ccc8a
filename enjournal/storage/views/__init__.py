"""SQL on FHIR v2 view engines: run a ViewDefinition as SQL on DuckDB, Spark or PostgreSQL.

The contract (what every engine keeps, and what bulk export, statistics and the register
feeds call):

    run_view(view, source, engine="duckdb", *, limit=None) -> ViewResult

- ``view``: a ViewDefinition as JSON (a dict), or a plan already made by
  ``enjournal.fhir.viewdefinition.plan``.  A definition the spec forbids raises
  ``enjournal.fhir.errors.Invalid`` before any engine runs; so does a row that breaks the
  view at run time (a column without ``collection: true`` meeting several values, a
  ``where`` that is not boolean).
- ``source``: either an iterable of resource dicts (any types mixed; the view picks its
  ``resource`` type), or a list of file paths (``str``/``Path``): NDJSON files (one resource
  a line, ``.ndjson``/``.json``, optionally ``.gz``) or Parquet files (``.parquet``: a
  ``resource`` column of JSON text, or one column per element as bulk tools write them).
  An engine may accept more (PostgreSQL: its store); each says so in its docstring.
- ``ViewResult``: ``columns`` (the view's column names in spec order) and ``rows`` (tuples
  in that order; booleans, integers, decimals as floats, strings; a ``collection: true``
  column is a list); ``to_dicts()`` and ``to_arrow()`` (a pyarrow Table).  A column's SQL
  type follows its declared ``type`` (boolean; integer, positiveInt, unsignedInt,
  integer64; decimal; anything else is text, dates included); a column without one is
  boolean or integer when its expression plainly is (a comparison, ``exists()``,
  ``%rowIndex``), else text.
- ``limit``: at most this many rows (``$viewdefinition-run``'s ``_limit``).

``ENGINES`` maps a name to an engine object (``name`` and ``run(view: View, source, limit)``).
``duckdb`` (embedded, the default) and ``spark`` (a local SparkSession in tests; the same SQL
runs on a cluster) are here; the PostgreSQL engine (``postgres.py``) registers itself in
``ENGINES`` the same way when this package is imported.  The FHIRPath of a view is compiled
to SQL once (``compile.py``, the shared compiler; ``duckdb.py``, ``spark.py`` and
``postgres.py`` are the dialects), so the database does the work; nothing is evaluated row by
row in Python.

Over the platform's own store (PostgreSQL only; async, on the store's pool)::

    from enjournal.storage.views.postgres import run_store_view, view_batches

    async for rows in view_batches(store, view, since_ms=None, patients=None,
                                   policy=None, type_filters=(),
                                   batch_rows=5000, limit=None):
        ...  # a list of at most batch_rows row tuples (server-side cursor)
    result = await run_store_view(store, view, ...)  # the same, as one ViewResult

It reads the current, not deleted resources of the view's type, selected as bulk export
selects them (``storage.exports``): ``since_ms`` on last-updated (``_since``), ``patients``
(their compartments), ``type_filters`` (parsed ``_typeFilter``), and applies ``policy``
(``postgres.ViewPolicy``: the register export policy as plain values, from
``enjournal.services.registers.privacy.view_policy(...)``) in SQL: the excluded patients,
hidden kjernejournal entries, locked prescriptions and the Patients' redactions.  That is
not all the export policy does (references and contained persons are not scrubbed), so the
services use it only where the policy protects nobody, and otherwise run the view over what
``$export`` would write (docs/registers.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from enjournal.fhir.errors import Invalid
from enjournal.fhir.viewdefinition import View, plan

Source = Iterable[dict] | list[str] | list[Path]


@dataclass
class ViewResult:
    columns: list[str]
    rows: list[tuple] = field(default_factory=list)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def to_arrow(self):
        import pyarrow

        data = {name: [row[i] for row in self.rows] for i, name in enumerate(self.columns)}
        return pyarrow.table(data)


class Engine(Protocol):
    name: str

    def run(self, view: View, source: Any, limit: int | None = None) -> ViewResult: ...


ENGINES: dict[str, Engine] = {}


def register_engine(engine: Engine) -> None:
    ENGINES[engine.name] = engine


def run_view(
    view: dict | View, source: Any, engine: str = "duckdb", *, limit: int | None = None
) -> ViewResult:
    """Run ``view`` over ``source`` on ``engine``; see the module docstring."""
    planned = view if isinstance(view, View) else plan(view)
    if engine not in ENGINES:
        raise Invalid(f"unknown view engine {engine!r}; known: {', '.join(sorted(ENGINES))}")
    if limit is not None and limit < 0:
        raise Invalid("_limit must not be negative")
    return ENGINES[engine].run(planned, source, limit)


def file_paths(source: Any) -> list[str] | None:
    """The file paths when ``source`` is a list of paths, else None (resource dicts)."""
    if isinstance(source, (str, Path)):
        return [str(source)]
    if (
        isinstance(source, (list, tuple))
        and source
        and all(isinstance(s, (str, Path)) for s in source)
    ):
        return [str(s) for s in source]
    return None


def load_engines() -> None:
    for module in ("duckdb", "spark", "postgres"):
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{module}":
                raise


load_engines()
