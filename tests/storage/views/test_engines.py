"""What every engine must take as given: resources parsed the platform's way."""

from __future__ import annotations

from decimal import Decimal

import pytest

from enjournal.storage.views import ENGINES, run_view

MARKS = {"spark": [pytest.mark.slow], "postgres": [pytest.mark.postgres]}
ENGINE_PARAMS = [pytest.param(name, marks=MARKS.get(name, [])) for name in sorted(ENGINES)]
VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "Observation",
    "status": "active",
    "select": [{"column": [{"name": "value", "path": "value.ofType(Quantity).value"}]}],
}


@pytest.mark.parametrize("engine", ENGINE_PARAMS)
def test_decimals_as_the_platform_parses_them(engine):
    """``jsonio.loads`` keeps a FHIR decimal's precision as a Decimal; a view over such
    resources once failed with a TypeError (a 500) in json.dumps."""
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "weight"},
        "valueQuantity": {"value": Decimal("81.50"), "unit": "kg"},
    }
    result = run_view(VIEW, [observation], engine)
    assert [float(row[0]) for row in result.rows] == [81.5]
