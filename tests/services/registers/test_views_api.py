"""$viewdefinition-run: inline data, the store through the guard,
formats, stored views, and bad ViewDefinitions as 400s."""

from __future__ import annotations

import base64
import csv
import io
import json

import orjson
import pyarrow.parquet
import pytest

from enjournal.bootstrap import build_platform, close_platform, compose, open_platform
from enjournal.rest.message import FhirRequest
from enjournal.security.principal import Principal
from enjournal.security.setup import worker_security
from enjournal.services.registers import views_api
from enjournal.settings import Settings

pytestmark = pytest.mark.backends("memory")

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "Patient",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "birth", "path": "birthDate"},
            ]
        },
        {"forEachOrNull": "name", "column": [{"name": "family", "path": "family"}]},
    ],
}


def patient(pid: str, family: str, born: str, fnr: str = "13097248022") -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": FNR, "value": fnr}],
        "name": [{"family": family}],
        "birthDate": born,
    }


PEOPLE = [patient("p1", "Berg", "1972-09-13"), patient("p2", "Dahl", "1960-01-01", "01016010061")]


def parameters(*parts: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(parts)}


def view_part(view: dict = VIEW) -> dict:
    return {"name": "viewResource", "resource": view}


async def call(
    platform, method: str, path: str, body: dict | None = None, params=(), principal=None
):
    request = FhirRequest(
        method,
        [p for p in path.split("/") if p],
        list(params),
        {"content-type": "application/fhir+json"},
        orjson.dumps(body) if body else b"",
        "http://test/fhir",
    )
    return await platform.handle(request, principal)


@pytest.fixture
async def open_world(store_url, tmp_path):
    settings = Settings(
        database_url=store_url, auth=False, terminology_check=False, export_dir=str(tmp_path)
    )
    platform = await build_platform(settings)
    async with platform.store.transaction() as tx:
        for resource in PEOPLE:
            await tx.update(resource, resource["id"])
    yield platform
    await close_platform(platform)


async def test_inline_resources_run_on_duckdb(open_world):
    body = parameters(view_part(), *({"name": "resource", "resource": r} for r in PEOPLE[:1]))
    answer = await call(open_world, "POST", "$viewdefinition-run", body)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "application/json"
    assert json.loads(answer.body) == [{"id": "p1", "birth": "1972-09-13", "family": "Berg"}]


@pytest.mark.backends("memory", "sqlite", "postgres")
async def test_the_store_is_read_when_no_resource_is_given(open_world, monkeypatch):
    monkeypatch.setattr(views_api, "PAGE", 1)  # one resource a page: the cursor is followed
    answer = await call(
        open_world, "POST", "ViewDefinition/$viewdefinition-run", parameters(view_part())
    )
    assert answer.status == 200, answer.body
    assert sorted(r["family"] for r in json.loads(answer.body)) == ["Berg", "Dahl"]


async def test_limit_patient_and_since(open_world):
    body = parameters(view_part(), {"name": "_limit", "valueInteger": 1})
    assert len(json.loads((await call(open_world, "POST", "$viewdefinition-run", body)).body)) == 1
    body = parameters(
        view_part(), {"name": "patient", "valueReference": {"reference": "Patient/p2"}}
    )
    assert [
        r["id"]
        for r in json.loads((await call(open_world, "POST", "$viewdefinition-run", body)).body)
    ] == ["p2"]
    body = parameters(view_part(), {"name": "_since", "valueInstant": "2000-01-01T00:00:00Z"})
    assert len(json.loads((await call(open_world, "POST", "$viewdefinition-run", body)).body)) == 2
    both = [
        {"name": "patient", "valueReference": {"reference": f"Patient/{p}"}}
        for p in ("p1", "p2", "p1")
    ]
    answer = await call(open_world, "POST", "$viewdefinition-run", parameters(view_part(), *both))
    assert sorted(r["id"] for r in json.loads(answer.body)) == ["p1", "p2"]
    body = parameters(view_part(), {"name": "_since", "valueInstant": "2999-01-01T00:00:00Z"})
    assert json.loads((await call(open_world, "POST", "$viewdefinition-run", body)).body) == []


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "parquet"])
async def test_formats(open_world, fmt):
    body = parameters(view_part(), {"name": "_format", "valueCode": fmt})
    answer = await call(open_world, "POST", "$viewdefinition-run", body)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == views_api.FORMATS[fmt]
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(answer.body.decode())))
    elif fmt == "ndjson":
        rows = [json.loads(line) for line in answer.body.decode().splitlines()]
    else:
        rows = pyarrow.parquet.read_table(io.BytesIO(answer.body)).to_pylist()
    assert sorted(r["family"] for r in rows) == ["Berg", "Dahl"]


