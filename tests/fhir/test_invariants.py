"""FHIRPath invariants and the other rules of the invariant class (enjournal.fhir.invariants and
enjournal.fhir.validation): each case has a valid twin, so a rule that refuses everything fails
as surely as one that refuses nothing."""

from __future__ import annotations

import base64
import copy

import pytest

from enjournal.fhir import invariants
from enjournal.fhir.validation import validate

AIV = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
AIC = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
LOINC = "http://loinc.org"
SD = "http://hl7.org/fhir/StructureDefinition/"


OWN_NAME = {"url": f"{SD}humanname-own-name", "valueString": "Hansen"}
ABSENT = {"url": f"{SD}data-absent-reason", "valueCode": "unknown"}


def errors(resource: dict) -> list[tuple[str, str]]:
    return [
        (i.expression[0] if i.expression else "", i.diagnostics)
        for i in validate(resource)
        if i.severity == "error"
    ]


def allergy(**fields) -> dict:
    return {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/1"}, **fields}


def status(system: str, code: str) -> dict:
    return {"coding": [{"system": system, "code": code}]}


def observation(**fields) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
        **fields,
    }


def item(**fields) -> dict:
    return {"linkId": "1", **fields}


def questionnaire(*items) -> dict:
    return {"resourceType": "Questionnaire", "status": "active", "item": list(items)}


def patient_with_org(**org) -> dict:
    """A Patient whose managingOrganization is its contained Organization ``#o``."""
    return {
        "resourceType": "Patient",
        "managingOrganization": {"reference": "#o"},
        "contained": [{"resourceType": "Organization", "id": "o", "name": "x", **org}],
    }


PNG = base64.b64encode(b"\x89PNG fake image bytes").decode()

