"""Parsing FHIR search parameters (pure; http://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

import pytest

from enjournal.fhir.datetime import date_range
from enjournal.fhir.errors import Invalid, NotSupported
from enjournal.fhir.search import (
    Chain,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    Include,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
    parse_search,
)
from enjournal.fhir.search.parse import split_unescaped, unescape


def one(rtype: str, name: str, value: str):
    query = parse_search(rtype, [(name, value)], strict=True)
    assert len(query.criteria) == 1
    return query.criteria[0]


def test_string_and_modifiers():
    c = one("Patient", "family", "Nordmann")
    assert c == Criterion("family", "string", "family", None, (StringValue("Nordmann"),))
    assert one("Patient", "name:exact", "Kari").modifier == "exact"
    assert one("Patient", "name:contains", "ar").modifier == "contains"


def test_or_and_escaping():
    c = one("Patient", "name", r"a\,b,c")
    assert c.values == (StringValue("a,b"), StringValue("c"))
    query = parse_search("Patient", [("name", "a"), ("name", "b")])
    assert len(query.criteria) == 2  # repeated parameter = AND
    assert split_unescaped(r"a\|b|c", "|") == [r"a\|b", "c"]
    assert unescape(r"a\$b\\c") == r"a$b\c"


def test_token_forms():
    c = one("Observation", "code", "http://loinc.org|1234-5,|abc,http://x|,plain")
    assert c.values == (
        TokenValue("http://loinc.org", "1234-5"),
        TokenValue("", "abc"),
        TokenValue("http://x", None),
        TokenValue(None, "plain"),
    )
    assert one("Observation", "code", r"http://x|a\|b").values == (TokenValue("http://x", "a|b"),)
    assert one("Observation", "code:not", "a").modifier == "not"
    c = one("Observation", "code:text", "Blood")
    assert (c.modifier, c.values) == ("text", (StringValue("Blood"),))


def test_missing_for_each_type():
    for rtype, name in [
        ("Patient", "name"),
        ("Patient", "gender"),
        ("Patient", "birthdate"),
        ("Observation", "subject"),
        ("Observation", "value-quantity"),
        ("RiskAssessment", "probability"),
        ("ValueSet", "url"),
        ("Observation", "code-value-quantity"),
    ]:
        c = one(rtype, f"{name}:missing", "true")
        assert (c.modifier, c.missing, c.values) == ("missing", True, ())
    assert one("Patient", "gender:missing", "false").missing is False
    with pytest.raises(Invalid):
        one("Patient", "gender:missing", "yes")


def test_unsupported_and_unknown_modifiers():
    with pytest.raises(NotSupported):
        one("Observation", "code:in", "http://vs")
    with pytest.raises(NotSupported):
        one("Observation", "code:not-in", "http://vs")
    with pytest.raises(Invalid):
        one("Patient", "name:bogus", "x")
    with pytest.raises(Invalid):
        one("Patient", "birthdate:exact", "2000")


def test_reference_forms():
    c = one(
        "Observation", "subject", "Patient/1,2,http://ex.org/fhir/Patient/3,Patient/4/_history/2"
    )
    assert c.values == (
        ReferenceValue("Patient", "1"),
        ReferenceValue(None, "2"),
        ReferenceValue(url="http://ex.org/fhir/Patient/3"),
        ReferenceValue("Patient", "4"),
    )
    assert one("Observation", "subject:Patient", "7").values == (ReferenceValue("Patient", "7"),)
    c = one("Observation", "subject:identifier", "sys|123")
    assert (c.type, c.index_param, c.values) == (
        "token",
        "subject:identifier",
        (TokenValue("sys", "123"),),
    )
    with pytest.raises(Invalid):
        one("Observation", "subject", "Medication/1")  # not an allowed target
    with pytest.raises(Invalid):
        one("Observation", "subject", "Nonsense/1")


def test_date_prefixes_and_errors():
    low, high = date_range("2024-03")
    for prefix in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb"):
        value = prefix + "2024-03" if prefix != "eq" else "2024-03"
        assert one("Patient", "birthdate", value).values == (DateValue(prefix, low, high),)
    ap = one("Patient", "birthdate", "ap2024-03").values[0]
    assert ap.prefix == "ap" and ap.low < low and ap.high > high
    # A '+' in a time zone that arrived URL-decoded as a space.
    assert (
        one("Observation", "date", "2024-01-02T10:00:00 01:00").values[0].low
        == date_range("2024-01-02T09:00:00Z")[0]
    )
    for bad in ("notadate", "2024-13", "xx2024", "2024-02-30"):
        with pytest.raises(Invalid):
            one("Patient", "birthdate", bad)


def test_number_and_quantity():
    v = one("RiskAssessment", "probability", "0.5").values[0]
    assert isinstance(v, NumberValue) and (v.prefix, v.value) == ("eq", 0.5)
    assert v.low == pytest.approx(0.45) and v.high == pytest.approx(0.55)
    v = one("RiskAssessment", "probability", "ap100").values[0]
    assert (v.low, v.high) == (90.0, 110.0)
    v = one("Observation", "value-quantity", "le5.4|http://unitsofmeasure.org|mg").values[0]
    assert isinstance(v, QuantityValue)
    assert (v.prefix, v.value, v.system, v.code) == ("le", 5.4, "http://unitsofmeasure.org", "mg")
    v = one("Observation", "value-quantity", "5.4||mg").values[0]
    assert (v.system, v.code) == (None, "mg")
    for bad in ("abc", "zz5", "5.4|http://x|"):
        with pytest.raises(Invalid):
            one("Observation", "value-quantity", bad)


def test_uri_modifiers():
    assert one("ValueSet", "url", "http://x/a").values == (UriValue("http://x/a"),)
    assert one("ValueSet", "url:below", "http://x").modifier == "below"
    assert one("ValueSet", "url:above", "http://x/a/b").modifier == "above"


def test_composite():
    c = one("Observation", "code-value-quantity", "http://loinc.org|8480-6$gt100|http://u|mm")
    assert c.values == (
        CompositeValue(
            (
                TokenValue("http://loinc.org", "8480-6"),
                QuantityValue("gt", 99.5, 100.5, 100.0, "http://u", "mm"),
            ),
            ("token", "quantity"),
        ),
    )
    c = one("Observation", "code-value-quantity", r"a\$b$1")
    assert c.values[0].parts[0] == TokenValue(None, "a$b")
    c = one("Observation", "code-value-quantity", "1234$5")
    assert c.values[0].parts == (
        TokenValue(None, "1234"),
        QuantityValue("eq", 4.5, 5.5, 5.0, None, None),
    )
    with pytest.raises(Invalid):
        one("Observation", "code-value-quantity", "1234")


def test_chaining():
    c = one("Observation", "subject:Patient.name", "peter")
    assert c == Chain(
        "subject",
        "Patient",
        Criterion("name", "string", "name", None, (StringValue("peter"),)),
    )
    # patient -> Patient|Group; only Patient has 'name': unambiguous.
    assert one("Observation", "patient.name", "x").target_type == "Patient"
    # subject -> Group|Device|Patient|Location: 'name' is on Patient and Location.
    with pytest.raises(Invalid, match="ambiguous"):
        one("Observation", "subject.name", "x")
    c = one("Observation", "subject:Patient.organization.name", "helse")
    assert isinstance(c.criterion, Chain) and c.criterion.target_type == "Organization"
    c = one("Observation", "subject:Patient.name:exact", "Kari")
    assert c.criterion.modifier == "exact"
    with pytest.raises(Invalid):
        one("Observation", "code.name", "x")  # not a reference
    with pytest.raises(Invalid):
        one("Observation", "subject:Medication.code", "x")  # not a target


def test_reverse_chaining():
    c = one("Patient", "_has:Observation:patient:code", "1234")
    assert c == Has(
        "Observation",
        "patient",
        Criterion("code", "token", "code", None, (TokenValue(None, "1234"),)),
    )
    c = one("Patient", "_has:Observation:patient:_has:AuditEvent:entity:agent", "Practitioner/1")
    assert isinstance(c.criterion, Has) and c.criterion.source_type == "AuditEvent"
    with pytest.raises(Invalid):
        one("Patient", "_has:Observation:code:status", "final")  # not a reference
    with pytest.raises(Invalid):
        one("Patient", "_has:Observation", "x")
    with pytest.raises(Invalid):
        one("Medication", "_has:Observation:patient:code", "x")  # patient can't be Medication


def test_common_parameters():
    assert one("Patient", "_id", "a,b").values == (StringValue("a"), StringValue("b"))
    assert one("Patient", "_id", "a").on_resource
    assert one("Patient", "_lastUpdated", "gt2024").on_resource
    assert one("Patient", "_lastUpdated:missing", "false").on_resource
    for name, value, type_ in (
        ("_tag", "http://t|a", "token"),
        ("_security", "http://s|R", "token"),
        ("_profile", "http://p", "uri"),
        ("_source", "http://src", "uri"),
    ):
        c = one("Patient", name, value)
        assert (c.type, c.on_resource) == (type_, False)


def test_result_parameters():
    query = parse_search(
        "Observation",
        [
            ("_sort", "-date,code,_id,-_lastUpdated"),
            ("_count", "5000"),
            ("_summary", "data"),
            ("_elements", "code,subject"),
            ("_total", "accurate"),
            ("_cursor", "abc"),
            ("_format", "json"),
            ("_pretty", "true"),
            ("_include", "Observation:subject:Patient"),
            ("_revinclude", "Provenance:target"),
            ("_include:iterate", "Patient:organization"),
            ("_include", "*"),
        ],
        strict=True,
    )
    assert query.sort == [
        SortKey("date", "date", True),
        SortKey("code", "token", False),
        SortKey("_id", "_id", False),
        SortKey("_lastUpdated", "_lastUpdated", True),
    ]
    assert query.count == 1000
    assert (query.summary, query.elements, query.total, query.cursor) == (
        "data",
        ("code", "subject"),
        "accurate",
        "abc",
    )
    assert query.includes == [
        Include("Observation", "subject", "Patient"),
        Include("Provenance", "target", None, reverse=True),
        Include("Patient", "organization", None, iterate=True),
        Include("Observation", None, None),
    ]
    assert parse_search("Patient", []).count == 20
    assert ("_count", "1000") in query.canonical_params()
    assert ("_cursor", "abc") in query.canonical_params()
    assert ("_cursor", "abc") not in query.canonical_params(cursor=False)
    assert all(n not in ("_format", "_pretty") for n, _ in query.canonical_params())
    for name, value in [
        ("_count", "x"),
        ("_summary", "maybe"),
        ("_total", "some"),
        ("_include", "Observation"),
        ("_include", "Observation:code"),
        ("_include:bogus", "Observation:subject"),
    ]:
        with pytest.raises(Invalid):
            parse_search("Observation", [(name, value)])


def test_strict_and_lenient_unknowns():
    query = parse_search(
        "Patient", [("foo", "1"), ("name", "x"), ("_text", "y"), ("_sort", "bogus")]
    )
    assert [i[0] for i in query.ignored] == ["foo", "_text", "_sort"]
    assert query.canonical_params() == [("name", "x")]
    for name in ("foo", "_text", "_content", "_list", "_filter", "_sort"):
        with pytest.raises(Invalid):
            parse_search("Patient", [(name, "bogus")], strict=True)
    # Empty values are ignored.
    assert parse_search("Patient", [("name", "")], strict=True).criteria == []


def test_system_search_and_compartment():
    query = parse_search(None, [("_type", "Patient,Observation"), ("_id", "1")])
    assert query.types == ("Patient", "Observation") and len(query.criteria) == 1
    with pytest.raises(Invalid):
        parse_search(None, [("birthdate", "2000")], strict=True)
    query = parse_search("Observation", [("code", "x")], compartment=("Patient", "123"))
    assert query.compartment == ("Patient", "123")
    with pytest.raises(NotSupported):
        parse_search("NoSuchType", [])


def test_needs_write():
    assert parse_search("Patient", [("_sort", "name")]).needs_write
    assert not parse_search("Patient", [("name", "x")]).needs_write
    assert not parse_search("Patient", [("_sort", "name"), ("_cursor", "c")]).needs_write
