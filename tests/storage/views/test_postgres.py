"""The PostgreSQL view engine over resources given to it (beyond the official suite): file
sources, the limit, errors, a call from inside an event loop, and the server it needs."""

from __future__ import annotations

import gzip
import json

import pyarrow
import pyarrow.parquet
import pytest

from enjournal.fhir.errors import Invalid, NotSupported
from enjournal.storage.views import ENGINES, run_view
from tests.storage.views.test_duckdb import EXPECTED, PATIENTS, VIEW, assert_fhirpath_cases

pytestmark = pytest.mark.postgres


def by_text(rows) -> list:
    return sorted(rows, key=str)


def test_registered_and_answers_as_duckdb_does():
    assert "postgres" in ENGINES
    result = run_view(VIEW, PATIENTS, engine="postgres")
    assert result.columns == ["id", "female", "given"]
    assert by_text(result.rows) == by_text(EXPECTED)
    assert by_text(result.rows) == by_text(run_view(VIEW, PATIENTS, engine="duckdb").rows)


def test_over_ndjson_and_parquet_files(tmp_path):
    plain = tmp_path / "Patient.ndjson"
    plain.write_text("\n".join(json.dumps(r) for r in PATIENTS[:1]) + "\n\n")
    packed = tmp_path / "more.ndjson.gz"
    packed.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in PATIENTS[1:]).encode()))
    assert by_text(run_view(VIEW, [plain, str(packed)], engine="postgres").rows) == by_text(
        EXPECTED
    )
    parquet = tmp_path / "resources.parquet"
    texts = pyarrow.table({"resource": [json.dumps(r) for r in PATIENTS]})
    pyarrow.parquet.write_table(texts, parquet)
    assert by_text(run_view(VIEW, [parquet], engine="postgres").rows) == by_text(EXPECTED)
    with pytest.raises(Invalid, match="all NDJSON or all Parquet"):
        run_view(VIEW, [plain, parquet], engine="postgres")


def test_limit_and_collections():
    assert len(run_view(VIEW, PATIENTS, engine="postgres", limit=1).rows) == 1
    names = {
        "resource": "Patient",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "id"},
                    {"name": "given", "path": "name.given", "collection": True},
                ]
            }
        ],
    }
    rows = run_view(names, PATIENTS, engine="postgres").rows
    assert sorted(rows) == [("a", ["Kari", "Anne"]), ("b", [])]


def test_fhirpath_beyond_the_suite_in_one_view():
    assert_fhirpath_cases("postgres")


def test_several_values_without_collection_is_invalid():
    view = {"resource": "Patient", "select": [{"column": [{"name": "g", "path": "name.given"}]}]}
    with pytest.raises(Invalid, match=r"column g .* gives several values"):
        run_view(view, PATIENTS, engine="postgres")


async def test_called_inside_an_event_loop():
    assert by_text(run_view(VIEW, PATIENTS, engine="postgres").rows) == by_text(EXPECTED)


def test_without_a_server_it_says_so(monkeypatch):
    engine = ENGINES["postgres"]
    monkeypatch.setattr(engine, "dsn", None)
    monkeypatch.delenv("ENJOURNAL_VIEWS_POSTGRES", raising=False)
    monkeypatch.setenv("ENJOURNAL_DATABASE_URL", "sqlite:///x.sqlite")
    with pytest.raises(NotSupported, match="ENJOURNAL_VIEWS_POSTGRES"):
        run_view(VIEW, PATIENTS, engine="postgres")