# (key, invalid resource, the same resource made valid, expected error path)
CASES = [
    (
        "per-1",
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "AMB"},
            "period": {"start": "2020-02-01", "end": "2020-01-01"},
        },
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"code": "AMB"},
            "period": {"start": "2020-01-01", "end": "2020-02-01"},
        },
        "Encounter.period",
    ),
    (
        "ait-1",
        allergy(verificationStatus=status(AIV, "confirmed")),
        allergy(verificationStatus=status(AIV, "confirmed"), clinicalStatus=status(AIC, "active")),
        "AllergyIntolerance",
    ),
    (
        "ait-2",
        allergy(
            verificationStatus=status(AIV, "entered-in-error"), clinicalStatus=status(AIC, "active")
        ),
        allergy(verificationStatus=status(AIV, "entered-in-error")),
        "AllergyIntolerance",
    ),
    (
        "ras-2",
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": "Patient/1"},
            "prediction": [{"probabilityDecimal": 150}],
        },
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": "Patient/1"},
            "prediction": [{"probabilityDecimal": 15}],
        },
        "RiskAssessment.prediction[0]",
    ),
    (
        "que-1",
        questionnaire(item(type="group")),
        questionnaire(item(type="group", item=[item(linkId="1.1", type="string")])),
        "Questionnaire.item[0]",
    ),
    (
        "que-3",
        questionnaire(item(type="display", text="x", code=[{"system": LOINC, "code": "1"}])),
        questionnaire(item(type="display", text="x")),
        "Questionnaire.item[0]",
    ),
    (
        "que-7",
        questionnaire(
            item(
                type="string",
                enableWhen=[{"question": "0", "operator": "exists", "answerString": "x"}],
            )
        ),
        questionnaire(
            item(
                type="string",
                enableWhen=[{"question": "0", "operator": "exists", "answerBoolean": True}],
            )
        ),
        "Questionnaire.item[0].enableWhen[0]",
    ),
    (
        "obs-6",
        observation(valueString="x", dataAbsentReason={"text": "unknown"}),
        observation(valueString="x"),
        "Observation",
    ),
    (
        "obs-7",
        observation(
            valueString="x",
            component=[
                {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueString": "y"}
            ],
        ),
        observation(
            valueString="x",
            component=[
                {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueString": "y"}
            ],
        ),
        "Observation",
    ),
    (
        "dom-2",
        patient_with_org(contained=[{"resourceType": "Organization", "id": "i", "name": "y"}]),
        patient_with_org(),
        ("Patient.contained[0].contained[0]", "Patient"),  # the nested one is unreferenced too
    ),
    (
        "dom-3",
        {
            "resourceType": "Patient",
            "contained": [{"resourceType": "Organization", "id": "o", "name": "x"}],
        },
        patient_with_org(),
        "Patient.contained[0]",
    ),
    (
        "dom-4",
        patient_with_org(meta={"versionId": "1"}),
        patient_with_org(meta={"source": "x"}),
        "Patient",
    ),
    (
        "dom-5",
        patient_with_org(meta={"security": [{"code": "R"}]}),
        patient_with_org(),
        "Patient",
    ),
    (
        "ele-1",
        {"resourceType": "Patient", "maritalStatus": {"id": "x"}},
        {"resourceType": "Patient", "maritalStatus": {"id": "x", "text": "single"}},
        "Patient.maritalStatus",
    ),
    (
        "ext-1",
        {
            "resourceType": "Patient",
            "extension": [
                {
                    "url": "http://x/e",
                    "valueString": "a",
                    "extension": [{"url": "part", "valueString": "b"}],
                }
            ],
        },
        {
            "resourceType": "Patient",
            "extension": [
                {"url": "http://x/e", "extension": [{"url": "part", "valueString": "b"}]}
            ],
        },
        "Patient.extension[0]",
    ),
    (
        "ext-1",
        {"resourceType": "Patient", "extension": [{"url": "http://x/e"}]},
        {"resourceType": "Patient", "extension": [{"url": "http://x/e", "valueBoolean": False}]},
        "Patient.extension[0]",
    ),
    (
        "ref-1",
        {"resourceType": "Patient", "managingOrganization": {"reference": "#nothere"}},
        {"resourceType": "Patient", "managingOrganization": {"reference": "Organization/1"}},
        "Patient.managingOrganization.reference",
    ),
    (
        "att-1",
        {"resourceType": "Patient", "photo": [{"data": PNG}]},
        {"resourceType": "Patient", "photo": [{"data": PNG, "contentType": "image/png"}]},
        "Patient.photo[0]",
    ),
    (
        "Attachment.size",
        {
            "resourceType": "Patient",
            "photo": [{"data": PNG, "contentType": "image/png", "size": 3}],
        },
        {
            "resourceType": "Patient",
            "photo": [
                {"data": PNG, "contentType": "image/png", "size": len(base64.b64decode(PNG))}
            ],
        },
        "Patient.photo[0].size",
    ),
    (
        "cpt-2",
        {"resourceType": "Patient", "telecom": [{"value": "12345678"}]},
        {"resourceType": "Patient", "telecom": [{"system": "phone", "value": "12345678"}]},
        "Patient.telecom[0]",
    ),
    (
        "Coding.system absolute",
        {
            "resourceType": "Patient",
            "maritalStatus": {"coding": [{"system": "local", "code": "x"}]},
        },
        {
            "resourceType": "Patient",
            "maritalStatus": {"coding": [{"system": "urn:oid:2.16.578.1", "code": "x"}]},
        },
        "Patient.maritalStatus.coding[0].system",
    ),
    (
        "Identifier.system absolute",
        {"resourceType": "Patient", "identifier": [{"system": "mrn", "value": "1"}]},
        {"resourceType": "Patient", "identifier": [{"system": "http://x/mrn", "value": "1"}]},
        "Patient.identifier[0].system",
    ),
    (
        "que-12",  # R4 says "> 2" but means more than one (ERRATA)
        questionnaire(
            item(
                type="string",
                enableWhen=[
                    {"question": "0", "operator": "exists", "answerBoolean": True},
                    {"question": "9", "operator": "exists", "answerBoolean": True},
                ],
            )
        ),
        questionnaire(
            item(
                type="string",
                enableBehavior="any",
                enableWhen=[
                    {"question": "0", "operator": "exists", "answerBoolean": True},
                    {"question": "9", "operator": "exists", "answerBoolean": True},
                ],
            )
        ),
        "Questionnaire.item[0]",
    ),
    (
        "canonical url absolute",
        {"resourceType": "ValueSet", "status": "active", "url": "ValueSet/mine"},
        {"resourceType": "ValueSet", "status": "active", "url": "http://x/ValueSet/mine"},
        "ValueSet.url",
    ),
    (
        "ValueSet.compose.include.system absolute",
        {
            "resourceType": "ValueSet",
            "status": "active",
            "compose": {"include": [{"system": "#cs"}]},
        },
        {
            "resourceType": "ValueSet",
            "status": "active",
            "compose": {"include": [{"system": "urn:oid:1.2.3"}]},
        },
        "ValueSet.compose.include[0].system",
    ),
    (
        "string at most 1 MB",
        {"resourceType": "Patient", "gender": "other", "name": [{"text": "æ" * 600_000}]},
        {"resourceType": "Patient", "gender": "other", "name": [{"text": "æ" * 500_000}]},
        "Patient.name[0].text",
    ),
    (
        "core extension value type",
        {
            "resourceType": "Patient",
            "extension": [{"url": f"{SD}patient-birthPlace", "valueString": "Bergen"}],
        },
        {
            "resourceType": "Patient",
            "extension": [{"url": f"{SD}patient-birthPlace", "valueAddress": {"city": "Bergen"}}],
        },
        "Patient.extension[0].valueString",
    ),
    (
        "complex core extension has no value",
        {
            "resourceType": "Patient",
            "extension": [{"url": f"{SD}patient-nationality", "valueString": "NO"}],
        },
        {
            "resourceType": "Patient",
            "extension": [
                {
                    "url": f"{SD}patient-nationality",
                    "extension": [{"url": "code", "valueCodeableConcept": {"text": "NO"}}],
                }
            ],
        },
        "Patient.extension[0]",
    ),
    (
        "simple core extension has no nested extensions",
        {
            "resourceType": "Patient",
            "extension": [
                {"url": f"{SD}patient-birthPlace", "extension": [{"url": "x", "valueString": "y"}]}
            ],
        },
        {
            "resourceType": "Patient",
            "extension": [{"url": f"{SD}patient-birthPlace", "valueAddress": {"city": "Bergen"}}],
        },
        "Patient.extension[0]",
    ),
    (
        "core extension context",
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "extension": [{"url": f"{SD}patient-birthPlace", "valueAddress": {"city": "Bergen"}}],
        },
        {
            "resourceType": "Patient",
            "extension": [{"url": f"{SD}patient-birthPlace", "valueAddress": {"city": "Bergen"}}],
        },
        "Observation.extension[0]",
    ),
    (
        "core extension context on a datatype's element",
        {
            "resourceType": "Patient",
            "name": [{"given": ["Kari"], "_given": [{"extension": [OWN_NAME]}]}],
        },
        {
            "resourceType": "Patient",
            "name": [{"family": "Hansen", "_family": {"extension": [OWN_NAME]}}],
        },
        "Patient.name[0]._given[0].extension[0]",
    ),
    (
        "Extension.url absolute",
        {"resourceType": "Patient", "extension": [{"url": "relative", "valueString": "x"}]},
        {"resourceType": "Patient", "extension": [{"url": "http://x/e", "valueString": "x"}]},
        "Patient.extension[0].url",
    ),
]


