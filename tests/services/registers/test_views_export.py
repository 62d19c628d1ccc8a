"""$viewdefinition-export on the export jobs (SQLite and PostgreSQL): the kick-off (202 and
Content-Location), polling (202 and X-Progress, then 303 to the result), the result's
outputs and the files' contents over $export-file, cancelling, another client refused, and
a job resumed by another worker after its first one died."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import orjson
import pyarrow.parquet
import pytest

from enjournal.bootstrap import compose, open_platform
from enjournal.rest.message import FhirRequest
from enjournal.security.exports import NO_SECONDARY_USE, REGISTER_RESERVATION, WITHOUT_ID
from enjournal.security.principal import Principal
from enjournal.security.setup import worker_security
from enjournal.services.registers import views_api, views_export
from enjournal.services.registers.bulk_runner import Exporter, job_dir
from enjournal.settings import Settings
from enjournal.storage import exports as db

BASE = "http://test/fhir"
ASYNC = {"prefer": "respond-async", "content-type": "application/fhir+json"}
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
OWNER = Principal("system", "analytics", "analytics", frozenset({"system/*.rs"}), "Analytics")
OTHER = Principal("system", "other", "other", frozenset({"system/*.rs"}), "Other")


def patient(pid: str, family: str, born: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}],
            "birthDate": born}  # fmt: skip


def observation(n: int, pid: str) -> dict:
    subject = {"reference": f"Patient/{pid}"}
    return {"resourceType": "Observation", "id": f"obs-{n}", "status": "final",
            "code": {"text": f"reading {n}"}, "subject": subject}  # fmt: skip


PEOPLE = [patient("p1", "Berg", "1972-09-13"), patient("p2", "Dahl", "1960-01-01")]
READINGS = [observation(n, "p1" if n % 3 else "p2") for n in range(12)]
PATIENTS_VIEW = {
    "resourceType": "ViewDefinition",
    "name": "patients",
    "resource": "Patient",
    "select": [{"column": [{"name": "id", "path": "getResourceKey()"},
                           {"name": "family", "path": "name.family.first()"},
                           {"name": "birth", "path": "birthDate"}]}],
}  # fmt: skip
READINGS_VIEW = {
    "resourceType": "ViewDefinition",
    "resource": "Observation",
    "select": [{"column": [{"name": "id", "path": "getResourceKey()"},
                           {"name": "patient", "path": "subject.getReferenceKey(Patient)"}]}],
}  # fmt: skip


def view_part(view: dict, name: str | None = None) -> dict:
    named = [{"name": "name", "valueString": name}] if name else []
    return {"name": "view", "part": [*named, {"name": "viewResource", "resource": view}]}


def parameters(*parts: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(parts)}


BOTH = parameters(view_part(PATIENTS_VIEW), view_part(READINGS_VIEW, "readings"))


@pytest.fixture
async def platforms(store_url, tmp_path):
    """Secured platforms over one database (a second one is a restarted worker)."""
    opened = []

    async def build(clock=None):
        settings = Settings(database_url=store_url, auth=True, terminology_check=False,
                            jobs=False, export_dir=str(tmp_path / "exports"))  # fmt: skip
        security = worker_security(settings)
        kw = {"clock": clock} if clock else {}
        platform = await open_platform(compose(settings, security=security, **kw))
        await security.start(platform.store)
        opened.append(platform)
        return platform

    first = await build()
    async with first.store.transaction() as tx:
        for resource in [*PEOPLE, *READINGS]:
            await tx.update(resource, resource["id"])
    yield build, first
    for platform in opened:
        await platform.security.stop()
        await platform.store.close()


async def call(platform, method: str, url: str, principal=OWNER, body=None, headers=None):
    """A request by URL (``[base]/$op?query``), as a client would follow it."""
    parts = urlsplit(url)
    path = [p for p in parts.path.removeprefix(urlsplit(BASE).path).split("/") if p]
    request = FhirRequest(method, path, parse_qsl(parts.query), dict(headers or {}),
                          orjson.dumps(body) if body else b"", BASE)  # fmt: skip
    return await platform.handle(request, principal)


async def kick_off(platform, body=BOTH, principal=OWNER, path="ViewDefinition"):
    url = f"{BASE}/{path}/$viewdefinition-export"
    return await call(platform, "POST", url, principal, body, ASYNC)


async def run_jobs(platform, now: datetime | None = None) -> int:
    return await platform.bulk_exporter.run_pass(platform.store, now or datetime.now(UTC))


def values(answer) -> dict:
    return {p["name"]: p for p in json.loads(answer.body)["parameter"]}


def outputs(answer) -> dict[str, dict]:
    found = {}
    for p in json.loads(answer.body)["parameter"]:
        if p["name"] == "output":
            part = {
                q["name"]: next(v for k, v in q.items() if k.startswith("value")) for q in p["part"]
            }
            found[part["name"]] = part
    return found


def _value(part: dict):
    return next(v for k, v in part.items() if k.startswith("value"))


async def finished(platform, status_url: str, principal=OWNER):
    """Poll once done: the 303, then the result it points to."""
    answer = await call(platform, "GET", status_url, principal)
    assert answer.status == 303, answer.body
    result = await call(platform, "GET", answer.headers["Location"], principal)
    assert result.status == 200, result.body
    return result


async def test_kick_off_poll_result_and_files(platforms):
    _, platform = platforms
    started = await kick_off(platform)
    assert started.status == 202, started.body
    status_url = started.headers["Content-Location"]
    assert status_url.startswith(f"{BASE}/$export-poll-status?_jobId=")
    kicked = values(started)
    assert kicked["status"]["valueCode"] == "accepted"
    assert kicked["location"]["valueUri"] == status_url
    waiting = await call(platform, "GET", status_url)
    assert waiting.status == 202 and waiting.headers["X-Progress"] == "queued"
    assert waiting.headers["Retry-After"]
    assert await run_jobs(platform) == 1
    result = await finished(platform, status_url)
    assert values(result)["status"]["valueCode"] == "completed"
    assert values(result)["_format"]["valueCode"] == "ndjson"
    assert values(result)["exportId"]["valueString"] == kicked["exportId"]["valueString"]
    assert result.headers["Expires"]
    found = outputs(result)
    assert set(found) == {"patients", "readings"}  # the view's own name, or the one given
    assert (found["patients"]["rows"], found["readings"]["rows"]) == (2, 12)
    rows = {}
    for name, entry in found.items():
        assert entry["location"].startswith(f"{BASE}/$export-file?_jobId=")
        file = await call(platform, "GET", entry["location"])
        assert file.status == 200 and file.headers["Content-Type"] == "application/x-ndjson"
        rows[name] = [orjson.loads(line) for line in file.body.splitlines()]
    assert sorted(rows["patients"], key=lambda r: r["id"]) == [
        {"id": "p1", "family": "Berg", "birth": "1972-09-13"},
        {"id": "p2", "family": "Dahl", "birth": "1960-01-01"},
    ]
    expected = {(r["id"], r["subject"]["reference"][8:]) for r in READINGS}
    assert {(r["id"], r["patient"]) for r in rows["readings"]} == expected


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
async def test_csv_and_parquet_with_patient_and_a_tracking_id(platforms, fmt):
    _, platform = platforms
    body = parameters(
        view_part(READINGS_VIEW, "readings"),
        {"name": "_format", "valueCode": fmt},
        {"name": "patient", "valueReference": {"reference": "Patient/p2"}},
        {"name": "clientTrackingId", "valueString": "monthly-1"},
    )
    started = await kick_off(platform, body, path="")
    assert started.status == 202, started.body
    assert values(started)["clientTrackingId"]["valueString"] == "monthly-1"
    await run_jobs(platform)
    result = await finished(platform, started.headers["Content-Location"])
    assert values(result)["clientTrackingId"]["valueString"] == "monthly-1"
    file = await call(platform, "GET", outputs(result)["readings"]["location"])
    if fmt == "csv":
        table = list(csv.DictReader(io.StringIO(file.body.decode())))
    else:
        table = pyarrow.parquet.read_table(io.BytesIO(file.body)).to_pylist()
    wanted = sorted(r["id"] for r in READINGS if r["subject"]["reference"] == "Patient/p2")
    assert sorted(r["id"] for r in table) == wanted
    assert {r["patient"] for r in table} == {"p2"}


async def test_the_instance_level_exports_that_view(platforms):
    _, platform = platforms
    views_api.define_view("test-export-patients", PATIENTS_VIEW)
    started = await kick_off(platform, None, path="ViewDefinition/test-export-patients")
    assert started.status == 202, started.body
    await run_jobs(platform)
    result = await finished(platform, started.headers["Content-Location"])
    assert {name: o["rows"] for name, o in outputs(result).items()} == {"patients": 2}


async def test_cancel_deletes_the_job_and_its_files(platforms):
    _, platform = platforms
    started = await kick_off(platform)
    status_url = started.headers["Content-Location"]
    await run_jobs(platform)
    job_id = status_url.rpartition("=")[2]
    folder = job_dir(platform.settings, job_id, "views")
    assert folder.is_dir() and any(folder.iterdir())
    assert (await call(platform, "DELETE", status_url)).status == 202
    assert (await call(platform, "GET", status_url)).status == 404
    assert not folder.exists()


async def test_another_client_gets_nothing(platforms):
    _, platform = platforms
    started = await kick_off(platform)
    status_url = started.headers["Content-Location"]
    assert (await call(platform, "GET", status_url, OTHER)).status == 404
    await run_jobs(platform)
    assert (await call(platform, "GET", status_url, OTHER)).status == 404
    result = await finished(platform, status_url)
    for entry in outputs(result).values():
        assert (await call(platform, "GET", entry["location"], OTHER)).status == 404
    result_url = status_url.replace("$export-poll-status", "$export-result")
    assert (await call(platform, "GET", result_url, OTHER)).status == 404
    assert (await call(platform, "DELETE", status_url, OTHER)).status == 404
    assert (await call(platform, "GET", status_url)).status == 303  # still the owner's


async def test_who_may_start_one(platforms):
    _, platform = platforms
    lab = Principal("system", "lab", "lab", frozenset({"system/Observation.rs"}), "Lab")
    assert (await kick_off(platform, principal=lab)).status == 403  # Patient not granted
    ok = await kick_off(platform, parameters(view_part(READINGS_VIEW, "r")), principal=lab)
    assert ok.status == 202, ok.body
    gp = Principal("personnel", "gp", "ehr", frozenset({"user/*.rs"}), "GP", hpr="123")
    assert (await kick_off(platform, principal=gp)).status == 403


@pytest.mark.parametrize(
    "body, headers",
    [
        (BOTH, {"content-type": "application/fhir+json"}),  # no Prefer: respond-async
        (parameters(view_part({"resource": "Patient", "select": []})), ASYNC),
        (parameters(view_part(PATIENTS_VIEW, "a" * 300)), ASYNC),
        (parameters(view_part(PATIENTS_VIEW, "../x")), ASYNC),
        (parameters(view_part(PATIENTS_VIEW, "x"), view_part(READINGS_VIEW, "x")), ASYNC),
        (parameters(view_part(PATIENTS_VIEW), {"name": "source", "valueString": "s3://x"}), ASYNC),
        (parameters(), ASYNC),
    ],
)
async def test_bad_kick_offs_are_400(platforms, body, headers):
    _, platform = platforms
    answer = await call(platform, "POST", f"{BASE}/$viewdefinition-export", OWNER, body, headers)
    assert answer.status == 400, answer.body


class Crash(BaseException):
    """A worker killed after it wrote a view and before it saved the checkpoint."""


class CrashingExporter(Exporter):
    def __init__(self, *args, after: int, **kw):
        super().__init__(*args, **kw)
        self.left = after

    async def _checkpoint(self, store, job) -> None:
        if self.left == 0:
            raise Crash
        self.left -= 1
        await super()._checkpoint(store, job)


async def test_a_job_resumes_after_its_worker_dies(platforms, monkeypatch):
    build, first = platforms
    started = await kick_off(first)
    job_id = started.headers["Content-Location"].rpartition("=")[2]
    written: list[str] = []
    write_view = views_export.write_view

    async def counted(source, definition, params, path: Path) -> int:
        written.append(path.name)
        return await write_view(source, definition, params, path)

    monkeypatch.setattr(views_export, "write_view", counted)
    handlers = first.bulk_exporter.handlers
    dying = CrashingExporter(first.settings, first.clock, after=1, handlers=handlers)
    with pytest.raises(Crash):
        await dying.run_pass(first.store, datetime.now(UTC))
    async with first.store.transaction(write=False) as tx:
        half = await db.read_job(tx, job_id)
    assert half is not None and half.status == db.RUNNING and half.progress["view"] == 1
    assert written == ["patients.ndjson", "readings.ndjson"]  # the second not checkpointed
    waiting = await call(first, "GET", started.headers["Content-Location"])
    assert waiting.status == 202 and waiting.headers["X-Progress"] == "50% (1 of 2 views)"
    assert values(waiting)["status"]["valueCode"] == "in-progress"
    later = datetime.now(UTC) + timedelta(seconds=first.settings.export_lease_seconds + 1)
    second = await build(clock=lambda: later)
    assert await second.bulk_exporter.run_pass(second.store, later) == 1
    assert written[2:] == ["readings.ndjson"]  # the first view is not run again
    result = await finished(second, started.headers["Content-Location"])
    assert {name: o["rows"] for name, o in outputs(result).items()} == {
        "patients": 2,
        "readings": 12,
    }


@pytest.mark.backends("sqlite")
async def test_over_http_the_file_is_streamed_by_the_export_route(store_url, tmp_path):
    import httpx

    from enjournal.bootstrap import build_platform, close_platform
    from enjournal.server.app import create_app

    settings = Settings(database_url=store_url, auth=False, terminology_check=False,
                        jobs=False, export_dir=str(tmp_path / "exports"),
                        public_url="http://test")  # fmt: skip
    loader = await build_platform(settings)
    async with loader.store.transaction() as tx:
        for resource in PEOPLE:
            await tx.update(resource, resource["id"])
    app = create_app(settings, loader.store)
    body = parameters(view_part(PATIENTS_VIEW), {"name": "_format", "valueCode": "csv"})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        started = await http.post("/fhir/$viewdefinition-export", json=body, headers=ASYNC)
        assert started.status_code == 202, started.text
        platform = app.state.platform
        await platform.bulk_exporter.run_pass(platform.store, datetime.now(UTC))
        status = await http.get(started.headers["content-location"])
        assert status.status_code == 303, status.text
        result = await http.get(status.headers["location"])
        assert result.status_code == 200, result.text
        location = next(
            q["valueUri"] for p in result.json()["parameter"] if p["name"] == "output"
            for q in p["part"] if q["name"] == "location"
        )  # fmt: skip
        file = await http.get(location)
    await close_platform(loader)
    assert file.status_code == 200 and file.headers["content-type"].startswith("text/csv")
    assert file.text.splitlines() == ["id,family,birth", "p1,Berg,1972-09-13",
                                      "p2,Dahl,1960-01-01"]  # fmt: skip


def reservation(cid: str, pid: str, code: str) -> dict:
    """A register reservation (security/exports.py: kpr-fnr, kpr-formal-2)."""
    return {"resourceType": "Consent", "id": cid, "status": "active",
            "scope": {"coding": [{"code": "patient-privacy"}]},
            "category": [{"coding": [{"system": REGISTER_RESERVATION, "code": code}]}],
            "patient": {"reference": f"Patient/{pid}"}, "provision": {"type": "deny"}}  # fmt: skip


async def test_the_files_follow_the_export_policy(platforms):
    """A patient reserved against purpose-2 use is left out with what refers to them; one
    reserved against disclosure with the national id goes without it, as in $export."""
    _, platform = platforms
    with_ids = [{**p, "identifier": [{"system": FNR, "value": f"0101{n}0000{n}"}]}
                for n, p in enumerate(PEOPLE, 1)]  # fmt: skip
    async with platform.store.transaction() as tx:
        for resource in [*with_ids, reservation("c1", "p1", WITHOUT_ID),
                         reservation("c2", "p2", NO_SECONDARY_USE)]:  # fmt: skip
            await tx.update(resource, resource["id"])
    people_view = {**PATIENTS_VIEW, "select": [*PATIENTS_VIEW["select"],
                   {"column": [{"name": "fnr", "path": "identifier.value.first()"}]}]}  # fmt: skip
    body = parameters(view_part(people_view), view_part(READINGS_VIEW, "readings"))
    started = await kick_off(platform, body)
    await run_jobs(platform)
    result = await finished(platform, started.headers["Content-Location"])
    rows = {}
    for name, entry in outputs(result).items():
        file = await call(platform, "GET", entry["location"])
        rows[name] = [orjson.loads(line) for line in file.body.splitlines()]
    assert rows["patients"] == [{"id": "p1", "family": None, "birth": "1972-09-13", "fnr": None}]
    kept = {r["id"] for r in READINGS if r["subject"]["reference"] == "Patient/p1"}
    assert {r["id"] for r in rows["readings"]} == kept


OLA, NORA = "01017012345", "02028054321"  # national ids (11 digits) of p1 and p2


async def test_a_protected_patient_named_only_by_the_national_id_is_found(platforms):
    """A-3 in a view's file: an Observation naming a patient reserved against purpose-2 use
    by identifier only is left out; one naming a patient reserved against disclosure with
    the number by identifier and display holds neither (scrubbed as $export scrubs it, on
    every store)."""
    _, platform = platforms
    numbered = [{**p, "identifier": [{"system": FNR, "value": n}]}
                for p, n in zip(PEOPLE, (OLA, NORA), strict=True)]  # fmt: skip
    by_number = {**observation(90, "p2"), "subject": {"identifier": {"system": FNR, "value": NORA}}}
    named = {**observation(91, "p1"), "subject": {"reference": "Patient/p1",
             "display": "Ola Berg", "identifier": {"system": FNR, "value": OLA}}}  # fmt: skip
    async with platform.store.transaction() as tx:
        for resource in [*numbered, by_number, named, reservation("c1", "p1", WITHOUT_ID),
                         reservation("c2", "p2", NO_SECONDARY_USE)]:  # fmt: skip
            await tx.update(resource, resource["id"])
    subject = [{"name": "shown", "path": "subject.display"},
               {"name": "number", "path": "subject.identifier.value"}]  # fmt: skip
    view = {**READINGS_VIEW, "select": [*READINGS_VIEW["select"], {"column": subject}]}
    started = await kick_off(platform, parameters(view_part(view, "readings")))
    await run_jobs(platform)
    result = await finished(platform, started.headers["Content-Location"])
    file = await call(platform, "GET", outputs(result)["readings"]["location"])
    assert OLA.encode() not in file.body and NORA.encode() not in file.body
    assert b"Ola Berg" not in file.body
    rows = {row["id"]: row for row in map(orjson.loads, file.body.splitlines())}
    assert "obs-90" not in rows
    assert {r["id"] for r in READINGS if r["subject"]["reference"] == "Patient/p1"} <= set(rows)
    assert rows["obs-91"] == {"id": "obs-91", "patient": "p1", "shown": None, "number": None}
