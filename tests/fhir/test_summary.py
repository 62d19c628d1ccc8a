"""``_summary`` and ``_elements`` keep what makes the trimmed resource valid (search.html#summary).

Each trimmed view is checked with the platform's own validator, so a view that drops a
mandatory element fails here whatever the element is.
"""

from __future__ import annotations

import pytest

from enjournal.fhir.summary import SUBSETTED, apply_elements, apply_summary
from enjournal.fhir.validation import check

DIV = '<div xmlns="http://www.w3.org/1999/xhtml">Pulse 72/min</div>'
OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "text": {"status": "generated", "div": DIV},
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/p1"},
    "valueQuantity": {"value": 72, "unit": "/min"},
    "note": [{"text": "resting"}],
}
REQUEST = {
    "resourceType": "MedicationRequest",
    "id": "m1",
    "status": "active",
    "intent": "order",
    "medicationCodeableConcept": {"text": "Paracet"},
    "subject": {"reference": "Patient/p1"},
    "note": [{"text": "with food"}],
}


@pytest.mark.parametrize("resource", [OBSERVATION, REQUEST])
@pytest.mark.parametrize(
    "trim",
    [
        lambda r: apply_summary(r, "text"),
        lambda r: apply_summary(r, "true"),
        lambda r: apply_summary(r, "data"),
        lambda r: apply_elements(r, ["note"]),
        lambda r: apply_elements(r, ["id"]),
    ],
)
def test_trimmed_views_stay_valid_and_are_marked(resource, trim):
    trimmed = trim(resource)
    check(trimmed)  # raises on a missing mandatory element
    assert SUBSETTED in trimmed["meta"]["tag"]


def test_summary_text_keeps_text_and_mandatory_elements_only():
    trimmed = apply_summary(OBSERVATION, "text")
    assert set(trimmed) == {"resourceType", "id", "meta", "text", "status", "code"}


def test_elements_keep_choice_elements_by_their_base_name():
    trimmed = apply_elements(OBSERVATION, ["value"])
    assert trimmed["valueQuantity"] == OBSERVATION["valueQuantity"]
    assert "note" not in trimmed and "subject" not in trimmed
