import json
from collections import Counter
from datetime import date
from functools import cache

import orjson
import pytest

from enjournal.demo import codes, places
from enjournal.demo.population import generate_population, write_bundles
from enjournal.fhir import norwegian_ids as ids
from enjournal.fhir.validation import validate

PATIENTS = 150
SEED = 42


@cache
def population(patients: int = PATIENTS, seed: int = SEED, **options) -> tuple[dict, ...]:
    return tuple(generate_population(patients, seed, **options))


def references(node, found=None):
    """Every Reference.reference string in a JSON tree."""
    found = [] if found is None else found
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.append(value)
            else:
                references(value, found)
    elif isinstance(node, list):
        for item in node:
            references(item, found)
    return found


def test_same_seed_same_output_and_other_seed_differs():
    a = [orjson.dumps(b) for b in generate_population(20, 7)]
    b = [orjson.dumps(b) for b in generate_population(20, 7)]
    c = [orjson.dumps(b) for b in generate_population(20, 8)]
    assert a == b
    assert a[1:] != c[1:]


def test_patients_do_not_depend_on_population_size():
    small = population(10)
    assert [orjson.dumps(b) for b in small[1:]] == [
        orjson.dumps(b) for b in population()[1 : len(small)]
    ]


def test_bundle_shape():
    shared, *patients = population()
    assert len(patients) == PATIENTS
    for bundle in population():
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    for entry in shared["entry"]:
        r = entry["resource"]
        assert entry["request"] == {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
    for bundle in patients:
        types = [e["resource"]["resourceType"] for e in bundle["entry"]]
        assert types.count("Patient") == 1
        for entry in bundle["entry"]:
            assert entry["fullUrl"].startswith("urn:uuid:")
            assert entry["request"] == {"method": "POST", "url": entry["resource"]["resourceType"]}
            assert "id" not in entry["resource"]


def test_every_resource_is_structurally_valid_fhir_r4():
    for bundle in population():
        issues = validate(bundle)
        assert issues == [], issues[:5]


def test_references_resolve():
    shared, *patients = population()
    shared_ids = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in shared["entry"]}
    assert len(shared_ids) == len(shared["entry"])
    for ref in references(shared):
        assert ref in shared_ids, ref
    seen_uuids: set[str] = set()
    for bundle in patients:
        full_urls = {e["fullUrl"] for e in bundle["entry"]}
        assert len(full_urls) == len(bundle["entry"])
        assert not (full_urls & seen_uuids)
        seen_uuids |= full_urls
        for ref in references(bundle):
            if ref.startswith("urn:uuid:"):
                assert ref in full_urls, ref
            else:
                assert ref in shared_ids, ref


def test_every_person_number_is_valid_unique_and_matches_the_patient():
    numbers = []
    kinds = Counter()
    for bundle in population()[1:]:
        patient = next(
            e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
        )
        (identifier,) = patient["identifier"]
        system, value = identifier["system"], identifier["value"]
        assert system in (ids.OID_FNR, ids.OID_DNR)
        assert ids.identifier_problem(system, value) is None
        assert ids.is_valid_fnr(value) and ids.is_synthetic(value)
        if system == ids.OID_DNR:
            assert ids.is_valid_dnr(value)
        kinds[system] += 1
        born, sex = ids.birth_date_and_sex(value)
        assert patient["birthDate"] == born.isoformat()
        assert patient["gender"] == sex
        numbers.append(value)
    assert len(set(numbers)) == len(numbers)
    assert kinds[ids.OID_FNR] > 0.9 * PATIENTS


def test_shared_identifiers_are_valid():
    shared = population()[0]
    orgnrs = []
    for entry in shared["entry"]:
        r = entry["resource"]
        for identifier in r.get("identifier", []):
            assert ids.identifier_problem(identifier["system"], identifier["value"]) is None
            if identifier["system"] == ids.OID_ORGNR:
                orgnrs.append(identifier["value"])
        if r["resourceType"] == "Organization":
            systems = {i["system"] for i in r["identifier"]}
            assert {ids.OID_ORGNR, ids.OID_HER_ID} <= systems
            if r["id"].startswith("hf-"):
                assert ids.OID_RESH in systems
        if r["resourceType"] == "Practitioner":
            assert r["identifier"][0]["system"] == ids.OID_HPR
    assert len(orgnrs) == len(set(orgnrs))


def test_shared_resources_cover_the_kinds_of_organisation():
    shared = population()[0]
    counts = Counter(e["resource"]["resourceType"] for e in shared["entry"])
    assert counts.keys() == {
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Medication",
        "Endpoint",  # the address register's (demo/messaging.py)
        "HealthcareService",
    }
    org_kinds = Counter(
        e["resource"]["type"][0]["text"]
        for e in shared["entry"]
        if e["resource"]["resourceType"] == "Organization"
    )
    for kind in (
        "Regionalt helseforetak",
        "Helseforetak",
        "Avdeling",
        "Kommune",
        "Legekontor",
        "Apotek",
    ):
        assert org_kinds[kind] > 0, kind
    assert counts["Medication"] == len(codes.MEDICATIONS)


