"""Bulk Data ``$export`` end to end over HTTP, on SQLite and PostgreSQL: a backend client gets
its token by client credentials with ``private_key_jwt``, kicks an export off, polls, reads
the manifest and the files, and cancels; the files hold every resource of the types asked
and nothing else, with the citizen's controls applied (docs/registers.md)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from joserfc import jwt

from enjournal.security import keys
from enjournal.security.exports import (
    ADDRESS_PROTECTION,
    KJ,
    NO_SECONDARY_USE,
    PRIVACY_LOCK,
    REGISTER_RESERVATION,
    WITHOUT_ID,
)
from enjournal.security.provider import ASSERTION_TYPE, Client, Provider, ProviderConfig
from enjournal.security.ratelimit import MemoryLimiter
from enjournal.security.setup import Security
from enjournal.security.tokens import TokenVerifier
from enjournal.server.app import create_app
from enjournal.services.registers import bulk_params
from enjournal.settings import Settings
from tests.security.conftest import FNR, PIDS, USERS, world

BASE = "http://test"
ISSUER = f"{BASE}/oidc"
REGISTER_KEY, LAB_KEY, OTHER_KEY = keys.generate("EC"), keys.generate("EC"), keys.generate("EC")
CLIENTS = [
    Client("kpr", jwk=keys.public_jwk(REGISTER_KEY), scopes=["system/*.rs", "register/export"]),
    Client("lab", jwk=keys.public_jwk(LAB_KEY), scopes=["system/Observation.rs"]),
    Client("other", jwk=keys.public_jwk(OTHER_KEY), scopes=["system/*.rs"]),
]
ASYNC = {"Prefer": "respond-async"}


def extra_resources() -> list[dict]:
    """Beside the security tests' world: a Group, a protected address, the register
    reservations, a kjernejournal reservation with an entry, a locked prescription."""
    return [
        {
            "resourceType": "Group",
            "id": "cohort",
            "type": "person",
            "actual": True,
            "member": [
                {"entity": {"reference": "Patient/kari"}},
                {"entity": {"reference": "Patient/ola"}},
            ],
        },
        consent("ola-res", "ola", REGISTER_RESERVATION, WITHOUT_ID),
        consent("nora-res", "nora", REGISTER_RESERVATION, NO_SECONDARY_USE),
        consent("kj-privacy-siri", "siri", KJ, "reservasjon:kjernejournal"),
        {
            "resourceType": "AllergyIntolerance",
            "id": "siri-kj",
            "meta": {"tag": [{"system": KJ, "code": "legemiddelreaksjon"}]},
            "patient": {"reference": "Patient/siri"},
            "code": {"text": "Penicillin"},
        },
        {
            "resourceType": "MedicationRequest",
            "id": "kari-locked",
            "status": "active",
            "intent": "order",
            "subject": {"reference": "Patient/kari"},
            "extension": [{"url": PRIVACY_LOCK, "valueString": "abc"}],
            "medicationCodeableConcept": {"text": "Sobril"},
        },
    ]


def consent(id_: str, patient: str, system: str, code: str) -> dict:
    """A register reservation (its category, denying, as the KPR feed reads it) or a
    kjernejournal setting (nested deny provisions, as kjernejournal writes them)."""
    body: dict = {
        "resourceType": "Consent",
        "id": id_,
        "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "patient": {"reference": f"Patient/{patient}"},
    }
    if system == REGISTER_RESERVATION:
        body["category"] = [{"coding": [{"system": system, "code": code}]}]
        body["provision"] = {"type": "deny"}
    else:
        deny = {"type": "deny", "code": [{"coding": [{"system": system, "code": code}]}]}
        body["category"] = [{"coding": [{"system": KJ, "code": "personvern"}]}]
        body["provision"] = {"type": "permit", "provision": [deny]}
    return body


class Bulk:
    def __init__(self, http, app, provider):
        self.http, self.app, self.provider = http, app, provider
        self.tokens: dict[str, str] = {}

    @property
    def platform(self):
        return self.app.state.platform

    async def token(self, client: str, key, scope: str) -> str:
        """Client credentials with private_key_jwt (SMART Backend Services)."""
        now = int(time.time())
        claims = {"iss": client, "sub": client, "aud": f"{ISSUER}/token", "iat": now,
                  "exp": now + 120, "jti": uuid.uuid4().hex}  # fmt: skip
        alg = keys.signing_alg(key)
        signed = jwt.encode(
            {"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg]
        )
        form = {"grant_type": "client_credentials", "scope": scope,
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}  # fmt: skip
        r = await self.http.post("/oidc/token", data=form)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    async def headers(self, who: str = "kpr", **extra) -> dict:
        if who not in self.tokens:
            key, scope = {
                "kpr": (REGISTER_KEY, "system/*.rs register/export"),
                "lab": (LAB_KEY, "system/Observation.rs"),
                "other": (OTHER_KEY, "system/*.rs"),
            }[who]
            self.tokens[who] = await self.token(who, key, scope)
        return {"Authorization": f"Bearer {self.tokens[who]}", **extra}

    async def kick_off(self, url: str, who: str = "kpr", **kw) -> httpx.Response:
        headers = await self.headers(who, **{**ASYNC, **kw.pop("headers", {})})
        if "json" in kw:
            return await self.http.post(url, headers=headers, **kw)
        return await self.http.get(url, headers=headers, **kw)

    async def run_jobs(self, now: datetime | None = None) -> int:
        exporter = self.platform.bulk_exporter
        return await exporter.run_pass(self.platform.store, now or datetime.now(UTC))

    async def export(self, url: str, who: str = "kpr", **kw) -> dict:
        """Kick off, run the jobs, poll: the manifest."""
        r = await self.kick_off(url, who, **kw)
        assert r.status_code == 202, r.text
        await self.run_jobs()
        status = await self.http.get(r.headers["content-location"], headers=await self.headers(who))
        assert status.status_code == 200, status.text
        return status.json()

    async def lines(self, manifest: dict, who: str = "kpr") -> dict[str, list[dict]]:
        """Every resource of the manifest's files, by type."""
        found: dict[str, list[dict]] = {}
        for entry in manifest["output"]:
            r = await self.http.get(entry["url"], headers=await self.headers(who))
            assert r.status_code == 200, r.text
            rows = [orjson.loads(line) for line in r.content.splitlines()]
            assert len(rows) == entry["count"]
            found.setdefault(entry["type"], []).extend(rows)
        return found


