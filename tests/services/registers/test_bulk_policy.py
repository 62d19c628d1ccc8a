"""The export policy (enjournal/security/exports.py) and the kick-off's parameters, as pure
functions: no store, no server."""

from __future__ import annotations

import orjson
import pytest

from enjournal.fhir.definitions import official_search_parameters
from enjournal.fhir.errors import Invalid
from enjournal.rest.message import FhirRequest
from enjournal.security.exports import (
    HIDDEN_ANYWHERE,
    HIDDEN_SEARCHES,
    IDENTITY_ELEMENTS,
    KJ,
    NO_SECONDARY_USE,
    PERSONS,
    PRIVACY_LOCK,
    REGISTER_RESERVATION,
    WITHOUT_ID,
    export_policy,
)
from enjournal.services.registers import bulk_params
from enjournal.services.registers.bulk_params import MAX_TYPE_FILTERS

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


# ---- identity outside the Patient resource (attack A-3) ----------------------------------

OLA, NORA, SIRI, KARI = "03857003259", "24929113086", "11867506030", "02818029236"
DNR = "urn:oid:2.16.578.1.12.4.1.4.2"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"


def named_policy():
    """ola reserved against disclosure with his number, nora against purpose-2 use, siri
    with a strengt fortrolig address; kari protects nothing."""
    return export_policy(
        [("siri", "strengt-fortrolig")],
        [
            consent("ola", REGISTER_RESERVATION, WITHOUT_ID),
            consent("nora", REGISTER_RESERVATION, NO_SECONDARY_USE),
        ],
        {"ola": [OLA], "nora": [NORA], "siri": [SIRI], "kari": [KARI]},
    )


def obs(subject: dict, **more) -> dict:
    return {"resourceType": "Observation", "id": "o", "status": "final",
            "text": {"status": "generated", "div": "<div>Ola Nordmann</div>"},
            "code": {"text": "x"}, "subject": subject, **more}  # fmt: skip


def exported(policy, resource: dict) -> dict | None:
    """What the reader writes: the row as stored unless the byte test flags it."""
    content = orjson.dumps(resource)
    if not policy.touches(resource["resourceType"], resource["id"], content):
        return resource
    return policy.apply(orjson.loads(content))


def test_the_policy_keeps_the_national_ids_of_the_patients_it_protects_only():
    policy = named_policy()
    assert policy.protected == {"ola", "nora", "siri"}
    assert policy.national_ids == {
        "ola": frozenset({OLA}),
        "nora": frozenset({NORA}),
        "siri": frozenset({SIRI}),
    }


def test_a_reference_to_a_patient_reserved_against_disclosure_loses_number_and_name():
    policy = named_policy()
    full = {"reference": "Patient/ola", "display": "Ola Nordmann",
            "identifier": {"system": FNR, "value": OLA}}  # fmt: skip
    out = exported(policy, obs(full))
    assert out is not None and out["subject"] == {"reference": "Patient/ola"}
    assert "text" not in out and out["meta"]["security"][-1]["code"] == "REDACTED"
    # By the number only (a logical reference): linked as the rest of his data is.
    out = exported(policy, obs({"identifier": {"system": DNR, "value": OLA}}))
    assert out is not None and out["subject"] == {"reference": "Patient/ola"}
    # By reference and name only, an absolute and a versioned reference too.
    for reference in ("Patient/ola", "https://x/fhir/Patient/ola", "Patient/ola/_history/2"):
        out = exported(policy, obs({"reference": reference, "display": "Ola"}))
        assert out is not None and out["subject"] == {"reference": reference}
    assert OLA not in orjson.dumps(out).decode()


