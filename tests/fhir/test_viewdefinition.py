"""The SQL on FHIR v2 front-end: FHIRPath parsing and ViewDefinition checking (no engine)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from enjournal.fhir import viewpath
from enjournal.fhir.errors import Invalid
from enjournal.fhir.viewdefinition import MAX_LIMIT, Select, column_names, parse_limit, plan
from enjournal.fhir.viewpath import Binary, Call, Index, Literal, Member, Variable

SUITE = Path(__file__).parents[1] / "data/sql-on-fhir-v2/tests"  # HL7's suite (MIT), as published
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


# ---- bounds (attack findings C-2, B-4, B-3 and their siblings): each a 400, never a 500


def one_column(path: str, **more) -> dict:
    return view_with({"column": [{"name": "c", "path": path, **more}]})


def view_with(*selects: dict, **more) -> dict:
    return {"resourceType": "ViewDefinition", "resource": "Patient", "select": list(selects),
            **more}  # fmt: skip


def refused(definition: dict, words: str) -> None:
    with pytest.raises(Invalid) as caught:
        plan(definition)
    assert words in caught.value.message, caught.value.message


@pytest.mark.parametrize(
    "path, words",
    [
        (".".join(["name"] * 60), "levels deep"),  # B-4: a long path
        (".".join(["name"] * 400), "nodes"),
        ("(" * 1000 + "id" + ")" * 1000, "nested more than"),  # B-4: deep parentheses
        ("name" + ".where(true)" * 45, "levels deep"),  # a long chain of calls
        ("a.where(" * 40 + "b" + ")" * 40, "nested more than"),
        ("-" * 100 + "1", "nested more than"),
        ("name" + "[0]" * 50, "levels deep"),
        (" + ".join(["1"] * 100), "levels deep"),
        ("id = " + "'x' + " * 1000 + "'x'", "characters"),
        (" or ".join(["(" + " or ".join(["id.exists()"] * 15) + ")"] * 15), "nodes"),
    ],
    ids=[
        "steps",
        "many-steps",
        "parentheses",
        "calls",
        "arguments",
        "signs",
        "indexes",
        "operators",
        "length",
        "nodes",
    ],
)
def test_a_deep_or_long_expression_is_refused_before_recursion_can_blow(path, words):
    refused(one_column(path, collection=True), words)


def test_expressions_at_the_bounds_plan():
    steps = ".".join(["name"] * viewpath.MAX_DEPTH)
    parentheses = "(" * viewpath.MAX_NESTING + "id" + ")" * viewpath.MAX_NESTING
    assert viewpath.size(viewpath.parse(steps)) == (viewpath.MAX_DEPTH, viewpath.MAX_DEPTH)
    assert viewpath.parse(parentheses) == Member(None, "id")
    with pytest.raises(Invalid):
        viewpath.parse(".".join(["name"] * (viewpath.MAX_DEPTH + 1)))
    with pytest.raises(Invalid):
        viewpath.parse("(" + parentheses + ")")


@pytest.mark.parametrize(
    "path",
    [
        "name[99999999999999999999]",
        "name[2147483648]",
        "1" * 39,
        "1." + "0" * 38,
        "'\\uZZZZ'",
        "'\\u12G4'",
    ],
)
def test_numbers_out_of_range_and_bad_escapes_are_invalid(path):
    with pytest.raises(Invalid):
        plan(one_column(path))


def test_numbers_in_range_and_a_nul_character_plan():
    assert plan(one_column("name[2147483647]", collection=True))
    assert plan(one_column("-2147483647 + 1." + "0" * 36))
    column = plan(one_column("'a\\u0000b'")).select.select[0].columns[0]
    assert column.path == Literal("a\x00b", "string")


def test_too_many_repeat_paths_is_refused():  # C-2
    paths = ["name", "given", "extension", "contact", "link"] * 400
    refused(view_with({"repeat": paths, "column": [{"name": "x", "path": "id"}]}), "paths; at most")
    # and over the whole view, in separate selects
    split = [{"repeat": ["item", "answer.item"], "column": [{"name": f"x{i}", "path": "id"}]}
             for i in range(3)]  # fmt: skip
    refused(view_with(*split), "repeat paths; at most")
    assert plan(view_with(*split[:2]))


@pytest.mark.parametrize(
    "definition, words",
    [
        (view_with({"column": [{"name": f"c{i}", "path": "id"} for i in range(301)]}), "columns"),
        (view_with(*[{"column": [{"name": f"c{i}", "path": "id"}]} for i in range(51)]), "selects"),
        (view_with({"unionAll": [{"column": [{"name": "c", "path": "id"}]}] * 51}), "selects"),
        (
            view_with(
                *[
                    {"column": [{"name": f"c{i}_{j}", "path": "id"} for j in range(10)]}
                    for i in range(31)
                ]
            ),
            "columns",
        ),
        (
            view_with(
                {"column": [{"name": "c", "path": "id"}]}, where=[{"path": "id.exists()"}] * 51
            ),
            "where",
        ),
    ],
    ids=["columns", "selects", "branches", "columns-in-all", "where"],
)
def test_a_view_too_large_is_refused(definition, words):
    refused(definition, words)


def nested(levels: int) -> dict:
    select = {"column": [{"name": "c0", "path": "id"}]}
    for level in range(1, levels):
        select = {"column": [{"name": f"c{level}", "path": "id"}], "select": [select]}
    return select


def test_selects_nested_too_deep_are_refused():
    refused(view_with(nested(11)), "nested more than 10")
    assert len(column_names(plan(view_with(nested(10))))) == 10


@pytest.mark.parametrize(
    "constant",
    [
        {"name": "c", "valueInteger": 2**31},
        {"name": "c", "valueInteger": 10**30},
        {"name": "c", "valueInteger64": 2**63},
        {"name": "c", "valueUnsignedInt": -1},
        {"name": "c", "valuePositiveInt": 0},
        {"name": "c", "valueDecimal": float("inf")},
        {"name": "c", "valueString": "x" * 10_001},
    ],
    ids=["integer", "huge", "integer64", "unsigned", "positive", "infinite", "long-string"],
)
def test_constants_out_of_range_are_refused(constant):
    refused(
        view_with({"column": [{"name": "x", "path": "%c"}]}, constant=[constant]), "ViewDefinition"
    )


def test_too_many_constants_are_refused():
    constants = [{"name": f"c{i}", "valueInteger": i} for i in range(101)]
    refused(view_with({"column": [{"name": "x", "path": "id"}]}, constant=constants), "constants")


def test_constants_at_their_bounds_plan():
    constants = [
        {"name": "a", "valueInteger64": 2**63 - 1},
        {"name": "b", "valueString": "x" * 10_000},
        {"name": "c", "valueInteger": -(2**31)},
    ]
    planned = plan(view_with({"column": [{"name": "x", "path": "%a"}]}, constant=constants))
    assert planned.constants["a"] == Literal(2**63 - 1, "integer")


@pytest.mark.parametrize("value", [0, -1, 10_000_001, 10**20, "10" * 3000, "1e3", "1_000",
                                   " ", "x", 1.5, True, [5]])  # fmt: skip
def test_a_limit_out_of_range_is_invalid(value):  # B-3
    with pytest.raises(Invalid):
        parse_limit(value)


def test_a_limit_in_range_is_a_number():
    assert parse_limit(None) is None and parse_limit("") is None
    assert parse_limit(1) == 1 and parse_limit("250") == 250
    assert parse_limit(MAX_LIMIT) == MAX_LIMIT == 10_000_000