@pytest.fixture
async def bulk(store, tmp_path):
    async with store.transaction() as tx:
        for resource in [*world(), *extra_resources()]:
            await tx.update(resource, resource["id"])
        siri = await tx.read("Patient", "siri")
        patient = orjson.loads(siri.content)
        patient["meta"]["security"] = [{"system": ADDRESS_PROTECTION, "code": "strengt-fortrolig"}]
        await tx.update(patient, "siri")
    provider = Provider(
        ProviderConfig(issuer=ISSUER, key=keys.generate(), clients=CLIENTS, users=[USERS["gp"]])
    )
    security = Security(
        verifier=TokenVerifier([provider.issuer_config()]),
        provider=provider,
        limiter=MemoryLimiter(),
    )
    await security.start(store)
    settings = Settings(
        database_url="unused", public_url=BASE, export_dir=str(tmp_path / "exports")
    )
    app = create_app(settings, store, security)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield Bulk(http, app, provider)
    await security.stop()


def ids(found: dict[str, list[dict]], type_: str) -> set[str]:
    return {r["id"] for r in found.get(type_, [])}


async def all_stored(store, type_: str) -> list:
    from enjournal.fhir.search import parse_search

    async with store.transaction(write=False) as tx:
        return (await tx.search(parse_search(type_, [("_count", "1000")]))).matches