def bundle(kind: str, *entries) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def entry(full_url: str | None, rtype: str, rid: str | None, **more) -> dict:
    resource = {"resourceType": rtype, **({"id": rid} if rid else {}), **more}
    return {**({"fullUrl": full_url} if full_url else {}), "resource": resource}


BUNDLE_CASES = [
    (
        "fullUrl absolute",
        bundle("collection", entry("Patient/1", "Patient", "1")),
        bundle("collection", entry("http://x/fhir/Patient/1", "Patient", "1")),
        "Bundle.entry[0].fullUrl",
    ),
    (
        "bdl-7",
        bundle(
            "collection", entry("urn:uuid:1", "Patient", None), entry("urn:uuid:1", "Patient", None)
        ),
        bundle(
            "collection", entry("urn:uuid:1", "Patient", None), entry("urn:uuid:2", "Patient", None)
        ),
        "Bundle",
    ),
    (
        "fullUrl vs id",
        bundle("collection", entry("http://x/fhir/Patient/a", "Patient", "b")),
        bundle("collection", entry("http://x/fhir/Patient/a", "Patient", "a")),
        "Bundle.entry[0].fullUrl",
    ),
    (
        "fullUrl vs type",
        bundle("collection", entry("http://x/fhir/Patient/a", "Organization", "a", name="x")),
        bundle("collection", entry("http://x/fhir/Organization/a", "Organization", "a", name="x")),
        "Bundle.entry[0].fullUrl",
    ),
    (
        "duplicate id",
        bundle("collection", entry(None, "Patient", "a"), entry(None, "Patient", "a")),
        bundle("collection", entry(None, "Patient", "a"), entry(None, "Patient", "b")),
        "Bundle.entry[1].resource.id",
    ),
    (
        "bdl-1",
        {**bundle("collection"), "total": 3, "entry": [entry(None, "Patient", "a")]},
        {**bundle("searchset"), "total": 3, "entry": [entry(None, "Patient", "a")]},
        "Bundle",
    ),
    (
        "duplicate contained id",
        {
            "resourceType": "Patient",
            "managingOrganization": {"reference": "#o"},
            "generalPractitioner": [{"reference": "#o"}],
            "contained": [
                {"resourceType": "Organization", "id": "o", "name": "x"},
                {"resourceType": "Organization", "id": "o", "name": "y"},
            ],
        },
        {
            "resourceType": "Patient",
            "managingOrganization": {"reference": "#o"},
            "generalPractitioner": [{"reference": "#p"}],
            "contained": [
                {"resourceType": "Organization", "id": "o", "name": "x"},
                {"resourceType": "Organization", "id": "p", "name": "y"},
            ],
        },
        "Patient.contained[1].id",
    ),
]


