"""The DuckDB engine beyond the suite: file sources, the limit, errors, the result's forms."""

from __future__ import annotations

import gzip
import json
import os

import pyarrow
import pyarrow.parquet
import pytest

from enjournal.fhir.errors import Invalid
from enjournal.storage.views import ENGINES, run_view

PATIENTS = [
    {
        "resourceType": "Patient",
        "id": "a",
        "gender": "female",
        "name": [{"family": "Berg", "given": ["Kari", "Anne"]}],
    },
    {"resourceType": "Patient", "id": "b", "gender": "male", "name": [{"family": "Dahl"}]},
    {"resourceType": "Observation", "id": "o", "status": "final"},
]
VIEW = {
    "resource": "Patient",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "female", "path": "gender = 'female'"},
            ]
        },
        {
            "forEachOrNull": "name.given",
            "column": [{"name": "given", "path": "$this", "type": "string"}],
        },
    ],
}
EXPECTED = [("a", True, "Kari"), ("a", True, "Anne"), ("b", False, None)]


def test_registered():
    assert "duckdb" in ENGINES


def test_over_resource_dicts():
    result = run_view(VIEW, PATIENTS)
    assert result.columns == ["id", "female", "given"]
    assert sorted(result.rows, key=str) == sorted(EXPECTED, key=str)
    assert {"id": "b", "female": False, "given": None} in result.to_dicts()
    assert result.to_arrow().num_rows == 3


def test_over_ndjson_files(tmp_path):
    plain = tmp_path / "Patient.ndjson"
    plain.write_text("\n".join(json.dumps(r) for r in PATIENTS[:1]) + "\n")
    packed = tmp_path / "more.ndjson.gz"
    packed.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in PATIENTS[1:]).encode()))
    result = run_view(VIEW, [plain, str(packed)])
    assert sorted(result.rows, key=str) == sorted(EXPECTED, key=str)


def test_over_parquet_with_a_resource_column(tmp_path):
    path = tmp_path / "resources.parquet"
    pyarrow.parquet.write_table(
        pyarrow.table({"resource": [json.dumps(r) for r in PATIENTS]}), path
    )
    assert sorted(run_view(VIEW, [path]).rows, key=str) == sorted(EXPECTED, key=str)


def test_limit():
    assert len(run_view(VIEW, PATIENTS, limit=1).rows) == 1


def test_several_values_without_collection_is_invalid():
    view = {
        "resource": "Patient",
        "select": [{"column": [{"name": "given", "path": "name.given"}]}],
    }
    with pytest.raises(Invalid, match="several values"):
        run_view(view, PATIENTS)


def test_unknown_engine_is_invalid():
    with pytest.raises(Invalid, match="unknown view engine"):
        run_view(VIEW, PATIENTS, engine="oracle")


def test_repeat_orders_depth_first():
    response = {
        "resourceType": "QuestionnaireResponse",
        "id": "q",
        "item": [
            {"linkId": "1", "item": [{"linkId": "1.1", "item": [{"linkId": "1.1.1"}]}]},
            {"linkId": "2"},
        ],
    }
    view = {
        "resource": "QuestionnaireResponse",
        "select": [
            {
                "repeat": ["item"],
                "column": [{"name": "i", "path": "%rowIndex"}, {"name": "link", "path": "linkId"}],
            }
        ],
    }
    assert sorted(run_view(view, [response]).rows) == [(0, "1"), (1, "1.1"), (2, "1.1.1"), (3, "2")]


def test_repeat_deeper_than_its_depth_is_an_error_not_a_silent_cut():
    from enjournal.storage.views.compile import REPEAT_DEPTH

    item: dict = {"linkId": "leaf"}
    for level in range(REPEAT_DEPTH + 1):
        item = {"linkId": str(level), "item": [item]}
    response = {"resourceType": "QuestionnaireResponse", "id": "deep", "item": [item]}
    view = {
        "resource": "QuestionnaireResponse",
        "select": [{"repeat": ["item"], "column": [{"name": "link", "path": "linkId"}]}],
    }
    with pytest.raises(Invalid, match="deeper than"):
        run_view(view, [response])


def test_a_resource_larger_than_duckdbs_default_line_limit(tmp_path):
    big = {
        **PATIENTS[1],
        "text": {"status": "generated", "div": "<div>" + "x" * 17_000_000 + "</div>"},
    }
    path = tmp_path / "big.ndjson"
    path.write_text(json.dumps(big) + "\n")
    assert run_view(VIEW, [path]).rows == [("b", False, None)]


