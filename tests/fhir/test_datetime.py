"""FHIR dates as millisecond ranges (enjournal.fhir.datetime)."""

from __future__ import annotations

import pytest

from enjournal.fhir.datetime import date_range


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "9999", "9999-12"]
)
def test_values_at_the_ends_of_the_calendar_are_held_there(value):
    """Valid FHIR values whose UTC instant or range end falls outside Python's calendar
    (an OverflowError once: a 500 from search, _since, history and indexing alike)."""
    low, high = date_range(value)
    first = date_range("0001-01-01T00:00:00Z")[0]
    last = date_range("9999-12-31T23:59:59.999Z")[1]
    assert first <= low <= high <= last
