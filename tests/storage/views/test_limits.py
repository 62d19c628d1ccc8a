"""The bounds on a view's size and nesting (attack findings C-2, B-4): the largest views the
bounds allow still compile and run on DuckDB, one step past them is a 400 before any engine
runs.

Figures (DuckDB 2.0.1, one small Patient, a 2-core machine shared by other work, load ~3;
``plan`` + compile under 0.06 s in every case): the plans of ``AT_THE_LIMITS`` ran in
0.03-0.8 s (the slowest, four repeat paths with 290 columns under them, 0.8 s loaded and
about 0.4 s idle); before the bounds, 160 repeat paths took 5.9 s, forEach nested eight deep
4.7 s in 5 KB of SQL, six deep over 290 columns 21 s.  Timings are never asserted here.
"""

from __future__ import annotations

import pytest

from enjournal.fhir.errors import Invalid
from enjournal.fhir.viewdefinition import MAX_REPEAT_PATHS, MAX_SELECTS, plan
from enjournal.fhir.viewpath import MAX_DEPTH, MAX_NESTING
from enjournal.storage.views import run_view
from enjournal.storage.views.compile import MAX_SQL_NESTING, sql_depths, within_bounds
from enjournal.storage.views.duckdb import DuckDialect
from enjournal.storage.views.spark import SparkDialect

PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "f", "given": ["a", "b"]}]}
WHERE = "given.where($this = 'a' or $this = 'b').exists()"


def view(*selects: dict, resource: str = "Patient") -> dict:
    return {"resourceType": "ViewDefinition", "resource": resource, "select": list(selects)}


def items(levels: int) -> list[dict]:
    """Questionnaire items nested ``levels`` deep."""
    return [{"linkId": str(levels), **({"item": items(levels - 1)} if levels > 1 else {})}]


QUESTIONNAIRE = {"resourceType": "Questionnaire", "id": "q1", "item": items(8)}


def columns(count: int, path: str, prefix: str = "c") -> list[dict]:
    return [{"name": f"{prefix}{i}", "path": path} for i in range(count)]


def for_each_nested(levels: int, innermost: list[dict]) -> dict:
    """forEach over Questionnaire items, ``levels`` selects deep."""
    select = {"column": innermost}
    for level in range(1, levels):
        select = {
            "forEach": "item",
            "column": columns(1, "linkId", f"n{level}_"),
            "select": [select],
        }
    return select


REPEAT = ["name", "given", "extension", "name.where(family = 'f')"][:MAX_REPEAT_PATHS]
DEEP_PATH = ".".join(["name"] * (MAX_DEPTH - 1)) + ".exists()"
NESTED = "(" * MAX_NESTING + "id" + ")" * MAX_NESTING
AT_THE_LIMITS = {
    "repeat paths with many columns": view({"repeat": REPEAT, "column": columns(290, "id")}),
    "forEach nested with columns": view(
        for_each_nested(4, columns(30, "linkId")), resource="Questionnaire"
    ),
    "forEach nested five deep": view(
        for_each_nested(5, columns(1, "id")), resource="Questionnaire"
    ),
    "selects": view(
        *[{"forEach": "name", "column": columns(1, WHERE, f"s{i}_")} for i in range(MAX_SELECTS)]
    ),
    "unionAll branches": view(
        {"unionAll": [{"forEach": "name", "column": columns(3, WHERE)}] * (MAX_SELECTS - 1)}
    ),
    "columns of where paths": view({"column": columns(150, WHERE)}),
    "deep expressions": view({"column": columns(10, DEEP_PATH) + columns(10, NESTED, "x")}),
}


@pytest.mark.parametrize("name", AT_THE_LIMITS)
def test_the_largest_views_the_bounds_allow_run_on_duckdb(name):
    result = run_view(AT_THE_LIMITS[name], [PATIENT, QUESTIONNAIRE], "duckdb")
    assert result.rows, name  # every plan gives at least one row for this patient