def library(view: dict) -> dict:
    data = base64.b64encode(json.dumps(view).encode()).decode()
    return {
        "resourceType": "Library",
        "id": "patients-view",
        "status": "active",
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/library-type",
                    "code": "logic-library",
                }
            ]
        },
        "content": [{"contentType": "application/json", "data": data}],
    }


async def test_a_stored_view_by_instance_and_by_reference(open_world):
    async with open_world.store.transaction() as tx:
        await tx.update(library(VIEW), "patients-view")
    answer = await call(open_world, "GET", "ViewDefinition/patients-view/$viewdefinition-run")
    assert answer.status == 200, answer.body
    assert len(json.loads(answer.body)) == 2
    body = parameters(
        {"name": "viewReference", "valueReference": {"reference": "Library/patients-view"}}
    )
    assert len(json.loads((await call(open_world, "POST", "$viewdefinition-run", body)).body)) == 2
    views_api.define_view(
        "just-ids", {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
    )
    answer = await call(open_world, "GET", "ViewDefinition/just-ids/$viewdefinition-run")
    assert sorted(r["id"] for r in json.loads(answer.body)) == ["p1", "p2"]


@pytest.mark.parametrize(
    "view, words",
    [
        ({"resource": "Patient", "select": [{"forEach": "@@"}]}, "FHIRPath"),
        ({"select": [{"column": [{"name": "id", "path": "id"}]}]}, "resource"),
        (
            {"resource": "Patient", "select": [{"column": [{"name": "a b", "path": "id"}]}]},
            "column name",
        ),
        (
            {
                "resource": "Patient",
                "where": [{"path": "name.family"}],
                "select": [{"column": [{"name": "n", "path": "id"}]}],
            },
            "not boolean",
        ),
    ],
)
async def test_bad_view_definitions_are_400(open_world, view, words):
    answer = await call(open_world, "POST", "$viewdefinition-run", parameters(view_part(view)))
    assert answer.status == 400, answer.body
    outcome = json.loads(answer.body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert words in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "params",
    [
        [("_format", "xml")],
        [("_limit", "zero")],
        [("_since", "yesterday")],
        [("patient", "Group/1")],
        [("source", "s3://bucket/data")],
        [("group", "Group/1")],
        [],
    ],
)
async def test_bad_inputs_are_400(open_world, params):
    answer = await call(open_world, "GET", "$viewdefinition-run", params=params)
    assert answer.status == 400, answer.body


@pytest.fixture
async def secured(store_url):
    settings = Settings(database_url=store_url, auth=True, terminology_check=False, jobs=False)
    security = worker_security(settings)
    platform = await open_platform(compose(settings, security=security))
    await security.start(platform.store)
    async with platform.store.transaction() as tx:
        for resource in PEOPLE:
            await tx.update(resource, resource["id"])
    yield platform
    await security.stop()
    await platform.store.close()


CITIZEN = Principal(
    "citizen",
    "pas-1",
    "helsenorge",
    frozenset({"patient/*.rs"}),
    "Pasient",
    pid="13097248022",  # p1's fødselsnummer
    assurance="high",
)


def about(patient_id: str) -> dict:
    return {"name": "patient", "valueReference": {"reference": f"Patient/{patient_id}"}}


@pytest.mark.backends("memory", "sqlite", "postgres")
async def test_the_store_is_read_as_the_caller_may(secured):
    body = parameters(view_part())
    mine = await call(secured, "POST", "$viewdefinition-run", body, principal=CITIZEN)
    assert mine.status == 200, mine.body
    assert [r["id"] for r in json.loads(mine.body)] == ["p1"]  # narrowed to their record
    body = parameters(view_part(), about("p2"))
    other = await call(secured, "POST", "$viewdefinition-run", body, principal=CITIZEN)
    assert other.status == 403, other.body


# ---- a system client over a PostgreSQL store: the PostgreSQL engine, the export policy


def system(*scopes: str) -> Principal:
    return Principal("system", "lab-client", "lab-client", frozenset(scopes or {"system/*.rs"}))


async def run_rows(platform, view: dict, principal, *extra: dict) -> list[dict]:
    answer = await call(
        platform,
        "POST",
        "$viewdefinition-run",
        parameters(view_part(view), *extra),
        principal=principal,
    )
    assert answer.status == 200, answer.body
    return sorted(json.loads(answer.body), key=lambda row: json.dumps(row, sort_keys=True))


async def runs_audited(platform) -> list[dict]:
    from tests.probes import audit_rows

    events = [orjson.loads(row.event) for row in await audit_rows(platform.store)]
    return [e for e in events if {"$viewdefinition-run"} & {c.get("code") for c in e["subtype"]}]


@pytest.mark.backends("sqlite", "postgres")
async def test_a_system_clients_rows_are_the_guarded_paths_when_nobody_is_protected(
    secured, monkeypatch
):
    as_exported = await run_rows(secured, VIEW, system())
    monkeypatch.setattr(views_api, "system_client", lambda request: None)  # the guarded path
    guarded = await run_rows(secured, VIEW, system())
    assert as_exported == guarded and len(guarded) == 2
    monkeypatch.undo()
    one = await run_rows(
        secured, VIEW, system(), about("p2"), {"name": "_limit", "valueInteger": 5}
    )
    assert [row["id"] for row in one] == ["p2"]


KJ_TAG = {"tag": [{"system": "http://enjournal.no/fhir/CodeSystem/kjernejournal", "code": "x"}]}


def controlled() -> list[dict]:
    """p1's address is strengt fortrolig, p2 reserved against disclosure with the national
    id and against a kjernejournal; a kjernejournal entry each, a locked prescription."""
    from enjournal.security.exports import (
        ADDRESS_PROTECTION,
        KJ,
        PRIVACY_LOCK,
        REGISTER_RESERVATION,
        WITHOUT_ID,
    )

    secret = {"security": [{"system": ADDRESS_PROTECTION, "code": "strengt-fortrolig"}]}
    p1 = {**PEOPLE[0], "meta": secret, "address": [{"city": "Oslo"}]}
    p2 = {**PEOPLE[1], "address": [{"city": "Bergen"}]}
    deny = {
        "type": "deny",
        "code": [{"coding": [{"system": KJ, "code": "reservasjon:kjernejournal"}]}],
    }
    return [
        p1,
        p2,
        {
            "resourceType": "Consent",
            "id": "noid-p2",
            "status": "active",
            "scope": {"text": "x"},
            "patient": {"reference": "Patient/p2"},
            "provision": {"type": "deny"},
            "category": [{"coding": [{"system": REGISTER_RESERVATION, "code": WITHOUT_ID}]}],
        },
        {
            "resourceType": "Consent",
            "id": "kj-p2",
            "status": "active",
            "scope": {"text": "x"},
            "patient": {"reference": "Patient/p2"},
            "provision": {"type": "permit", "provision": [deny]},
            "category": [{"coding": [{"system": KJ, "code": "personvern"}]}],
        },
        *(
            {
                "resourceType": "AllergyIntolerance",
                "id": f"kj-{p}",
                "meta": KJ_TAG,
                "patient": {"reference": f"Patient/{p}"},
                "code": {"text": "Penicillin"},
            }
            for p in ("p1", "p2")
        ),
        *(
            {
                "resourceType": "MedicationRequest",
                "id": f"mr-{n}",
                "status": "active",
                "intent": "order",
                "subject": {"reference": "Patient/p1"},
                "extension": lock,
                "medicationCodeableConcept": {"text": "Sobril"},
            }
            for n, lock in enumerate(([{"url": PRIVACY_LOCK, "valueString": "x"}], []))
        ),
    ]


def ids_view(type_: str) -> dict:
    return {"resource": type_, "select": [{"column": [{"name": "id", "path": "id"}]}]}


@pytest.mark.backends("sqlite", "postgres")
async def test_kjernejournal_hidden_locked_and_redacted_as_in_an_export(secured):
    async with secured.store.transaction() as tx:
        for resource in controlled():
            await tx.update(resource, resource["id"])
    where = {
        "resource": "Patient",
        "select": [
            {
                "column": [
                    {"name": "id", "path": "id"},
                    {"name": "family", "path": "name.family"},
                    {"name": "city", "path": "address.city"},
                    {"name": "fnr", "path": f"identifier.where(system = '{FNR}').value"},
                    {"name": "redacted", "path": "meta.security.where(code = 'REDACTED').exists()"},
                ]
            }
        ],
    }
    patients = await run_rows(secured, where, system())
    assert patients == [
        {"id": "p1", "family": "Berg", "city": None, "fnr": "13097248022", "redacted": True},
        {"id": "p2", "family": None, "city": None, "fnr": None, "redacted": True},
    ]
    allergies = await run_rows(secured, ids_view("AllergyIntolerance"), system())
    assert allergies == [{"id": "kj-p1"}]  # p2's kjernejournal is reserved
    prescriptions = await run_rows(secured, ids_view("MedicationRequest"), system())
    assert prescriptions == [{"id": "mr-1"}]  # mr-0 is locked


@pytest.mark.backends("sqlite", "postgres")
async def test_the_system_clients_scopes_are_checked_for_the_views_type(secured):
    body = parameters(view_part())
    answer = await call(
        secured, "POST", "$viewdefinition-run", body, principal=system("system/Observation.rs")
    )
    assert answer.status == 403, answer.body
    assert "Patient" in json.loads(answer.body)["issue"][0]["diagnostics"]
    assert not [e for e in await runs_audited(secured) if e["outcome"] == "0"]
    answer = await call(
        secured, "POST", "$viewdefinition-run", body, principal=system("system/Patient.rs")
    )
    assert answer.status == 200, answer.body


@pytest.mark.backends("sqlite", "postgres")
async def test_a_run_over_the_store_is_one_audit_event(secured):
    named = {**VIEW, "name": "patient_names"}
    assert len(await run_rows(secured, named, system())) == 2
    events = await runs_audited(secured)
    assert len(events) == 1
    event = events[0]
    assert event["action"] == "E" and event["outcome"] == "0"
    query = base64.b64decode(next(e["query"] for e in event["entity"] if "query" in e)).decode()
    assert "view=patient_names type=Patient rows=2 patients=all" in query
    await run_rows(secured, named, system(), about("p1"))
    last = (await runs_audited(secured))[-1]
    assert "Patient/p1" in [e.get("what", {}).get("reference") for e in last["entity"]]


# ---- a system client's view is the view over what $export writes, on every store --------

REGISTER = Principal(
    "system", "kpr", "kpr", frozenset({"system/*.rs", "register/export"})
)  # a register's own client: it reads no REST API, but exports


def every_control() -> list[dict]:
    """``controlled()``, and what the policy finds outside a Patient: p2 (reserved against
    disclosure with the number) named with a display, p1's protected address in a
    contained Patient carrying her number, and an Observation of p1 naming p3 (reserved
    against secondary use, left out) by a reference the index does not hold."""
    from enjournal.security.exports import NO_SECONDARY_USE, REGISTER_RESERVATION

    p3 = patient("p3", "Eng", "1990-01-01", "01019012345")
    reserved = {
        "resourceType": "Consent", "id": "no2-p3", "status": "active", "scope": {"text": "x"},
        "patient": {"reference": "Patient/p3"}, "provision": {"type": "deny"},
        "category": [{"coding": [{"system": REGISTER_RESERVATION, "code": NO_SECONDARY_USE}]}],
    }  # fmt: skip
    inside = {**PEOPLE[0], "id": "c", "address": [{"line": ["Storgata 1"]}]}
    naming = {"url": "http://example.org/related", "valueReference": {"reference": "Patient/p3"}}
    return [
        *controlled(),
        p3,
        reserved,
        observation("o-disp", {"reference": "Patient/p2", "display": "Dahl"}),
        observation("o-contained", {"reference": "#c"}, contained=[inside]),
        observation("o-p3", {"reference": "Patient/p1"}, extension=[naming]),
        observation("o-plain", {"reference": "Patient/p1", "display": "Berg"}),
    ]


def observation(id_: str, subject: dict, **more) -> dict:
    return {"resourceType": "Observation", "id": id_, "status": "final",
            "code": {"text": "x"}, "subject": subject, **more}  # fmt: skip


def columns(type_: str, *paths: str) -> dict:
    cols = [{"name": f"c{n}", "path": path, "collection": True} for n, path in enumerate(paths)]
    return {"resource": type_, "select": [{"column": [{"name": "id", "path": "id"}, *cols]}]}


CONTROL_VIEWS = [
    columns("Patient", "name.family", "address.city", "identifier.value", "meta.security.code"),
    columns("Observation", "subject.display", "contained.address.line", "extension.url"),
    columns("AllergyIntolerance", "patient.reference"),
    columns("MedicationRequest", "extension.url"),
    columns("Consent", "patient.reference"),
]


@pytest.fixture
async def exporting(store_url, tmp_path):
    settings = Settings(
        database_url=store_url, auth=True, terminology_check=False, jobs=False,
        export_dir=str(tmp_path),
    )  # fmt: skip
    security = worker_security(settings)
    platform = await open_platform(compose(settings, security=security))
    await security.start(platform.store)
    async with platform.store.transaction() as tx:
        for resource in every_control():
            await tx.update(resource, resource["id"])
    yield platform
    await security.stop()
    await platform.store.close()


async def export_files(platform, principal, types: list[str]) -> dict[str, list[str]]:
    """``$export`` of ``types`` by ``principal``, run to its end: its files per type."""
    from datetime import UTC, datetime

    from enjournal.services.registers.bulk_runner import job_dir
    from enjournal.storage import exports

    kick = FhirRequest(
        "GET", ["$export"], [("_type", ",".join(types))], {"prefer": "respond-async"}, b"",
        "http://test/fhir",
    )  # fmt: skip
    answer = await platform.handle(kick, principal)
    assert answer.status == 202, answer.body
    job_id = answer.headers["Content-Location"].split("_jobId=")[1]
    await platform.bulk_exporter.run_pass(platform.store, datetime.now(UTC))
    async with platform.store.transaction(write=False) as tx:
        job = await exports.read_job(tx, job_id)
    assert job is not None and job.status == exports.DONE, job
    files: dict[str, list[str]] = {t: [] for t in types}
    for entry in job.output["output"]:
        files[entry["type"]].append(str(job_dir(platform.settings, job_id) / entry["file"]))
    return files


@pytest.mark.backends("sqlite", "postgres")
@pytest.mark.parametrize("principal", [system(), REGISTER], ids=["system", "register"])
async def test_a_system_clients_view_is_the_view_over_the_export_files(exporting, principal):
    from enjournal.storage.views import run_view

    files = await export_files(exporting, principal, [v["resource"] for v in CONTROL_VIEWS])
    by_type = {}
    for view in CONTROL_VIEWS:
        over_files = run_view(view, files[view["resource"]], "duckdb").to_dicts()
        over_store = await run_rows(exporting, view, principal)
        assert over_store == sorted(over_files, key=lambda r: json.dumps(r, sort_keys=True))
        by_type[view["resource"]] = {row["id"]: row for row in over_store}
    # ... and every control did its work (both could agree on nothing done)
    patients, observations = by_type["Patient"], by_type["Observation"]
    assert set(patients) == {"p1", "p2"}  # p3 left out
    assert patients["p2"]["c0"] == [] and patients["p2"]["c2"] == []  # no name, no number
    assert patients["p1"]["c1"] == [] and patients["p1"]["c0"] == ["Berg"]  # no address
    assert set(observations) == {"o-disp", "o-contained", "o-plain"}  # o-p3 left out (V-3)
    assert observations["o-disp"]["c0"] == []  # p2's name in a display (V-1)
    assert observations["o-plain"]["c0"] == ["Berg"]  # p1's name is not reserved
    assert observations["o-contained"]["c1"] == []  # p1's address in a contained one (V-2)
    assert set(by_type["AllergyIntolerance"]) == {"kj-p1"}  # p2's kjernejournal reserved
    assert set(by_type["MedicationRequest"]) == {"mr-1"}  # mr-0 locked
    assert "no2-p3" not in by_type["Consent"]