@pytest.mark.parametrize(
    ("key", "bad", "good", "where"), CASES + BUNDLE_CASES, ids=[c[0] for c in CASES + BUNDLE_CASES]
)
def test_rule_is_enforced_and_its_valid_twin_passes(key, bad, good, where):
    assert errors(good) == []
    found = errors(bad)
    assert found, f"{key} was not enforced"
    expected = list(where) if isinstance(where, tuple) else [where]
    assert [w for w, _ in found] == expected, found
    if "-" in key and " " not in key:
        assert any(key in message for _, message in found)


def test_an_extension_inside_an_extension_may_have_a_relative_url():
    nested = {
        "resourceType": "Patient",
        "extension": [{"url": "http://x/e", "extension": [{"url": "part", "valueString": "b"}]}],
    }
    assert errors(nested) == []
    deeper = copy.deepcopy(nested)
    deeper["extension"][0]["extension"][0] = {
        "url": "part",
        "extension": [{"url": "sub", "valueString": "c"}],
    }
    assert errors(deeper) == []


def test_invariants_in_bundle_entries_and_contained_resources_are_evaluated():
    bad_period = {"start": "2020-02-01", "end": "2020-01-01"}
    enc = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "period": bad_period,
    }
    found = errors(bundle("collection", {"fullUrl": "urn:uuid:1", "resource": enc}))
    assert found and found[0][0] == "Bundle.entry[0].resource.period"
    container = {
        "resourceType": "Patient",
        "contained": [{**enc, "id": "e"}],
        "link": [{"other": {"reference": "#e"}, "type": "seealso"}],
    }
    found = errors(container)
    assert any(w == "Patient.contained[0].period" for w, _ in found), found


def test_a_local_reference_from_a_contained_resource_may_name_a_sibling():
    patient = {
        "resourceType": "Patient",
        "managingOrganization": {"reference": "#a"},
        "contained": [
            {"resourceType": "Organization", "id": "a", "name": "x", "partOf": {"reference": "#b"}},
            {"resourceType": "Organization", "id": "b", "name": "y"},
        ],
    }
    assert errors(patient) == []


def test_skipped_invariants_are_listed_with_a_reason():
    skipped = invariants.skipped()
    assert any(k.startswith("ele-1") for k in skipped)
    assert any(k.startswith("txt-1") and "htmlChecks" in v for k, v in skipped.items())
    assert all(reason for reason in skipped.values())
    evaluated = [i for p in ("Period", "Observation") for i in invariants.invariants_for(p)]
    assert {"per-1", "obs-6", "obs-7", "dom-2"} <= {i.key for i in evaluated}


