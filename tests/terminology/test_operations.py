"""The FHIR terminology operations over HTTP, on both backends, with the hand-made code system
of test_store (its hierarchy is drawn in that module's docstring)."""

from __future__ import annotations

import pytest

from enjournal.terminology.loading import save_code_system
from enjournal.terminology.operations import register_all
from tests.terminology.test_store import (
    CONCEPT_MAP,
    ICD10,
    ICPC,
    SNOMED_SYNONYM,
    URL,
    draft,
    icd10_xml,
    icd_draft,
    icpc_draft,
    isa,
    parse_icd10,
    vs,
)


def test_registering_twice_is_idempotent():
    from enjournal.rest.operations import Operations

    table = Operations()
    register_all(table)
    once = sorted((o.resource_type, o.name, o.instance) for o in table.all())
    register_all(table)
    assert sorted((o.resource_type, o.name, o.instance) for o in table.all()) == once
    assert len(once) == 12


@pytest.fixture
async def loaded(store, client):
    async with store.transaction() as tx:
        infos = [
            await save_code_system(tx, draft("1")),
            await save_code_system(tx, draft("2")),
            await save_code_system(tx, icpc_draft()),
            await save_code_system(tx, icd_draft()),
        ]
    return infos


def params(body: dict) -> dict:
    """Parameters -> {name: value or part-dict}, repeated names as lists."""
    assert body["resourceType"] == "Parameters", body
    out: dict = {}
    for p in body["parameter"]:
        if "part" in p:
            value = params({"resourceType": "Parameters", "parameter": p["part"]})
        else:
            value = next(v for k, v in p.items() if k.startswith("value"))
        out.setdefault(p["name"], []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def post(**parts) -> dict:
    parameter = []
    for name, value in parts.items():
        if isinstance(value, dict) and value.get("resourceType"):
            parameter.append({"name": name, "resource": value})
        elif isinstance(value, dict):
            parameter.append({"name": name, "valueCoding": value})
        elif isinstance(value, bool):
            parameter.append({"name": name, "valueBoolean": value})
        elif isinstance(value, int):
            parameter.append({"name": name, "valueInteger": value})
        else:
            parameter.append({"name": name, "valueString": value})
    return {"resourceType": "Parameters", "parameter": parameter}


async def test_lookup(client, loaded):
    r = await client.get(
        "/fhir/CodeSystem/$lookup", params={"system": URL, "code": "D1", "version": "1"}
    )
    assert r.status_code == 200, r.text
    p = params(r.json())
    assert p["name"] == "TestDiagnoses" and p["version"] == "1"
    assert p["display"] == "Diabetes mellitus"
    assert {
        "language": "nb",
        "use": {"system": "http://snomed.info/sct", "code": SNOMED_SYNONYM},
        "value": "Sukkersyke",
    } in p["designation"]
    assert {"language": "en", "value": "Diabetes mellitus"} in p["designation"]
    props = [(x["code"], x["value"]) for x in p["property"]]
    assert ("chronic", True) in props and ("kind", "category") in props
    assert ("parent", "D") in props and ("inactive", False) in props
    assert [v for k, v in props if k == "child"] == ["D1.1", "D1.2", "DH"]
    # The newest version by default; a coding by POST; the instance level.
    r = await client.get("/fhir/CodeSystem/$lookup", params={"system": URL, "code": "D1"})
    assert params(r.json())["display"] == "Diabetes mellitus (v2)"
    r = await client.post(
        "/fhir/CodeSystem/$lookup", json=post(coding={"system": URL, "code": "D3"})
    )
    assert params(r.json())["display"] == "Obesity"
    r = await client.get(f"/fhir/CodeSystem/{loaded[0].resource_id}/$lookup", params={"code": "D1"})
    assert params(r.json())["display"] == "Diabetes mellitus"
    r = await client.get(
        "/fhir/CodeSystem/$lookup", params={"system": URL, "code": "D1", "property": "parent"}
    )
    p = params(r.json())
    assert p["property"] == {"code": "parent", "value": "D"} and "designation" not in p
    # Errors.
    r = await client.get("/fhir/CodeSystem/$lookup", params={"system": "http://nope", "code": "x"})
    assert r.status_code == 404 and "http://nope" in r.text
    r = await client.get("/fhir/CodeSystem/$lookup", params={"system": URL, "code": "Z9"})
    assert r.status_code == 404 and "Z9" in r.text
    r = await client.get("/fhir/CodeSystem/$lookup", params={"system": URL})
    assert r.status_code == 400


async def test_codesystem_validate_code(client, loaded):
    async def check(**q):
        r = await client.get("/fhir/CodeSystem/$validate-code", params=q)
        assert r.status_code == 200, r.text
        return params(r.json())

    p = await check(url=URL, code="D1.2")
    assert p["result"] is True and p["display"] == "Type 2 diabetes mellitus"
    assert (await check(system=URL, code="D1.2", display="Diabetes type 2"))["result"] is True
    p = await check(url=URL, code="D1.2", display="Hypothyroidism")
    assert p["result"] is False and "Hypothyroidism" in p["message"]
    p = await check(url=URL, code="D9")
    assert p["result"] is False and "D9" in p["message"]
    assert (await check(url=URL, code="D3", version="1"))["result"] is False
    assert (await check(url=URL, code="D3"))["result"] is True
    r = await client.post(
        f"/fhir/CodeSystem/{loaded[1].resource_id}/$validate-code", json=post(code="D3")
    )
    assert params(r.json())["result"] is True
    r = await client.get(
        "/fhir/CodeSystem/$validate-code", params={"url": "http://nope", "code": "D1"}
    )
    assert r.status_code == 404


async def test_subsumes(client, loaded):
    async def outcome(a, b):
        r = await client.get(
            "/fhir/CodeSystem/$subsumes", params={"system": URL, "codeA": a, "codeB": b}
        )
        assert r.status_code == 200, r.text
        return params(r.json())["outcome"]

    assert await outcome("D1", "D1") == "equivalent"
    assert await outcome("D1", "D1.2") == "subsumes"
    assert await outcome("D1.2", "D1") == "subsumed-by"
    assert await outcome("D1.1", "H") == "not-subsumed"
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "codingA", "valueCoding": {"system": URL, "code": "H"}},
            {"name": "codingB", "valueCoding": {"system": URL, "code": "DH"}},
        ],
    }
    r = await client.post("/fhir/CodeSystem/$subsumes", json=body)
    assert params(r.json())["outcome"] == "subsumes"
    r = await client.get("/fhir/CodeSystem/$subsumes", params={"system": URL, "codeA": "D1"})
    assert r.status_code == 400
    r = await client.get(
        "/fhir/CodeSystem/$subsumes", params={"system": URL, "codeA": "D1", "codeB": "Q"}
    )
    assert r.status_code == 400 and "Q" in r.text


