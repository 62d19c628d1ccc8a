"""The Spark engine beyond the suite: NDJSON and Parquet read by Spark, the limit, errors."""

from __future__ import annotations

import json

import pyarrow
import pyarrow.parquet
import pytest

from enjournal.fhir.errors import Invalid
from enjournal.storage.views import ENGINES, run_view
from tests.storage.views.test_duckdb import EXPECTED, PATIENTS, VIEW, assert_fhirpath_cases

pytestmark = pytest.mark.slow


def test_registered():
    assert "spark" in ENGINES


def test_same_rows_as_duckdb_over_ndjson(tmp_path):
    path = tmp_path / "resources.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in PATIENTS) + "\n\n")
    result = run_view(VIEW, [path], engine="spark")
    assert result.columns == ["id", "female", "given"]
    assert sorted(result.rows, key=str) == sorted(EXPECTED, key=str)
    assert sorted(result.rows, key=str) == sorted(run_view(VIEW, [path]).rows, key=str)


def test_over_parquet_with_a_resource_column(tmp_path):
    path = tmp_path / "resources.parquet"
    pyarrow.parquet.write_table(
        pyarrow.table({"resource": [json.dumps(r) for r in PATIENTS]}), path
    )
    assert sorted(run_view(VIEW, [path], engine="spark").rows, key=str) == sorted(EXPECTED, key=str)


def test_limit_and_runtime_errors():
    assert len(run_view(VIEW, PATIENTS, engine="spark", limit=2).rows) == 2
    view = {
        "resource": "Patient",
        "select": [{"column": [{"name": "given", "path": "name.given"}]}],
    }
    with pytest.raises(Invalid, match="several values"):
        run_view(view, PATIENTS, engine="spark")


def test_fhirpath_beyond_the_suite_in_one_view():
    assert_fhirpath_cases("spark")
