"""Regression tests for the leaks an outside attack found, one test per class of fault.

- what a caller may not read must answer exactly as what does not exist, on every
  interaction (read, vread, history, patch, update, delete, their conditional forms, and
  conditional references in a transaction), and no error message may carry stored content;
- counts and totals count only what the caller may read, and pages are not left empty
  while more results exist;
- a role's narrow access (a pharmacy's lookup by national id) is not widened by search
  modifiers, includes, chains or ``_has``;
- every refused access leaves an AuditEvent, whichever rule refused it.
"""

from __future__ import annotations

import base64
import json

import orjson
import pytest

from tests.conftest import EVERY_BACKEND, MEMORY
from tests.probes import audit_rows
from tests.security.conftest import FNR, PIDS, observation

pytestmark = MEMORY

PATCH = {"Content-Type": "application/json-patch+json"}
TEST_OP = [{"op": "test", "path": "", "value": 0}]


async def _patch(secured, who, url, ops=TEST_OP):
    return await secured.http.patch(
        url, content=json.dumps(ops), headers=secured.headers(who, **PATCH)
    )


def _no_stored_content(response, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in response.text, response.text


async def _refusals(secured, who_prefix: str) -> list:
    rows = [(r.actor, r.outcome, r.event) for r in await audit_rows(secured.store)]
    return [orjson.loads(bytes(r[2])) for r in rows if r[0].startswith(who_prefix) and r[1] != "0"]


# ---- hidden answers as missing ------------------------------------------------------------


@pytest.mark.parametrize("who", ["kari", "nurse", "farm", "hdoc", "system"])
async def test_patch_test_op_discloses_nothing_and_answers_as_missing(secured, who):
    hidden = await _patch(secured, who, "/fhir/Patient/siri")
    missing = await _patch(secured, who, "/fhir/Patient/nobody")
    if who in ("system", "farm"):  # they may read a Patient, but not change one
        assert hidden.status_code == 403
    else:
        assert (hidden.status_code, missing.status_code) == (404, 404)
    _no_stored_content(hidden, PIDS["siri"], "Storgata")


async def test_patch_test_failure_on_a_readable_resource_quotes_nothing(secured):
    response = await _patch(secured, "gp", "/fhir/Patient/kari")
    assert response.status_code == 422
    _no_stored_content(response, PIDS["kari"], "Storgata")


async def test_conditional_patch_and_batch_patch_hide_alike(secured):
    by_fnr = f"/fhir/Patient?identifier={FNR}|{PIDS['siri']}"
    nobody = f"/fhir/Patient?identifier={FNR}|{PIDS['siri'][:-1]}0"
    hidden, missing = await _patch(secured, "nurse", by_fnr), await _patch(secured, "nurse", nobody)
    assert hidden.status_code == missing.status_code == 412
    assert hidden.json()["issue"][0]["diagnostics"] == missing.json()["issue"][0]["diagnostics"]
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json"}
    binary["data"] = base64.b64encode(json.dumps(TEST_OP).encode()).decode()
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": binary, "request": {"method": "PATCH", "url": "Patient/siri"}}],
    }
    response = await secured.http.post("/fhir", json=bundle, headers=secured.headers("nurse"))
    assert response.json()["entry"][0]["response"]["status"].startswith("404")
    _no_stored_content(response, PIDS["siri"], "Storgata")


async def test_writes_by_id_answer_alike_for_hidden_and_missing(secured):
    for method in ("DELETE", "PATCH"):
        answers = set()
        for id_ in ("siri-obs", "no-such-obs"):
            response = await secured.http.request(
                method,
                f"/fhir/Observation/{id_}",
                content=json.dumps(TEST_OP) if method == "PATCH" else None,
                headers=secured.headers("gp", **PATCH, **{"If-Match": 'W/"9"'}),
            )
            answers.add((response.status_code, response.json()["issue"][0]["code"]))
        assert answers == {(404, "not-found")}, (method, answers)