def codes(body: dict) -> list[str]:
    assert body["resourceType"] == "ValueSet", body
    return [c["code"] for c in body["expansion"].get("contains", [])]


async def test_expand(client, loaded):
    stored = {
        **vs({"system": URL, "version": "1"}),
        "id": "all",
        "url": "http://example.org/vs/all",
    }
    r = await client.put("/fhir/ValueSet/all", json=stored)
    assert r.status_code in (200, 201), r.text
    diabetes = {**vs(isa("D1")), "id": "diabetes", "url": "http://example.org/vs/diabetes"}
    diabetes["compose"]["include"][0]["version"] = "1"
    assert (await client.put("/fhir/ValueSet/diabetes", json=diabetes)).status_code in (200, 201)

    r = await client.get("/fhir/ValueSet/$expand", params={"url": "http://example.org/vs/all"})
    body = r.json()
    assert r.status_code == 200 and body["expansion"]["total"] == 10
    assert codes(body)[:3] == ["D", "D1", "D1.1"] and body["url"] == "http://example.org/vs/all"
    r = await client.get("/fhir/ValueSet/all/$expand", params={"count": "3", "offset": "2"})
    body = r.json()
    assert (body["expansion"]["total"], body["expansion"]["offset"]) == (10, 2)
    assert codes(body) == ["D1.1", "D1.2", "D2"]
    r = await client.get("/fhir/ValueSet/all/$expand", params={"filter": "diab"})
    assert codes(r.json()) == ["D1", "D1.1", "D1.2", "DH"]
    assert r.json()["expansion"]["total"] == 4
    r = await client.get("/fhir/ValueSet/all/$expand", params={"filter": "hjerte"})
    assert codes(r.json()) == ["H", "H1"]
    r = await client.get("/fhir/ValueSet/diabetes/$expand", params={"includeDesignations": "true"})
    first = r.json()["expansion"]["contains"][0]
    assert (
        first["code"] == "D1"
        and {"language": "en", "value": "Diabetes mellitus"} in first["designation"]
    )
    r = await client.get("/fhir/ValueSet/diabetes/$expand", params={"displayLanguage": "nb"})
    assert r.json()["expansion"]["contains"][0]["display"] == "Sukkersyke"
    r = await client.get(
        "/fhir/ValueSet/$expand",
        params={"url": "http://example.org/vs/all", "excludeNested": "false"},
    )
    tops = r.json()["expansion"]["contains"]
    assert [c["code"] for c in tops] == ["D", "H"]
    assert [c["code"] for c in tops[0]["contains"]] == ["D1", "D2"]
    # Exclude, inline by POST.
    inline = vs(isa("D"), exclude=[isa("D2")])
    r = await client.post("/fhir/ValueSet/$expand", json=post(valueSet=inline, count=2))
    assert r.json()["expansion"]["total"] == 6  # D, D1, D1.1, D1.2, DH, D3 (version 2)
    assert codes(r.json()) == ["D", "D1"]
    # Implicit value set.
    r = await client.get("/fhir/ValueSet/$expand", params={"url": f"{URL}?fhir_vs=isa/D2"})
    assert codes(r.json()) == ["D2", "D2.1"]
    # Errors.
    r = await client.get("/fhir/ValueSet/$expand", params={"url": "http://example.org/vs/none"})
    assert r.status_code == 404
    r = await client.get("/fhir/ValueSet/$expand")
    assert r.status_code == 400
    r = await client.get("/fhir/ValueSet/all/$expand", params={"count": "-1"})
    assert r.status_code == 400
    r = await client.get("/fhir/ValueSet/all/$expand", params={"count": "x"})
    assert r.status_code == 400
    r = await client.get("/fhir/ValueSet/nope/$expand")
    assert r.status_code == 404


