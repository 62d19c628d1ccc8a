"""Acting for others as tables: ``security/representation.py``'s rules (parents, fullmakt,
the validator) and ``policy.decide`` over the areas they give, no database.  The API tests
in tests/services/helsenorge/test_fullmakt.py check that the guard gathers these facts."""

from __future__ import annotations

from datetime import date

import pytest

from enjournal.security import representation as rules
from enjournal.security.policy import INSIGHT, SERVICES, PatientFacts, decide
from enjournal.security.principal import Principal

BOTH, NONE = frozenset({INSIGHT, SERVICES}), frozenset()
ONLY_SERVICES, ONLY_INSIGHT = frozenset({SERVICES}), frozenset({INSIGHT})
TODAY = date(2026, 12, 3)


# ---- parents --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "same_address", "parent_conf", "child_conf", "areas"),
    [
        (0, True, False, False, BOTH),
        (5, True, False, False, BOTH),
        (11, True, False, False, BOTH),
        (11, False, False, False, NONE),  # no parent at the child's address
        (12, True, False, False, NONE),  # no digital parental access from 12 (domain 2.3)
        (15, True, False, False, NONE),
        (15, False, False, False, NONE),
        (16, True, False, False, NONE),  # of age in health law
        (18, True, False, False, NONE),
        (5, True, True, False, NONE),  # confidential address, parent's side
        (5, True, False, True, NONE),  # or the child's
        (13, True, False, True, NONE),
        (None, True, False, False, NONE),  # no birth date: nothing
    ],
)
def test_parent_areas(age, same_address, parent_conf, child_conf, areas):
    assert rules.parent_areas(age, same_address, parent_conf, child_conf) == areas


# ---- fullmakt -------------------------------------------------------------------------------

GOOD = {
    "giver_age": 84,
    "receiver_age": 50,
    "period_start": "2026-11-01",
    "period_end": None,
    "active": True,
    "areas": BOTH,
    "giver_confidential": False,
    "receiver_confidential": False,
    "today": TODAY,
}


@pytest.mark.parametrize(
    ("change", "areas"),
    [
        ({}, BOTH),
        ({"areas": ONLY_INSIGHT}, ONLY_INSIGHT),
        ({"areas": ONLY_SERVICES}, ONLY_SERVICES),
        ({"areas": frozenset({"2", SERVICES})}, ONLY_SERVICES),  # unknown areas give nothing
        ({"giver_age": 15}, NONE),
        ({"giver_age": 16}, BOTH),
        ({"giver_age": None}, NONE),
        ({"receiver_age": 17}, NONE),
        ({"receiver_age": 18}, BOTH),
        ({"active": False}, NONE),  # revoked
        ({"period_start": "2026-12-04"}, NONE),  # not yet begun
        ({"period_start": "2026-12-03"}, BOTH),  # begins today
        ({"period_end": "2026-12-03"}, BOTH),  # ends today: still today
        ({"period_end": "2026-12-02"}, NONE),  # ended
        ({"period_end": "2026-12-02T23:59:59+01:00"}, NONE),
        ({"period_end": "2027-06-30"}, BOTH),
        ({"period_start": None}, BOTH),  # open start, open end
        ({"giver_confidential": True}, NONE),
        ({"receiver_confidential": True}, NONE),
    ],
)
def test_fullmakt_areas(change, areas):
    assert rules.fullmakt_areas(**{**GOOD, **change}) == areas


GIVE = {
    "giver_age": 40,
    "receiver_age": 45,
    "giver_confidential": False,
    "receiver_confidential": False,
    "same_person": False,
    "start": TODAY,
    "end": None,
    "today": TODAY,
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, None),
        ({"giver_age": 16, "end": date(2027, 1, 1)}, None),
        ({"giver_age": 15}, "you must be 16 or older to give a fullmakt"),
        ({"receiver_age": 18}, None),
        ({"receiver_age": 17}, "the receiver of a fullmakt must be 18 or older"),
        ({"receiver_age": None}, rules.NEUTRAL_REFUSAL),  # no such person
        ({"receiver_confidential": True}, rules.NEUTRAL_REFUSAL),  # tells nothing more
        ({"giver_confidential": True}, "confidential"),
        ({"same_person": True}, "yourself"),
        ({"start": date(2026, 12, 2)}, "past"),
        ({"start": date(2027, 1, 1), "end": date(2026, 12, 31)}, "after its start"),
    ],
)
def test_fullmakt_refusal(change, reason):
    found = rules.fullmakt_refusal(**{**GIVE, **change})
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_a_confidential_receiver_and_an_unknown_one_read_the_same():
    unknown = rules.fullmakt_refusal(**{**GIVE, "receiver_age": None})
    hidden = rules.fullmakt_refusal(**{**GIVE, "receiver_confidential": True})
    assert unknown == hidden == "this person cannot receive a fullmakt on helsenorge"


