"""The PostgreSQL view engine over the store (storage/views/postgres.py ``view_batches``):
resources written through the platform's API, selected by type, ``_since``, patients and the
register export policy (the same rows as the view over a bulk ``$export``'s files), read
from a server-side cursor in batches."""

from __future__ import annotations

import asyncpg.cursor
import pytest

from enjournal.fhir.errors import Invalid, NotSupported
from enjournal.security.exports import (
    ADDRESS_PROTECTION,
    CONSENT_SYSTEMS,
    KJ,
    NO_SECONDARY_USE,
    PRIVACY_LOCK,
    REGISTER_RESERVATION,
    WITHOUT_ID,
    export_policy,
)
from enjournal.services.registers.privacy import read_policy, view_policy
from enjournal.storage import exports
from enjournal.storage.views.postgres import ViewPolicy, run_store_view, view_batches

pytestmark = [pytest.mark.backends("postgres"), pytest.mark.postgres]

FHIR = {"Content-Type": "application/fhir+json"}
VIEW = {
    "resource": "Observation",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "code", "path": "code.coding.first().code"},
                {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
            ]
        }
    ],
}


def observation(n: int, patient: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": f"obs-{n}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": f"{8000 + n}-1"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": n + 0.5, "unit": "kg"},
    }


def reservation(patient: str) -> dict:
    """The citizen's reservation against disclosure for purpose 2 (research, analyses)."""
    coding = {"system": REGISTER_RESERVATION, "code": NO_SECONDARY_USE}
    return {
        "resourceType": "Consent",
        "id": f"reservation-{patient}",
        "status": "active",
        "scope": {"text": "register"},
        "category": [{"coding": [coding]}],
        "patient": {"reference": f"Patient/{patient}"},
        "policyRule": {"text": "the Health Register Act"},
        "provision": {"type": "deny", "code": [{"coding": [coding]}]},
    }


async def put(client, resources: list[dict]) -> None:
    for resource in resources:
        url = f"/fhir/{resource['resourceType']}/{resource['id']}"
        response = await client.put(url, json=resource, headers=FHIR)
        assert response.status_code in (200, 201), response.text


@pytest.fixture
async def written(client):
    patients = [{"resourceType": "Patient", "id": p} for p in ("a", "b", "c")]
    observations = [observation(n, "abc"[n % 3]) for n in range(9)]
    await put(client, [*patients, *observations, reservation("b")])
    return observations


async def ids(store, **selection) -> set[str]:
    return {row[0] for row in (await run_store_view(store, VIEW, **selection)).rows}


async def test_a_view_over_the_stores_current_resources(client, store, written):
    await put(client, [{**observation(1, "a"), "valueQuantity": {"value": 99, "unit": "kg"}}])
    assert (await client.delete("/fhir/Observation/obs-8")).status_code in (200, 204)
    result = await run_store_view(store, VIEW)
    assert result.columns == ["id", "patient", "code", "value"]
    rows = {row[0]: row for row in result.rows}
    assert set(rows) == {f"obs-{n}" for n in range(8)}  # obs-8 deleted; no Patient, Consent
    assert rows["obs-1"] == ("obs-1", "a", "8001-1", 99.0)  # the current version
    assert rows["obs-3"] == ("obs-3", "a", "8003-1", 3.5)


async def test_since_patients_and_type_filters(client, store, written):
    async with store.transaction(write=False) as tx:
        newest = (await tx.read("Observation", "obs-6")).last_updated
    assert await ids(store, since_ms=newest) == {"obs-6", "obs-7", "obs-8"}
    assert await ids(store, patients=["a", "c"]) == {
        "obs-0",
        "obs-2",
        "obs-3",
        "obs-5",
        "obs-6",
        "obs-8",
    }
    assert await ids(store, patients=[]) == set()
    from enjournal.fhir.search import parse_search

    only = parse_search("Observation", [("code", "http://loinc.org|8004-1")])
    assert await ids(store, type_filters=[only]) == {"obs-4"}


