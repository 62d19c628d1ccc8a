"""Writes that grant access (security/grants.py and the directory rule in policy.py).

The guard derives care relationships from shared data, so each test here is a health worker
or citizen trying to write themselves access: a PractitionerRole at their organisation, an
encounter at their own hospital under emergency access, a GP list entry, a lifted block, a
parent link.  Each is refused (403, audited) and the record stays out of reach, while the
same write by a system client, and the legitimate writes next to them, still pass.
"""

from __future__ import annotations

import pytest

from tests.conftest import EVERY_BACKEND, MEMORY
from tests.probes import audit_rows, current_of_type
from tests.security.conftest import FNR, PIDS, org, patient, practitioner
from tests.security.test_access import EMERGENCY
from tests.security.test_access import deny_consent as bare_deny_consent

pytestmark = MEMORY


def deny_consent(patient_id: str, actor: str | None = None) -> dict:
    return {**bare_deny_consent(patient_id, actor), "policyRule": {"text": "pasientens sperre"}}


def system_headers(secured) -> dict:
    return {"Authorization": f"Bearer {secured.token('system', scopes='system/*.cruds')}"}


async def refusals(secured, actor: str) -> list[tuple]:
    """(action, outcome) of the refused events the caller left in the audit log."""
    rows = await audit_rows(secured.store)
    return [(r.action, r.outcome) for r in rows if r.actor == actor and r.outcome != "0"]


def encounter(patient_id: str, org_id: str | None = None, who: str | None = None) -> dict:
    out = {
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if org_id:
        out["serviceProvider"] = {"reference": f"Organization/{org_id}"}
    if who:
        out["participant"] = [{"individual": {"reference": f"Practitioner/{who}"}}]
    return out


def referral(patient_id: str, performer: str) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "performer": [{"reference": performer}],
    }


def episode(patient_id: str, org_id: str) -> dict:
    return {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "patient": {"reference": f"Patient/{patient_id}"},
        "managingOrganization": {"reference": f"Organization/{org_id}"},
    }


# ---- the directory ------------------------------------------------------------------------


async def test_nurse_cannot_tie_another_gp_to_her_office(secured):
    # Another GP's office, with siri on that GP's list.
    async with secured.store.transaction() as tx:
        for resource in (
            org("lk2", "974760681"),
            practitioner("gp2", "1000005"),
            {
                "resourceType": "PractitionerRole",
                "id": "gp2-role",
                "practitioner": {"reference": "Practitioner/gp2"},
                "organization": {"reference": "Organization/lk2"},
            },
            patient("siri", "1975-06-11", "Practitioner/gp2"),
        ):
            await tx.update(resource, resource["id"])
    role = {
        "resourceType": "PractitionerRole",
        "practitioner": {"reference": "Practitioner/gp2"},
        "organization": {"reference": "Organization/lk"},
    }
    attack = await secured.http.post(
        "/fhir/PractitionerRole", json=role, headers=secured.headers("nurse")
    )
    assert attack.status_code == 403, attack.text
    assert "directory" in attack.json()["issue"][0]["diagnostics"]
    assert ("C", "4") in await refusals(secured, "hpr:1000002")
    # No role was stored, so the GP's patients stay out of her reach (no cache to wait out).
    assert (await secured.get("nurse", "/fhir/Observation/siri-obs")).status_code == 404
    rows = await current_of_type(secured.store, "PractitionerRole")
    assert {r[0] for r in rows} == {"gp-role", "gp2-role"}


DIRECTORY_WRITES = [
    # who, method, url, body
    ("nurse", "POST", "/fhir/Organization", org("x", "974760673")),  # a second "own" org
    ("hdoc", "PUT", "/fhir/Organization/lk", org("lk", "983974899")),  # adds own orgnr
    ("hdoc", "PUT", "/fhir/Practitioner/gp", practitioner("gp", "1000003")),  # own HPR on gp
    ("nurse", "POST", "/fhir/Practitioner", practitioner("x", "1000002")),
    ("gp", "DELETE", "/fhir/Organization/hf", None),
    ("gp", "DELETE", "/fhir/PractitionerRole/gp-role", None),
    ("nurse", "POST", "/fhir/Location", {"resourceType": "Location", "name": "Rom 1"}),
    ("kari", "POST", "/fhir/Organization", org("x", "974760673")),
]


@pytest.mark.parametrize(("who", "method", "url", "body"), DIRECTORY_WRITES)
async def test_personnel_and_citizens_do_not_write_the_directory(secured, who, method, url, body):
    response = await secured.http.request(method, url, json=body, headers=secured.headers(who))
    assert response.status_code == 403, response.text


