"""Attacks on the registers service from outside (notes: /work/notes/attack-registers.md).

Each test states what should hold; those marked ``xfail(strict=True)`` demonstrate a defect
found on 2026-12-03 and turn red (XPASS) once it is fixed, so the mark must then go.  The
server is the in-process app of ``test_bulk`` (real tokens by client credentials with
private_key_jwt), on SQLite.
"""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.security.conftest import PIDS
from tests.services.registers import test_bulk

bulk = test_bulk.bulk  # the fixture: a secured in-process server, real system tokens

pytestmark = pytest.mark.backends("sqlite")


def parameters(*parts: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(parts)}


def view(resource: str, *columns: tuple[str, str]) -> dict:
    cols = [{"name": name, "path": path, "collection": True} for name, path in columns]
    return {"resourceType": "ViewDefinition", "resource": resource, "status": "active",
            "select": [{"column": [{"name": "id", "path": "id"}, *cols]}]}  # fmt: skip


def token_scopes(token: str) -> set[str]:
    payload = token.split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return set(claims.get("scope", "").split())


# ---- authorization ------------------------------------------------------------------------


async def test_a_register_clients_token_carries_its_register_scope(bulk):
    headers = await bulk.headers("kpr")  # asks "system/*.rs register/export"
    assert "register/export" in token_scopes(headers["Authorization"].split()[1])


async def test_a_register_client_cannot_read_the_rest_api(bulk):
    """A-1 (fixed): refused, and answered as a missing resource (the platform's rule)."""
    r = await bulk.http.get("/fhir/Patient/nora", headers=await bulk.headers("kpr"))
    assert r.status_code == 404, r.text[:200]


async def test_type_filter_cannot_search_types_outside_the_scopes(bulk):
    chain = f"Observation?subject:Patient.identifier={PIDS['kari']}"
    api = await bulk.http.get(f"/fhir/{chain}", headers=await bulk.headers("lab"))
    assert api.status_code == 403  # the API refuses it
    r = await bulk.kick_off(f"/fhir/$export?_type=Observation&_typeFilter={chain}", "lab")
    assert r.status_code == 403, r.text[:200]


# ---- privacy: the views are an export too (SQLite; PostgreSQL applies the policy) ------


async def _run_view(bulk, who: str, definition: dict) -> list[dict]:
    body = parameters({"name": "viewResource", "resource": definition})
    r = await bulk.http.post(
        "/fhir/$viewdefinition-run", headers=await bulk.headers(who), json=body
    )
    assert r.status_code == 200, r.text[:300]
    return r.json()


async def test_bulk_export_applies_the_citizens_controls_for_the_same_client(bulk):
    """The baseline the view tests compare with: $export by the same client leaves nora
    (reserved against purpose 2) out and strips ola's id and siri's address."""
    found = await bulk.lines(await bulk.export("/fhir/$export?_type=Patient", "other"), "other")
    patients = {p["id"]: p for p in found["Patient"]}
    assert "nora" not in patients
    assert "identifier" not in patients["ola"] and "address" not in patients["siri"]


async def test_a_view_leaves_out_a_patient_reserved_against_secondary_use(bulk):
    rows = await _run_view(bulk, "other", view("Patient"))
    assert "nora" not in {row["id"] for row in rows}


async def test_a_view_leaves_out_the_id_of_a_patient_reserved_against_disclosure(bulk):
    rows = await _run_view(bulk, "other", view("Patient", ("fnr", "identifier.value")))
    assert not any(PIDS["ola"] in (row["fnr"] or []) for row in rows)


async def test_a_view_leaves_out_a_confidential_address(bulk):
    rows = await _run_view(bulk, "other", view("Patient", ("line", "address.line")))
    assert not [row for row in rows if row["id"] == "siri" and row["line"]]


async def test_a_view_leaves_out_kjernejournal_entries_of_a_reserved_patient(bulk):
    rows = await _run_view(bulk, "other", view("AllergyIntolerance"))
    assert "siri-kj" not in {row["id"] for row in rows}


async def test_a_view_leaves_out_a_privacy_locked_prescription(bulk):
    rows = await _run_view(bulk, "other", view("MedicationRequest"))
    assert "kari-locked" not in {row["id"] for row in rows}


# ---- privacy: identity outside the Patient resource in $export ------------------------------

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"


async def _store(bulk, *resources: dict) -> None:
    async with bulk.platform.store.transaction() as tx:
        for resource in resources:
            await tx.update(resource, resource["id"])