async def test_conditional_writes_answer_alike_for_hidden_and_missing(secured):
    siri, nobody = PIDS["siri"], PIDS["siri"][:-1] + "0"
    for pid in (siri, nobody):
        url = f"/fhir/Patient?identifier={FNR}|{pid}"
        delete = await secured.http.delete(url, headers=secured.headers("gp"))
        assert delete.status_code == 200, delete.text
        assert "deleted 0 Patient" in delete.text
    # The hidden Patient is still there for those who may see it.
    assert (await secured.get("system", "/fhir/Patient/siri")).status_code == 200
    created = []
    for pid in (siri, nobody):
        body = {"resourceType": "Patient", "identifier": [{"system": FNR, "value": pid}]}
        headers = secured.headers("gp", **{"If-None-Exist": f"identifier={FNR}|{pid}"})
        response = await secured.http.post("/fhir/Patient", json=body, headers=headers)
        created.append(response.status_code)
    # Personnel may not register a person with a national id (Folkeregisteret does), and
    # the refusal is the same whether that person is hidden or unknown.
    assert created == [403, 403]


async def test_a_transaction_cannot_resolve_a_conditional_reference_to_hidden_data(secured):
    def bundle(pid):
        obs = observation("x", "kari")
        obs["subject"] = {"reference": f"Patient?identifier={FNR}|{pid}"}
        entry = {"resource": obs, "request": {"method": "POST", "url": "Observation"}}
        return {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}

    answers = set()
    for pid in (PIDS["siri"], PIDS["siri"][:-1] + "0"):
        response = await secured.http.post("/fhir", json=bundle(pid), headers=secured.headers("gp"))
        text = response.json()["issue"][0]["diagnostics"].replace(pid, "PID")
        answers.add((response.status_code, text))
    assert len(answers) == 1 and next(iter(answers))[0] == 412, answers


async def test_a_deleted_hidden_resource_reads_as_missing(secured):
    deleted = await secured.http.delete("/fhir/Observation/kari-obs", headers=secured.headers("gp"))
    assert deleted.status_code == 200
    assert (await secured.get("gp", "/fhir/Observation/kari-obs")).status_code == 410
    assert (await secured.get("hdoc", "/fhir/Observation/kari-obs")).status_code == 404


async def test_old_versions_follow_the_current_versions_access(secured):
    # kari-obs moves from kari's record into ola's: the GP may no longer read any version,
    # and the hospital doctor (ola's) does not see the version that was in kari's record.
    moved = observation("kari-obs", "ola")
    async with secured.store.transaction() as tx:
        await tx.update(moved, "kari-obs")
    assert (await secured.get("gp", "/fhir/Observation/kari-obs/_history/1")).status_code == 404
    assert (await secured.get("gp", "/fhir/Observation/kari-obs/_history")).status_code == 404
    old = await secured.get("hdoc", "/fhir/Observation/kari-obs/_history/1")
    assert old.status_code == 404
    history = await secured.get("hdoc", "/fhir/Observation/kari-obs/_history")
    versions = [e["response"]["etag"] for e in history.json()["entry"]]
    assert versions == ['W/"2"']


# ---- counts, totals and pages ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/fhir/Patient?_summary=count",
        "/fhir/Patient?_count=0",
        "/fhir/Patient?name=siri&_summary=count",
        "/fhir/Patient?_total=accurate&_count=1",
    ],
)
async def test_counts_count_only_what_the_caller_may_read(secured, url):
    response = await secured.get("gp", url)
    assert response.status_code == 200
    expected = 0 if "name=siri" in url else 3  # the GP's list: kari, lise, per
    assert response.json().get("total") == expected
    assert "entry" not in response.json() or "_count=1" in url