async def test_the_register_policys_excluded_patients_are_left_out(store, written):
    async with store.transaction(write=False) as tx:
        consents = await exports.consents_of_category(tx, CONSENT_SYSTEMS)
    policy = export_policy([], consents)
    assert policy.excluded == {"b"}
    found = await ids(store, policy=ViewPolicy(excluded=policy.excluded))
    assert found == {f"obs-{n}" for n in range(9) if n % 3 != 1}
    patients = {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
    result = await run_store_view(store, patients, policy=view_policy(policy))
    assert sorted(result.rows) == [("a",), ("c",)]


async def test_rows_come_in_batches_from_a_cursor(client, store, monkeypatch):
    await put(client, [observation(n, "a") for n in range(23)])
    fetches = []
    fetch = asyncpg.cursor.Cursor.fetch

    async def counted(cursor, n, *args, **kwargs):
        fetches.append(n)
        return await fetch(cursor, n, *args, **kwargs)

    monkeypatch.setattr(asyncpg.cursor.Cursor, "fetch", counted)
    sizes = [len(batch) async for batch in view_batches(store, VIEW, batch_rows=5)]
    assert sizes == [5, 5, 5, 5, 3]
    assert fetches == [5] * 6  # the server hands over 5 rows a time (the last: none left)
    monkeypatch.undo()
    # rows, not resources, fill a batch: two rows per Observation here
    per_coding = {
        "resource": "Observation",
        "select": [
            {"column": [{"name": "id", "path": "id"}]},
            {
                "unionAll": [
                    {"column": [{"name": "x", "path": "status"}]},
                    {"column": [{"name": "x", "path": "code.coding.code"}]},
                ]
            },
        ],
    }
    sizes = [len(batch) async for batch in view_batches(store, per_coding, batch_rows=10)]
    assert sizes == [10, 10, 10, 10, 6]
    limited = [len(b) async for b in view_batches(store, VIEW, batch_rows=5, limit=7)]
    assert limited == [5, 2]


async def test_a_consumer_may_stop_early_and_the_store_goes_on(client, store):
    await put(client, [observation(n, "a") for n in range(12)])
    batches = view_batches(store, VIEW, batch_rows=4)
    first = await anext(batches)
    await batches.aclose()
    assert len(first) == 4
    assert len((await run_store_view(store, VIEW)).rows) == 12


async def test_a_row_that_breaks_the_view_is_invalid(client, store):
    await put(client, [{**observation(1, "a"), "code": {"coding": [{"code": "x"}, {"code": "y"}]}}])
    several = {
        "resource": "Observation",
        "select": [{"column": [{"name": "code", "path": "code.coding.code"}]}],
    }
    with pytest.raises(Invalid, match="several values"):
        await run_store_view(store, several)
    with pytest.raises(Invalid):
        await run_store_view(store, {"resource": "Observation", "select": []})
    with pytest.raises(Invalid, match="batch_rows"):
        await run_store_view(store, VIEW, batch_rows=0)


async def test_only_on_a_postgresql_store():
    class SqliteStore:
        dialect = "sqlite"

    with pytest.raises(NotSupported):
        await run_store_view(SqliteStore(), VIEW)


# ---- the export policy: the same rows as over $export's files ----------------------------

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
LOCAL = "urn:oid:2.16.578.1.12.4.1.2.1"


def person(pid: str, **extra) -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": FNR, "value": f"0101{pid}"}, {"system": LOCAL, "value": pid}],
        "name": [{"family": f"Family {pid}"}],
        "address": [{"city": f"City {pid}"}],
        "telecom": [{"system": "phone", "value": f"+47 {pid}"}],
        "gender": "female",
        **extra,
    }


def consent(patient: str, system: str, code: str) -> dict:
    """A register reservation (its category) or a kjernejournal setting (a nested deny), as
    tests/services/registers/test_bulk.py writes them."""
    body: dict = {
        "resourceType": "Consent",
        "id": f"{code.replace(':', '-')}-{patient}",
        "status": "active",
        "scope": {"text": "privacy"},
        "patient": {"reference": f"Patient/{patient}"},
    }
    coding = {"system": system, "code": code}
    if system == REGISTER_RESERVATION:
        body["category"] = [{"coding": [coding]}]
        body["provision"] = {"type": "deny"}
    else:
        body["category"] = [{"coding": [{"system": KJ, "code": "personvern"}]}]
        body["provision"] = {
            "type": "permit",
            "provision": [{"type": "deny", "code": [{"coding": [coding]}]}],
        }
    return body


