"""The SQL on FHIR v2 front-end: FHIRPath parsing and ViewDefinition checking (no engine)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from enjournal.fhir import viewpath
from enjournal.fhir.errors import Invalid
from enjournal.fhir.viewdefinition import Select, column_names, plan
from enjournal.fhir.viewpath import Binary, Call, Index, Literal, Member, Variable

SUITE = Path(__file__).parents[2] / "../shared/data/sql-on-fhir-v2/tests"
# expectError cases that only the data can reveal (an engine raises them while running)
RUNTIME_ERRORS = {"fail when 'collection' is not true", "where with path resolving to not boolean"}


def suite_cases() -> list:
    return list(_suite_cases())


def _suite_cases():
    for path in sorted(SUITE.resolve().glob("*.json")):
        for case in json.loads(path.read_text())["tests"]:
            yield pytest.param(case, id=f"{path.stem}:{case['title']}")


def test_the_suite_is_there():
    assert len(list(suite_cases())) > 100


@pytest.mark.parametrize("case", suite_cases())
def test_suite_views_plan_or_fail_as_the_suite_says(case):
    if case.get("expectError") and case["title"] not in RUNTIME_ERRORS:
        with pytest.raises(Invalid):
            plan(case["view"])
        return
    view = plan(case["view"])
    if case.get("expect"):
        assert set(column_names(view)) == set(case["expect"][0])


def test_paths_parse_into_the_tree():
    node = viewpath.parse("name.where(use = 'official').family[0]")
    assert node == Index(
        Member(
            Call(
                Member(None, "name"),
                "where",
                (Binary("=", Member(None, "use"), Literal("official", "string")),),
            ),
            "family",
        ),
        Literal(0, "integer"),
    )


def test_precedence_and_literals():
    node = viewpath.parse("a + 2 * 3.5 > 4 and b or true")
    assert isinstance(node, Binary) and node.op == "or"
    assert node.left == Binary(
        "and",
        Binary(
            ">",
            Binary(
                "+",
                Member(None, "a"),
                Binary("*", Literal(2, "integer"), Literal(Decimal("3.5"), "decimal")),
            ),
            Literal(4, "integer"),
        ),
        Member(None, "b"),
    )
    assert viewpath.parse("@2020-01-02") == Literal("2020-01-02", "date")
    assert viewpath.parse("'it\\'s'") == Literal("it's", "string")
    assert viewpath.parse("%rowIndex") == Variable("%rowIndex")
    assert viewpath.parse("`given`") == Member(None, "given")


@pytest.mark.parametrize("text", ["@@", "name.", "name.where(", "a ==", "", "(a", "name[1"])
def test_syntax_errors_are_invalid(text):
    with pytest.raises(Invalid):
        viewpath.parse(text)


def view(**select) -> dict:
    return {"resource": "Patient", "select": [select]}


def test_constants_are_substituted():
    planned = plan(
        {
            "resource": "Patient",
            "constant": [
                {"name": "use", "valueCode": "official"},
                {"name": "n", "valueInteger": 1},
            ],
            "select": [{"column": [{"name": "f", "path": "name[%n].where(use = %use).family"}]}],
        }
    )
    path = planned.select.select[0].columns[0].path
    assert Literal("official", "string") in list(viewpath.walk(path))
    assert Literal(1, "integer") in list(viewpath.walk(path))


@pytest.mark.parametrize(
    "definition, message",
    [
        (view(column=[{"name": "1st", "path": "id"}]), "not a valid column name"),
        (view(column=[{"name": "a", "path": "id"}, {"name": "a", "path": "gender"}]), "used twice"),
        (view(column=[{"name": "a", "path": "id.bogus()"}]), r"bogus\(\) is not supported"),
        (view(column=[{"name": "a"}]), "FHIRPath expression"),
        (view(forEach="name", forEachOrNull="name"), "only one of"),
        (view(colum=[]), "unknown element"),
        (
            view(
                unionAll=[
                    {"column": [{"name": "a", "path": "id"}]},
                    {"column": [{"name": "b", "path": "id"}]},
                ]
            ),
            "differ",
        ),
        ({"resource": "patient", "select": [{}]}, "resource type"),
        ({"resource": "Patient", "select": []}, "at least one select"),
        ({"resource": "Patient", "select": [{}], "where": [{"path": "'x'"}]}, "not a boolean"),
        (
            {"resource": "Patient", "select": [{}], "constant": [{"name": "c", "valueString": 1}]},
            "not a string",
        ),
    ],
)
def test_bad_definitions_say_what_is_wrong(definition, message):
    with pytest.raises(Invalid, match=message):
        plan(definition)


def test_column_names_follow_the_spec_order():
    planned = plan(
        {
            "resource": "Patient",
            "select": [
                {
                    "column": [{"name": "a", "path": "id"}],
                    "unionAll": [{"column": [{"name": "e", "path": "id"}]}],
                    "select": [{"forEach": "name", "column": [{"name": "c", "path": "family"}]}],
                },
                {"column": [{"name": "g", "path": "id"}]},
            ],
        }
    )
    assert column_names(planned) == ["a", "c", "e", "g"]
    assert isinstance(planned.select, Select) and planned.select.select[0].select[
        0
    ].for_each == Member(None, "name")


def test_types_are_declared_or_plain_from_the_expression():
    planned = plan(
        view(
            column=[
                {"name": "a", "path": "id", "type": "id"},
                {"name": "b", "path": "name.exists()"},
                {"name": "c", "path": "%rowIndex"},
                {"name": "d", "path": "id"},
            ]
        )
    )
    assert [c.type for c in planned.select.select[0].columns] == ["id", "boolean", "integer", None]
