"""The official SQL on FHIR v2 test suite on every registered engine.

One test per (engine, file, case).  Rows are compared as the suite says: as a multiset
(order-insensitive), numbers by value; ``expectColumns`` in order; ``expectError`` must
raise ``Invalid``.  A case an engine does not do is listed in ``UNSUPPORTED`` (the one
place) and runs as ``xfail(strict=True)``: it is reported, never skipped, and when an
engine learns it the strict xfail fails until the entry goes.  The Spark cases are marked
``slow`` (they still run in ``make test``); the counts per engine are printed at the end of
the run by tests/storage/views/conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from enjournal.fhir.errors import Invalid
from enjournal.storage.views import ENGINES, run_view

SUITE = Path(__file__).parents[2] / "data/sql-on-fhir-v2/tests"  # HL7's suite (MIT), as published
ALL = "*"  # every engine

# (engine or ALL, file stem, case title) -> why the engine does not pass it
SPARK_DECIMALS = (
    "Spark's VARIANT keeps no trailing zeros of a decimal (1.0 is stored as 1), so the"
    " written precision lowBoundary()/highBoundary() of a decimal need is lost"
)
UNSUPPORTED: dict[tuple[str, str, str], str] = {
    ("spark", "fn_boundary", "decimal lowBoundary"): SPARK_DECIMALS,
    ("spark", "fn_boundary", "decimal highBoundary"): SPARK_DECIMALS,
}


def suite_files() -> list[dict]:
    files = []
    for path in sorted(SUITE.glob("*.json")):
        content = json.loads(path.read_text())
        content["stem"] = path.stem
        files.append(content)
    return files


def unsupported(engine: str, stem: str, title: str) -> str | None:
    return UNSUPPORTED.get((engine, stem, title)) or UNSUPPORTED.get((ALL, stem, title))


def cases() -> list:
    params = []
    for engine in sorted(ENGINES):
        for suite in suite_files():
            for case in suite["tests"]:
                marks = []
                if engine == "spark":
                    marks.append(pytest.mark.slow)
                if engine == "postgres":
                    marks.append(pytest.mark.postgres)
                reason = unsupported(engine, suite["stem"], case["title"])
                if reason:
                    marks.append(pytest.mark.xfail(strict=True, reason=f"{engine}: {reason}"))
                case_id = f"{engine}:{suite['stem']}:{case['title']}"
                params.append(pytest.param(engine, suite, case, id=case_id, marks=marks))
    return params


def test_every_case_has_a_file_and_every_listed_case_exists():
    titles = {(s["stem"], c["title"]) for s in suite_files() for c in s["tests"]}
    assert len(titles) > 100
    assert {(stem, title) for _, stem, title in UNSUPPORTED} <= titles


@pytest.mark.parametrize("engine, suite, case", cases())
def test_official_case(engine, suite, case):
    if case.get("expectError"):
        with pytest.raises(Invalid):
            run_view(case["view"], suite["resources"], engine)
        return
    result = run_view(case["view"], suite["resources"], engine)
    if "expectColumns" in case:
        assert result.columns == case["expectColumns"]
    if "expectCount" in case:
        assert len(result.rows) == case["expectCount"]
    if "expect" in case:
        expected = case["expect"]
        if expected:
            assert set(result.columns) == set(expected[0])
        assert multiset(result.to_dicts()) == multiset(expected)


def normal(value):
    """Numbers by value (5.0 is 5); lists and objects recursively."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [normal(v) for v in value]
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items()}
    return value


def multiset(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(normal(row), sort_keys=True) for row in rows)