def observation(id_: str, subject: dict, **more) -> dict:
    return {"resourceType": "Observation", "id": id_, "status": "final",
            "code": {"text": "x"}, "subject": subject, **more}  # fmt: skip


async def test_export_carries_no_id_of_a_patient_reserved_against_disclosure(bulk):
    subject = {"reference": "Patient/ola", "display": "Ola Nordmann",
               "identifier": {"system": FNR, "value": PIDS["ola"]}}  # fmt: skip
    await _store(bulk, observation("ola-ident", subject))
    found = await bulk.lines(await bulk.export("/fhir/$export?_type=Observation", "other"), "other")
    leaked = [r["id"] for r in found["Observation"] if PIDS["ola"] in orjson.dumps(r).decode()]
    assert leaked == []


async def test_export_carries_nothing_of_a_patient_reserved_against_secondary_use(bulk):
    by_id = {"identifier": {"system": FNR, "value": PIDS["nora"]}}
    inside = {"resourceType": "Patient", "id": "p",
              "identifier": [{"system": FNR, "value": PIDS["nora"]}]}  # fmt: skip
    await _store(
        bulk,
        observation("nora-logical", by_id),
        observation("nora-contained", {"reference": "#p"}, contained=[inside]),
    )
    found = await bulk.lines(await bulk.export("/fhir/$export?_type=Observation", "other"), "other")
    leaked = [r["id"] for r in found["Observation"] if PIDS["nora"] in orjson.dumps(r).decode()]
    assert leaked == []


# ---- bad input: 400, never 500 ------------------------------------------------------------


async def _export_view_named(bulk, name: str):
    named = {"name": "name", "valueString": name}
    part = {"name": "view", "part": [named, {"name": "viewResource", "resource": view("Patient")}]}
    headers = {**await bulk.headers("other"), **test_bulk.ASYNC}
    return await bulk.http.post(
        "/fhir/$viewdefinition-export", headers=headers, json=parameters(part)
    )


@pytest.mark.parametrize("name", ["a" * 300, "..", "a/b", "a.b", "%2e%2e"])
async def test_a_view_name_that_is_no_plain_file_name_is_a_400(bulk, name):
    """B-1 (a 300-character name was a 500 with an empty folder left; fixed in ec6bd72)."""
    r = await _export_view_named(bulk, name)
    assert r.status_code == 400, r.text[:200]


async def test_a_view_export_file_applies_the_export_policy(bulk):
    definition = view("Patient", ("fnr", "identifier.value"))
    headers = {**await bulk.headers("other"), **test_bulk.ASYNC}
    body = parameters({"name": "viewResource", "resource": definition})
    r = await bulk.http.post("/fhir/$viewdefinition-export", headers=headers, json=body)
    assert r.status_code == 202, r.text[:200]
    await bulk.run_jobs()
    status_url = r.headers["content-location"]
    result = await bulk.http.get(status_url, headers=headers, follow_redirects=True)
    assert result.status_code == 200, result.text[:200]  # followed the 303 to the result
    urls = [
        part["valueUri"]
        for output in result.json()["parameter"]
        if output["name"] == "output"
        for part in output["part"]
        if part["name"] == "location"
    ]
    rows = []
    for url in urls:
        got = await bulk.http.get(url, headers=headers)
        rows += [orjson.loads(line) for line in got.content.splitlines()]
    assert rows and "nora" not in {row["id"] for row in rows}
    assert not any(PIDS["ola"] in (row["fnr"] or []) for row in rows)


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_a_since_at_the_ends_of_the_calendar_is_no_500(bulk, since):
    """B-2 (fixed): a valid instant whose UTC time falls outside Python's calendar is held
    at its end (fhir.datetime), so the export is accepted like any other."""
    r = await bulk.kick_off(f"/fhir/$export?_since={since.replace('+', '%2B')}")
    assert r.status_code == 202, r.text[:200]


async def test_a_huge_limit_is_a_400_or_ignored(bulk):
    body = parameters(
        {"name": "viewResource", "resource": view("Patient")},
        {"name": "_limit", "valueInteger": 10**20},
    )
    r = await bulk.http.post(
        "/fhir/$viewdefinition-run", headers=await bulk.headers("other"), json=body
    )
    assert r.status_code in (200, 400), r.text[:200]


