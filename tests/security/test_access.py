"""Who may see what: the access policy end to end through HTTP, on both backends.

Roles x resource types x care relationships x consent, emergency access, citizens and their
children, system clients, and one patient's token used against another patient's data
through every side door (includes, chains, _has, $everything, history, paging, errors).
"""

from __future__ import annotations

import json

import orjson
import pytest

from enjournal.security.audit import verify
from tests.conftest import EVERY_BACKEND, MEMORY
from tests.probes import audit_rows

pytestmark = MEMORY

EMERGENCY = {"nhn-access-basis": "AKUTT", "nhn-access-reason": "unconscious in the ER"}


# ---- the matrix: who reads which resource of which patient ------------------------------

MATRIX = [
    # who, patient, resource, expected status
    ("gp", "kari", "Observation/kari-obs", 200),  # on the GP's list
    ("gp", "kari", "MedicationRequest/kari-mr", 200),
    ("gp", "siri", "Observation/siri-obs", 404),  # no relation: looks like nothing is there
    ("nurse", "kari", "Observation/kari-obs", 200),  # the office's patient via the GP list?
    ("hdoc", "ola", "Observation/ola-obs", 200),  # encounter at the hospital
    ("hdoc", "nora", "Observation/nora-obs", 200),  # referred to the hospital
    ("hdoc", "kari", "Observation/kari-obs", 404),
    ("farm", "kari", "MedicationRequest/kari-mr", 200),  # a pharmacy sees prescriptions
    ("farm", "kari", "Observation/kari-obs", 404),  # but not the rest of the record
    ("farm", "kari", "Patient/kari", 200),
    ("kari", "kari", "Observation/kari-obs", 200),  # own record
    ("kari", "lise", "Observation/lise-obs", 200),  # child under 12 at the same address
    ("kari", "per", "Observation/per-obs", 404),  # child of 13: no parental access
    ("kari", "siri", "Observation/siri-obs", 404),
    ("siri", "kari", "Patient/kari", 404),
    ("system", "kari", "Observation/kari-obs", 200),  # integration client, system/*.rs
    ("register", "kari", "Observation/kari-obs", 404),  # registers only export
]


@pytest.mark.parametrize(("who", "patient", "url", "status"), MATRIX)
async def test_read_matrix(secured, who, patient, url, status):
    response = await secured.get(who, f"/fhir/{url}")
    assert response.status_code == status, (who, url, response.text)


async def test_nurse_at_the_office_reaches_patients_through_office_encounters(secured):
    # The nurse is not the GP; without an encounter at the office there is no relation.
    assert (await secured.get("nurse", "/fhir/Observation/ola-obs")).status_code == 404


SEARCHES = [
    ("gp", "/fhir/Observation?patient=kari", 200, 1),
    ("gp", "/fhir/Patient/kari/Observation", 200, 1),
    ("gp", "/fhir/Observation?patient=siri", 403, None),
    ("gp", "/fhir/Observation?code=8867-4", 403, None),  # personnel must name a patient
    ("farm", "/fhir/MedicationRequest?patient=kari", 200, 1),
    ("farm", "/fhir/Observation?patient=kari", 403, None),
    ("farm", "/fhir/Patient?name=kari", 403, None),  # pharmacies look up by national id
    ("kari", "/fhir/Observation", 403, None),  # a parent must say whose record
    ("kari", "/fhir/Observation?patient=kari", 200, 1),
    ("kari", "/fhir/Observation?patient=lise", 200, 1),
    ("kari", "/fhir/Observation?patient=siri", 403, None),
    ("siri", "/fhir/Observation", 200, 1),  # only one record: the search is narrowed to it
    ("system", "/fhir/Observation?code=8867-4", 200, 6),
]


@pytest.mark.parametrize(("who", "url", "status", "count"), SEARCHES)
async def test_search_matrix(secured, who, url, status, count):
    response = await secured.get(who, url)
    assert response.status_code == status, (who, url, response.text)
    if count is not None:
        assert len(response.json()["entry"]) == count


async def test_pharmacy_looks_patients_up_by_national_id(secured):
    from tests.security.conftest import FNR, PIDS

    found = await secured.get("farm", f"/fhir/Patient?identifier={FNR}|{PIDS['kari']}")
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json()["entry"]] == ["kari"]


async def test_gp_patient_search_only_returns_own_list(secured):
    found = await secured.get("gp", "/fhir/Patient?_count=50")
    ids = {e["resource"]["id"] for e in found.json()["entry"]}
    assert ids == {"kari", "lise", "per"}


# ---- writes -----------------------------------------------------------------------------