async def test_a_system_client_keeps_the_directory(secured):
    headers = system_headers(secured)
    created = await secured.http.post(
        "/fhir/Organization", json=org("x", "974760681"), headers=headers
    )
    assert created.status_code == 201, created.text
    updated = await secured.http.put(
        "/fhir/Practitioner/nurse", json=practitioner("nurse", "1000002"), headers=headers
    )
    assert updated.status_code == 200, updated.text
    path = "/fhir/" + created.headers["location"].split("/fhir/")[1].split("/_history")[0]
    deleted = await secured.http.delete(path, headers=headers)
    assert deleted.status_code == 200, deleted.text
    # A read-only system token writes nothing.
    read_only = await secured.http.post(
        "/fhir/Organization", json=org("y", "974760681"), headers=secured.headers("system")
    )
    assert read_only.status_code == 403


# ---- care links to oneself ------------------------------------------------------------------

SELF_LINKS = [
    encounter("siri", org_id="hf"),
    encounter("siri", who="hdoc"),
    episode("siri", "hf"),
    referral("siri", "Organization/hf"),
]


@pytest.mark.parametrize("resource", SELF_LINKS, ids=lambda r: r["resourceType"])
async def test_emergency_access_does_not_become_a_care_relationship(secured, resource):
    url = f"/fhir/{resource['resourceType']}"
    emergency = await secured.http.post(
        url, json=resource, headers=secured.headers("hdoc", **EMERGENCY)
    )
    assert emergency.status_code == 403, emergency.text
    assert "emergency access does not count" in emergency.json()["issue"][0]["diagnostics"]
    plain = await secured.http.post(url, json=resource, headers=secured.headers("hdoc"))
    assert plain.status_code == 403, plain.text
    # Still no ordinary access, and emergency reads still work (and are flagged).
    assert (await secured.get("hdoc", "/fhir/Observation/siri-obs")).status_code == 404
    assert (await secured.get("hdoc", "/fhir/Observation/siri-obs", **EMERGENCY)).status_code == 200


async def test_an_update_cannot_add_oneself_to_an_encounter(secured):
    # siri has an encounter at the GP's office; hdoc reaches her only in an emergency.
    async with secured.store.transaction() as tx:
        await tx.update({**encounter("siri", org_id="lk"), "id": "siri-enc"}, "siri-enc")
    moved = {**encounter("siri", org_id="hf"), "id": "siri-enc"}
    response = await secured.http.put(
        "/fhir/Encounter/siri-enc", json=moved, headers=secured.headers("hdoc", **EMERGENCY)
    )
    assert response.status_code == 403, response.text


@EVERY_BACKEND
async def test_a_gp_records_encounters_and_referrals_for_list_patients(secured):
    at_office = await secured.http.post(
        "/fhir/Encounter",
        json=encounter("kari", org_id="lk", who="gp"),
        headers=secured.headers("gp"),
    )
    assert at_office.status_code == 201, at_office.text
    to_hospital = await secured.http.post(
        "/fhir/ServiceRequest",
        json=referral("kari", "Organization/hf"),
        headers=secured.headers("gp"),
    )
    assert to_hospital.status_code == 201, to_hospital.text
    # The referral is what gives the hospital its relationship.
    assert (await secured.get("hdoc", "/fhir/Observation/kari-obs")).status_code == 200


async def test_emergency_access_may_refer_elsewhere(secured):
    response = await secured.http.post(
        "/fhir/ServiceRequest",
        json=referral("siri", "Organization/lk"),
        headers=secured.headers("hdoc", **EMERGENCY),
    )
    assert response.status_code == 201, response.text


async def test_a_system_client_records_an_admission(secured):
    response = await secured.http.post(
        "/fhir/Encounter", json=encounter("siri", org_id="hf"), headers=system_headers(secured)
    )
    assert response.status_code == 201, response.text
    assert (await secured.get("hdoc", "/fhir/Observation/siri-obs")).status_code == 200


# ---- the GP list and the patient's identity -------------------------------------------------


async def test_personnel_do_not_change_the_gp_list(secured):
    changed = patient("kari", "1980-01-02", "Practitioner/nurse")
    response = await secured.http.put(
        "/fhir/Patient/kari", json=changed, headers=secured.headers("gp")
    )
    assert response.status_code == 403, response.text
    assert "generalPractitioner" in response.json()["issue"][0]["diagnostics"]
    added = await secured.http.patch(
        "/fhir/Patient/ola",
        json=[
            {
                "op": "add",
                "path": "/generalPractitioner",
                "value": [{"reference": "Practitioner/hdoc"}],
            }
        ],
        headers=secured.headers("hdoc", **{"content-type": "application/json-patch+json"}),
    )
    assert added.status_code == 403, added.text
    assert (await secured.get("hdoc", "/fhir/Observation/kari-obs")).status_code == 404


