"""The KPR extract on a small generated population, read through the platform with security
on: every municipal service type, pseudonyms and no identity in the activity files, the
identity file apart, yearly against monthly, reservations, and the data-quality report on
deliberately bad records."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow.parquet
import pytest

from enjournal.bootstrap import compose, open_platform
from enjournal.demo.municipal import HOURS_PER_WEEK, KPR_CONTACT, KPR_SERVICE
from enjournal.demo.population import generate_population
from enjournal.fhir import norwegian_ids as ids
from enjournal.importer import import_file
from enjournal.rest.message import FhirRequest
from enjournal.security.principal import Principal
from enjournal.security.setup import worker_security
from enjournal.services.registers import feeds, quality
from enjournal.services.registers.bulk_runner import job_dir
from enjournal.services.registers.pseudonyms import Pseudonymiser, load_key, make_demo_keys
from enjournal.settings import Settings
from enjournal.storage import exports as exports_db
from enjournal.terminology.loaders.fhir_json import draft_from_resource
from enjournal.terminology.loading import save_code_system
from tests.conftest import MEMORY

pytestmark = MEMORY
SEED, GENERATED = 42, 300
ICPC2 = "urn:oid:2.16.578.1.12.4.1.1.7170"
VKP_ALERT = "https://enjournal.no/fhir/CodeSystem/vkp-alert"


# ---- the population -----------------------------------------------------------------------


def chosen_bundles() -> list[dict]:
    """The shared bundle, every patient with a municipal service, and 15 without one."""
    bundles = list(generate_population(GENERATED, SEED))
    with_services, others = [], []
    for bundle in bundles[1:]:
        types = [e["resource"] for e in bundle["entry"]]
        served = any(_kpr_service(r) for r in types)
        (with_services if served else others).append(bundle)
    return [bundles[0], *with_services, *others[:15]]


def _kpr_service(resource: dict) -> str | None:
    if resource["resourceType"] != "EpisodeOfCare":
        return None
    codings = [c for t in resource.get("type", ()) for c in t.get("coding", ())]
    return next((c["code"] for c in codings if c["system"] == KPR_SERVICE), None)


@pytest.fixture
async def world(store_url, tmp_path):
    keys = make_demo_keys(tmp_path / "keys", ["kpr"])
    settings = Settings(
        database_url=store_url,
        auth=True,
        terminology_check=False,
        jobs=False,
        register_keys=str(keys),
        register_out=str(tmp_path / "out"),
    )
    security = worker_security(settings)
    platform = await open_platform(compose(settings, security=security))
    await security.start(platform.store)
    bundles = chosen_bundles()
    for n, bundle in enumerate(bundles):
        path = tmp_path / f"bundle-{n}.json"
        path.write_bytes(orjson.dumps(bundle))
        result = await import_file(platform.store, path)
        assert result.error is None, result.error
    yield platform
    await security.stop()
    await platform.store.close()


def read_csv(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def file_of(manifest: dict, part: str, suffix: str = ".csv") -> str:
    return next(
        f["path"] for f in manifest["files"] if part in f["path"] and f["path"].endswith(suffix)
    )


async def patients(platform) -> list[dict]:
    async with platform.store.transaction(write=False) as tx:
        found = await tx.with_id_prefix("Patient", limit=1000)
        return [orjson.loads(f.content) for f in found]


# ---- the extract --------------------------------------------------------------------------


@pytest.mark.backends("memory", "postgres")
async def test_the_yearly_kpr_extract(world):
    platform = world
    manifest = await feeds.export(platform, "kpr", "2024")
    contacts = read_csv(file_of(manifest, "kontakter"))
    services = read_csv(file_of(manifest, "tjenester"))
    # every service type the platform holds is there: GP and out-of-hours contacts, home
    # nursing, practical help, safety alarm, short and long-term institution stays
    assert {c["kontakttype"] for c in contacts} == {"fastlege", "legevakt"}
    assert {s["tjeneste"] for s in services} >= {"1", "6", "15", "18", "21"}
    assert all(c["dato"].startswith("2024") for c in contacts)
    legevakt = [c for c in contacts if c["kontakttype"] == "legevakt"]
    assert legevakt and all(c["diagnose_icpc2"] for c in legevakt)
    assert any(c["diagnose_icd10"] for c in contacts if c["kontakttype"] == "fastlege")
    for s in services:
        assert 1 <= int(s["dager_i_perioden"]) <= 366
        assert s["fra_dato"] <= "2024-12-31" and (not s["til_dato"] or s["til_dato"] >= "2024")
    assert all(s["timer_per_uke"] for s in services if s["tjeneste"] in ("1", "15"))

    # pseudonyms in place of identity: the register's HMAC of the person's number
    people = await patients(platform)
    numbers = {p["identifier"][0]["value"] for p in people}
    key = load_key(platform.settings.register_keys, "kpr")
    expected = {Pseudonymiser("kpr", key).of(n) for n in numbers}
    assert {r["pseudonym"] for r in contacts + services} <= expected
    names = {p["name"][0]["family"] for p in people}
    for path in (file_of(manifest, "kontakter"), file_of(manifest, "tjenester")):
        text = Path(path).read_text()
        assert not any(n in text for n in numbers), "a national identity number leaked"
        assert not any(name in text for name in names), "a name leaked"
        assert not any(p["birthDate"] in text for p in people), "a birth date leaked"
    assert {c["fodselsar"] for c in contacts} <= {p["birthDate"][:4] for p in people}
    assert all(len(c["kommune"]) == 4 for c in contacts + services)

    # the identity file is apart, private, and maps the pseudonyms back for the key holder
    identity = manifest["identity"][0]["path"]
    assert Path(identity).parent.name == "identitet"
    assert oct(Path(identity).stat().st_mode & 0o777) == "0o600"
    mapping = {r["pseudonym"]: r["fodselsnummer"] for r in read_csv(identity)}
    assert {r["pseudonym"] for r in contacts + services} == set(mapping)
    for pseudonym, number in mapping.items():
        assert Pseudonymiser("kpr", key).of(number) == pseudonym
        assert ids.is_valid_fnr(number)

    # Parquet holds the same rows as the CSV
    table = pyarrow.parquet.read_table(file_of(manifest, "tjenester", ".parquet"))
    assert table.num_rows == len(services)
    assert table.column_names == feeds.load_feed("kpr").description["files"]["tjenester"]
    written = json.loads((Path(manifest["location"]) / "manifest.json").read_text())
    assert written["counts"]["kontakter"] == len(contacts)


async def test_monthly_and_yearly_file_sets(world):
    platform = world
    year = await feeds.export(platform, "kpr", "2024")
    march = await feeds.export(platform, "kpr", "2024-03")
    assert Path(march["location"]).name == "2024-03" and Path(year["location"]).name == "2024"
    contacts_year = read_csv(file_of(year, "kontakter"))
    contacts_march = read_csv(file_of(march, "kontakter"))
    assert contacts_march and all(c["dato"].startswith("2024-03") for c in contacts_march)
    in_march = [c for c in contacts_year if c["dato"].startswith("2024-03")]
    assert sorted(map(str, contacts_march)) == sorted(map(str, in_march))
    services_march = read_csv(file_of(march, "tjenester"))
    assert services_march and all(1 <= int(s["dager_i_perioden"]) <= 31 for s in services_march)
    # the same person has the same pseudonym in both deliveries
    assert {s["pseudonym"] for s in services_march} <= {
        s["pseudonym"] for s in read_csv(file_of(year, "tjenester"))
    }


async def test_a_reservation_keeps_the_person_out_of_the_identity_file(world):
    platform = world
    before = await feeds.export(platform, "kpr", "2024")
    services = read_csv(file_of(before, "tjenester"))
    identity = {r["pseudonym"]: r["fodselsnummer"] for r in read_csv(before["identity"][0]["path"])}
    reserved_pseudonym = services[0]["pseudonym"]
    number = identity[reserved_pseudonym]
    person = next(p for p in await patients(platform) if p["identifier"][0]["value"] == number)
    await _store(platform, _reservation(person["id"]))
    after = await feeds.export(platform, "kpr", "2024")
    rows = read_csv(file_of(after, "tjenester"))
    assert reserved_pseudonym in {r["pseudonym"] for r in rows}  # the rows still go out
    kept = read_csv(after["identity"][0]["path"])
    assert reserved_pseudonym not in {r["pseudonym"] for r in kept}
    assert number not in Path(after["identity"][0]["path"]).read_text()
    assert len(kept) == len(identity) - 1
    assert after["counts"]["personsReserved"] == 1


async def test_safety_alarm_events_are_counted_on_the_service(world):
    platform = world
    before = await feeds.export(platform, "kpr", "2024")
    strays_before = _listed(before, "alarm-without-service")  # the files are rewritten below
    identity = {r["pseudonym"]: r["fodselsnummer"] for r in read_csv(before["identity"][0]["path"])}
    alarm_user = next(
        s["pseudonym"] for s in read_csv(file_of(before, "tjenester")) if s["tjeneste"] == "6"
    )
    people = {p["identifier"][0]["value"]: p["id"] for p in await patients(platform)}
    user = people[identity[alarm_user]]
    other = next(i for n, i in people.items() if n not in identity.values())
    for day in ("2024-03-01", "2024-11-30", "2023-12-31"):  # the last one is not in 2024
        await _store(platform, _alarm(user, day))
    stray = await _store(platform, _alarm(other, "2024-05-05"))
    after = await feeds.export(platform, "kpr", "2024")
    rows = [s for s in read_csv(file_of(after, "tjenester")) if s["pseudonym"] == alarm_user]
    assert {r["alarmer_i_perioden"] for r in rows if r["tjeneste"] == "6"} == {"2"}
    assert all(r["alarmer_i_perioden"] == "" for r in rows if r["tjeneste"] != "6")
    assert _listed(after, "alarm-without-service") == strays_before | {f"Task/{stray}"}


async def test_data_quality_findings_on_bad_records(world):
    platform = world
    someone = (await patients(platform))[0]["id"]
    before = await _checks(await feeds.export(platform, "kpr", "2024"))
    bad = await _bad_records(platform, someone)
    manifest = await feeds.export(platform, "kpr", "2024")
    report = json.loads(Path(manifest["quality"]["path"]).read_text())
    found = await _checks(manifest)
    expected = {
        "municipality-missing": f"Patient/{bad['nobody']}",
        "national-id-missing": f"Patient/{bad['nobody']}",
        "diagnosis-missing": f"Encounter/{bad['undiagnosed']}",
        "icpc2-invalid": f"Condition/{bad['bad_code']}",
        "diagnosis-not-coded": f"Condition/{bad['uncoded']}",
        "service-type-missing": f"EpisodeOfCare/{bad['untyped']}",
        "service-code-invalid": f"EpisodeOfCare/{bad['unknown_service']}",
        "hours-invalid": f"EpisodeOfCare/{bad['unknown_service']}",
        "service-dates-invalid": f"EpisodeOfCare/{bad['reversed']}",
    }
    listed = {
        (check, ref)
        for checks in report["municipalities"].values()
        for check, entry in checks.items()
        for ref in entry["resources"]
    }
    for check, ref in expected.items():
        assert (check, ref) in listed, check
        assert len(found[check]["examples"]) == min(found[check]["count"], quality.EXAMPLES)
    # each bad record is counted once (the demo's health checks have no diagnosis: a real
    # finding, there before)
    for check in expected:
        was = before[check]["count"] if check in before else 0
        assert found[check]["count"] == was + 1, check
    assert report["deadline"] == "2025-01-15" and report["feedbackFrom"] == "2025-01-01"
    assert (
        report["municipalities"][quality.UNKNOWN_MUNICIPALITY]["municipality-missing"]["count"] == 1
    )
    # the report names resources, never a person
    text = Path(manifest["quality"]["path"]).read_text()
    people = await patients(platform)
    assert not any(p["identifier"][0]["value"] in text for p in people if p.get("identifier"))
    assert not any(p["name"][0]["family"] in text for p in people if p.get("name"))
    pseudonyms = {r["pseudonym"] for r in read_csv(file_of(manifest, "kontakter"))}
    assert not any(p in text for p in pseudonyms if p)


async def test_the_operation_is_for_a_registers_client(world):
    platform = world
    kpr_client = Principal("system", "kpr", "kpr", frozenset({"register/kpr"}), "KPR")
    status, answer = await _operation(platform, kpr_client, "kpr", "2024-02")
    assert status == 200, answer
    parts = {p["name"]: p["valueString"] for p in answer["parameter"]}
    manifest = json.loads(parts["manifest"])
    # the files by their place in the set, never a server path (attack 3, R-1)
    assert "location" not in parts and "location" not in manifest
    assert platform.settings.register_out not in parts["manifest"]
    contacts = next(f["file"] for f in manifest["files"] if f["file"].endswith(".csv"))
    written = Path(platform.settings.register_out) / "kpr" / "2024-02" / contacts
    assert read_csv(str(written))
    # another register's client, or a system client of the record, may not
    for scopes in ({"register/npr"}, {"system/*.rs"}):
        other = Principal("system", "other", "other", frozenset(scopes), "Other")
        status, answer = await _operation(platform, other, "kpr", "2024-02")
        assert status == 403, answer
    status, answer = await _operation(platform, kpr_client, "kpr", "2024-14")
    assert status == 400 and "the month must be 01-12" in answer["issue"][0]["diagnostics"]
    everything = Principal("system", "all", "all", frozenset({"register/*"}), "All registers")
    status, answer = await _operation(platform, everything, "npr", "2024")
    assert status == 400 and "unknown register 'npr'" in answer["issue"][0]["diagnostics"]


async def test_daily_feedback_from_1_to_15_january(world, monkeypatch):
    platform = world
    monkeypatch.setattr(platform, "settings", replace(platform.settings, register_keys=None))
    job = next(j for j in feeds.jobs(platform) if j.name == "register-kpr-daily-feedback")
    assert await job.run(None, datetime(2024, 12, 31, 12, tzinfo=UTC)) == 0
    first = datetime(2024, 12, 31, 23, 30, tzinfo=UTC)  # 1 January in Norway
    assert await job.run(None, first) == 1  # no register key needed: no pseudonym is written
    assert await job.run(None, first + timedelta(minutes=20)) == 0  # once a day
    assert await job.run(None, datetime(2025, 1, 15, 10, tzinfo=UTC)) == 1
    assert await job.run(None, datetime(2025, 1, 16, 10, tzinfo=UTC)) == 0
    folder = Path(platform.settings.register_out) / "kpr" / "2024" / "kvalitet"
    written = sorted(p.name for p in folder.iterdir())
    assert written == ["kpr-kvalitet-2024-2025-01-01.json", "kpr-kvalitet-2024-2025-01-15.json"]
    report = json.loads((folder / written[0]).read_text())
    assert report["period"] == "2024" and report["deadline"] == "2025-01-15"
    assert report["rows"]["tjenester"] > 0
    assert not (folder.parent / "identitet").exists()


def test_periods():
    assert feeds.parse_period("2025") == feeds.Period("2025", date(2025, 1, 1), date(2026, 1, 1))
    december = feeds.parse_period("2024-12")
    assert (december.start, december.end) == (date(2024, 12, 1), date(2025, 1, 1))
    assert december.days_overlapping(date(2024, 11, 20), None) == 31
    assert december.days_overlapping(date(2024, 12, 30), date(2025, 2, 1)) == 2
    assert december.days_overlapping(date(2025, 1, 2), None) == 0
    for bad in ("2025-13", "25", "2025-3", "last year", "", "2025-00"):
        with pytest.raises(feeds.BadPeriod):
            feeds.parse_period(bad)


def test_the_feed_definition_keeps_identity_out_of_activity_files():
    feed = feeds.load_feed("kpr")
    for columns in feed.description["files"].values():
        assert not set(columns) & feed.removed
    assert {"fnr", "dnr", "name", "address", "birth_date"} <= feed.removed
    feed.description["files"]["kontakter"].append("fnr")
    with pytest.raises(ValueError, match="fnr"):
        feeds._refuse_identifying(feed, feed.description["files"]["kontakter"])
    with pytest.raises(feeds.UnknownRegister):
        feeds.load_feed("npr")


def test_code_checks():
    assert quality.code_form_ok("icpc2", "R74") and quality.code_form_ok("icpc2", "A-30")
    assert not quality.code_form_ok("icpc2", "Q99") and not quality.code_form_ok("icpc2", "R7")
    assert quality.code_form_ok("icd10", "J06.9") and quality.code_form_ok("icd10", "I10")
    assert not quality.code_form_ok("icd10", "J06.") and not quality.code_form_ok("icd10", "06.9")


async def test_codes_are_checked_against_the_terminology_the_platform_holds():
    held = {("http://hl7.org/fhir/sid/icd-10", "J06.9")}

    async def known(system, code):
        if system != "http://hl7.org/fhir/sid/icd-10":
            return None  # ICPC-2 not loaded: only the form is checked
        return (system, code) in held

    codes = quality.CodeChecker(known)
    assert await codes.valid("icd10", "J06.9")
    assert not await codes.valid("icd10", "J99.9")  # well formed, but not in ICD-10
    assert await codes.valid("icpc2", "R74")
    assert not await codes.valid("icpc2", "R7x")


@pytest.mark.backends("sqlite")  # the memory store holds no code systems
async def test_the_reader_checks_codes_against_a_loaded_code_system(world):
    platform = world
    icd10 = {
        "resourceType": "CodeSystem",
        "url": "http://hl7.org/fhir/sid/icd-10",
        "version": "2019",
        "name": "ICD10",
        "status": "active",
        "content": "complete",
        "concept": [{"code": "J06.9", "display": "Akutt øvre luftveisinfeksjon"}],
    }
    async with platform.store.transaction() as tx:
        await save_code_system(tx, draft_from_resource(icd10))
    reader = feeds.Reader(platform)
    assert await reader.code_known("http://hl7.org/fhir/sid/icd-10", "J06.9") is True
    assert await reader.code_known("http://hl7.org/fhir/sid/icd-10", "J99.9") is False
    assert await reader.code_known(ICPC2, "R74") is None  # not held: the form decides


# ---- helpers ------------------------------------------------------------------------------


async def _checks(manifest: dict) -> dict[str, dict]:
    report = json.loads(Path(manifest["quality"]["path"]).read_text())
    return {c["check"]: c for c in report["checks"]}


def _listed(manifest: dict, check: str) -> set[str]:
    report = json.loads(Path(manifest["quality"]["path"]).read_text())
    return {
        ref
        for checks in report["municipalities"].values()
        for ref in checks.get(check, {}).get("resources", ())
    }


def _alarm(patient_id: str, day: str) -> dict:
    return {
        "resourceType": "Task",
        "status": "completed",
        "intent": "order",
        "code": {"coding": [{"system": VKP_ALERT, "code": "safety-alarm"}]},
        "for": {"reference": f"Patient/{patient_id}"},
        "authoredOn": f"{day}T22:10:00+01:00",
    }


async def _operation(platform, principal, register: str, period: str) -> tuple[int, dict]:
    params = [("register", register), ("period", period)]
    request = FhirRequest("GET", ["$register-export"], params, {}, b"", "http://x/fhir")
    response = await platform.handle(request, principal)
    return response.status, orjson.loads(response.body)


async def _store(platform, resource: dict) -> str:
    async with platform.store.transaction() as tx:
        return (await tx.create(resource)).id


def _reservation(patient_id: str) -> dict:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": feeds.RESERVATION, "code": "kpr-fnr"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "policyRule": {"text": "Reservasjon mot utlevering med fødselsnummer (KPR)"},
        "provision": {"type": "deny"},
    }


def _contact(patient_id: str, kind: str, day: str, condition: str | None = None) -> dict:
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "type": [{"coding": [{"system": KPR_CONTACT, "code": kind}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": f"{day}T10:00:00+01:00", "end": f"{day}T10:20:00+01:00"},
    }
    if condition:
        encounter["diagnosis"] = [{"condition": {"reference": f"Condition/{condition}"}}]
    return encounter


def _condition(patient_id: str, coding: dict) -> dict:
    return {
        "resourceType": "Condition",
        "code": {"coding": [coding]},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def _episode(patient_id: str, start: str, end: str | None = None, code=None, hours=None) -> dict:
    episode: dict = {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "patient": {"reference": f"Patient/{patient_id}"},
        "period": {"start": start, **({"end": end} if end else {})},
    }
    if code:
        episode["type"] = [{"coding": [{"system": KPR_SERVICE, "code": code}]}]
    if hours is not None:
        episode["extension"] = [{"url": HOURS_PER_WEEK, "valueDecimal": hours}]
    return episode


async def _bad_records(platform, someone: str) -> dict[str, str]:
    nobody = await _store(
        platform, {"resourceType": "Patient", "gender": "female", "birthDate": "1950-02-03"}
    )
    bad_code = await _store(platform, _condition(someone, {"system": ICPC2, "code": "Q99"}))
    uncoded = await _store(platform, _condition(someone, {"system": "urn:x", "code": "1"}))
    return {
        "nobody": nobody,
        "undiagnosed": await _store(platform, _contact(nobody, "fastlege", "2024-05-02")),
        "bad_code": bad_code,
        "with_bad_code": await _store(
            platform, _contact(someone, "legevakt", "2024-05-03", bad_code)
        ),
        "uncoded": uncoded,
        "with_uncoded": await _store(
            platform, _contact(someone, "legevakt", "2024-05-04", uncoded)
        ),
        "untyped": await _store(platform, _episode(someone, "2024-02-01")),
        "unknown_service": await _store(
            platform, _episode(someone, "2024-02-01", code="99", hours=200)
        ),
        "reversed": await _store(
            platform, _episode(someone, "2024-06-01", "2024-05-01", code="15")
        ),
    }


# ---- $register-export on the export jobs (Prefer: respond-async) ---------------------------

KPR_CLIENT = Principal("system", "kpr", "kpr", frozenset({"register/kpr"}), "KPR")


@pytest.fixture
async def job_world(store_url, tmp_path):
    """The world above on a database (the jobs live there), its exports under tmp_path;
    ``build(clock)`` opens another platform over it (a restarted worker)."""
    keys = make_demo_keys(tmp_path / "keys", ["kpr"])
    opened = []

    async def build(clock=None):
        settings = Settings(database_url=store_url, auth=True, terminology_check=False,
                            jobs=False, register_keys=str(keys),
                            register_out=str(tmp_path / "out"),
                            export_dir=str(tmp_path / "exports"))  # fmt: skip
        security = worker_security(settings)
        kw = {"clock": clock} if clock else {}
        platform = await open_platform(compose(settings, security=security, **kw))
        await security.start(platform.store)
        opened.append(platform)
        return platform

    first = await build()
    for n, bundle in enumerate(chosen_bundles()):
        path = tmp_path / f"bundle-{n}.json"
        path.write_bytes(orjson.dumps(bundle))
        assert (await import_file(first.store, path)).error is None
    yield build, first
    for platform in opened:
        await platform.security.stop()
        await platform.store.close()


async def _call(platform, principal, method: str, url: str, headers=None):
    """A request by the URL a client was given (``http://x/fhir/$op?query``)."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    path = [p for p in parts.path.removeprefix("/fhir").split("/") if p]
    request = FhirRequest(method, path, parse_qsl(parts.query), headers or {}, b"", "http://x/fhir")
    return await platform.handle(request, principal)


async def _kick_off(platform, principal, register: str = "kpr", period: str = "2024-02"):
    url = f"http://x/fhir/$register-export?register={register}&period={period}"
    return await _call(platform, principal, "GET", url, {"prefer": "respond-async"})


async def _run_jobs(platform, now: datetime | None = None) -> int:
    return await platform.bulk_exporter.run_pass(platform.store, now or datetime.now(UTC))


def _parts(answer, name: str) -> list[dict]:
    return [
        {q["name"]: next(v for k, v in q.items() if k.startswith("value")) for q in p["part"]}
        for p in orjson.loads(answer.body)["parameter"]
        if p["name"] == name
    ]


@pytest.mark.backends("sqlite", "postgres")
async def test_the_operation_runs_on_the_export_jobs(job_world, tmp_path):
    _, platform = job_world
    started = await _kick_off(platform, KPR_CLIENT)
    assert started.status == 202, started.body
    status_url = started.headers["Content-Location"]
    assert "$export-poll-status?_jobId=" in status_url
    waiting = await _call(platform, KPR_CLIENT, "GET", status_url)
    assert waiting.status == 202 and waiting.headers["X-Progress"] == "queued"
    assert await _run_jobs(platform) == 1
    done = await _call(platform, KPR_CLIENT, "GET", status_url)
    assert done.status == 200, done.body
    assert str(tmp_path) not in done.body.decode()  # no server path goes out
    outputs = {o["name"]: o for o in _parts(done, "output")}
    identity = {o["name"]: o for o in _parts(done, "identity")}
    assert set(outputs) == {"kpr-kontakter-2024-02.csv", "kpr-kontakter-2024-02.parquet",
                            "kpr-tjenester-2024-02.csv", "kpr-tjenester-2024-02.parquet",
                            "kpr-kvalitet-2024-02.json"}  # fmt: skip
    assert set(identity) == {"identitet/kpr-identitet-2024-02.csv",
                             "identitet/kpr-identitet-2024-02.parquet"}  # fmt: skip
    manifest = json.loads(next(p for p in orjson.loads(done.body)["parameter"]
                               if p["name"] == "manifest")["valueString"])  # fmt: skip
    assert "location" not in manifest
    assert {f["file"] for f in manifest["identity"]} == set(identity)  # listed apart
    assert not {f["file"] for f in manifest["files"]} & set(identity)

    async def fetched(entry: dict) -> bytes:
        answer = await _call(platform, KPR_CLIENT, "GET", entry["location"])
        assert answer.status == 200, answer.body
        assert hashlib.sha256(answer.body).hexdigest() == entry["sha256"]
        return answer.body

    contacts = list(csv.DictReader(io.StringIO((await fetched(
        outputs["kpr-kontakter-2024-02.csv"])).decode())))  # fmt: skip
    people = list(csv.DictReader(io.StringIO((await fetched(
        identity["identitet/kpr-identitet-2024-02.csv"])).decode())))  # fmt: skip
    assert len(contacts) == outputs["kpr-kontakter-2024-02.csv"]["rows"] > 0
    assert "fodselsnummer" not in contacts[0] and len(contacts[0]["pseudonym"]) == 64
    fnr = {p["pseudonym"]: p["fodselsnummer"] for p in people}
    assert {c["pseudonym"] for c in contacts} <= set(fnr)
    assert all(ids.is_valid_fnr(n) for n in fnr.values())
    # the same as the synchronous file set (the key and the data are the same)
    manifest_sync = await feeds.export(platform, "kpr", "2024-02")
    assert read_csv(file_of(manifest_sync, "kontakter")) == contacts


@pytest.mark.backends("sqlite")
async def test_only_the_registers_client_that_started_it(job_world):
    _, platform = job_world
    for scopes in ({"register/npr"}, {"system/*.rs"}):
        other = Principal("system", "other", "other", frozenset(scopes), "Other")
        assert (await _kick_off(platform, other)).status == 403
    started = await _kick_off(platform, KPR_CLIENT)
    status_url = started.headers["Content-Location"]
    await _run_jobs(platform)
    done = await _call(platform, KPR_CLIENT, "GET", status_url)
    identity = _parts(done, "identity")[0]["location"]
    # another client of the same register: nothing, as for an export that does not exist
    second = Principal("system", "kpr-2", "kpr-2", frozenset({"register/kpr"}), "KPR 2")
    assert (await _call(platform, second, "GET", status_url)).status == 404
    assert (await _call(platform, second, "GET", identity)).status == 404
    # the client itself, once its token no longer holds the register's scope: refused
    lost = replace(KPR_CLIENT, scopes=frozenset({"system/*.rs"}))
    assert (await _call(platform, lost, "GET", status_url)).status == 403
    assert (await _call(platform, lost, "GET", identity)).status == 403
    assert (await _call(platform, KPR_CLIENT, "GET", identity)).status == 200
    assert (await _call(platform, KPR_CLIENT, "DELETE", status_url)).status == 202
    assert (await _call(platform, KPR_CLIENT, "GET", status_url)).status == 404
    assert (await _call(platform, KPR_CLIENT, "GET", identity)).status == 404
    job_id = status_url.rpartition("=")[2]
    assert not job_dir(platform.settings, job_id, "register").exists()


@pytest.mark.backends("sqlite")
async def test_bad_kick_offs_are_refused_before_anything_is_queued(job_world):
    _, platform = job_world
    assert (await _kick_off(platform, KPR_CLIENT, period="2024-14")).status == 400
    everything = Principal("system", "all", "all", frozenset({"register/*"}), "All registers")
    assert (await _kick_off(platform, everything, register="npr")).status == 400
    async with platform.store.transaction(write=False) as tx:
        assert await tx._conn.fetch("SELECT id FROM export_jobs") == []


async def test_the_memory_store_keeps_no_jobs(world):
    assert (await _kick_off(world, KPR_CLIENT)).status == 400


class _Crash(BaseException):
    """A worker killed in the middle of the extract."""


@pytest.mark.backends("sqlite", "postgres")
async def test_a_job_whose_worker_died_is_made_again(job_world, monkeypatch):
    build, first = job_world
    started = await _kick_off(first, KPR_CLIENT)
    job_id = started.headers["Content-Location"].rpartition("=")[2]
    folder = job_dir(first.settings, job_id, "register")
    export = feeds.export

    async def dying(*args, folder: Path, **kw):
        folder.mkdir(parents=True)
        (folder / "half-written.csv").write_text("pseudonym\n")
        raise _Crash

    monkeypatch.setattr(feeds, "export", dying)
    with pytest.raises(_Crash):
        await _run_jobs(first)
    monkeypatch.setattr(feeds, "export", export)
    async with first.store.transaction(write=False) as tx:
        assert (await exports_db.read_job(tx, job_id)).status == exports_db.RUNNING
    later = datetime.now(UTC) + timedelta(seconds=first.settings.export_lease_seconds + 1)
    second = await build(clock=lambda: later)
    assert await _run_jobs(second, later) == 1
    done = await _call(second, KPR_CLIENT, "GET", started.headers["Content-Location"])
    assert done.status == 200, done.body
    assert not (folder / "half-written.csv").exists()
    stem = "identitet/kpr-identitet-2024-02"
    assert {p["name"] for p in _parts(done, "identity")} == {f"{stem}.csv", f"{stem}.parquet"}