async def test_a_secured_write_keeps_decimals(secured):
    """The guard reads whose data a new resource is from its JSON: a decimal (parsed as a
    Decimal to keep its precision) once made every secured write of one a 500."""
    from tests.security.conftest import observation

    obs = observation("x", "kari")
    obs["valueQuantity"] = {**obs["valueQuantity"], "value": 36.80}
    created = await secured.http.post(
        "/fhir/Observation",
        content=orjson.dumps(obs).replace(b"36.8", b"36.80"),
        headers={**secured.headers("gp"), "content-type": "application/fhir+json"},
    )
    assert created.status_code == 201, created.text
    read = await secured.get("gp", f"/fhir/Observation/{created.json()['id']}")
    assert b'"value":36.80' in read.content  # the precision as written
    entry = {"resource": obs, "request": {"method": "POST", "url": "Observation"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    answer = await secured.http.post("/fhir", json=bundle, headers=secured.headers("gp"))
    assert answer.status_code == 200, answer.text


async def test_a_guarded_transaction_of_observations_is_checked_entry_by_entry(secured):
    """Observations (no access check reads them) are checked first and written together:
    a refused one still refuses the transaction, names its own entry, and nothing is
    written."""
    from tests.security.conftest import observation

    post = {"method": "POST", "url": "Observation"}
    entries = [
        {"resource": observation(f"t-{n}", who), "request": post}
        for n, who in enumerate(["kari", "siri", "kari"])
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    refused = await secured.http.post("/fhir", json=bundle, headers=secured.headers("gp"))
    assert refused.status_code == 403, refused.text
    assert "Bundle.entry[1]" in refused.text
    before = await secured.get("gp", "/fhir/Observation?subject=Patient/kari")
    bundle["entry"] = [entries[0], entries[2]]
    done = await secured.http.post("/fhir", json=bundle, headers=secured.headers("gp"))
    assert done.status_code == 200, done.text
    after = await secured.get("gp", "/fhir/Observation?subject=Patient/kari")
    assert after.json()["total"] == before.json()["total"] + 2


async def test_writes_follow_the_same_rules(secured):
    from tests.security.conftest import observation

    ok = await secured.http.post(
        "/fhir/Observation", json=observation("x", "kari"), headers=secured.headers("gp")
    )
    assert ok.status_code == 201
    denied = await secured.http.post(
        "/fhir/Observation", json=observation("x", "siri"), headers=secured.headers("gp")
    )
    assert denied.status_code == 403
    # Update-as-create is for system clients: for anyone else a free id and a hidden one
    # answer alike, so the answer does not tell which ids exist.
    for id_, patient in (("kari-obs2", "kari"), ("siri-obs", "kari")):
        put = await secured.http.put(
            f"/fhir/Observation/{id_}",
            json=observation(id_, patient),
            headers=secured.headers("gp"),
        )
        assert put.status_code == 404, id_
    by_citizen = await secured.http.post(
        "/fhir/Observation", json=observation("x", "kari"), headers=secured.headers("kari")
    )
    assert by_citizen.status_code == 403
    by_system = await secured.http.post(
        "/fhir/Observation", json=observation("x", "kari"), headers=secured.headers("system")
    )
    assert by_system.status_code == 403  # system/*.rs does not allow create
    # Moving a resource out of a record one can reach into one that one cannot is refused.
    moved = await secured.http.put(
        "/fhir/Observation/kari-obs",
        json=observation("kari-obs", "siri"),
        headers=secured.headers("gp"),
    )
    assert moved.status_code == 403


async def test_citizen_may_write_own_consent_only(secured):
    consent = {
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
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "policyRule": {"text": "the patient's own restriction"},  # ppc-1
        "patient": {"reference": "Patient/kari"},
        "provision": {
            "type": "deny",
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "PRCP",
                            }
                        ]
                    },
                    "reference": {"reference": "Organization/hf"},
                }
            ],
        },
    }
    own = await secured.http.post("/fhir/Consent", json=consent, headers=secured.headers("kari"))
    assert own.status_code == 201, own.text
    other = dict(consent, patient={"reference": "Patient/siri"})
    refused = await secured.http.post("/fhir/Consent", json=other, headers=secured.headers("kari"))
    assert refused.status_code == 403


# ---- emergency access and consent ---------------------------------------------------------