@pytest.mark.parametrize(
    ("expression", "value", "expected"),
    [
        ("start.hasValue().not() or end.hasValue().not() or (start <= end)", {}, True),
        (
            "start.hasValue().not() or end.hasValue().not() or (start <= end)",
            {"start": "2020"},
            True,
        ),
        ("type = 'document' implies (timestamp.hasValue())", {"type": "collection"}, True),
        ("x.empty() or y.exists()", {"xSomething": 1}, False),  # may be a choice: x[x]
        ("a.exists() or b", {"_a": {"extension": []}}, True),
        ("(a xor b) or c.empty()", {}, True),
        ("a xor b or c.empty()", {}, False),  # xor and or share precedence: not settled
    ],
)
def test_shortcuts_settle_only_what_the_element_itself_settles(expression, value, expected):
    shortcut = invariants._shortcut(expression)
    settled = shortcut is not None and invariants._settled(
        shortcut, value, lambda: invariants.present_names(value)
    )
    assert settled is expected


def test_a_misplaced_core_extension_is_named_with_where_it_was_found():
    birth_place = {"url": f"{SD}patient-birthPlace", "valueAddress": {"city": "Bergen"}}
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x", "extension": [birth_place]},
    }
    [(where, message)] = errors(observation)
    assert where == "Observation.code.extension[0]"
    assert f"{SD}patient-birthPlace" in message and "Observation.code" in message
    observation["id"] = "o"
    contained = {"resourceType": "Patient", "contained": [observation]}
    contained["generalPractitioner"] = [{"reference": "#o"}]
    assert [w for w, _ in errors(contained)] == ["Patient.contained[0].code.extension[0]"]


def test_an_element_context_extension_is_fine_on_any_element():
    patient = {
        "resourceType": "Patient",
        "extension": [ABSENT],
        "_birthDate": {"extension": [ABSENT]},
        "name": [{"extension": [ABSENT], "_family": {"extension": [ABSENT, OWN_NAME]}}],
        "contact": [{"extension": [ABSENT], "name": {"extension": [ABSENT], "text": "x"}}],
    }
    assert errors(patient) == []
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"extension": [ABSENT]},
        "valueQuantity": {"extension": [ABSENT]},
        "component": [{"code": {"text": "c"}, "extension": [ABSENT]}],
    }
    assert errors(observation) == []


def test_context_matches_base_types_and_repeated_elements():
    translated = {"url": f"{SD}iso21090-PQ-translation", "valueQuantity": {"value": 1}}
    age = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    age["valueQuantity"] = {"value": 3, "extension": [translated]}
    assert errors(age) == []  # context Quantity, on a Quantity
    history = {"resourceType": "FamilyMemberHistory", "status": "completed", "relationship": {}}
    history.update(patient={"reference": "Patient/1"}, relationship={"text": "mor"})
    history["ageAge"] = {"value": 60, "extension": [translated]}
    assert errors(history) == []  # an Age is a Quantity
    history["ageAge"]["extension"] = [{"url": f"{SD}patient-birthPlace", "valueAddress": {}}]
    history["ageAge"]["extension"][0]["valueAddress"] = {"city": "Oslo"}
    assert [w for w, _ in errors(history)] == ["FamilyMemberHistory.ageAge.extension[0]"]
    date = {"linkId": "3", "type": "date"}
    date["extension"] = [{"url": f"{SD}entryFormat", "valueString": "dd.mm.yyyy"}]
    inner = {"linkId": "2", "type": "group", "item": [date]}
    questionnaire = {"resourceType": "Questionnaire", "status": "active"}
    questionnaire["item"] = [{"linkId": "1", "type": "group", "item": [inner]}]
    assert errors(questionnaire) == []  # Questionnaire.item.item.item is a Questionnaire.item


def test_unknown_extension_urls_are_not_checked_for_context():
    odd = {"url": "http://example.org/fhir/StructureDefinition/x", "valueString": "y"}
    assert (
        errors(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "extension": [odd],
            }
        )
        == []
    )


async def test_a_misplaced_core_extension_is_refused_on_write(client):
    birth_place = {"url": f"{SD}patient-birthPlace", "valueAddress": {"city": "Bergen"}}
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    answer = await client.post(
        "/fhir/Observation", json={**observation, "extension": [birth_place]}
    )
    assert answer.status_code == 422
    assert f"{SD}patient-birthPlace" in answer.text
    report = await client.post(
        "/fhir/Observation/$validate", json={**observation, "extension": [birth_place]}
    )
    issues = [i for i in report.json()["issue"] if i["severity"] == "error"]
    assert issues and issues[0]["expression"] == ["Observation.extension[0]"]
    answer = await client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "extension": [birth_place]}
    )
    assert answer.status_code == 201
