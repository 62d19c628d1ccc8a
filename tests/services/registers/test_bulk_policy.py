"""The export policy (enjournal/security/exports.py) and the kick-off's parameters, as pure
functions: no store, no server."""

from __future__ import annotations

import orjson
import pytest

from enjournal.fhir.errors import Invalid
from enjournal.rest.message import FhirRequest
from enjournal.security.exports import (
    KJ,
    NO_SECONDARY_USE,
    PRIVACY_LOCK,
    REGISTER_RESERVATION,
    WITHOUT_ID,
    export_policy,
)
from enjournal.services.registers import bulk_params

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"


def consent(patient: str, system: str, code: str, status: str = "active") -> tuple[str, bytes]:
    """A register reservation (its category, denying, as the KPR feed reads it) or a
    kjernejournal setting (nested deny provisions, as kjernejournal writes them)."""
    body: dict = {
        "resourceType": "Consent",
        "status": status,
        "patient": {"reference": f"Patient/{patient}"},
    }
    if system == REGISTER_RESERVATION:
        body["category"] = [{"coding": [{"system": system, "code": code}]}]
        body["provision"] = {"type": "deny"}
    else:
        deny = {"type": "deny", "code": [{"coding": [{"system": system, "code": code}]}]}
        body["category"] = [{"coding": [{"system": KJ, "code": "personvern"}]}]
        body["provision"] = {"type": "permit", "provision": [deny]}
    return patient, orjson.dumps(body)


def patient(id_: str) -> dict:
    return {
        "resourceType": "Patient",
        "id": id_,
        "identifier": [
            {"system": FNR, "value": "02818029236"},
            {"system": "urn:local", "value": "7"},
        ],
        "name": [{"family": "Nordmann"}],
        "address": [{"city": "Oslo"}],
        "telecom": [{"value": "99999999"}],
        "gender": "female",
        "birthDate": "1980-01-02",
    }


def test_a_protected_address_loses_where_the_person_lives_not_who_they_are():
    policy = export_policy([("a", "strengt-fortrolig"), ("b", "ugradert")], [])
    assert policy.touches("Patient", "a", b"") and not policy.touches("Patient", "b", b"")
    out = policy.apply(patient("a"))
    assert out is not None
    assert not {"address", "telecom"} & set(out) and out["identifier"] and out["name"]
    assert out["meta"]["security"][-1]["code"] == "REDACTED"
    related = {
        "resourceType": "RelatedPerson",
        "patient": {"reference": "Patient/a"},
        "address": [{}],
        "name": [{}],
    }
    cut = policy.apply(related)
    assert cut is not None and "address" not in cut and "name" in cut


def test_reserved_against_disclosure_with_the_national_id_loses_the_identity():
    policy = export_policy([], [consent("a", REGISTER_RESERVATION, WITHOUT_ID)])
    out = policy.apply(patient("a"))
    assert out is not None
    assert out["identifier"] == [{"system": "urn:local", "value": "7"}]  # local ids stay
    assert not {"name", "address", "telecom"} & set(out)
    assert out["gender"] == "female" and out["birthDate"] == "1980-01-02"
    assert policy.excluded == frozenset()


def test_reserved_against_secondary_use_is_left_out_and_inactive_consents_count_for_nothing():
    policy = export_policy(
        [],
        [
            consent("a", REGISTER_RESERVATION, NO_SECONDARY_USE),
            consent("b", REGISTER_RESERVATION, NO_SECONDARY_USE, status="inactive"),
        ],
    )
    assert policy.excluded == frozenset({"a"})


def test_kjernejournal_controls_hide_its_entries_only():
    policy = export_policy(
        [],
        [consent("a", KJ, "reservasjon:kjernejournal"), consent("b", KJ, "blokkering:hpr")],
    )
    assert policy.kj_hidden == frozenset({"a"})  # a block names health personnel, not registers
    entry = {"resourceType": "Condition", "meta": {"tag": [{"system": KJ, "code": "smitte"}]},
             "subject": {"reference": "Patient/a"}}  # fmt: skip
    content = orjson.dumps(entry)
    assert policy.touches("Condition", "x", content) and policy.apply(entry) is None
    other = {"resourceType": "Condition", "subject": {"reference": "Patient/a"}}
    assert not policy.touches("Condition", "y", orjson.dumps(other))
    assert policy.excluded == frozenset() and policy.redactions == {}


def test_a_locked_prescription_is_dropped_whoever_it_belongs_to():
    policy = export_policy([], [])
    locked = {"resourceType": "MedicationRequest", "extension": [{"url": PRIVACY_LOCK}]}
    assert policy.drops(orjson.dumps(locked))
    assert not policy.drops(orjson.dumps({"resourceType": "MedicationRequest"}))
    # The URL quoted elsewhere (a note) is not a lock.
    noted = {"resourceType": "Observation", "note": [{"text": PRIVACY_LOCK}]}
    assert not policy.drops(orjson.dumps(noted))


def request(
    params: list[tuple[str, str]], path=("$export",), prefer="respond-async"
) -> FhirRequest:
    return FhirRequest("GET", list(path), params, {"prefer": prefer}, b"", "http://x/fhir")


def everything(types, named, lenient, notes):
    return types


def test_parameters_parsed_and_checked():
    p = bulk_params.parse_request(
        request(
            [
                ("_type", "Observation,Patient"),
                ("_since", "2024-01-01T00:00:00Z"),
                ("_typeFilter", "Observation?code=a,b,Patient?gender=female"),
                ("_elements", "Observation.subject,id"),
            ]
        ),
        everything,
    )
    assert p.types == ["Observation", "Patient"] and p.level == "system"
    assert p.type_filters == {"Observation": ["code=a,b"], "Patient": ["gender=female"]}
    assert p.elements_of("Observation") == ["subject", "id"] and p.elements_of("Patient") == ["id"]
    assert p.since_ms == 1704067200000
    patient_level = bulk_params.parse_request(request([], ("Patient", "$export")), everything)
    assert "Organization" not in patient_level.types and "Observation" in patient_level.types


@pytest.mark.parametrize(
    "params",
    [
        [("_outputFormat", "text/csv")],
        [("_type", "Nope")],
        [("_since", "soon")],
        [("_typeFilter", "Observation")],
        [("_elements", "Nope.id")],
        [("includeAssociatedData", "x")],
    ],
)
def test_bad_parameters_are_refused(params):
    with pytest.raises(Invalid):
        bulk_params.parse_request(request(params), everything)


def test_lenient_handling_notes_what_it_ignored():
    p = bulk_params.parse_request(
        request(
            [("includeAssociatedData", "x"), ("_type", "Patient")],
            prefer="respond-async, handling=lenient",
        ),
        everything,
    )
    assert p.types == ["Patient"] and "includeAssociatedData" in p.notes[0]
