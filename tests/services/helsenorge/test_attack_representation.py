"""Attacks on acting for others that succeed today (security review of the portal, 3 Dec).

Each test states the correct behaviour and fails until the defect is fixed:

- a health worker's plain ``PUT Patient`` that leaves out ``meta.security`` lifts a
  strengt fortrolig address (kode 6), which ``security/representation.py`` reads from
  there: the protection is Folkeregisteret's, yet ``grants.py`` guards only ids, birth
  date, address and GP.  Any EHR client that drops ``meta`` on update does it by accident;
- ``Patient/[id]/$access-log`` asks only for a read of the Patient, which the digital
  services area (3) allows, so a parent of a 13-year-old (record cut off) and a holder of
  a services-only fullmakt read who has looked at the person's record, and when.
"""

from __future__ import annotations

from tests.conftest import MEMORY
from tests.security.conftest import secured  # noqa: F401 (the fixture hn builds on)
from tests.services.helsenorge.test_fullmakt import get, give, hn  # noqa: F401

pytestmark = MEMORY


async def test_personnel_cannot_lift_a_confidential_address(hn):  # noqa: F811
    headers = hn.headers("gp")  # skjult's GP: a care relationship
    stored = (await hn.http.get("/fhir/Patient/skjult", headers=headers)).json()
    assert stored["meta"]["security"], "skjult starts with a strengt fortrolig address"
    lifted = {k: v for k, v in stored.items() if k != "meta"}
    response = await hn.http.put("/fhir/Patient/skjult", json=lifted, headers=headers)
    # Correct: 403, the address protection is changed only by Folkeregisteret.
    assert response.status_code == 403, response.text
    # So it still holds: skjult cannot be made the receiver of a fullmakt.
    assert (await give(hn, giver="kari", receiver="skjult")).status_code == 422


async def test_personnel_cannot_set_a_confidential_address(hn):  # noqa: F811
    headers = hn.headers("gp")
    stored = (await hn.http.get("/fhir/Patient/mia", headers=headers)).json()
    label = {"system": "https://enjournal.no/fhir/CodeSystem/adressebeskyttelse"}
    stored["meta"] = {"security": [{**label, "code": "strengt-fortrolig"}]}
    response = await hn.http.put("/fhir/Patient/mia", json=stored, headers=headers)
    # Correct: 403; otherwise a health worker silently ends a parent's access (kari, mia 5).
    assert response.status_code == 403, response.text
    assert (await get(hn, "kari", "Observation/mia-obs")).status_code == 200


async def test_the_access_log_is_insight_not_services(hn):  # noqa: F811
    # kari holds only the digital services (3) for per, 13: his record is cut off.
    assert (await get(hn, "kari", "Observation?patient=per")).status_code == 403
    per = await get(hn, "kari", "Patient/per/$access-log")
    assert per.status_code in (403, 404), per.text  # correct: who read his record is his
    # siri holds a fullmakt for kari's digital services only.
    assert (await give(hn, giver="kari", receiver="siri", areas=("3",))).status_code == 201
    kari = await get(hn, "siri", "Patient/kari/$access-log")
    assert kari.status_code == 403, kari.text