async def test_personnel_register_a_new_patient_without_a_gp(secured):
    new = patient("siri", "1975-06-11", "Practitioner/hdoc")
    new.pop("id")
    with_gp = await secured.http.post("/fhir/Patient", json=new, headers=secured.headers("hdoc"))
    assert with_gp.status_code == 403, with_gp.text
    new.pop("generalPractitioner")
    # With a national id (existing or not: the answer must not tell) the patient comes from
    # Folkeregisteret; a second Patient for one person would split their record.
    for pid in (PIDS["siri"], "15088010075"):  # a hidden person, and nobody
        new["identifier"] = [{"system": FNR, "value": pid}]
        twin = await secured.http.post("/fhir/Patient", json=new, headers=secured.headers("hdoc"))
        assert twin.status_code in (400, 403), twin.text
    # Nor under another system, or none.
    for identifier in ({"value": PIDS["siri"]}, {"system": "urn:x:ssn", "value": PIDS["siri"]}):
        new["identifier"] = [identifier]
        twin = await secured.http.post("/fhir/Patient", json=new, headers=secured.headers("hdoc"))
        assert twin.status_code == 403, twin.text
    new["identifier"] = [{"system": "http://hospital.example/mrn", "value": "P1234567"}]
    without = await secured.http.post("/fhir/Patient", json=new, headers=secured.headers("hdoc"))
    assert without.status_code == 201, without.text


async def test_personnel_may_correct_other_fields_but_not_identity(secured):
    kari = patient("kari", "1980-01-02", "Practitioner/gp")
    renamed = {**kari, "name": [{"family": "Nordmann"}]}
    ok = await secured.http.put("/fhir/Patient/kari", json=renamed, headers=secured.headers("gp"))
    assert ok.status_code == 200, ok.text
    for changed in (
        {**kari, "identifier": [{"system": FNR, "value": PIDS["siri"]}]},
        {**kari, "address": [{"line": ["Elsewhere 2"], "postalCode": "0150"}]},
        {**patient("per", "2018-01-15", "Practitioner/gp")},  # per, 13, made 8
    ):
        response = await secured.http.put(
            f"/fhir/Patient/{changed['id']}", json=changed, headers=secured.headers("gp")
        )
        assert response.status_code == 403, (changed, response.text)


async def test_a_system_client_keeps_the_gp_list(secured):
    changed = patient("siri", "1975-06-11", "Practitioner/gp")
    response = await secured.http.put(
        "/fhir/Patient/siri", json=changed, headers=system_headers(secured)
    )
    assert response.status_code == 200, response.text
    assert (await secured.get("gp", "/fhir/Observation/siri-obs")).status_code == 200


# ---- Consents -------------------------------------------------------------------------------


async def _stored_consent(secured, consent: dict) -> str:
    stored = await secured.store.create(consent)
    return stored.id


@pytest.mark.parametrize("who", ["gp", "nurse"])
async def test_personnel_cannot_lift_a_block(secured, who):
    consent_id = await _stored_consent(secured, deny_consent("kari", actor="Practitioner/gp"))
    url = f"/fhir/Consent/{consent_id}"
    lifted = {**deny_consent("kari", actor="Practitioner/gp"), "id": consent_id}
    lifted["status"] = "inactive"
    # The blocked doctor cannot even read the Consent, so may be answered as if it were
    # missing (404); a colleague who can read it is refused (403).  Either way it stays.
    refused = (403, 404) if who == "gp" else (403,)
    changed = await secured.http.put(url, json=lifted, headers=secured.headers(who))
    assert changed.status_code in refused, changed.text
    deleted = await secured.http.delete(url, headers=secured.headers(who))
    assert deleted.status_code in refused, deleted.text
    conditional = await secured.http.delete(
        "/fhir/Consent?patient=kari", headers=secured.headers(who)
    )
    # (Or it finds nothing the caller can see: "deleted 0".)
    assert conditional.status_code in refused or "deleted 0 " in conditional.text
    stored = await secured.store.read("Consent", consent_id)
    assert (stored.version, b'"active"' in stored.content) == (1, True)
    assert (await secured.get("gp", "/fhir/Observation/kari-obs")).status_code == 404


