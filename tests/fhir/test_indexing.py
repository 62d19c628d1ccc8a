"""The FHIRPath evaluator and the search indexer (enjournal.fhir.fhirpath / .indexing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from enjournal.fhir.datetime import MAX_MS, MIN_MS, date_range, decimal_range
from enjournal.fhir.definitions import official_search_parameters, resource_types
from enjournal.fhir.element_types import element_types, source
from enjournal.fhir.fhirpath import compile_path
from enjournal.fhir.indexing import ROW_COLUMNS, index_resource, parse_reference
from enjournal.fhir.text import normalize

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = (
    ROOT / ".cache" / "hl7.fhir.r4.examples-4.0.1" / "package",
    Path("/tmp/defs/package"),
)
PACKAGE = next((p for p in PACKAGE_DIRS if p.is_dir()), None)


def rows(resource: dict, kind: str, param: str) -> set[tuple]:
    return {r for r in index_resource(resource)[kind] if r[0] == param}


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {
        "profile": ["http://example.org/StructureDefinition/my-patient|1.0"],
        "tag": [{"system": "http://example.org/tags", "code": "vip", "display": "VIP"}],
        "source": "http://example.org/source#abc",
    },
    "identifier": [
        {
            "system": "urn:oid:2.16.578.1.12.4.1.4.1",
            "value": "13031353453",
            "type": {"text": "Fødselsnummer"},
        },
    ],
    "active": True,
    "name": [{"family": "Ødegård", "given": ["Åse", "Marie"], "prefix": ["Dr."]}],
    "telecom": [
        {"system": "phone", "value": "+47 22 00 00 00", "use": "home"},
        {"system": "email", "value": "ase@example.no"},
    ],
    "gender": "female",
    "birthDate": "1970-03",
    "address": [{"line": ["Storgata 1"], "city": "Tromsø", "postalCode": "9008", "country": "NO"}],
    "managingOrganization": {"reference": "Organization/org1"},
    "generalPractitioner": [
        {"reference": "http://other.example/fhir/Practitioner/gp1/_history/3"},
        {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "9144900"}},
    ],
}

OBSERVATION = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body Weight"}],
        "text": "Vekt",
    },
    "subject": {"reference": "Patient/p1/_history/2"},
    "encounter": {"reference": "#enc"},
    "effectivePeriod": {"start": "2024-03-05T10:00:00Z"},
    "valueQuantity": {
        "value": 72.50,
        "unit": "kg",
        "system": "http://unitsofmeasure.org",
        "code": "kg",
    },
}

BLOOD_PRESSURE = {
    "resourceType": "Observation",
    "id": "bp",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "subject": {"reference": "Group/g1"},
    "effectiveDateTime": "2024-03-05",
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {
                "value": 120,
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueQuantity": {"value": 80, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        },
    ],
}


# --------------------------------------------------------------------------- element types


def test_element_types_table():
    types = element_types()
    assert source() == "npm:hl7.fhir.r4.examples@4.0.1"
    assert "Quantity" in types["Observation.value[x]"]
    assert types["Observation.code"] == ("CodeableConcept",)
    assert types["HumanName.family"] == ("string",)
    assert types["Observation.component.code"] == ("CodeableConcept",)
    path = ROOT / "enjournal" / "fhir" / "definitions" / "element_types.json"
    assert path.stat().st_size < 1_500_000


# --------------------------------------------------------------------------- fhirpath


def test_every_search_expression_compiles(capsys):
    expressions = set()
    for rtype in sorted(resource_types()):
        for param in official_search_parameters().of(rtype).values():
            if param.expression:
                expressions.add(param.expression)
            expressions.update(c.expression for c in param.component)
    compiled = {e: compile_path(e) for e in sorted(expressions)}
    fallbacks = sorted(e for e, c in compiled.items() if c.fallback)
    with capsys.disabled():
        print(f"\n{len(compiled)} search expressions, {len(fallbacks)} on the fhirpathpy fallback")
        for e in fallbacks:
            print("  fallback:", e)
    assert len(fallbacks) <= 10


def test_fhirpath_paths_and_choice_types():
    assert compile_path("Observation.value")(OBSERVATION) == [
        (OBSERVATION["valueQuantity"], "Quantity")
    ]
    assert compile_path("Observation.value.as(Quantity)")(OBSERVATION)[0][1] == "Quantity"
    assert compile_path("(Observation.value as CodeableConcept)")(OBSERVATION) == []
    assert compile_path("Patient.value")(OBSERVATION) == []
    assert compile_path("Observation.effective")(OBSERVATION)[0][1] == "Period"
    comps = compile_path("Observation | Observation.component")(BLOOD_PRESSURE)
    assert [t for _, t in comps] == [
        "Observation",
        "Observation.component",
        "Observation.component",
    ]
    code = compile_path("code")
    assert (
        code.evaluate(comps[1][0], comps[1][1], BLOOD_PRESSURE)[0][0]["coding"][0]["code"]
        == "8480-6"
    )
    assert compile_path("Patient.name.given")(PATIENT) == [("Åse", "string"), ("Marie", "string")]
    assert compile_path("Patient.name[0].family")(PATIENT) == [("Ødegård", "string")]


def test_fhirpath_where():
    phone = compile_path("Patient.telecom.where(system='phone')")(PATIENT)
    assert [v["value"] for v, _ in phone] == ["+47 22 00 00 00"]
    patient = compile_path("Observation.subject.where(resolve() is Patient)")
    assert patient(OBSERVATION)[0][0] == OBSERVATION["subject"]
    assert patient(BLOOD_PRESSURE) == []
    deceased = compile_path("Patient.deceased.exists() and Patient.deceased != false")
    assert deceased({**PATIENT, "deceasedDateTime": "2020"}) == [(True, "boolean")]
    assert deceased({**PATIENT, "deceasedBoolean": False}) == [(False, "boolean")]


def test_fhirpath_fallback():
    path = compile_path("Patient.name.given.select($this + 'x')")
    assert path.fallback
    assert path(PATIENT) == [("Åsex", "string"), ("Mariex", "string")]


# --------------------------------------------------------------------------- indexer


def test_every_kind_of_row_present():
    assert set(index_resource(PATIENT)) == set(ROW_COLUMNS)
    with pytest.raises(ValueError):
        index_resource({"id": "x"})


def test_patient_strings():
    assert rows(PATIENT, "string", "family") == {("family", normalize("Ødegård"), "Ødegård")}
    name = rows(PATIENT, "string", "name")
    assert ("name", "åse", "Åse") in name
    assert ("name", "marie", "Marie") in name
    assert ("name", "dr.", "Dr.") in name
    assert ("name", normalize("Dr. Åse Marie Ødegård"), "Dr. Åse Marie Ødegård") in name
    address = rows(PATIENT, "string", "address")
    assert {r[2] for r in address} == {"Storgata 1", "Tromsø", "9008", "NO"}
    assert rows(PATIENT, "string", "address-city") == {("address-city", "tromsø", "Tromsø")}


def test_patient_tokens():
    assert rows(PATIENT, "token", "gender") == {("gender", None, "female", None)}
    assert rows(PATIENT, "token", "active") == {("active", None, "true", None)}
    assert rows(PATIENT, "token", "identifier") == {
        ("identifier", "urn:oid:2.16.578.1.12.4.1.4.1", "13031353453", "fødselsnummer")
    }
    assert rows(PATIENT, "token", "phone") == {("phone", "home", "+47 22 00 00 00", None)}
    assert rows(PATIENT, "token", "email") == {("email", None, "ase@example.no", None)}
    assert rows(PATIENT, "token", "_tag") == {("_tag", "http://example.org/tags", "vip", "vip")}
    # FHIRPath: `deceased.exists() and deceased != false` is false without deceased[x]
    assert rows(PATIENT, "token", "deceased") == {("deceased", None, "false", None)}
    dead = {**PATIENT, "deceasedDateTime": "2020-01-01"}
    assert rows(dead, "token", "deceased") == {("deceased", None, "true", None)}


def test_patient_dates_and_meta():
    assert rows(PATIENT, "date", "birthdate") == {("birthdate", *date_range("1970-03"))}
    assert rows(PATIENT, "uri", "_source") == {("_source", "http://example.org/source#abc")}
    assert ("_profile", None, None, "http://example.org/StructureDefinition/my-patient") in rows(
        PATIENT, "reference", "_profile"
    )
    table = index_resource(PATIENT)
    assert not any(r[0] in ("_id", "_lastUpdated") for t in table.values() for r in t)


def test_references():
    assert rows(PATIENT, "reference", "organization") == {
        ("organization", "Organization", "org1", None)
    }
    assert rows(PATIENT, "reference", "general-practitioner") == {
        (
            "general-practitioner",
            "Practitioner",
            "gp1",
            "http://other.example/fhir/Practitioner/gp1/_history/3",
        )
    }
    assert rows(PATIENT, "token", "general-practitioner:identifier") == {
        ("general-practitioner:identifier", "urn:oid:2.16.578.1.12.4.1.4.4", "9144900", None)
    }
    # relative with version: version dropped; contained: not indexed
    assert rows(OBSERVATION, "reference", "subject") == {("subject", "Patient", "p1", None)}
    assert rows(OBSERVATION, "reference", "patient") == {("patient", "Patient", "p1", None)}
    assert rows(OBSERVATION, "reference", "encounter") == set()
    # where(resolve() is Patient) keeps a Group subject out of `patient`
    assert rows(BLOOD_PRESSURE, "reference", "subject") == {("subject", "Group", "g1", None)}
    assert rows(BLOOD_PRESSURE, "reference", "patient") == set()


def test_parse_reference():
    assert parse_reference("Patient/1") == ("Patient", "1", None)
    assert parse_reference("Patient/1/_history/2") == ("Patient", "1", None)
    assert parse_reference("#c1") is None
    assert parse_reference("urn:uuid:abc") == (None, None, "urn:uuid:abc")
    assert parse_reference("https://x.org/fhir/Patient/9") == (
        "Patient",
        "9",
        "https://x.org/fhir/Patient/9",
    )


def test_canonical_reference():
    plan = {
        "resourceType": "CarePlan",
        "id": "c",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p1"},
        "instantiatesCanonical": ["http://example.org/PlanDefinition/pd|2.0"],
    }
    assert rows(plan, "reference", "instantiates-canonical") == {
        ("instantiates-canonical", None, None, "http://example.org/PlanDefinition/pd")
    }


def test_observation_token_date_quantity():
    assert rows(OBSERVATION, "token", "code") == {
        ("code", "http://loinc.org", "29463-7", "body weight"),
        ("code", None, None, "vekt"),
    }
    low, _ = date_range("2024-03-05T10:00:00Z")
    assert rows(OBSERVATION, "date", "date") == {("date", low, MAX_MS)}
    assert rows(OBSERVATION, "quantity", "value-quantity") == {
        ("value-quantity", "http://unitsofmeasure.org", "kg", "kg", *decimal_range("72.5"))
    }


def test_period_open_start():
    enc = {
        "resourceType": "Encounter",
        "id": "e",
        "status": "finished",
        "class": {"code": "AMB"},
        "period": {"end": "2024"},
    }
    assert rows(enc, "date", "date") == {("date", MIN_MS, date_range("2024")[1])}


def test_composite_code_value_quantity():
    found = rows(OBSERVATION, "composite", "code-value-quantity")
    assert (
        "code-value-quantity",
        0,
        0,
        "http://loinc.org",
        "29463-7",
        None,
        None,
        "body weight",
    ) in found
    lo, hi, _ = decimal_range("72.5")
    assert ("code-value-quantity", 0, 1, "http://unitsofmeasure.org", "kg", lo, hi, None) in found
    # no valueString: the group cannot match, so no rows at all
    assert rows(OBSERVATION, "composite", "code-value-string") == set()


def test_composite_components_grouped():
    found = rows(BLOOD_PRESSURE, "composite", "component-code-value-quantity")
    groups = {}
    for _, grp, comp, _system, code, low, _high, _ in found:
        groups.setdefault(grp, {})[comp] = code if comp == 0 else low
    assert groups == {0: {0: "8480-6", 1: 119.5}, 1: {0: "8462-4", 1: 79.5}}
    combo = rows(BLOOD_PRESSURE, "composite", "combo-code-value-quantity")
    assert {r[1] for r in combo} == {1, 2}  # group 0 (the Observation) has no value


def test_number_range_money_uri():
    risk = {
        "resourceType": "RiskAssessment",
        "id": "r",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "prediction": [
            {"probabilityDecimal": 0.25},
            {"probabilityRange": {"low": {"value": 1}, "high": {"value": 3}}},
        ],
    }
    assert rows(risk, "number", "probability") == {
        ("probability", *decimal_range("0.25")),
        ("probability", 1.0, 3.0, 1.0),
    }
    item = {
        "resourceType": "ChargeItemDefinition",
        "id": "c",
        "status": "active",
        "url": "http://example.org/cid",
        "useContext": [
            {"code": {"code": "age"}, "valueRange": {"low": {"value": 18, "unit": "a"}}}
        ],
    }
    assert rows(item, "uri", "url") == {("url", "http://example.org/cid")}
    q = rows(item, "quantity", "context-quantity")
    assert len(q) == 1 and next(iter(q))[3:5] == ("a", 18.0)
    invoice = {
        "resourceType": "Invoice",
        "id": "i",
        "status": "issued",
        "totalGross": {"value": 10.5, "currency": "NOK"},
    }
    assert rows(invoice, "quantity", "totalgross") == {
        ("totalgross", "urn:iso:std:iso:4217", "NOK", "NOK", *decimal_range("10.5"))
    }


def test_rows_deduplicated():
    obs = {**OBSERVATION, "category": [OBSERVATION["code"], OBSERVATION["code"]]}
    found = index_resource(obs)["token"]
    assert len(found) == len(set(found))


@pytest.mark.skipif(
    PACKAGE is None,
    reason="the R4 example package is not unpacked "
    "(.cache/hl7.fhir.r4.examples-4.0.1/package or /tmp/defs/package)",
)
def test_every_r4_example_indexes():
    count = 0
    for path in sorted(PACKAGE.glob("*.json")):
        resource = json.loads(path.read_text("utf-8"))
        if not isinstance(resource, dict) or "resourceType" not in resource:
            continue
        try:
            result = index_resource(resource)
        except Exception as exc:  # pragma: no cover - the message names the file
            raise AssertionError(f"{path.name}: {exc!r}") from exc
        for kind, found in result.items():
            width = len(ROW_COLUMNS[kind])
            assert all(len(r) == width for r in found), (path.name, kind)
        count += 1
    assert count > 2000


def test_an_added_search_parameter_is_indexed_and_parsed():
    from enjournal.fhir.definitions import SearchParameters
    from enjournal.fhir.search.parse import parse_search

    basic = {
        "resourceType": "Basic",
        "code": {"text": "x"},
        "extension": [{"url": "https://example.org/due", "valueDate": "2030-05-01"}],
    }
    parameters = SearchParameters()
    assert not [r for r in index_resource(basic, parameters)["date"] if r[0] == "test-due"]
    parameter = {
        "resourceType": "SearchParameter",
        "url": "https://example.org/SearchParameter/test-due",
        "code": "test-due",
        "base": ["Basic"],
        "type": "date",
        "expression": "Basic.extension.where(url='https://example.org/due').value",
    }
    parameters.add(parameter)
    parameters.add(parameter)  # idempotent
    assert parameters.of("Basic")["test-due"].url == parameter["url"]
    (row,) = [r for r in index_resource(basic, parameters)["date"] if r[0] == "test-due"]
    assert row[1] < row[2]  # the whole day
    query = parse_search("Basic", [("test-due", "lt2031-01-01")], parameters=parameters)
    assert query.criteria and not query.ignored
    with pytest.raises(ValueError):
        parameters.add({"resourceType": "Patient"})


def test_added_parameters_belong_to_their_set_alone():
    """Parameters added to one platform's set are not known to another, nor to the official
    set shared outside platforms (no process-wide registry)."""
    from enjournal.fhir.definitions import SearchParameters
    from enjournal.fhir.search.parse import parse_search

    parameter = {
        "resourceType": "SearchParameter",
        "url": "https://example.org/SearchParameter/test-only-here",
        "code": "test-only-here",
        "base": ["Basic"],
        "type": "token",
        "expression": "Basic.code",
    }
    mine, other = SearchParameters([parameter]), SearchParameters()
    basic = {"resourceType": "Basic", "code": {"coding": [{"code": "c"}]}}
    assert [r for r in index_resource(basic, mine)["token"] if r[0] == "test-only-here"]
    for parameters in (other, None):
        assert not [
            r for r in index_resource(basic, parameters)["token"] if r[0] == "test-only-here"
        ]
        query = parse_search("Basic", [("test-only-here", "c")], parameters=parameters)
        assert query.ignored and not query.criteria
    with pytest.raises(TypeError):
        official_search_parameters().add(parameter)