async def test_valueset_validate_code(client, loaded):
    diabetes = {**vs(isa("D1")), "id": "diabetes", "url": "http://example.org/vs/diabetes"}
    assert (await client.put("/fhir/ValueSet/diabetes", json=diabetes)).status_code in (200, 201)

    async def check(**q):
        r = await client.get("/fhir/ValueSet/$validate-code", params=q)
        assert r.status_code == 200, r.text
        return params(r.json())

    vsurl = "http://example.org/vs/diabetes"
    p = await check(url=vsurl, system=URL, code="D1.2")
    assert p["result"] is True and p["display"] == "Type 2 diabetes mellitus"
    p = await check(url=vsurl, system=URL, code="D2")
    assert p["result"] is False and "not in the value set" in p["message"]
    p = await check(url=vsurl, system=URL, code="D1.2", display="Heart failure")
    assert p["result"] is False
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "codeableConcept",
                "valueCodeableConcept": {"coding": [{"system": URL, "code": "DH"}]},
            }
        ],
    }
    r = await client.post("/fhir/ValueSet/diabetes/$validate-code", json=body)
    assert params(r.json())["result"] is True
    r = await client.get("/fhir/ValueSet/diabetes/$validate-code", params={"code": "D1"})
    assert r.status_code == 400  # no system


async def test_translate(client, loaded):
    r = await client.put("/fhir/ConceptMap/icpc2-icd10", json={**CONCEPT_MAP, "id": "icpc2-icd10"})
    assert r.status_code in (200, 201), r.text
    r = await client.get(
        "/fhir/ConceptMap/$translate",
        params={"url": CONCEPT_MAP["url"], "system": ICPC, "code": "T90", "targetsystem": ICD10},
    )
    assert r.status_code == 200, r.text
    p = params(r.json())
    assert p["result"] is True
    assert [(m["equivalence"], m["concept"]["code"]) for m in p["match"]] == [
        ("equivalent", "E11"),
        ("wider", "E14"),
    ]
    assert p["match"][0]["concept"]["system"] == ICD10
    r = await client.get("/fhir/ConceptMap/$translate", params={"system": ICPC, "code": "K77"})
    p = params(r.json())
    assert p["result"] is True and p["match"]["concept"]["code"] == "I50"
    r = await client.post(
        "/fhir/ConceptMap/icpc2-icd10/$translate", json=post(coding={"system": ICPC, "code": "A99"})
    )
    p = params(r.json())
    assert p["result"] is False and p["match"]["equivalence"] == "unmatched"
    nope = {"url": "http://nope", "system": ICPC, "code": "T90"}
    r = await client.get("/fhir/ConceptMap/$translate", params=nope)
    assert r.status_code == 404
    r = await client.get("/fhir/ConceptMap/$translate", params={"system": ICPC})
    assert r.status_code == 400


async def test_capability_lists_operations(client):
    r = await client.get("/fhir/metadata")
    assert r.status_code == 200
    text = r.text
    for name in ("lookup", "expand", "translate", "subsumes", "validate-code"):
        assert name in text


@pytest.mark.slow
async def test_full_icd10_over_http(store, client):
    async with store.transaction() as tx:
        await save_code_system(tx, parse_icd10(icd10_xml()))
    r = await client.get("/fhir/CodeSystem/$lookup", params={"system": ICD10, "code": "E11.9"})
    assert params(r.json())["display"] == "Type 2 diabetes mellitus without complications"
    r = await client.get(
        "/fhir/CodeSystem/$subsumes", params={"system": ICD10, "codeA": "E11", "codeB": "E11.9"}
    )
    assert params(r.json())["outcome"] == "subsumes"
    r = await client.get("/fhir/CodeSystem/$validate-code", params={"url": ICD10, "code": "E11.99"})
    assert params(r.json())["result"] is False
    r = await client.get(
        "/fhir/ValueSet/$expand", params={"url": f"{ICD10}?fhir_vs", "filter": "dia", "count": "10"}
    )
    body = r.json()
    assert body["expansion"]["total"] == 142 and len(codes(body)) == 10
    assert all("dia" in c["display"].lower() for c in body["expansion"]["contains"])