async def expected_ids(store, type_: str) -> set[str]:
    return {r.id for r in await all_stored(store, type_)}


# ---- the asynchronous pattern -------------------------------------------------------------


async def test_kick_off_poll_manifest_files_and_delete(bulk):
    r = await bulk.kick_off("/fhir/$export?_type=Patient,Observation")
    assert r.status_code == 202, r.text
    status_url = r.headers["content-location"]
    assert status_url.startswith(f"{BASE}/fhir/$export-poll-status?_jobId=")
    waiting = await bulk.http.get(status_url, headers=await bulk.headers())
    assert waiting.status_code == 202
    assert waiting.headers["x-progress"] == "queued" and waiting.headers["retry-after"]
    assert await bulk.run_jobs() == 1
    done = await bulk.http.get(status_url, headers=await bulk.headers())
    assert done.status_code == 200 and "expires" in done.headers
    manifest = done.json()
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"].endswith("/fhir/$export?_type=Patient,Observation")
    assert datetime.fromisoformat(manifest["transactionTime"]) <= datetime.now(UTC)
    assert {e["type"] for e in manifest["output"]} == {"Patient", "Observation"}
    assert manifest["error"] == []
    url = manifest["output"][0]["url"]
    fetched = await bulk.http.get(url, headers=await bulk.headers())
    assert fetched.status_code == 200
    assert fetched.headers["content-type"].startswith("application/fhir+ndjson")
    # Without a token, or with another client's: nothing (404 hides the export itself).
    assert (await bulk.http.get(url)).status_code == 401
    assert (await bulk.http.get(url, headers=await bulk.headers("other"))).status_code == 404
    assert (await bulk.http.get(status_url, headers=await bulk.headers("other"))).status_code == 404
    # DELETE cancels and deletes the files; the export is gone.
    folder = bulk.platform.settings.export_dir
    views = Path(folder) / "views" / "v1"  # the view exports share the folder: left alone
    views.mkdir(parents=True)
    (views / "view.csv").write_text("a\n")
    deleted = await bulk.http.delete(status_url, headers=await bulk.headers())
    assert deleted.status_code == 202
    assert (await bulk.http.get(status_url, headers=await bulk.headers())).status_code == 404
    assert (await bulk.http.get(url, headers=await bulk.headers())).status_code == 404
    assert not any(p.is_file() for p in (Path(folder) / "bulk").rglob("*"))
    await bulk.run_jobs(datetime.now(UTC) + timedelta(hours=2))  # expiry passes by
    assert (views / "view.csv").is_file()


async def test_progress_while_it_runs(bulk):
    r = await bulk.kick_off("/fhir/$export?_type=Observation,Patient")
    status_url = r.headers["content-location"]
    exporter = bulk.platform.bulk_exporter
    checkpoint, seen = exporter._checkpoint, []

    async def polled(store, job) -> None:
        await checkpoint(store, job)
        poll = await bulk.http.get(status_url, headers=await bulk.headers())
        seen.append((poll.status_code, poll.headers["x-progress"]))

    exporter._checkpoint = polled
    await bulk.run_jobs()
    # Six patients with an Observation each, nora's left out: a page of 5, then another.
    assert seen[0] == (202, "0% (0 of 10 resources)")  # the lease renewed before writing
    assert (202, "50% (5 of 10 resources)") in seen
    assert seen[-1] == (202, "100% (10 of 10 resources)")


async def test_delete_of_a_running_export_stops_it(bulk):
    r = await bulk.kick_off("/fhir/$export")
    status_url = r.headers["content-location"]
    assert (await bulk.http.delete(status_url, headers=await bulk.headers())).status_code == 202
    assert await bulk.run_jobs() == 0  # nothing left to run
    assert (await bulk.http.get(status_url, headers=await bulk.headers())).status_code == 404