# ---- reading the resources ------------------------------------------------------------------


def fullmakt(*areas: str, **more) -> dict:
    return {
        "resourceType": "RelatedPerson",
        "patient": {"reference": "Patient/giver"},
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "02818029236"}],
        "relationship": [{"coding": [{"system": rules.ROLE_SYSTEM, "code": "HPOWATT"}]}],
        "extension": [
            {"url": rules.AREA_EXTENSION, "valueCoding": {"system": rules.AREA_SYSTEM, "code": a}}
            for a in areas
        ],
        **more,
    }


def test_the_resource_is_read_as_the_data_model_says():
    related = fullmakt("1", "3", period={"start": "2026-01-01"})
    assert rules.is_fullmakt(related) and not rules.is_parent(related)
    assert rules.areas_of(related) == BOTH
    assert rules.names(related, "02818029236") and not rules.names(related, "15811893452")
    assert rules.patient_of(related) == "giver"
    assert rules.period(related) == ("2026-01-01", None)
    other_system = fullmakt("1")
    other_system["extension"][0]["valueCoding"]["system"] = "urn:other"
    assert rules.areas_of(other_system) == NONE


@pytest.mark.parametrize(
    ("security", "confidential"),
    [
        ([], False),
        ([{"system": rules.ADDRESS_PROTECTION, "code": "strengt-fortrolig"}], True),
        ([{"system": rules.ADDRESS_PROTECTION, "code": "fortrolig"}], True),
        ([{"system": rules.ADDRESS_PROTECTION, "code": "ugradert"}], False),
        ([{"system": "urn:other", "code": "fortrolig"}], False),
    ],
)
def test_confidential_address(security, confidential):
    assert rules.is_confidential({"meta": {"security": security}}) is confidential


def test_ages():
    assert rules.age("2014-12-03", TODAY) == 12
    assert rules.age("2014-12-04", TODAY) == 11
    assert rules.age(None, TODAY) is None
    assert rules.age("2014-13-40", TODAY) is None
    assert rules.age_from_number("02818029236", TODAY) == 46  # born 1980-01-02
    assert rules.age_from_number("nonsense", TODAY) is None


# ---- never more than the principal has (policy.decide) --------------------------------------


def citizen() -> Principal:
    return Principal("citizen", "sub", "portal", frozenset({"patient/*.cruds"}), pid="1")


@pytest.mark.parametrize(
    ("areas", "action", "type_", "allowed"),
    [
        (ONLY_INSIGHT, "r", "Condition", True),
        (ONLY_INSIGHT, "s", "Observation", True),
        (ONLY_INSIGHT, "r", "Patient", True),
        (ONLY_INSIGHT, "c", "Communication", False),  # reading is not writing to the GP
        (ONLY_INSIGHT, "c", "Appointment", False),
        (ONLY_SERVICES, "r", "Condition", False),  # the digital services are not the record
        (ONLY_SERVICES, "r", "Patient", True),  # whom one acts for
        (ONLY_SERVICES, "c", "Communication", True),
        (ONLY_SERVICES, "u", "Appointment", True),
        (ONLY_SERVICES, "c", "QuestionnaireResponse", True),
        (ONLY_SERVICES, "r", "Communication", True),
        (BOTH, "c", "Condition", False),  # the patient cannot either
        (BOTH, "u", "Patient", False),
        (BOTH, "c", "Consent", False),  # privacy settings are the patient's own
        (BOTH, "d", "Appointment", False),
        (NONE, "r", "Patient", False),
        (NONE, "r", "Condition", False),
    ],
)
def test_a_representative_never_gets_more_than_the_principal(areas, action, type_, allowed):
    decision = decide(citizen(), action, type_, PatientFacts("giver", areas=areas))
    assert decision.allowed is allowed, decision.reason


def test_the_token_still_bounds_a_representative():
    narrow = Principal("citizen", "sub", "portal", frozenset({"patient/*.rs"}), pid="1")
    facts = PatientFacts("giver", areas=BOTH)
    assert not decide(narrow, "c", "Communication", facts).allowed
    assert decide(narrow, "r", "Condition", facts).allowed