def population() -> list[dict]:
    """One patient of each control, and one without any: a protected address (hidden),
    a reservation against disclosure with the national id (noid), against purpose 2 (out),
    a kjernejournal reservation (kj); a locked prescription (of plain)."""
    secret = {"security": [{"system": ADDRESS_PROTECTION, "code": "strengt-fortrolig"}]}
    kj_tag = {"tag": [{"system": KJ, "code": "legemiddelreaksjon"}]}
    resources = [
        person("plain"),
        person("hidden", meta=secret),
        person("noid"),
        person("out"),
        person("kj"),
        consent("noid", REGISTER_RESERVATION, WITHOUT_ID),
        consent("out", REGISTER_RESERVATION, NO_SECONDARY_USE),
        consent("kj", KJ, "reservasjon:kjernejournal"),
    ]
    for pid in ("plain", "hidden", "noid", "out", "kj"):
        resources += [
            {
                "resourceType": "RelatedPerson",
                "id": f"rel-{pid}",
                "patient": ref(pid),
                "name": [{"family": "Mor"}],
                "address": [{"city": "Bergen"}],
                "telecom": [{"value": "123"}],
            },
            {
                "resourceType": "AllergyIntolerance",
                "id": f"kj-{pid}",
                "meta": kj_tag,
                "patient": ref(pid),
                "code": {"text": "Penicillin"},
            },
            {
                "resourceType": "AllergyIntolerance",
                "id": f"own-{pid}",
                "patient": ref(pid),
                "code": {"text": "Pollen"},
            },
            {**observation(len(resources), pid), "id": f"obs-{pid}"},
        ]
    for n, lock in enumerate(([{"url": PRIVACY_LOCK, "valueString": "x"}], [])):
        resources.append(
            {
                "resourceType": "MedicationRequest",
                "id": f"mr-{n}",
                "status": "active",
                "intent": "order",
                "subject": ref("plain"),
                "extension": lock,
                "medicationCodeableConcept": {"text": "Sobril"},
            }
        )
    return resources


def ref(pid: str) -> dict:
    return {"reference": f"Patient/{pid}"}


def columns(type_: str, **paths: str) -> dict:
    """A view of ``type_`` with its key and ``paths`` as collection columns."""
    listed = [{"name": n, "path": p, "collection": True} for n, p in paths.items()]
    return {
        "resource": type_,
        "select": [{"column": [{"name": "id", "path": "getResourceKey()"}, *listed]}],
    }


EVERYTHING = ("identifier.value", "name.family", "address.city", "telecom.value")
POLICY_VIEWS = [
    columns(
        "Patient",
        **dict(zip(("ids", "names", "cities", "phones"), EVERYTHING, strict=True)),
        security="meta.security.code",
        gender="gender",
    ),
    columns(
        "RelatedPerson",
        names="name.family",
        cities="address.city",
        phones="telecom.value",
        security="meta.security.code",
    ),
    columns("AllergyIntolerance", patient="patient.getReferenceKey(Patient)"),
    columns("Observation", patient="subject.getReferenceKey(Patient)"),
    columns("MedicationRequest", text="medication.ofType(CodeableConcept).text"),
]


@pytest.fixture
async def exporting(store_url, tmp_path):
    from enjournal.bootstrap import build_platform, close_platform
    from enjournal.settings import Settings

    settings = Settings(
        database_url=store_url,
        auth=False,
        terminology_check=False,
        jobs=False,
        export_dir=str(tmp_path / "exports"),
    )
    platform = await build_platform(settings)
    async with platform.store.transaction() as tx:
        for resource in population():
            await tx.update(resource, resource["id"])
    yield platform
    await close_platform(platform)


async def exported_files(platform, types: list[str]) -> dict[str, list[str]]:
    """Bulk $export of ``types`` run to its end: the NDJSON files per type."""
    from datetime import UTC, datetime

    from enjournal.rest.message import FhirRequest
    from enjournal.services.registers.bulk_runner import job_dir

    query = [("_type", ",".join(types))]
    kick = FhirRequest("GET", ["$export"], query, {"prefer": "respond-async"}, b"", "http://t")
    answer = await platform.handle(kick)
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


async def store_policy(store):
    async with store.transaction(write=False) as tx:
        return await read_policy(tx)


def ordered(rows) -> list:
    return sorted(rows, key=repr)


