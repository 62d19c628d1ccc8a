"""The request's access context: the NHN access basis and reason are parsed once, here, and
every audit record of the request carries them."""

from __future__ import annotations

import pytest

from enjournal.fhir.errors import Invalid
from enjournal.security.context import AccessContext
from enjournal.security.principal import Principal

NURSE = Principal("personnel", "sub", "client", hpr="1234567", profession="SP")
CITIZEN = Principal("citizen", "sub-kari", "client", patient="kari")
REASON = "bevisstløs pasient i akuttmottak"


@pytest.mark.parametrize(
    ("headers", "basis", "reason"),
    [
        ({}, None, None),
        ({"nhn-access-basis": "samtykke"}, "SAMTYKKE", None),
        ({"nhn-access-basis": " UNNTAK "}, "UNNTAK", None),
        ({"nhn-access-basis": "FORHOYET_SAMTYKKE"}, "FORHOYET_SAMTYKKE", None),
        ({"nhn-access-basis": "AKUTT", "nhn-access-reason": REASON}, "AKUTT", REASON),
        # A reason without AKUTT asks for nothing: it is not kept.
        ({"nhn-access-basis": "SAMTYKKE", "nhn-access-reason": REASON}, "SAMTYKKE", None),
        # HTTP hands headers over as Latin-1; the reason was sent as UTF-8.
        (
            {"nhn-access-basis": "AKUTT", "nhn-access-reason": REASON.encode().decode("latin-1")},
            "AKUTT",
            REASON,
        ),
    ],
)
def test_the_basis_and_reason_a_request_states(headers, basis, reason):
    context = AccessContext.from_headers(NURSE, headers, "req-1")
    assert (context.basis, context.reason) == (basis, reason)
    assert context.emergency is (basis == "AKUTT")


@pytest.mark.parametrize(
    "headers",
    [
        {"nhn-access-basis": "TRUST-ME"},
        {"nhn-access-basis": "AKUTT"},
        {"nhn-access-basis": "AKUTT", "nhn-access-reason": " . "},
        {"nhn-access-basis": "AKUTT", "nhn-access-reason": "x" * 501},
    ],
)
def test_a_basis_that_is_not_a_code_or_an_emergency_without_a_reason_is_400(headers):
    with pytest.raises(Invalid):
        AccessContext.from_headers(NURSE, headers)


def test_every_record_carries_the_basis_and_an_emergency_its_reason():
    context = AccessContext.from_headers(
        NURSE, {"nhn-access-basis": "AKUTT", "nhn-access-reason": REASON}, "req-9"
    )
    event = context.record(
        action="R", subtype="read", patient_id="p1", purpose="ETREAT", emergency=True
    )
    text = str(event)
    assert "AKUTT" in text and REASON in text and "req-9" in text
    assert context.refusals == 0 and context.events == [event]


def test_a_refusal_is_counted_and_handed_over_once():
    context = AccessContext.from_headers(NURSE, {"nhn-access-basis": "SAMTYKKE"})
    context.refuse("u", "$take", "not yours", "p1")
    assert context.refusals == 1
    [event] = context.take_events()
    assert event["outcome"] == "4" and event["action"] == "U"
    assert "SAMTYKKE" in str(event["purposeOfEvent"])
    # Outside an emergency the reason is not written, even if the caller sent one.
    assert "extension" not in event or "reason" not in str(event["extension"])
    assert context.take_events() == []


def _labels(event: dict) -> list[str]:
    return [
        label.get("code")
        for entity in event.get("entity", [])
        for label in entity.get("securityLabel", [])
    ]


def test_stating_akutt_does_not_make_an_allowed_access_an_emergency_access():
    # A GP who may read anyway and says AKUTT: the basis is logged, but no break-the-glass.
    context = AccessContext.from_headers(
        NURSE, {"nhn-access-basis": "AKUTT", "nhn-access-reason": REASON}
    )
    event = context.record(action="R", subtype="read", patient_id="p1", purpose="TREAT")
    assert "AKUTT" in str(event["purposeOfEvent"])
    assert "BTG" not in _labels(event) and REASON not in str(event)


def test_a_refused_access_is_never_flagged_as_an_emergency_access():
    context = AccessContext.from_headers(
        NURSE, {"nhn-access-basis": "AKUTT", "nhn-access-reason": REASON}
    )
    event = context.record(
        action="R", subtype="read", outcome="4", patient_id="p1", purpose="ETREAT", emergency=True
    )
    assert "BTG" not in _labels(event) and REASON not in str(event)
    assert context.refusals == 1


def test_an_access_granted_by_the_emergency_is_flagged_with_its_reason():
    context = AccessContext.from_headers(
        NURSE, {"nhn-access-basis": "AKUTT", "nhn-access-reason": REASON}
    )
    event = context.record(
        action="R", subtype="read", patient_id="p1", purpose="ETREAT", emergency=True
    )
    assert "BTG" in _labels(event) and REASON in str(event)


def test_a_citizen_states_no_access_basis():
    # The basis is a health worker's statement; a citizen's header is not written as one.
    context = AccessContext.from_headers(CITIZEN, {"nhn-access-basis": "SAMTYKKE"})
    event = context.record(action="R", subtype="read", patient_id="kari", purpose="PATRQT")
    assert "SAMTYKKE" not in str(event)