PAST_THE_LIMITS = {
    "forEach nested six deep": (
        view(for_each_nested(6, columns(1, "id")), resource="Questionnaire"),
        "too costly",
    ),
    "forEach nested seven deep": (
        view(for_each_nested(7, columns(1, "id")), resource="Questionnaire"),
        "iterations",
    ),
    "forEach nested five deep, 30 columns": (
        view(for_each_nested(5, columns(30, "linkId")), resource="Questionnaire"),
        "too costly",
    ),
    "repeat inside two forEach": (
        view(
            {
                "forEach": "name",
                "select": [
                    {"forEach": "given", "select": [{"repeat": REPEAT, "column": columns(1, "id")}]}
                ],
            }
        ),
        "too costly",
    ),
    "300 where columns": (view({"column": columns(300, WHERE)}), "characters of SQL"),
}


@pytest.mark.parametrize("name", PAST_THE_LIMITS)
def test_a_view_past_the_compilers_bounds_is_refused_before_it_runs(name):
    definition, words = PAST_THE_LIMITS[name]
    plan(definition)  # the front end lets it through; the SQL it makes is what is too much
    with pytest.raises(Invalid) as caught:
        run_view(definition, [PATIENT], "duckdb")
    assert words in caught.value.message, caught.value.message


def test_the_attackers_repeat_is_refused_by_the_front_end():  # C-2
    paths = ["name", "given", "extension", "contact", "link"] * 400
    with pytest.raises(Invalid):
        run_view(view({"repeat": paths, "column": columns(1, "id")}), [PATIENT], "duckdb")


@pytest.mark.parametrize(
    "path",
    [".".join(["name"] * 400), "(" * 1000 + "id" + ")" * 1000, "name" + ".where(true)" * 200],
)
def test_a_deep_fhirpath_is_invalid_not_a_recursion_error(path):  # B-4
    column = {"name": "x", "path": path, "collection": True}
    with pytest.raises(Invalid):
        run_view(view({"column": [column]}), [PATIENT], "duckdb")


def test_sql_depths_counts_brackets_and_bound_variables():
    sql = "list_transform([1], lambda _v1: list_filter(f(_v1), lambda _v2: _v2 = _v1)) + g(_v3)"
    assert sql_depths(sql)[:2] == (3, 2)
    assert sql_depths("a(b(c))")[:2] == (2, 0)


def test_sql_depths_skips_quoted_text_as_the_dialect_quotes_it():
    text = "x)) _v9 ((('\\"
    duck = f"f(_v1, {DuckDialect().quote(text)})"
    spark = f"f(_v1, {SparkDialect().quote(text)})"
    assert sql_depths(duck)[:2] == (1, 1)
    assert sql_depths(spark, backslash_escapes=True)[:2] == (1, 1)


def test_sql_nested_too_deep_is_refused():
    within_bounds("(" * MAX_SQL_NESTING + ")" * MAX_SQL_NESTING)
    with pytest.raises(Invalid):
        within_bounds("(" * (MAX_SQL_NESTING + 1) + ")" * (MAX_SQL_NESTING + 1))


@pytest.mark.parametrize(
    "path, expected",
    [
        ("2147483647 * 2147483647 * 2147483647", 9.903520300447984e27),
        ("multipleBirthInteger + multipleBirthInteger", 1.8e19),
        ("multipleBirthInteger * -3 div 1", None),
        ("multipleBirthInteger * 3 mod 7", None),
        ("7 div 2", 3),
        ("-7 mod 2", -1),
    ],
)
def test_whole_numbers_past_bigint_are_no_engine_error(path, expected):
    """A result past a SQL BIGINT is a double (or empty for div and mod), never the
    engine's overflow error (a 500)."""
    big = {"resourceType": "Patient", "id": "big", "multipleBirthInteger": 9 * 10**18 - 1}
    column = {"name": "x", "path": path, "type": "decimal"}
    [(value,)] = run_view(view({"column": [column]}), [big], "duckdb").rows
    assert value == (None if expected is None else pytest.approx(expected))