async def test_kick_off_needs_respond_async_and_known_parameters(bulk):
    headers = await bulk.headers()
    r = await bulk.http.get("/fhir/$export", headers=headers)
    assert r.status_code == 400 and "respond-async" in r.text
    r = await bulk.kick_off("/fhir/$export?_outputFormat=text/csv")
    assert r.status_code == 400
    r = await bulk.kick_off("/fhir/$export?includeAssociatedData=LatestProvenanceResources")
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    r = await bulk.kick_off("/fhir/$export?_type=Nonsense")
    assert r.status_code == 400
    r = await bulk.kick_off("/fhir/$export?_typeFilter=Observation?nonsense=1")
    assert r.status_code == 400
    r = await bulk.kick_off("/fhir/$export?_since=yesterday")
    assert r.status_code == 400
    r = await bulk.kick_off("/fhir/Group/nope/$export")
    assert r.status_code == 404


async def test_lenient_handling_ignores_what_is_not_supported_and_says_so(bulk):
    manifest = await bulk.export(
        "/fhir/$export?_type=Patient&includeAssociatedData=x",
        headers={"Prefer": "respond-async, handling=lenient"},
    )
    assert [e["type"] for e in manifest["error"]] == ["OperationOutcome"]
    r = await bulk.http.get(manifest["error"][0]["url"], headers=await bulk.headers())
    assert "includeAssociatedData" in r.text


async def test_a_type_filter_may_not_search_what_the_export_removes(bulk):
    """Attack F-1: a filter by a national id, name or address found the very patients the
    file shows without them; it is refused naming the parameter, or ignored when lenient."""
    r = await bulk.kick_off("/fhir/$export?_type=Patient&_typeFilter=Patient?name=ola", "kpr")
    assert r.status_code == 400 and "name searches what the export may remove" in r.text
    chained = "_typeFilter=Observation?subject:Patient.address-city=BATS"
    r = await bulk.kick_off(f"/fhir/$export?_type=Observation&{chained}", "other")
    assert r.status_code == 400 and "subject:Patient.address-city" in r.text
    manifest = await bulk.export(
        "/fhir/$export?_type=Patient&_typeFilter=Patient?address-postalcode=999",
        headers={"Prefer": "respond-async, handling=lenient"},
    )
    r = await bulk.http.get(manifest["error"][0]["url"], headers=await bulk.headers())
    assert "address-postalcode" in r.text and "ignored" in r.text
    found = await bulk.lines(manifest)
    assert len(found["Patient"]) > 1  # the filter ignored: every patient, as policy allows


async def test_too_many_type_filters_are_refused_at_the_kick_off(bulk):
    """Attack L-1: 1,000 filters made a statement larger than SQLite takes (the job failed)."""
    many = range(bulk_params.MAX_TYPE_FILTERS + 1)
    filters = "&".join(f"_typeFilter=Observation?code=c{i}" for i in many)
    r = await bulk.kick_off(f"/fhir/$export?_type=Observation&{filters}")
    assert r.status_code == 400 and "_typeFilters" in r.text


async def test_health_personnel_may_not_export_nor_poll(bulk):
    r = await bulk.kick_off("/fhir/$export")
    status_url = r.headers["content-location"]
    gp = {
        "Authorization": f"Bearer {bulk.provider.issue_token(USERS['gp'], scopes='user/*.cruds')}"
    }
    refused = await bulk.http.get("/fhir/$export", headers={**gp, **ASYNC})
    assert refused.status_code == 403
    assert (await bulk.http.get(status_url, headers=gp)).status_code == 403


async def test_only_system_clients_within_their_scopes(bulk):
    # A lab client with system/Observation.rs: Observations only; Patient named is refused.
    manifest = await bulk.export("/fhir/$export", who="lab")
    assert {e["type"] for e in manifest["output"]} == {"Observation"}
    r = await bulk.kick_off("/fhir/$export?_type=Patient", who="lab")
    assert r.status_code == 403


