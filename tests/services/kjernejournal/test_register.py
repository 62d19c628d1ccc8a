"""Registering critical information: the physician's role, the KJ content rules, the recorder
from the token, version history, and no way around it through the general API."""

from __future__ import annotations

from tests.conftest import MEMORY
from tests.services.kjernejournal import ips
from tests.services.kjernejournal.conftest import KJ, allergy, condition, flag

pytestmark = MEMORY


async def test_physician_registers_and_the_recorder_comes_from_the_token(kj):
    body = allergy()
    body["recorder"] = {"reference": "Practitioner/someone-else"}
    response = await kj.register("gp", "kari", body)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["patient"] == {"reference": "Patient/kari"}
    assert stored["recorder"] == {"reference": "#recorder"}
    recorder = next(c for c in stored["contained"] if c["id"] == "recorder")
    assert recorder["practitioner"]["identifier"]["value"] == "1000001"
    assert recorder["organization"]["identifier"]["value"] == "974760673"
    assert recorder["code"][0]["coding"][0]["code"] == "LE"
    assert {"system": KJ, "code": "legemiddelreaksjon"}.items() <= stored["meta"]["tag"][0].items()


async def test_nurse_and_citizen_cannot_register(kj):
    assert (await kj.register("nurse", "kari", allergy())).status_code == 403
    assert (await kj.register("kari", "kari", allergy(), basis=None)).status_code == 403


async def test_registering_needs_access_to_the_patient(kj):
    assert (await kj.register("hdoc", "siri", allergy(), basis="SAMTYKKE")).status_code == 403
    assert (await kj.register("gp", "kari", allergy(), basis=None)).status_code == 400


async def test_icd10_chapters_xx_and_xxi_are_refused(kj):
    for code in ("Z00", "Z99.1", "V01", "Y98", "W19"):
        response = await kj.register("gp", "kari", condition(code, "x"))
        assert response.status_code == 422, code
        assert "chapters XX" in response.text
    assert (await kj.register("gp", "kari", condition("I21"))).status_code == 201
    assert (
        await kj.register(
            "gp", "kari", condition("T88.3", "Malign hypertermi", "anestesikomplikasjon")
        )
    ).status_code == 201


async def test_content_rules(kj):
    no_source = allergy()
    del no_source["extension"]
    assert (await kj.register("gp", "kari", no_source)).status_code == 422
    bad = allergy(criticality="unable-to-assess")
    assert (await kj.register("gp", "kari", bad)).status_code == 422
    no_end = flag()
    del no_end["period"]
    assert (await kj.register("gp", "kari", no_end)).status_code == 422
    uncategorised = condition()
    del uncategorised["category"]
    assert (await kj.register("gp", "kari", uncategorised)).status_code == 422
    other = allergy()
    other["patient"] = {"reference": "Patient/siri"}
    assert (await kj.register("gp", "kari", other)).status_code == 400


async def test_update_keeps_history_and_remove_marks_entered_in_error(kj):
    created = (await kj.register("gp", "kari", allergy())).json()
    changed = dict(created, criticality="low")
    response = await kj.register("hdoc", "kari", changed, basis="SAMTYKKE")
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["meta"]["versionId"] == "2"
    recorder = next(c for c in updated["contained"] if c["id"] == "recorder")
    updater = next(c for c in updated["contained"] if c["id"] == "updater")
    assert recorder["practitioner"]["identifier"]["value"] == "1000001"  # first registrar
    assert updater["practitioner"]["identifier"]["value"] == "1000003"
    ref = f"AllergyIntolerance/{created['id']}"
    removed = await kj.remove("gp", "kari", ref)
    assert removed.status_code == 200, removed.text
    assert removed.json()["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    history = await kj.http.get(f"/fhir/{ref}/_history", headers=kj.headers("gp"))
    assert history.status_code == 200, history.text
    assert [e["resource"]["meta"]["versionId"] for e in history.json()["entry"]] == ["3", "2", "1"]
    bundle = (await kj.summary("gp", "kari", "UNNTAK")).json()
    assert ips.section_resources(bundle, "48765-2") == []


async def test_general_api_cannot_write_or_bypass_kjernejournal_entries(kj):
    created = (await kj.register("gp", "kari", allergy())).json()
    ref = f"/fhir/AllergyIntolerance/{created['id']}"
    forged = allergy()
    forged["patient"] = {"reference": "Patient/kari"}
    forged["meta"] = {"tag": [{"system": KJ, "code": "legemiddelreaksjon"}]}
    posted = await kj.http.post(
        "/fhir/AllergyIntolerance", json=forged, headers=kj.headers("nurse")
    )
    assert posted.status_code == 403, posted.text
    untagged = {k: v for k, v in created.items() if k != "meta"}
    put = await kj.http.put(ref, json=untagged, headers=kj.headers("gp"))
    assert put.status_code == 403
    assert (await kj.http.delete(ref, headers=kj.headers("gp"))).status_code == 403
    # Reads through the general API keep the kjernejournal's blocking.
    assert (await kj.http.get(ref, headers=kj.headers("bdoc"))).status_code == 200
    await kj.privacy("kari", "kari", block=["1000005"])
    assert (await kj.http.get(ref, headers=kj.headers("bdoc"))).status_code == 404
    search = await kj.http.get(
        "/fhir/AllergyIntolerance?patient=Patient/kari", headers=kj.headers("bdoc")
    )
    assert search.status_code == 200 and not search.json().get("entry")
    # The privacy Consent is not misread as a whole-record restriction by the general guard.
    assert (
        await kj.http.get("/fhir/Observation/kari-obs", headers=kj.headers("hdoc"))
    ).status_code == 200
    assert (
        await kj.http.get("/fhir/Observation/kari-obs", headers=kj.headers("bdoc"))
    ).status_code == 200