async def test_the_whole_export_policy_gives_the_rows_of_a_bulk_export(exporting):
    from enjournal.storage.views import run_view

    store = exporting.store
    files = await exported_files(exporting, [v["resource"] for v in POLICY_VIEWS])
    policy = await store_policy(store)
    for view in POLICY_VIEWS:
        over_files = run_view(view, files[view["resource"]], "duckdb").rows
        over_store = (await run_store_view(store, view, policy=view_policy(policy))).rows
        assert ordered(over_store) == ordered(over_files), view["resource"]
    # ... and the controls did their work (the two runs could agree on nothing done)
    policy_rows = view_policy(policy)
    patients = {
        r[0]: r[1:] for r in (await run_store_view(store, POLICY_VIEWS[0], policy=policy_rows)).rows
    }
    assert set(patients) == {"plain", "hidden", "noid", "kj"}  # out: reserved, purpose 2
    everything = (["0101plain", "plain"], ["Family plain"], ["City plain"], ["+47 plain"])
    assert patients["plain"] == (*everything, [], ["female"])
    hidden = (["0101hidden", "hidden"], ["Family hidden"], [], [])
    assert patients["hidden"] == (*hidden, ["strengt-fortrolig", "REDACTED"], ["female"])
    assert patients["noid"] == (["noid"], [], [], [], ["REDACTED"], ["female"])  # local id kept
    related = await run_store_view(store, POLICY_VIEWS[1], policy=view_policy(policy))
    cut = {row[0]: row[1:] for row in related.rows}
    assert cut["rel-hidden"] == cut["rel-noid"] == (["Mor"], [], [], ["REDACTED"])
    assert cut["rel-plain"] == (["Mor"], ["Bergen"], ["123"], []) and "rel-out" not in cut
    allergies = await run_store_view(store, POLICY_VIEWS[2], policy=view_policy(policy))
    assert {row[0] for row in allergies.rows} == {
        f"{kind}-{p}" for kind in ("kj", "own") for p in ("plain", "hidden", "noid")
    } | {"own-kj"}
    prescriptions = await run_store_view(store, POLICY_VIEWS[4], policy=view_policy(policy))
    assert [row[0] for row in prescriptions.rows] == ["mr-1"]
    unguarded = await run_store_view(store, POLICY_VIEWS[4])
    assert sorted(row[0] for row in unguarded.rows) == ["mr-0", "mr-1"]


# ---- the national ids of protected patients, wherever a row names them (A-3) ---------------

OLA, NORA = "01017012345", "02028054321"


def named_population() -> list[dict]:
    """Ola is reserved against disclosure with her number, Nora against purpose-2 use; each
    is named by Observations outside her own Patient: by the number only, in a contained
    Patient, by reference with number and name; and one of Ola's names her by reference."""
    nora_inside = {"resourceType": "Patient", "id": "n", "identifier": [number(NORA)]}
    return [
        {"resourceType": "Patient", "id": "ola", "identifier": [number(OLA)],
         "name": [{"family": "Nordmann"}]},
        {"resourceType": "Patient", "id": "nora", "identifier": [number(NORA)]},
        consent("ola", REGISTER_RESERVATION, WITHOUT_ID),
        consent("nora", REGISTER_RESERVATION, NO_SECONDARY_USE),
        {**observation(1, "ola"), "subject": {"identifier": number(NORA)}},
        {**observation(2, "ola"), "subject": {"reference": "#n"}, "contained": [nora_inside]},
        {**observation(3, "ola"), "subject": {**ref("ola"), "display": "Ola Nordmann",
                                              "identifier": number(OLA)}},
        observation(4, "ola"),
        {**observation(5, "ola"), "note": [{"text": f"ring {OLA[:6]} {OLA[6:]}"}]},
    ]  # fmt: skip


def number(value: str) -> dict:
    return {"system": FNR, "value": value}


async def test_a_row_holding_a_protected_patients_number_is_left_out(store):
    async with store.transaction() as tx:
        for resource in named_population():
            await tx.update(resource, resource["id"])
    policy = await store_policy(store)
    view = columns("Observation", shown="subject.display", number="subject.identifier.value")
    rows = (await run_store_view(store, view, policy=view_policy(policy))).rows
    # nora's by number and contained: out, as $export; ola's named with her number: out
    # (stricter than $export, which scrubs it); ola's other data stays
    assert {row[0] for row in rows} == {"obs-4", "obs-5"}  # a number split by a space is none
    assert OLA not in repr(rows) and NORA not in repr(rows)
    patients = await run_store_view(store, columns("Patient", ids="identifier.value"),
                                     policy=view_policy(policy))  # fmt: skip
    assert patients.rows == [("ola", [])]  # her own Patient stays, without the number
    # without the numbers the policy finds them by their own Patient and references only
    async with store.transaction(write=False) as tx:
        protected = await exports.protected_patients(tx, ADDRESS_PROTECTION)
        consents = await exports.consents_of_category(tx, CONSENT_SYSTEMS)
    bare = view_policy(export_policy(protected, consents))
    assert not bare.hidden_numbers
    unnumbered = (await run_store_view(store, view, policy=bare)).rows
    assert {row[0] for row in unnumbered} == {f"obs-{n}" for n in range(1, 6)}