@EVERY_BACKEND
async def test_emergency_access_is_allowed_flagged_and_audited(secured):
    response = await secured.get("gp", "/fhir/Observation/siri-obs", **EMERGENCY)
    assert response.status_code == 200
    rows = [
        (r.purpose, r.emergency) for r in await audit_rows(secured.store) if r.patient_id == "siri"
    ]
    assert ("ETREAT", True) in [(r[0], bool(r[1])) for r in rows]
    missing_reason = await secured.get(
        "gp", "/fhir/Observation/siri-obs", **{"nhn-access-basis": "AKUTT"}
    )
    assert missing_reason.status_code == 400
    unknown = await secured.get(
        "gp", "/fhir/Observation/siri-obs", **{"nhn-access-basis": "TRUST-ME"}
    )
    assert unknown.status_code == 400
    # Both refusals are audited, though no patient was read: the policy never ran.
    refusals = [r for r in await audit_rows(secured.store) if r.outcome == "4"]
    assert len(refusals) == 2 and not any(r.emergency for r in refusals)


async def test_akutt_stated_by_a_worker_who_may_read_anyway_is_not_break_the_glass(secured):
    # Kari is on the GP's list: AKUTT is logged as the stated basis, not as an emergency access.
    response = await secured.get("gp", "/fhir/Observation/kari-obs", **EMERGENCY)
    assert response.status_code == 200
    rows = [r for r in await audit_rows(secured.store) if r.patient_id == "kari"]
    assert rows and not any(r.emergency for r in rows)
    assert all(r.purpose == "TREAT" for r in rows)


def deny_consent(patient: str, actor: str | None = None, data: str | None = None) -> dict:
    provision: dict = {"type": "deny"}
    if actor:
        provision["actor"] = [
            {
                "role": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "PRCP",
                        }
                    ]
                },
                "reference": {"reference": actor},
            }
        ]
    if data:
        provision["data"] = [{"meaning": "instance", "reference": {"reference": data}}]
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
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "policyRule": {"text": "the patient's own restriction"},  # ppc-1
        "patient": {"reference": f"Patient/{patient}"},
        "provision": provision,
    }


async def test_consent_blocking_an_organisation_holds_even_in_emergencies(secured):
    await secured.store.create(deny_consent("kari", actor="Organization/lk"))
    assert (await secured.get("gp", "/fhir/Observation/kari-obs")).status_code == 404
    emergency = await secured.get("gp", "/fhir/Observation/kari-obs", **EMERGENCY)
    assert emergency.status_code == 404
    assert (await secured.get("hdoc", "/fhir/Observation/kari-obs", **EMERGENCY)).status_code == 200


async def test_general_restriction_yields_only_to_emergency(secured):
    await secured.store.create(deny_consent("kari"))
    assert (await secured.get("gp", "/fhir/Observation/kari-obs")).status_code == 404
    assert (await secured.get("gp", "/fhir/Observation/kari-obs", **EMERGENCY)).status_code == 200


async def test_consent_blocking_one_document_from_one_organisation(secured):
    await secured.store.create(
        deny_consent("kari", actor="Organization/lk", data="Observation/kari-obs")
    )
    assert (await secured.get("gp", "/fhir/Observation/kari-obs")).status_code == 404
    assert (await secured.get("gp", "/fhir/MedicationRequest/kari-mr")).status_code == 200
    search = await secured.get("gp", "/fhir/Observation?patient=kari")
    assert search.json().get("entry", []) == []


# ---- tokens over HTTP ---------------------------------------------------------------------


async def test_requests_without_valid_tokens_are_refused(secured):
    assert (await secured.http.get("/fhir/Patient/kari")).status_code == 401
    bad = await secured.http.get(
        "/fhir/Patient/kari", headers={"Authorization": "Bearer not.a.token"}
    )
    assert bad.status_code == 401
    assert "invalid_token" in bad.headers["www-authenticate"]
    forged = secured.token("gp")[:-4] + "AAAA"
    r = await secured.http.get("/fhir/Patient/kari", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    assert (await secured.http.get("/fhir/metadata")).status_code == 200  # public
    smart = await secured.http.get("/fhir/.well-known/smart-configuration")
    assert smart.status_code == 200 and "token_endpoint" in smart.json()


async def test_scopes_limit_what_a_token_can_do(secured):
    token = secured.token("gp", scopes="user/Patient.rs")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await secured.http.get("/fhir/Patient/kari", headers=headers)).status_code == 200
    assert (
        await secured.http.get("/fhir/Observation/kari-obs", headers=headers)
    ).status_code == 404


# ---- side doors: Siri's token against Kari's data -----------------------------------------