async def test_emergency_access_cannot_lift_a_restriction(secured):
    consent_id = await _stored_consent(secured, deny_consent("kari"))
    deleted = await secured.http.delete(
        f"/fhir/Consent/{consent_id}", headers=secured.headers("gp", **EMERGENCY)
    )
    assert deleted.status_code == 403, deleted.text
    assert (await secured.get("gp", "/fhir/Observation/kari-obs")).status_code == 404


async def test_personnel_cannot_block_a_colleague(secured):
    response = await secured.http.post(
        "/fhir/Consent",
        json=deny_consent("kari", actor="Organization/hf"),
        headers=secured.headers("gp"),
    )
    assert response.status_code == 403, response.text


async def test_the_citizen_sets_and_lifts_her_own_block(secured):
    created = await secured.http.post(
        "/fhir/Consent",
        json=deny_consent("kari", actor="Practitioner/gp"),
        headers=secured.headers("kari"),
    )
    assert created.status_code == 201, created.text
    assert (await secured.get("gp", "/fhir/Observation/kari-obs")).status_code == 404
    url = "/fhir/Consent/" + created.json()["id"]
    assert (await secured.http.delete(url, headers=secured.headers("kari"))).status_code == 200


async def test_a_system_client_may_remove_a_consent(secured):
    consent_id = await _stored_consent(secured, deny_consent("kari", actor="Practitioner/gp"))
    response = await secured.http.delete(
        f"/fhir/Consent/{consent_id}", headers=system_headers(secured)
    )
    assert response.status_code == 200, response.text


# ---- a citizen's children -------------------------------------------------------------------


def parent_link(child: str, pid: str) -> dict:
    return {
        "resourceType": "RelatedPerson",
        "patient": {"reference": f"Patient/{child}"},
        "identifier": [{"system": FNR, "value": pid}],
        "relationship": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "FTH"}
                ]
            }
        ],
    }


async def test_nobody_but_the_register_makes_a_parent(secured):
    # siri would become lise's parent (she would still need lise's address: see the next test).
    for who in ("gp", "kari", "siri"):
        response = await secured.http.post(
            "/fhir/RelatedPerson",
            json=parent_link("lise", PIDS["siri"]),
            headers=secured.headers(who),
        )
        assert response.status_code == 403, (who, response.text)
    # Nor change or remove the link the register made.
    changed = {**parent_link("lise", PIDS["siri"]), "id": "lise-mother"}
    response = await secured.http.put(
        "/fhir/RelatedPerson/lise-mother", json=changed, headers=secured.headers("gp")
    )
    assert response.status_code == 403, response.text
    deleted = await secured.http.delete(
        "/fhir/RelatedPerson/lise-mother", headers=secured.headers("gp")
    )
    assert deleted.status_code == 403, deleted.text
    assert (await secured.get("siri", "/fhir/Observation/lise-obs")).status_code == 404
    # A next of kin without an identifier is ordinary clinical data.
    contact = parent_link("lise", PIDS["siri"])
    contact.pop("identifier")
    ok = await secured.http.post("/fhir/RelatedPerson", json=contact, headers=secured.headers("gp"))
    assert ok.status_code == 201, ok.text


async def test_a_parent_does_not_move_in_with_the_child_by_writing_an_address(secured):
    # siri is made lise's parent by the register but lives elsewhere, and so does the
    # mother (no parent at the child's address): no access.  Moving her own (or the
    # child's) address is Folkeregisteret's, so she cannot close the gap.
    async with secured.store.transaction() as tx:
        link = {**parent_link("lise", PIDS["siri"]), "id": "lise-father"}
        await tx.update(link, "lise-father")
        elsewhere = [{"line": ["Lillegata 9"], "postalCode": "5003", "city": "BERGEN"}]
        await tx.update(patient("siri", "1975-06-11", address=elsewhere), "siri")
        away = [{"line": ["Fjordveien 2"], "postalCode": "7010", "city": "TRONDHEIM"}]
        await tx.update(patient("kari", "1980-01-02", "Practitioner/gp", address=away), "kari")
    assert (await secured.get("siri", "/fhir/Observation/lise-obs")).status_code == 404
    moved = patient("lise", "2018-01-15", "Practitioner/gp", address=elsewhere)
    response = await secured.http.put(
        "/fhir/Patient/lise", json=moved, headers=secured.headers("gp")
    )
    assert response.status_code == 403, response.text
    own = patient("siri", "1975-06-11")  # the citizen's own record, at the child's address
    response = await secured.http.put(
        "/fhir/Patient/siri", json=own, headers=secured.headers("siri")
    )
    assert response.status_code == 403, response.text
    assert (await secured.get("siri", "/fhir/Observation/lise-obs")).status_code == 404