FHIRPATH_CASES = [
    ("name.given.count()", 2),
    ("name.given.last()", "Anne"),
    ("name.given[1]", "Anne"),
    ("name.given.first() & ' ' & name.family", "Kari Berg"),
    ("name.family ~ 'BERG'", True),
    ("name.family !~ 'BERG'", False),
    ("7 div 2", 3),
    ("7 mod 2", 1),
    ("-(2 + 3) * 2", -10),
    ("gender = 'female' xor true", False),
    ("gender = 'male' implies false", True),
    ("(gender = 'female').not()", False),
    ("name.given.where($this = 'Anne').exists()", True),
    ("name.given.exists($this = 'Per')", False),
    ("Patient.name.family", "Berg"),
    ("%resource.id", "a"),
    ("{}.empty()", True),
    ("name.given.join('+')", "Kari+Anne"),
    ("name.given.ofType(string).count()", 2),
    ("gender != 'male'", True),
    ("birthDate", None),
]


def test_fhirpath_beyond_the_suite_in_one_view():
    """All of ``FHIRPATH_CASES`` as the columns of one view (one query per engine)."""
    assert_fhirpath_cases("duckdb")


def assert_fhirpath_cases(engine: str) -> None:
    columns = [{"name": f"v{i}", "path": path} for i, (path, _) in enumerate(FHIRPATH_CASES)]
    view = {"resource": "Patient", "select": [{"column": columns}], "where": [{"path": "id = 'a'"}]}
    (row,) = run_view(view, PATIENTS, engine).rows
    found = [
        normal(value, expected) for value, (_, expected) in zip(row, FHIRPATH_CASES, strict=True)
    ]
    assert found == [expected for _, expected in FHIRPATH_CASES]


def normal(value, expected):
    """An untyped column is text: '3' or '3.0' compare as the number expected."""
    if isinstance(expected, int) and not isinstance(expected, bool) and value is not None:
        return int(float(value))
    return value


@pytest.mark.parametrize("path, expected", FHIRPATH_CASES)
def test_fhirpath_beyond_the_suite(path, expected):
    view = {
        "resource": "Patient",
        "select": [{"column": [{"name": "v", "path": path}]}],
        "where": [{"path": "id = 'a'"}],
    }
    (row,) = run_view(view, PATIENTS).rows
    assert normal(row[0], expected) == expected


def test_each_resource_is_parsed_once_for_its_top_level_elements():
    from enjournal.fhir.viewdefinition import plan
    from enjournal.storage.views.compile import compile_view
    from enjournal.storage.views.duckdb import DuckDialect

    dialect = DuckDialect()
    sql = compile_view(dialect, plan(VIEW), "_source")
    assert list(dialect.fields) == ["id", "gender", "name"]
    # one call on the whole resource (its elements by a list of paths); none in the view
    assert sql.count("json_extract(resource, [") == 1 and "(_resource," not in sql
    assert run_view(VIEW, PATIENTS).rows == EXPECTED
    whole = DuckDialect()
    whole.fields_once = False  # the old reading: the resource parsed at every call
    assert "json_extract(_resource," in compile_view(whole, plan(VIEW), "_source")


def test_a_run_past_its_memory_limit_is_503_too_costly(monkeypatch, tmp_path):
    from enjournal.storage.base import Busy
    from enjournal.storage.views.duckdb import settings

    cores = min(os.cpu_count() or 1, 4)
    assert settings("/spill") == {"threads": cores, "temp_directory": "/spill"}
    monkeypatch.setenv("ENJOURNAL_VIEWS_DUCKDB_THREADS", "1")
    monkeypatch.setenv("ENJOURNAL_VIEWS_DUCKDB_MEMORY", "1MB")
    assert settings("/spill") == {"threads": 1, "temp_directory": "/spill", "memory_limit": "1MB"}
    path = tmp_path / "Patient.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in PATIENTS))
    with pytest.raises(Busy) as raised:
        run_view(VIEW, [path])  # the reader alone reserves more
    assert raised.value.status == 503 and raised.value.issues[0].code == "too-costly"
    monkeypatch.delenv("ENJOURNAL_VIEWS_DUCKDB_MEMORY")
    assert sorted(run_view(VIEW, [path]).rows, key=str) == sorted(EXPECTED, key=str)


@pytest.mark.parametrize(
    "sql", ["SELECT CAST('Ola Nordmann' AS INTEGER)", "SELECT 9223372036854775807::BIGINT + 1"]
)
def test_an_engine_error_in_the_data_is_a_400_without_the_data(sql):
    """A conversion or overflow the data causes is the caller's view and data (a 400), and
    its message does not quote the value (the engine's text may hold a name)."""
    import duckdb

    from enjournal.fhir.errors import Invalid
    from enjournal.storage.views.duckdb import view_error

    with duckdb.connect() as connection, pytest.raises(duckdb.Error) as raised:
        connection.execute(sql)
    error = view_error(raised.value)
    assert isinstance(error, Invalid)
    assert "Ola" not in str(error) and "9223372036854775807" not in str(error)
