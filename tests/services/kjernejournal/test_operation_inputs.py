"""Kjernejournal operations refuse a body of the wrong shape or a missing required parameter
(400, nothing written), and every refusal by role is a 403 that leaves an AuditEvent with
outcome 4 naming the patient."""

from __future__ import annotations

from tests.conftest import MEMORY
from tests.services.kjernejournal.conftest import allergy
from tests.services.kjernejournal.test_access import audit_rows

pytestmark = MEMORY

WRONG_BODIES = (
    allergy(),  # the entry itself instead of Parameters
    {"resourceType": "Parameters", "parameter": {"name": "resource"}},
    {"resourceType": "Parameters", "parameter": ["resource"]},
    {"resourceType": "Parameters", "parameter": [{"valueString": "x"}]},
)


async def post(kj, who: str, path: str, body: dict, basis: str | None = None):
    return await kj.http.post(f"/fhir/{path}", json=body, headers=kj.headers(who, basis))


async def test_wrong_bodies_are_refused(kj):
    calls = [
        ("gp", "Patient/kari/$kj-critical-info", "UNNTAK"),
        ("kari", "Patient/kari/$kj-privacy", None),
        ("kari", "Patient/kari/$kj-own-registration", None),
        ("hdoc", "$kj-status", None),
        ("hdoc", "Patient/kari/$kj-lift-block", None),
    ]
    for who, path, basis in calls:
        for body in WRONG_BODIES:
            response = await post(kj, who, path, body, basis)
            assert response.status_code == 400, (path, body, response.text)
    empty = {"resourceType": "Parameters", "parameter": []}
    for who, path, basis in calls[:1] + calls[-1:]:
        response = await post(kj, who, path, empty, basis)
        assert response.status_code == 400, (path, response.text)
    assert "AllergyIntolerance" not in (await kj.summary("gp", "kari", "UNNTAK")).text


async def test_refusals_by_role_are_403_and_audited(kj):
    entry = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": allergy()}],
    }
    block = {
        "resourceType": "Parameters",
        "parameter": [{"name": "block", "valueString": "1000005"}],
    }
    own = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": {"resourceType": "Flag", "code": {"text": "Tolk"}}}
        ],
    }
    calls = [
        ("nurse", "Patient/kari/$kj-critical-info", entry, "$kj-critical-info"),
        ("kari", "Patient/kari/$kj-critical-info", entry, "$kj-critical-info"),
        ("gp", "Patient/kari/$kj-privacy", block, "$kj-privacy"),
        ("gp", "Patient/kari/$kj-own-registration", own, "$kj-own-registration"),
    ]
    for who, path, body, operation in calls:
        before = len(await audit_rows(kj.store, "kari"))
        response = await post(kj, who, path, body, "UNNTAK")
        assert response.status_code == 403, (who, path, response.text)
        new = (await audit_rows(kj.store, "kari"))[before:]
        assert any(r[1] == "4" and operation in str(r[4]["subtype"]) for r in new), (who, path)