async def test_a_count_is_audited(secured):
    await secured.get("gp", "/fhir/Patient?_summary=count")
    rows = [(r.actor, r.event) for r in await audit_rows(secured.store)]
    events = [orjson.loads(bytes(r[1])) for r in rows if r[0] == "hpr:1000001"]
    assert events, "the count left no audit event"


async def test_has_on_a_type_the_role_may_not_read_is_refused(secured):
    url = f"/fhir/Patient?identifier={FNR}|{PIDS['kari']}&_has:Observation:patient:code=8867-4"
    assert (await secured.get("farm", url)).status_code == 403
    assert (await secured.get("gp", url)).json()["total"] == 1


@EVERY_BACKEND
async def test_pages_are_not_empty_while_more_results_exist(secured):
    # The GP may read 3 of the 6 patients; pages of one must hold one each, and only the
    # page after the last may come back empty, with no next link.
    page = await secured.get("gp", "/fhir/Patient?_count=1")
    pages = []
    while True:
        body = page.json()
        pages.append([e["resource"]["id"] for e in body.get("entry", [])])
        nxt = [link["url"] for link in body["link"] if link["relation"] == "next"]
        if not nxt:
            break
        assert pages[-1], "an empty page with a next link"
        page = await secured.get("gp", nxt[0].removeprefix("http://test"))
    assert sorted(i for p in pages for i in p) == ["kari", "lise", "per"]


# ---- a pharmacy's lookup stays a lookup -----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"/fhir/Patient?identifier:not={FNR}|00000000000&_count=300",
        "/fhir/Patient?identifier:missing=false",
        "/fhir/Practitioner?_id=gp&_revinclude=Patient:general-practitioner",
        "/fhir/Organization?_revinclude=Patient:organization",
    ],
)
async def test_a_pharmacist_cannot_list_patients(secured, url):
    response = await secured.get("farm", url)
    patients = [
        e
        for e in response.json().get("entry", [])
        if e.get("resource", {}).get("resourceType") == "Patient"
    ]
    assert response.status_code in (200, 403)
    assert patients == []


async def test_a_pharmacist_still_finds_a_patient_by_national_id(secured):
    url = f"/fhir/Patient?identifier={FNR}|{PIDS['kari']}&_revinclude=MedicationRequest:subject"
    found = await secured.get("farm", url)
    types = sorted(e["resource"]["resourceType"] for e in found.json()["entry"])
    assert types == ["MedicationRequest", "Patient"]


# ---- every refusal is audited ----------------------------------------------------------------


async def test_a_refusal_by_any_rule_is_audited(secured):
    # Refused by the search-shape rule (personnel must name a patient), not by a resource.
    response = await secured.get("gp", "/fhir/Observation?code=8867-4")
    assert response.status_code == 403
    refusals = await _refusals(secured, "hpr:1000001")
    assert refusals, "the refused search left no audit event"
    assert refusals[-1]["outcome"] == "4"


# ---- patient data outside the compartment definition -----------------------------------------


TASK_FOR_SIRI = {
    "resourceType": "Task",
    "status": "requested",
    "intent": "order",
    "for": {"reference": "Patient/siri"},
}


@pytest.mark.parametrize(
    "resource",
    [
        TASK_FOR_SIRI,
        {
            "resourceType": "Binary",
            "contentType": "text/plain",
            "data": "c2VjcmV0",
            "securityContext": {"reference": "Patient/siri"},
        },
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {
                    "fullUrl": "urn:uuid:9d7c4f5e-0b8a-4f4e-9d55-6f3b2a1c0d11",
                    "resource": observation("x", "siri"),
                }
            ],
        },
    ],
    ids=["task", "binary", "bundle"],
)
async def test_a_reference_to_a_patient_makes_any_resource_that_patients_data(secured, resource):
    # Outside the R4 Patient compartment, yet about siri: written only with access to her,
    # and read only by those who may read her record.
    refused = await secured.http.post(
        f"/fhir/{resource['resourceType']}", json=resource, headers=secured.headers("nurse")
    )
    assert refused.status_code == 403, refused.text
    async with secured.store.transaction() as tx:
        stored = await tx.create(dict(resource))
    url = f"/fhir/{stored.type}/{stored.id}"
    assert (await secured.get("kari", url)).status_code == 404
    assert (await secured.get("farm", url)).status_code == 404
    listed = await secured.get("kari", f"/fhir/{stored.type}")
    assert stored.id not in listed.text
    assert (await secured.get("system", url)).status_code == 200