@pytest.mark.parametrize(
    "path",
    [".".join(["name"] * 400), "(" * 1000 + "id" + ")" * 1000],
    ids=["long-path", "deep-parentheses"],
)
async def test_a_deep_fhirpath_is_a_400(bulk, path):
    column = {"name": "x", "path": path, "collection": True}
    definition = {"resourceType": "ViewDefinition", "resource": "Patient",
                  "select": [{"column": [column]}]}  # fmt: skip
    body = parameters(
        {"name": "viewResource", "resource": definition},
        {"name": "resource", "resource": {"resourceType": "Patient", "id": "x"}},
    )
    r = await bulk.http.post(
        "/fhir/$viewdefinition-run", headers=await bulk.headers("other"), json=body
    )
    assert r.status_code == 400, r.text[:200]


QUOTED = {"name": "y", "path": "'q\\'' + ' or 1=1 --'"}


async def test_sql_injection_through_a_view_is_inert(bulk):
    """Constants, string literals, column and element names and the resource type with
    quotes and SQL: refused by name checks, or returned as plain text."""
    payload = "a'); DROP TABLE resources; --\\"
    definition = {"resourceType": "ViewDefinition", "resource": "Patient",
                  "constant": [{"name": "c", "valueString": payload}],
                  "select": [{"column": [{"name": "x", "path": "%c"}, QUOTED]}]}  # fmt: skip
    body = parameters(
        {"name": "viewResource", "resource": definition},
        {"name": "resource", "resource": {"resourceType": "Patient", "id": "x"}},
    )
    headers = await bulk.headers("other")
    r = await bulk.http.post("/fhir/$viewdefinition-run", headers=headers, json=body)
    assert r.status_code == 200 and r.json() == [{"x": payload, "y": "q' or 1=1 --"}], r.text
    for column in ({"name": 'x"; drop', "path": "id"}, {"name": "x", "path": "`a'b`"}):
        bad = {**definition, "select": [{"column": [column]}]}
        body = parameters({"name": "viewResource", "resource": bad})
        r = await bulk.http.post("/fhir/$viewdefinition-run", headers=headers, json=body)
        assert r.status_code == 400, r.text[:200]
    r = await bulk.http.get("/fhir/Patient?_count=1", headers=headers)
    assert r.status_code == 200  # the store is still there


async def test_file_and_job_id_tricks_are_404(bulk):
    manifest = await bulk.export("/fhir/$export?_type=Patient")
    url = manifest["output"][0]["url"]
    base, _, _ = url.partition("&file=")
    headers = await bulk.headers()
    for name in ("../../../etc/passwd", "..%2F..%2Fbulk", "%2e%2e/Patient-1.ndjson", "/etc/passwd",
                 "Patient-1.ndjson/../Patient-1.ndjson", "OperationOutcome-1.ndjson"):  # fmt: skip
        r = await bulk.http.get(f"{base}&file={name}", headers=headers)
        assert r.status_code in (400, 404), (name, r.status_code)
    job = base.partition("_jobId=")[2]
    other = await bulk.headers("other")  # another system client: not its export
    assert (await bulk.http.get(url, headers=other)).status_code == 404
    status_url = f"/fhir/$export-poll-status?_jobId={job}"
    assert (await bulk.http.delete(status_url, headers=other)).status_code == 404
    assert (await bulk.http.get(status_url, headers=headers)).status_code == 200
    for job_id in (f"../bulk/{job}", f"{job}%00", f"{job}/..", "*", "%", "' OR '1'='1"):
        r = await bulk.http.get(f"/fhir/$export-poll-status?_jobId={job_id}", headers=headers)
        assert r.status_code in (400, 404), (job_id, r.status_code)


# ---- resource exhaustion ------------------------------------------------------------------


def test_a_view_with_thousands_of_repeat_paths_is_refused_before_it_runs():
    from enjournal.fhir.errors import FhirError
    from enjournal.fhir.viewdefinition import plan

    paths = ["name", "given", "extension", "contact", "link"] * 400
    select = {"repeat": paths, "column": [{"name": "x", "path": "id"}]}
    definition = {"resourceType": "ViewDefinition", "resource": "Patient", "select": [select]}
    with pytest.raises(FhirError):
        plan(definition)


async def test_one_client_cannot_queue_exports_without_limit(bulk):
    codes = [(await bulk.kick_off("/fhir/$export")).status_code for _ in range(25)]
    assert 429 in codes or 503 in codes, codes