def test_resource_counts_and_types():
    patients = population()[1:]
    per_patient = [len(b["entry"]) for b in patients]
    mean = sum(per_patient) / len(per_patient)
    assert 40 <= mean <= 80, mean
    types = Counter(e["resource"]["resourceType"] for b in patients for e in b["entry"])
    for rtype in (
        "Patient",
        "Encounter",
        "EpisodeOfCare",
        "Condition",
        "Observation",
        "MedicationRequest",
        "AllergyIntolerance",
        "Immunization",
    ):
        assert types[rtype] > 0, rtype
    assert types["Observation"] > types["Patient"] * 5


def test_resources_per_patient_is_configurable():
    fewer = population(100, 1, resources_per_patient=25)[1:]
    more = population(100, 1, resources_per_patient=120)[1:]
    mean = lambda bundles: sum(len(b["entry"]) for b in bundles) / len(bundles)  # noqa: E731
    assert 15 <= mean(fewer) <= 35
    assert 90 <= mean(more) <= 150


def test_patients_look_norwegian():
    for bundle in population()[1:]:
        patient = bundle["entry"][0]["resource"]
        (address,) = patient["address"]
        municipality = address["extension"][0]["extension"][0]["valueCoding"]
        assert municipality["system"] == ids.OID_KOMMUNENUMMER
        assert places.BY_CODE[municipality["code"]].name == municipality["display"]
        assert address["country"] == "NO" and len(address["postalCode"]) == 4
        assert patient["generalPractitioner"][0]["reference"].startswith("Practitioner/")


def test_age_and_sex_distribution_is_plausible():
    patients = [b["entry"][0]["resource"] for b in population(1000, 3)[1:]]
    ages = [(date(2025, 1, 1) - date.fromisoformat(p["birthDate"])).days / 365.25 for p in patients]
    females = sum(p["gender"] == "female" for p in patients)
    assert 430 <= females <= 570
    assert 0.12 < sum(a < 15 for a in ages) / len(ages) < 0.25
    assert 0.12 < sum(a >= 67 for a in ages) / len(ages) < 0.25
    assert max(ages) < 106


def test_codes_and_units():
    code_systems = Counter()
    for bundle in population()[1:]:
        for entry in bundle["entry"]:
            r = entry["resource"]
            if r["resourceType"] == "Condition":
                for coding in r["code"]["coding"]:
                    code_systems[coding["system"]] += 1
            elif r["resourceType"] == "Observation":
                assert r["code"]["coding"][0]["system"] == codes.LOINC
                category = r["category"][0]["coding"][0]["code"]
                if r["code"]["coding"][0]["code"] == "85354-9":
                    assert category == "vital-signs" and "valueQuantity" not in r
                    assert [c["code"]["coding"][0]["code"] for c in r["component"]] == [
                        "8480-6",
                        "8462-4",
                    ]
                    assert r["component"][0]["valueQuantity"]["code"] == "mm[Hg]"
                else:
                    assert r["valueQuantity"]["system"] == codes.UCUM
            elif r["resourceType"] == "MedicationRequest":
                assert r["status"] in ("active", "completed")
                assert r["requester"]["reference"].startswith("Practitioner/")
                assert r["medicationReference"]["reference"].startswith("Medication/atc-")
                assert r["dosageInstruction"][0]["text"]
    assert code_systems[codes.ICD10] > 0 and code_systems[codes.ICPC2] > 0


def test_diabetics_have_hba1c():
    checked = 0
    for bundle in population(400, 5)[1:]:
        resources = [e["resource"] for e in bundle["entry"]]
        diabetic = any(
            c["system"] == codes.ICD10 and c["code"] == "E11.9"
            for r in resources
            if r["resourceType"] == "Condition"
            for c in r["code"]["coding"]
        )
        hba1c = [
            r["valueQuantity"]["value"]
            for r in resources
            if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "4548-4"
        ]
        if diabetic and len([r for r in resources if r["resourceType"] == "Encounter"]) > 8:
            checked += 1
            assert hba1c, "a diabetic with many visits has no HbA1c"
            assert sum(hba1c) / len(hba1c) > 6.0
    assert checked > 0


def test_write_bundles(tmp_path):
    paths = write_bundles(tmp_path / "out", 5, SEED)
    assert [p.name for p in paths] == [f"bundle-{i:06d}.json" for i in range(6)]
    assert json.loads(paths[0].read_bytes()) == population(5)[0]
    assert json.loads(paths[3].read_bytes()) == population(5)[3]


def test_patients_per_bundle():
    bundles = list(generate_population(7, SEED, patients_per_bundle=3))
    assert len(bundles) == 1 + 3
    merged = [e for b in bundles[1:] for e in b["entry"]]
    assert merged == [e for b in population(7)[1:] for e in b["entry"]]


def test_bad_arguments():
    with pytest.raises(ValueError):
        list(generate_population(-1, 1))