async def test_chains_through_a_hidden_patient_answer_nothing(secured):
    async with secured.store.transaction() as tx:
        await tx.create(dict(TASK_FOR_SIRI))
    for query in ("patient.birthdate=1975-06-11", "patient.name=siri", "_summary=count"):
        found = await secured.get("nurse", f"/fhir/Task?{query}")
        assert found.status_code in (200, 403), query
        assert not found.json().get("entry") and found.json().get("total", 0) == 0, query


async def test_a_chain_cannot_test_a_resource_in_a_hidden_record(secured):
    # A Task the nurse may write (no patient named) pointing at siri's Observation: a chain
    # through it would test siri's record, so chains reach only shared data.
    task = {**TASK_FOR_SIRI, "basedOn": [{"reference": "Observation/siri-obs"}]}
    task.pop("for")
    async with secured.store.transaction() as tx:
        await tx.create(task)
    for code in ("8867-4", "0000-0"):
        url = f"/fhir/Task?based-on:Observation.code={code}"
        assert (await secured.get("nurse", url)).status_code == 403, code
    shared = "/fhir/Observation?patient=kari&performer:Practitioner.name=gp"
    assert (await secured.get("gp", shared)).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        f"/fhir/Practitioner?_has:Patient:general-practitioner:identifier={FNR}|{PIDS['siri']}",
        "/fhir/Organization?_has:Encounter:service-provider:patient=siri",
    ],
)
async def test_has_from_shared_data_into_records_is_refused(secured, url):
    for who in ("kari", "farm", "nurse"):
        assert (await secured.get(who, url)).status_code == 403, who


@EVERY_BACKEND
async def test_includes_are_followed_only_from_what_the_caller_may_read(secured):
    # ola's Encounter is at the hospital; the GP may not read ola, so nothing is reached
    # through him, not even shared data such as the hospital's Organization.
    url = "/fhir/Encounter?patient=ola&_include=Encounter:service-provider"
    assert (await secured.get("gp", url)).status_code == 403
    iterate = (
        "/fhir/Task?_include:iterate=Task:patient&_include:iterate=Patient:general-practitioner"
    )
    async with secured.store.transaction() as tx:
        await tx.create(dict(TASK_FOR_SIRI))
    body = (await secured.get("farm", iterate)).json()
    assert not body.get("entry"), body


async def test_emergency_access_needs_a_reason_that_says_why(secured):
    nbsp = "\u00a0".encode()  # UTF-8 bytes on the wire, as a client sends them
    cases = ((".", 400), ("x" * 600, 400), (nbsp * 5, 400), ("ulykke", 200))
    for reason, status in cases:
        headers = {"nhn-access-basis": "AKUTT", "nhn-access-reason": reason}
        response = await secured.get("gp", "/fhir/Observation/siri-obs", **headers)
        assert response.status_code == status, (reason[:10], response.text)
    # A Norwegian reason reaches the audit log as written, not as Latin-1 mojibake.
    raw = "bevisstløs pasient".encode()
    headers = {"nhn-access-basis": "AKUTT", "nhn-access-reason": raw}
    assert (await secured.get("gp", "/fhir/Observation/siri-obs", **headers)).status_code == 200
    rows = [(r.event,) for r in await audit_rows(secured.store) if r.emergency]
    assert any("bevisstløs pasient" in bytes(r[0]).decode() for r in rows)