def test_a_contained_patient_or_a_person_with_the_number_is_redacted_as_the_patient():
    policy = named_policy()
    inside = {"resourceType": "Patient", "id": "p", "name": [{"family": "Nordmann"}],
              "identifier": [{"system": FNR, "value": OLA}, {"system": "urn:l", "value": "7"}],
              "address": [{"city": "Oslo"}], "gender": "male"}  # fmt: skip
    out = exported(policy, obs({"reference": "#p", "display": "Ola"}, contained=[inside]))
    assert out is not None and out["subject"] == {"reference": "#p"}
    kept = out["contained"][0]
    assert kept["identifier"] == [{"system": "urn:l", "value": "7"}] and kept["gender"] == "male"
    assert not {"name", "address"} & set(kept) and OLA not in orjson.dumps(out).decode()
    # A RelatedPerson that is ola (his number): no identity; a Practitioner: no number.
    person = {"resourceType": "RelatedPerson", "id": "rp", "name": [{"family": "N"}],
              "identifier": [{"system": FNR, "value": OLA}],
              "patient": {"reference": "Patient/kari"}}  # fmt: skip
    out = exported(policy, person)
    assert out is not None and not {"name", "identifier"} & set(out)
    numbers = [{"system": FNR, "value": OLA}, {"system": HPR, "value": "1"}]
    doctor = {"resourceType": "Practitioner", "id": "d", "identifier": numbers}
    out = exported(policy, doctor)
    assert out is not None and out["identifier"] == [{"system": HPR, "value": "1"}]


def test_a_resource_holding_the_number_in_free_text_is_left_out():
    policy = named_policy()
    tagged = {"url": "urn:x", "valueIdentifier": {"system": FNR, "value": OLA}}
    out = exported(policy, obs({"reference": "Patient/kari"}, extension=[tagged]))
    assert out is not None and out["extension"] == [{"url": "urn:x"}]  # an Identifier goes
    noted = obs({"reference": "Patient/kari"}, note=[{"text": f"far: {OLA}"}])
    assert exported(policy, noted) is None


def test_a_resource_naming_an_excluded_patient_anywhere_is_left_out():
    policy = named_policy()
    inside = {"resourceType": "Patient", "id": "p",
              "identifier": [{"system": FNR, "value": NORA}]}  # fmt: skip
    linked = {"resourceType": "Communication", "id": "c", "status": "completed",
              "payload": [{"contentReference": {"reference": "Patient/nora"}}]}  # fmt: skip
    for resource in [
        obs({"identifier": {"system": FNR, "value": NORA}}),
        obs({"reference": "#p"}, contained=[inside]),
        obs({"reference": "Patient/kari"}, note=[{"text": NORA}]),
        linked,  # a reference the index does not hold (the reader's SQL cannot see it)
    ]:
        assert exported(policy, resource) is None, resource


def test_a_confidential_address_hides_no_name_nor_number_outside_the_patient():
    policy = named_policy()
    subject = {"reference": "Patient/siri", "display": "Siri",
               "identifier": {"system": FNR, "value": SIRI}}  # fmt: skip
    assert exported(policy, obs(subject)) == obs(subject)
    inside = {"resourceType": "Patient", "id": "p", "name": [{"family": "S"}],
              "identifier": [{"system": FNR, "value": SIRI}],
              "address": [{"city": "Oslo"}]}  # fmt: skip
    out = exported(policy, obs({"reference": "#p"}, contained=[inside]))
    assert out is not None and "address" not in out["contained"][0]
    assert out["contained"][0]["identifier"] and out["contained"][0]["name"]


def test_the_byte_test_passes_rows_that_name_no_one_protected():
    policy = named_policy()
    for resource in [
        obs({"reference": "Patient/kari", "identifier": {"system": FNR, "value": KARI}}),
        obs({"reference": "Patient/olav"}, note=[{"text": f"{OLA}1 and 1{OLA}"}]),
    ]:
        assert not policy.touches("Observation", "o", orjson.dumps(resource)), resource
    # Without the national ids, a patient is still found by reference.
    bare = export_policy([], [consent("ola", REGISTER_RESERVATION, WITHOUT_ID)])
    out = exported(bare, obs({"reference": "Patient/ola", "display": "Ola"}))
    assert out is not None and out["subject"] == {"reference": "Patient/ola"}


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


# ---- person records linked to a protected patient (attack P-1) ----------------------------


def linked(type_: str, id_: str, target: str, **more) -> dict:
    """A Person (link.target) or an old Patient record (link.other) of ``target``."""
    element = {"Person": "target", "Patient": "other"}[type_]
    link = {element: {"reference": f"Patient/{target}"}}
    return {"resourceType": type_, "id": id_, "link": [link], **more}