# ---- completeness -------------------------------------------------------------------------


async def test_system_export_holds_every_resource_of_the_types_and_nothing_else(bulk, store):
    manifest = await bulk.export("/fhir/$export?_type=Observation,Organization,MedicationRequest")
    found = await bulk.lines(manifest)
    assert set(found) == {"Observation", "Organization", "MedicationRequest"}
    assert ids(found, "Observation") == await expected_ids(store, "Observation") - {"nora-obs"}
    assert ids(found, "Organization") == await expected_ids(store, "Organization")
    # The locked prescription is left out, as the API hides it; nora reserved against
    # secondary use, so nothing of hers goes.
    everything = await expected_ids(store, "MedicationRequest")
    assert ids(found, "MedicationRequest") == everything - {"kari-locked", "nora-mr"}
    for rows in found.values():
        assert all(r["resourceType"] in found for r in rows)


async def test_since_and_type_filter(bulk, store):
    # The store's clock runs ahead of the wall clock in a fast burst of writes (each write
    # at least a millisecond after the one before): wait until the world's last write is
    # past, then change one Observation; its own time is the cut.
    newest = max(r.last_updated for r in await all_stored(store, "Observation"))
    while time.time() * 1000 <= newest + 1:
        await asyncio.sleep(0.005)
    async with store.transaction() as tx:
        obs = orjson.loads((await tx.read("Observation", "kari-obs")).content)
        obs["status"] = "amended"
        changed = await tx.update(obs, "kari-obs")
    since = orjson.loads(changed.content)["meta"]["lastUpdated"]
    manifest = await bulk.export(f"/fhir/$export?_type=Observation&_since={since}")
    assert ids(await bulk.lines(manifest), "Observation") == {"kari-obs"}
    url = "/fhir/$export?_type=Observation,Patient&_typeFilter=Observation?status=amended"
    found = await bulk.lines(await bulk.export(url))
    assert ids(found, "Observation") == {"kari-obs"}
    assert "kari" in ids(found, "Patient")  # a type without a filter: all of it


async def test_patient_and_group_level(bulk, store):
    found = await bulk.lines(
        await bulk.export("/fhir/Patient/$export?_type=Patient,Observation,Organization")
    )
    assert "Organization" not in found  # not in a patient's compartment
    assert ids(found, "Observation") == await expected_ids(store, "Observation") - {"nora-obs"}
    group = await bulk.lines(
        await bulk.export("/fhir/Group/cohort/$export?_type=Patient,Observation")
    )
    assert ids(group, "Patient") == {"kari", "ola"}
    assert ids(group, "Observation") == {"kari-obs", "ola-obs"}
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Observation"},
            {"name": "patient", "valueReference": {"reference": "Patient/per"}},
        ],
    }
    one = await bulk.lines(await bulk.export("/fhir/Patient/$export", json=body))
    assert ids(one, "Observation") == {"per-obs"}


async def test_elements_keep_mandatory_ones_and_tag_subsetted(bulk):
    found = await bulk.lines(
        await bulk.export("/fhir/$export?_type=Observation&_elements=Observation.subject")
    )
    obs = found["Observation"][0]
    assert set(obs) == {"resourceType", "id", "meta", "status", "code", "subject"}
    assert any(t["code"] == "SUBSETTED" for t in obs["meta"]["tag"])


# ---- the citizen's controls ---------------------------------------------------------------