# ---- conditional criteria are searches: the same limits on chains and _has ------------------


async def _seed(secured, *resources: dict) -> None:
    async with secured.store.transaction() as tx:
        for resource in resources:
            await tx.update(resource, resource["id"])


B20 = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "B20"}]}


@pytest.mark.parametrize("code", ["B20", "X99"])
async def test_a_conditional_patch_cannot_test_a_diagnosis_the_caller_may_not_search(secured, code):
    # The pharmacist may not search Condition; 412-versus-403 must not tell siri's diagnosis.
    await _seed(
        secured,
        {"resourceType": "Condition", "id": "siri-b20", "subject": {"reference": "Patient/siri"},
         "code": B20},
    )  # fmt: skip
    url = f"/fhir/Patient?_id=siri&_has:Condition:patient:code={code}"
    body = [{"op": "add", "path": "/active", "value": True}]
    response = await secured.http.patch(
        url, json=body, headers={**secured.headers("farm"), **PATCH}
    )
    assert response.status_code == 403, response.text
    assert "Condition" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("who", ["siri", "ola"])
async def test_if_none_exist_cannot_test_another_patients_medicines(secured, who):
    # A _has from shared data (Medication) into a patient's record is refused, as a search is:
    # otherwise 200 (exists) versus 201 (created) tells whether siri takes this medicine.
    await _seed(
        secured,
        {"resourceType": "Medication", "id": "hivmed", "code": {"text": "Biktarvy"}},
        {"resourceType": "MedicationRequest", "id": "siri-mr2", "status": "active",
         "intent": "order", "subject": {"reference": "Patient/siri"},
         "medicationReference": {"reference": "Medication/hivmed"}},
    )  # fmt: skip
    criteria = f"_id=hivmed&_has:MedicationRequest:medication:subject=Patient/{who}"
    headers = {**secured.headers("gp"), "If-None-Exist": criteria}
    body = {"resourceType": "Medication", "code": {"text": "x"}}
    response = await secured.http.post("/fhir/Medication", json=body, headers=headers)
    assert response.status_code == 403, response.text


# ---- a resource naming several patients is audited for each, each with its own basis -------


async def test_an_emergency_read_of_a_resource_naming_two_patients_is_flagged_for_the_one_opened(
    secured,
):
    from tests.security.conftest import patient

    zed = {**patient("kari", "1980-01-02", "Practitioner/gp"), "id": "zed", "identifier": []}
    shared = {
        "resourceType": "Observation",
        "id": "shared-obs",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/siri"},  # no relation to the GP
        "performer": [{"reference": "Patient/zed"}],  # on the GP's list
    }
    await _seed(secured, zed, shared)
    before = len(await audit_rows(secured.store))
    emergency = {"nhn-access-basis": "AKUTT", "nhn-access-reason": "bevisstlos i mottak"}
    assert (await secured.get("gp", "/fhir/Observation/shared-obs", **emergency)).is_success
    searched = await secured.get("gp", "/fhir/Observation?performer=Patient/zed", **emergency)
    assert searched.is_success and searched.json()["entry"]
    rows = (await audit_rows(secured.store))[before:]
    seen = {(r.patient_id, r.purpose, r.emergency) for r in rows}
    # Both the read and the search are audited for siri as an emergency access, and for zed
    # (whose GP reads) as ordinary treatment.
    assert seen == {("siri", "ETREAT", True), ("zed", "TREAT", False)}, seen
    assert sum(r.patient_id == "siri" for r in rows) == 2


# ---- an operation answers a patient the caller may not see as it answers a missing one -----


async def test_the_access_log_tells_a_stranger_nothing_of_who_exists(secured):
    answers = [
        (await secured.get("hdoc", f"/fhir/Patient/{pid}/$access-log")).status_code
        for pid in ("siri", "nobody-here")
    ]
    assert answers[0] == answers[1], answers