def test_a_person_record_linked_to_a_protected_patient_is_redacted_as_her_patient():
    policy = named_policy()
    name, address = [{"family": "Nordmann"}], [{"line": ["Storgata 1"]}]
    ola = exported(policy, linked("Person", "p1", "ola", name=name, address=address))
    siri = exported(policy, linked("Person", "p2", "siri", name=name, address=address))
    old = exported(policy, linked("Patient", "old", "ola", name=name, gender="male"))
    assert ola is not None and "name" not in ola and "address" not in ola
    assert siri is not None and siri["name"] == name and "address" not in siri
    assert old is not None and "name" not in old and old["gender"] == "male"
    assert exported(policy, linked("Person", "p3", "nora", name=name)) is None
    kari = linked("Person", "p4", "kari", name=name)
    assert exported(policy, kari) == kari


def test_the_byte_test_flags_linking_records_only_when_the_policy_protects_someone():
    row = orjson.dumps(linked("Person", "p", "siri", address=[{"city": "Oslo"}]))
    assert export_policy([("siri", "strengt-fortrolig")], []).touches("Person", "p", row)
    assert not export_policy([], []).touches("Person", "p", row)
    assert not named_policy().touches("Observation", "o", orjson.dumps(obs({})))


# ---- _typeFilter may not search what the policy removes (attack F-1), nor too much (L-1) --


@pytest.mark.parametrize(
    "text",
    [
        f"Patient?identifier={OLA}",
        "Patient?name=ola",
        "Patient?family=Nord",
        "Patient?address-postalcode=999",
        "Patient?phone=999",
        "Person?address=Hemmelig",
        "RelatedPerson?identifier=x",
        "Observation?subject:Patient.identifier=x",
        "Observation?subject:Patient.address-city=BATS",
        "Observation?subject:identifier=x",
        "Patient?_has:RelatedPerson:patient:name=x",
        f"Observation?value-string={OLA}",
    ],
)
def test_a_type_filter_may_not_select_by_what_the_policy_removes(text):
    with pytest.raises(Invalid) as error:
        bulk_params.parse_request(request([("_typeFilter", text)]), everything)
    assert "may not select by it" in error.value.message


def test_a_type_filter_by_what_the_file_keeps_is_accepted_and_lenient_ignores_the_rest():
    kept = "Patient?gender=female&birthdate=ge1980,Practitioner?name=x,Observation?code=c"
    p = bulk_params.parse_request(request([("_typeFilter", kept)]), everything)
    assert set(p.type_filters) == {"Patient", "Practitioner", "Observation"}
    lenient = bulk_params.parse_request(
        request([("_typeFilter", "Patient?name=ola")], prefer="respond-async, handling=lenient"),
        everything,
    )
    assert lenient.type_filters == {} and "name" in lenient.notes[0]


def test_the_hidden_searches_cover_every_official_parameter_over_a_removed_element():
    """The list beside the policy cannot drift from it: every official search parameter of a
    person type whose expression reads an element the policy removes is in it."""
    for type_ in PERSONS:
        for code, param in official_search_parameters()._merged(type_).items():
            reads = {e for e in IDENTITY_ELEMENTS if f"{type_}.{e}" in (param.expression or "")}
            assert not reads or code in HIDDEN_SEARCHES | HIDDEN_ANYWHERE, (type_, code)


def test_too_many_type_filters_are_refused():
    many = [("_typeFilter", f"Observation?code=c{i}") for i in range(MAX_TYPE_FILTERS + 1)]
    with pytest.raises(Invalid, match="at most"):
        bulk_params.parse_request(request(many), everything)
    long = [("_typeFilter", "Observation?code=" + "c" * 999) for _ in range(MAX_TYPE_FILTERS)]
    with pytest.raises(Invalid, match="characters in all"):
        bulk_params.parse_request(request(long), everything)
    fine = [("_typeFilter", f"Observation?code=c{i}") for i in range(MAX_TYPE_FILTERS)]
    assert (
        len(bulk_params.parse_request(request(fine), everything).type_filters["Observation"])
        == MAX_TYPE_FILTERS
    )