async def test_reserved_and_locked_patients_per_the_policy(bulk):
    found = await bulk.lines(
        await bulk.export(
            "/fhir/$export?_type=Patient,RelatedPerson,AllergyIntolerance,Observation"
        )
    )
    patients = {p["id"]: p for p in found["Patient"]}
    # nora reserved against secondary use: nothing of hers.
    assert "nora" not in patients and "nora-obs" not in ids(found, "Observation")
    # siri's address is strengt fortrolig: no address or telecom, her identity stays.
    assert "address" not in patients["siri"] and patients["siri"]["identifier"]
    assert any(s["code"] == "REDACTED" for s in patients["siri"]["meta"]["security"])
    # ola reserved against disclosure with his national id: no identity.
    assert not {"identifier", "name", "address"} & set(patients["ola"])
    # kari: nothing to hide, as stored.
    assert patients["kari"]["identifier"] and patients["kari"]["address"]
    # siri reserved against having a kjernejournal: its entries are hidden (as in the API);
    # her other data is not (another legal basis).
    assert "siri-kj" not in ids(found, "AllergyIntolerance")
    assert "siri-obs" in ids(found, "Observation")


def observation(id_: str, subject: dict, **more) -> dict:
    return {"resourceType": "Observation", "id": id_, "status": "final",
            "code": {"text": "puls"}, "subject": subject, **more}  # fmt: skip


def named(patient: str, display: str | None = None) -> dict:
    """A reference by the patient's national id (and name, if ``display``)."""
    found = {"identifier": {"system": FNR, "value": PIDS[patient]}}
    return {**found, "display": display} if display else found


async def test_a_patient_named_outside_their_own_patient_is_found_by_the_national_id(bulk):
    """Attack A-3: a reference by number and name, a logical reference, a contained Patient
    carry a patient's identity although no indexed reference names their Patient."""
    person = {"resourceType": "Patient", "id": "p", "name": [{"family": "Nordmann"}],
              "identifier": [named("nora")["identifier"]]}  # fmt: skip
    ola = {**person, "identifier": [named("ola")["identifier"]]}
    async with bulk.platform.store.transaction() as tx:
        for resource in [
            observation("ola-named", {"reference": "Patient/ola", **named("ola", "Ola Nordmann")}),
            observation("ola-contained", {"reference": "#p", "display": "Ola"}, contained=[ola]),
            observation("nora-logical", named("nora")),
            observation("nora-contained", {"reference": "#p"}, contained=[person]),
            observation("kari-named", {"reference": "Patient/kari", **named("kari", "Kari")}),
        ]:
            await tx.update(resource, resource["id"])
    found = await bulk.lines(await bulk.export("/fhir/$export?_type=Observation"))
    rows = {r["id"]: r for r in found["Observation"]}
    assert not {"nora-logical", "nora-contained"} & set(rows)  # nothing of nora's
    assert rows["ola-named"]["subject"] == {"reference": "Patient/ola"}
    assert rows["ola-contained"]["subject"] == {"reference": "#p"}
    assert "name" not in rows["ola-contained"]["contained"][0]
    text = orjson.dumps(found).decode()
    assert PIDS["nora"] not in text and PIDS["ola"] not in text and "Ola" not in text
    # kari protects nothing: her reference goes as stored.
    assert rows["kari-named"]["subject"] == {"reference": "Patient/kari", **named("kari", "Kari")}


async def test_every_export_is_audited(bulk, store):
    from tests.probes import audit_rows

    manifest = await bulk.export("/fhir/Group/cohort/$export?_type=Observation")
    await bulk.lines(manifest)
    events = [orjson.loads(r.event) for r in await audit_rows(store)]
    kick_offs = [e for e in events if "$export" in codes(e["subtype"])]
    fetches = [e for e in events if "$export-file" in codes(e["subtype"])]
    assert len(kick_offs) == 1 and len(fetches) == len(manifest["output"])
    what = [entity["what"]["reference"] for entity in kick_offs[0]["entity"] if "what" in entity]
    assert {"Group/cohort", "Patient/kari", "Patient/ola"} <= set(what)
    assert all(e["outcome"] == "0" for e in kick_offs + fetches)


def codes(codings: list[dict]) -> set[str]:
    return {c.get("code") for c in codings}
