"""FHIR search executed as SQL, on both backends, against hand-checked expectations
(http://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

import pytest

from enjournal.fhir.errors import Invalid
from enjournal.fhir.search import parse_search
from enjournal.storage import search_sql

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def obs(code, subject=None, *, system=LOINC, **extra):
    out = {"resourceType": "Observation", "status": extra.pop("status", "final")}
    out["code"] = {"coding": [{"system": system, "code": code}], **extra.pop("code_extra", {})}
    if subject:
        out["subject"] = {"reference": subject}
    out.update(extra)
    return out


def qty(value, code="mg"):
    return {"value": value, "system": UCUM, "code": code, "unit": code}


RESOURCES = [
    {"resourceType": "Organization", "id": "org1", "name": "Helse Bergen"},
    {
        "resourceType": "Organization",
        "id": "org2",
        "name": "Haukeland",
        "partOf": {"reference": "Organization/org1"},
    },
    {"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "Lege"}]},
    {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Nordmann", "given": ["Kari"]}],
        "birthDate": "1980-05-01",
        "gender": "female",
        "identifier": [{"system": "sys1", "value": "111"}],
        "managingOrganization": {"reference": "Organization/org2"},
        "generalPractitioner": [{"reference": "Practitioner/pr1"}],
        "meta": {"tag": [{"system": "http://t", "code": "a"}]},
    },
    {
        "resourceType": "Patient",
        "id": "p2",
        "name": [{"family": "Hansen", "given": ["Ola"]}],
        "birthDate": "1990",
        "gender": "male",
        "identifier": [{"system": "sys1", "value": "222"}],
    },
    {
        "resourceType": "Patient",
        "id": "p3",
        "name": [{"family": "Østby", "given": ["Émile"]}],
        "birthDate": "1975-12-24",
    },
    {
        "resourceType": "Patient",
        "id": "p5",
        "name": [{"family": "Berg"}],
        "gender": "female",
        "birthDate": "2000-01-01",
    },
    obs(
        "1234",
        "Patient/p1",
        effectiveDateTime="2024-01-02T10:00:00Z",
        valueQuantity=qty(5.4),
        performer=[{"reference": "Practitioner/pr1"}],
        id="o1",
    ),
    obs(
        "1234",
        "Patient/p1",
        effectiveDateTime="2024-03-05",
        valueQuantity=qty(7),
        status="preliminary",
        id="o2",
    ),
    obs(
        "9999",
        "Patient/p2",
        effectivePeriod={"start": "2023-01-01", "end": "2023-12-31"},
        valueQuantity=qty(100, "mmol/L"),
        id="o3",
        component=[
            {"code": {"coding": [{"system": "x", "code": "c1"}]}, "valueQuantity": qty(10)},
            {"code": {"coding": [{"system": "x", "code": "c2"}]}, "valueQuantity": qty(20)},
        ],
    ),
    obs(
        "abc",
        "Patient/p3",
        system="http://snomed.info/sct",
        code_extra={"text": "Blood pressure"},
        id="o4",
    ),
    {
        "resourceType": "Observation",
        "id": "o5",
        "status": "final",
        "code": {"text": "unknown"},
        "subject": {"identifier": {"system": "sys1", "value": "111"}},
    },
    obs("1234", "http://other.org/fhir/Patient/x", id="o6"),
    {
        "resourceType": "Medication",
        "id": "m1",
        "code": {"coding": [{"system": "x", "code": "med"}]},
    },
    {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationReference": {"reference": "Medication/m1"},
    },
    {
        "resourceType": "MedicationRequest",
        "id": "mr2",
        "status": "stopped",
        "intent": "order",
        "subject": {"reference": "Patient/p2"},
        "medicationReference": {"reference": "Medication/m1"},
    },
    {
        "resourceType": "RiskAssessment",
        "id": "r1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "prediction": [{"probabilityDecimal": 0.5}],
    },
    {
        "resourceType": "RiskAssessment",
        "id": "r2",
        "status": "final",
        "subject": {"reference": "Patient/p2"},
        "prediction": [{"probabilityDecimal": 0.25}],
    },
    {
        "resourceType": "ValueSet",
        "id": "vs1",
        "status": "active",
        "url": "http://example.org/fhir/ValueSet/a",
    },
    {
        "resourceType": "ValueSet",
        "id": "vs2",
        "status": "active",
        "url": "http://example.org/fhir/ValueSet/b/c",
    },
    {
        "resourceType": "Provenance",
        "id": "prov1",
        "recorded": "2024-01-02T10:00:00Z",
        "target": [{"reference": "Observation/o1"}],
        "agent": [{"who": {"reference": "Practitioner/pr1"}}],
    },
]


@pytest.fixture
async def data(store):
    for res in RESOURCES:
        res = dict(res)
        await store.update(res, res.pop("id"))
    # A deleted patient that matches many searches, and an observation pointing at it.
    await store.update(
        {"resourceType": "Patient", "name": [{"family": "Nordmann"}], "gender": "female"}, "p4"
    )
    await store.update(obs("1234", "Patient/p4"), "o7")
    await store.delete("Patient", "p4")
    return store


async def run(store, rtype, params, **kw):
    query = parse_search(rtype, params, strict=True, **kw)
    async with store.transaction(write=query.needs_write) as tx:
        return await tx.search(query)


async def ids(store, rtype, params, **kw):
    result = await run(store, rtype, params, **kw)
    return sorted(m.id for m in result.matches)


def q(text: str) -> list[tuple[str, str]]:
    return [tuple(p.split("=", 1)) for p in text.split("&")] if text else []


CASES = [
    # string: prefix, normalized; :exact; :contains; OR; AND
    ("Patient", "name=nord", ["p1"]),
    ("Patient", "family=NORDMANN", ["p1"]),
    ("Patient", "family:exact=Nordmann", ["p1"]),
    ("Patient", "family:exact=nordmann", []),
    ("Patient", "name:contains=ans", ["p2"]),
    ("Patient", "name=emile", ["p3"]),
    ("Patient", "family=østby", ["p3"]),
    ("Patient", "family=ostby", []),
    ("Patient", "name=nord,hans", ["p1", "p2"]),
    ("Patient", "name=kari&name=nord", ["p1"]),
    ("Patient", "name=kari&family=hansen", []),
    ("Patient", "name:missing=true", []),
    # token
    ("Patient", "gender=female", ["p1", "p5"]),
    ("Patient", "identifier=sys1|222", ["p2"]),
    ("Patient", "identifier=|222", []),
    ("Patient", "identifier=222", ["p2"]),
    ("Patient", "identifier=sys1|", ["p1", "p2"]),
    ("Patient", "gender:not=male", ["p1", "p3", "p5"]),
    ("Patient", "gender:not=male,female", ["p3"]),
    ("Patient", "gender:missing=true", ["p3"]),
    ("Patient", "gender:missing=false", ["p1", "p2", "p5"]),
    ("Observation", "code:text=blood", ["o4"]),
    ("Observation", "code=http://snomed.info/sct|abc", ["o4"]),
    ("Observation", "code=1234&status=preliminary", ["o2"]),
    ("Patient", "_tag=http://t|a", ["p1"]),
    ("Patient", "_id=p1,p2", ["p1", "p2"]),
    ("Patient", "_id=p4", []),
    # date: range semantics per prefix (birthdates: p3 1975-12-24, p1 1980-05-01, p2 1990,
    # p5 2000-01-01)
    ("Patient", "birthdate=1980", ["p1"]),
    ("Patient", "birthdate=1980-05", ["p1"]),
    ("Patient", "birthdate=1980-05-01", ["p1"]),
    ("Patient", "birthdate=1980-05-01T12:00", []),
    ("Patient", "birthdate=gt1980", ["p2", "p5"]),
    ("Patient", "birthdate=lt1980", ["p3"]),
    ("Patient", "birthdate=ge1980", ["p1", "p2", "p5"]),
    ("Patient", "birthdate=le1980", ["p1", "p3"]),
    ("Patient", "birthdate=ne1980", ["p2", "p3", "p5"]),
    ("Patient", "birthdate=sa1980", ["p2", "p5"]),
    ("Patient", "birthdate=eb1980", ["p3"]),
    ("Patient", "birthdate=1990-06", []),
    ("Patient", "birthdate=ge1990-06", ["p2", "p5"]),
    ("Patient", "birthdate=ge1980&birthdate=lt1995", ["p1", "p2"]),
    ("Patient", "birthdate=1975,2000", ["p3", "p5"]),
    ("Observation", "date=2023-06", []),
    ("Observation", "date=2023", ["o3"]),
    ("Observation", "date=sa2023", ["o1", "o2"]),
    ("Observation", "date=eb2024", ["o3"]),
    ("Observation", "date=gt2023-12-30", ["o1", "o2", "o3"]),
    ("Observation", "date=2024-01-02T10:00:00Z", ["o1"]),
    ("Observation", "date=2024-01-02T11:00:00+01:00", ["o1"]),
    ("Observation", "date:missing=true&code=1234", ["o6", "o7"]),
    ("Patient", "_lastUpdated=gt2000&_id=p1", ["p1"]),
    ("Patient", "_lastUpdated=lt2000", []),
    # number (probability: r1 0.5, r2 0.25)
    ("RiskAssessment", "probability=0.5", ["r1"]),
    ("RiskAssessment", "probability=0.25", ["r2"]),
    ("RiskAssessment", "probability=0.2", []),
    ("RiskAssessment", "probability=0.3", ["r2"]),  # [0.25, 0.35) holds 0.25
    ("RiskAssessment", "probability=gt0.3", ["r1"]),
    ("RiskAssessment", "probability=lt0.3", ["r2"]),
    ("RiskAssessment", "probability=ge0.5", ["r1"]),
    ("RiskAssessment", "probability=le0.25", ["r2"]),
    ("RiskAssessment", "probability=ne0.5", ["r2"]),
    ("RiskAssessment", "probability=ap0.48", ["r1"]),
    ("RiskAssessment", "probability=5e-1", ["r1"]),
    # quantity (o1 5.4 mg, o2 7 mg, o3 100 mmol/L)
    ("Observation", "value-quantity=5.4", ["o1"]),
    ("Observation", "value-quantity=5.4|http://unitsofmeasure.org|mg", ["o1"]),
    ("Observation", "value-quantity=5.4|http://other|mg", []),
    ("Observation", "value-quantity=5.4||mg", ["o1"]),
    ("Observation", "value-quantity=5.4||kg", []),
    ("Observation", "value-quantity=5", ["o1"]),  # [4.5, 5.5) holds 5.4
    ("Observation", "value-quantity=6", []),
    ("Observation", "value-quantity=gt6", ["o2", "o3"]),
    ("Observation", "value-quantity=gt6||mg", ["o2"]),
    ("Observation", "value-quantity=lt6", ["o1"]),
    ("Observation", "value-quantity=1e2", ["o3"]),
    ("Observation", "value-quantity=ap7.5||mg", ["o2"]),
    # uri
    ("ValueSet", "url=http://example.org/fhir/ValueSet/a", ["vs1"]),
    ("ValueSet", "url=http://example.org/fhir/ValueSet", []),
    ("ValueSet", "url:below=http://example.org/fhir/ValueSet", ["vs1", "vs2"]),
    ("ValueSet", "url:above=http://example.org/fhir/ValueSet/b/c/d", ["vs2"]),
    # reference
    ("Observation", "subject=Patient/p1", ["o1", "o2"]),
    ("Observation", "subject=p1", ["o1", "o2"]),
    ("Observation", "subject:Patient=p1", ["o1", "o2"]),
    ("Observation", "patient=p1", ["o1", "o2"]),
    ("Observation", "subject=Patient/p1,Patient/p2", ["o1", "o2", "o3"]),
    ("Observation", "subject:identifier=sys1|111", ["o5"]),
    ("Observation", "subject=http://other.org/fhir/Patient/x", ["o6"]),
    ("Observation", "subject:missing=true", ["o5"]),
    ("Observation", "subject=Patient/p4", ["o7"]),
    # composite: components in the same element instance
    ("Observation", "code-value-quantity=http://loinc.org|1234$gt6", ["o2"]),
    ("Observation", "code-value-quantity=1234$lt6,9999$100", ["o1", "o3"]),
    ("Observation", "component-code-value-quantity=x|c1$10||mg", ["o3"]),
    ("Observation", "component-code-value-quantity=x|c1$20", []),
    ("Observation", "component-code-value-quantity=c2$20", ["o3"]),
    # chaining
    ("Observation", "subject:Patient.name=kari", ["o1", "o2"]),
    ("Observation", "patient.name=hansen", ["o3"]),
    ("Observation", "subject:Patient.organization.name=hauke", ["o1", "o2"]),
    ("Observation", "subject:Patient.organization.partof.name=helse", ["o1", "o2"]),
    ("Observation", "subject:Patient.general-practitioner:Practitioner.name=lege", ["o1", "o2"]),
    ("Observation", "subject:Patient.name=nordmann&status=final", ["o1"]),
    ("Observation", "subject:Patient.gender=female", ["o1", "o2"]),
    # reverse chaining
    ("Patient", "_has:Observation:patient:code=1234", ["p1"]),
    ("Patient", "_has:Observation:patient:code=9999,abc", ["p2", "p3"]),
    ("Patient", "_has:Observation:patient:_has:Provenance:target:agent=Practitioner/pr1", ["p1"]),
    ("Practitioner", "_has:Observation:performer:subject:Patient.name=kari", ["pr1"]),
    ("Patient", "_has:Observation:patient:code=1234&gender=male", []),
]


@pytest.mark.parametrize(("rtype", "params", "expected"), CASES)
async def test_search_matches(data, rtype, params, expected):
    assert await ids(data, rtype, q(params)) == expected


async def test_system_wide_search_and_type(data):
    assert await ids(data, None, q("_id=p1,o1,m1")) == ["m1", "o1", "p1"]
    assert await ids(data, None, q("_type=Patient,Medication&_id=p1,o1,m1")) == ["m1", "p1"]
    assert await ids(data, None, q("_tag=http://t|a")) == ["p1"]


async def test_patient_compartment(data):
    assert await ids(data, "Observation", [], compartment=("Patient", "p1")) == ["o1", "o2"]
    assert await ids(data, "Patient", [], compartment=("Patient", "p1")) == ["p1"]
    assert await ids(data, "Medication", [], compartment=("Patient", "p1")) == []
    everything = await ids(data, None, [], compartment=("Patient", "p1"))
    assert everything == ["mr1", "o1", "o2", "p1", "r1"]
    assert await ids(
        data, "Observation", q("code=1234&date=2024-03"), compartment=("Patient", "p1")
    ) == ["o2"]


async def test_include_and_revinclude(data):
    r = await run(
        data,
        "MedicationRequest",
        q("patient=p1&status=active&_include=MedicationRequest:medication"),
    )
    assert [m.id for m in r.matches] == ["mr1"]
    assert [m.id for m in r.included] == ["m1"]
    # Both requests refer to m1: included once.
    r = await run(data, "MedicationRequest", q("_include=MedicationRequest:medication"))
    assert [i.id for i in r.included] == ["m1"]
    r = await run(data, "Observation", q("_id=o1&_revinclude=Provenance:target"))
    assert [i.id for i in r.included] == ["prov1"]
    r = await run(data, "Observation", q("_id=o1&_include=*"))
    assert sorted(i.id for i in r.included) == ["p1", "pr1"]
    r = await run(data, "Observation", q("_id=o1&_include=Observation:performer:Organization"))
    assert r.included == []
    # A deleted target is not included; a match is never repeated as included.
    r = await run(data, "Observation", q("_id=o7&_include=Observation:subject"))
    assert r.included == []
    r = await run(
        data,
        "Patient",
        q("_id=p1,org2&_include=Patient:general-practitioner&_revinclude=Observation:subject"),
    )
    assert sorted(i.id for i in r.included) == ["o1", "o2", "pr1"]


async def test_include_iterate(data):
    r = await run(
        data,
        "Observation",
        q(
            "_id=o1&_include=Observation:subject&_include:iterate=Patient:organization"
            "&_include:iterate=Organization:partof"
        ),
    )
    assert sorted(i.id for i in r.included) == ["org1", "org2", "p1"]
    # Without :iterate, the Patient include does not apply to included patients.
    r = await run(data, "Observation", q("_id=o1&_include=Observation:subject"))
    assert [i.id for i in r.included] == ["p1"]
    r = await run(
        data,
        "Patient",
        q(
            "_id=p2&_revinclude=MedicationRequest:subject"
            "&_include:iterate=MedicationRequest:medication"
        ),
    )
    assert sorted(i.id for i in r.included) == ["m1", "mr2"]


async def test_sort_two_keys_missing_last(data):
    r = await run(data, "Patient", q("_sort=gender,-birthdate"))
    assert [m.id for m in r.matches] == ["p5", "p1", "p2", "p3"]
    r = await run(data, "Patient", q("_sort=-gender,birthdate"))
    assert [m.id for m in r.matches] == ["p2", "p1", "p5", "p3"]
    r = await run(data, "Observation", q("code=1234&_sort=-date"))
    assert [m.id for m in r.matches] == ["o2", "o1", "o6", "o7"]
    r = await run(data, "Observation", q("code=1234&_sort=date"))
    assert [m.id for m in r.matches] == ["o1", "o2", "o6", "o7"]
    r = await run(data, "Patient", q("_sort=-_id"))
    assert [m.id for m in r.matches] == ["p5", "p3", "p2", "p1"]
    r = await run(data, "Patient", q("_sort=family"))
    assert [m.id for m in r.matches] == ["p5", "p2", "p1", "p3"]
    r = await run(data, "Observation", q("_sort=value-quantity&value-quantity=gt0"))
    assert [m.id for m in r.matches] == ["o1", "o2", "o3"]


async def test_totals_summary_count(data):
    r = await run(data, "Patient", q("_count=2"))
    assert len(r.matches) == 2 and r.total == 4
    r = await run(data, "Patient", q("_count=2&_total=none"))
    assert r.total is None
    r = await run(data, "Patient", q("_summary=count"))
    assert r.matches == [] and r.total == 4


async def _page_all(store, rtype, params, between=None):
    """Follow next cursors; ``between(page_no)`` may change data between pages."""
    seen: list[str] = []
    result = await run(store, rtype, params)
    page = 0
    while True:
        seen.extend(m.id for m in result.matches)
        if result.next_cursor is None:
            return seen
        page += 1
        if between:
            await between(page)
        result = await run(store, rtype, [*params, ("_cursor", result.next_cursor)])


async def _make_basics(store, n):
    for i in range(n):
        await store.update(
            {"resourceType": "Basic", "code": {"text": "x"}, "created": f"2020-01-{i + 1:02d}"},
            f"b{i:02d}",
        )


@pytest.mark.parametrize("sort", [None, "-created", "created,_id"])
async def test_paging_survives_inserts_and_deletes(store, sort):
    await _make_basics(store, 25)
    params = [("code:text", "x"), ("_count", "7")]
    if sort:
        params.append(("_sort", sort))
    deleted: set[str] = set()
    unseen_deleted = {"b10", "b12"}  # not on the first page in any of these orders

    async def between(page):
        if page == 1:
            for rid in unseen_deleted:
                await store.delete("Basic", rid)
            deleted.update(unseen_deleted)
            await store.delete("Basic", "b00" if sort != "-created" else "b24")
            await store.update(
                {"resourceType": "Basic", "code": {"text": "x"}, "created": "2020-01-15"}, "new1"
            )

    first = await run(store, "Basic", params)
    first_ids = [m.id for m in first.matches]
    # They must not be on the first page for the test to mean something.
    assert not (set(first_ids) & unseen_deleted)
    seen = await _page_all(store, "Basic", params, between)
    assert len(seen) == len(set(seen)), "a resource was repeated"
    expected = {f"b{i:02d}" for i in range(25)} - deleted
    assert expected <= set(seen), f"skipped: {expected - set(seen)}"
    if sort == "-created":
        assert seen[:3] == ["b24", "b23", "b22"]
    if sort == "created,_id":
        assert seen[:3] == ["b00", "b01", "b02"]


async def test_previous_cursor_and_foreign_cursor(store):
    await _make_basics(store, 12)
    for sort in (None, "created"):
        params = [("_count", "5")] + ([("_sort", sort)] if sort else [])
        p1 = await run(store, "Basic", params)
        assert p1.previous_cursor is None
        p2 = await run(store, "Basic", [*params, ("_cursor", p1.next_cursor)])
        assert [m.id for m in p2.matches] == [f"b{i:02d}" for i in range(5, 10)]
        back = await run(store, "Basic", [*params, ("_cursor", p2.previous_cursor)])
        assert [m.id for m in back.matches] == [m.id for m in p1.matches]
        p3 = await run(store, "Basic", [*params, ("_cursor", p2.next_cursor)])
        assert [m.id for m in p3.matches] == ["b10", "b11"] and p3.next_cursor is None
        with pytest.raises(Invalid):
            await run(store, "Basic", [("_count", "6"), ("_cursor", p1.next_cursor)])
    with pytest.raises(Invalid):
        await run(store, "Basic", [("_cursor", "garbage!")])


async def test_sorted_search_too_large(store, monkeypatch):
    await _make_basics(store, 6)
    monkeypatch.setattr(search_sql, "MAX_SORTED", 5)
    with pytest.raises(Invalid, match="narrow"):
        await run(store, "Basic", q("_sort=created"))


async def test_count_function(data):
    query = parse_search("Patient", q("gender=female"))
    async with data.transaction(write=False) as tx:
        assert await search_sql.count(tx._conn, query) == 2
