"""The access policy as a table: ``policy.decide`` over plain facts, no database.

Each row is one rule of ``enjournal/security/policy.py``'s docstring; the end-to-end tests in
test_access.py check that the guard gathers the facts right.
"""

from __future__ import annotations

import pytest

from enjournal.security.policy import (
    EMERGENCY,
    PATIENT_REQUEST,
    SYSTEM,
    TREAT,
    PatientFacts,
    decide,
)
from enjournal.security.principal import Principal


def person(profession: str = "LE", scopes: str = "user/*.cruds", **kw) -> Principal:
    return Principal(
        "personnel", "sub", "ehr", frozenset(scopes.split()), hpr="1", profession=profession, **kw
    )


def citizen(scopes: str = "patient/*.cruds") -> Principal:
    return Principal("citizen", "sub", "portal", frozenset(scopes.split()), pid="02818029236")


def system(scopes: str = "system/*.cruds") -> Principal:
    return Principal("system", "sub", "integration", frozenset(scopes.split()))


def facts(**kw) -> PatientFacts:
    return PatientFacts("p1", **kw)


CARE = {"care_relationship": "gp-list"}
ROWS = [
    # who, action, type, facts (None: shared data), emergency reason, allowed, purpose
    (person(), "r", "Observation", facts(**CARE), None, True, TREAT),
    (person(), "r", "Observation", facts(), None, False, None),
    (person(), "r", "Observation", facts(), "unconscious", True, EMERGENCY),
    (person(), "r", "Observation", facts(blocked_by_consent=True, **CARE), "x", False, None),
    (person(), "r", "Observation", facts(restricted_by_consent=True, **CARE), None, False, None),
    (person(), "r", "Observation", facts(restricted_by_consent=True), "x", True, EMERGENCY),
    (person(), "c", "Observation", facts(**CARE), None, True, TREAT),
    (person(scopes="user/*.rs"), "c", "Observation", facts(**CARE), None, False, None),
    (person("FA"), "r", "MedicationRequest", facts(**CARE), None, True, TREAT),
    (person("FA"), "r", "Observation", facts(**CARE), None, False, None),
    (person("FA"), "u", "Patient", facts(**CARE), None, False, None),
    (person("FA"), "c", "MedicationRequest", facts(**CARE), None, False, None),
    (person("FA"), "c", "MedicationDispense", facts(**CARE), None, True, TREAT),
    (citizen(), "r", "Observation", facts(own_record=True), None, True, PATIENT_REQUEST),
    (citizen(), "r", "Observation", facts(child_in_care=True), None, True, PATIENT_REQUEST),
    (citizen(), "r", "Observation", facts(), None, False, None),
    (citizen(), "c", "Observation", facts(own_record=True), None, False, None),
    (citizen(), "c", "Consent", facts(own_record=True), None, True, PATIENT_REQUEST),
    (citizen(), "c", "Consent", facts(child_in_care=True), None, False, None),
    (citizen(), "r", "Organization", None, None, True, TREAT),
    (citizen(), "c", "Organization", None, None, False, None),
    (person(), "c", "PractitionerRole", None, None, False, None),
    (person(), "u", "Organization", None, None, False, None),
    (person(), "c", "Medication", None, None, True, TREAT),
    (system(), "c", "PractitionerRole", None, None, True, SYSTEM),
    (system(), "r", "Observation", facts(), None, True, SYSTEM),
    (system("system/*.rs"), "c", "Observation", facts(), None, False, None),
    (system("system/*.rs register/export"), "r", "Observation", facts(), None, False, None),
]


@pytest.mark.parametrize(("who", "action", "type_", "facts_", "reason", "allowed", "purpose"), ROWS)
def test_policy_table(who, action, type_, facts_, reason, allowed, purpose):
    decision = decide(who, action, type_, facts_, emergency_reason=reason)
    assert decision.allowed is allowed, decision.reason
    if allowed:
        assert decision.purpose == purpose
        assert decision.emergency is (purpose == EMERGENCY)
    else:
        assert decision.reason  # a refusal always says why


def test_patient_scopes_reach_only_the_launch_patient():
    launched = person(scopes="patient/*.rs", patient="p1")
    assert decide(launched, "r", "Observation", facts(**CARE)).allowed
    other = PatientFacts("p2", care_relationship="gp-list")
    assert not decide(launched, "r", "Observation", other).allowed