SIDE_DOORS = [
    "/fhir/Observation/kari-obs",
    "/fhir/Observation/kari-obs/_history",
    "/fhir/Observation/kari-obs/_history/1",
    "/fhir/Patient/kari/$everything",
    "/fhir/Patient/kari/Observation",
    "/fhir/Observation?patient=kari",
    "/fhir/Observation?subject:Patient.name=kari",
    "/fhir/Observation?patient:Patient.identifier=urn:oid:2.16.578.1.12.4.1.4.1|02818029236",
    "/fhir/Patient?_has:Observation:patient:code=8867-4",
    "/fhir/Patient?_id=kari",
    "/fhir/Patient?_revinclude=Observation:subject",
    "/fhir/Observation?_include=Observation:subject",
    "/fhir/Practitioner?_revinclude=Patient:general-practitioner",
    "/fhir/Organization?_revinclude:iterate=Encounter:service-provider",
    "/fhir/Observation/_history",
    "/fhir/_history",
    "/fhir?_type=Observation",
]


# What would show that Kari's record leaked: her resources, her national id, references to her.
KARI = ["kari-obs", "kari-mr", "Patient/kari", "02818029236", '"id":"kari"']


@pytest.mark.parametrize("url", SIDE_DOORS)
async def test_no_side_door_reveals_another_patients_data(secured, url):
    response = await secured.get("siri", url)
    assert response.status_code in (200, 403, 404), (url, response.status_code, response.text)
    body = response.text
    if response.status_code == 200:  # the self link echoes the query: look past it
        bundle = response.json()
        bundle.pop("link", None)
        body = json.dumps(bundle, separators=(",", ":"))
    leaked = [m for m in KARI if m in body and m not in url]
    assert not leaked, (url, leaked, body[:500])


async def test_refusals_look_the_same_as_missing_resources(secured):
    hidden = await secured.get("siri", "/fhir/Observation/kari-obs")
    missing = await secured.get("siri", "/fhir/Observation/nothing-here")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["issue"][0]["diagnostics"].replace("kari-obs", "X") == (
        missing.json()["issue"][0]["diagnostics"].replace("nothing-here", "X")
    )


async def test_transaction_cannot_smuggle_a_read(secured):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "GET", "url": "Observation/kari-obs"}}],
    }
    response = await secured.http.post("/fhir", json=bundle, headers=secured.headers("siri"))
    assert response.status_code == 404
    assert "72" not in response.text


# ---- audit: every access leaves a trace the citizen can read ------------------------------


async def test_citizen_sees_who_read_her_record(secured):
    await secured.get("gp", "/fhir/Observation/kari-obs")
    await secured.get("hdoc", "/fhir/Observation/kari-obs", **EMERGENCY)
    await secured.get("kari", "/fhir/Observation/kari-obs")
    log = await secured.get("kari", "/fhir/Patient/kari/$access-log")
    assert log.status_code == 200, log.text
    events = [e["resource"] for e in log.json()["entry"]]
    readers = {
        a["who"]["identifier"]["value"] for e in events for a in e["agent"] if a.get("requestor")
    }
    assert {"1000001", "1000003"} <= readers
    assert not any(r == "02818029236" for r in readers)  # her own look-ups are left out
    assert any(
        p["coding"][0]["code"] == "ETREAT" for e in events for p in e.get("purposeOfEvent", [])
    )
    assert (await secured.get("gp", "/fhir/Patient/kari/$access-log")).status_code == 403
    assert (await secured.get("siri", "/fhir/Patient/kari/$access-log")).status_code == 404


@EVERY_BACKEND
async def test_every_access_is_audited_and_the_chain_holds(secured):
    await secured.get("gp", "/fhir/Observation/kari-obs")
    await secured.get("gp", "/fhir/Observation?patient=kari")
    await secured.get("siri", "/fhir/Observation/kari-obs")  # a refused read is audited too
    rows = [(r.actor, r.outcome) for r in await audit_rows(secured.store) if r.patient_id == "kari"]
    async with secured.store.transaction(write=False) as tx:
        result = await verify(tx)
    assert ("hpr:1000001", "0") in [(r[0], r[1]) for r in rows]
    assert any(r[0].startswith("fnr:") and r[1] != "0" for r in rows)
    assert result.ok, result


async def test_patient_scopes_reach_only_the_launch_patient(secured):
    from tests.security.conftest import USERS

    token = secured.provider.issue_token(USERS["gp"], scopes="patient/*.rs", patient="kari")
    headers = {"Authorization": f"Bearer {token}"}
    assert (
        await secured.http.get("/fhir/Observation/kari-obs", headers=headers)
    ).status_code == 200
    # lise is on the GP's list too, but this app was launched for kari only.
    assert (
        await secured.http.get("/fhir/Observation/lise-obs", headers=headers)
    ).status_code == 404
