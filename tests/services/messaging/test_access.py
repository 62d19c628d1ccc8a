"""Messaging with security on: who may send as a party, see a box, fetch a message and
answer it; the imported content under the record's policy (the referral gives the
receiving hospital its care relationship; the GP reads the epikrise through the shared
record); every step audited, refusals too."""

from __future__ import annotations

import base64

import orjson
import pytest

from enjournal.services.messaging.hub import hub_of
from tests import probes
from tests.services.messaging import world
from tests.services.messaging.secured import auth, close_site, open_site, send

pytestmark = pytest.mark.backends("sqlite")


@pytest.fixture
async def site(store):
    http, provider, platform = await open_site(store)
    yield http, provider, platform
    await close_site(http, platform)


async def test_only_the_party_s_own_people_send_as_it(site):
    http, provider, _ = site
    bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    refused = await send(http, provider, "stranger", bundle)
    assert refused.status_code == 403 and world.GP_HER in refused.text
    refused = await send(http, provider, "kari", bundle)
    assert refused.status_code == 403
    assert (await send(http, provider, "gp", bundle)).status_code == 202


async def test_the_referral_gives_the_hospital_its_care_relationship(site):
    http, provider, platform = site
    # (no look before the referral: the guard keeps a refusal for its facts cache's 30 s)
    ola = await http.get("/fhir/Observation?subject=Patient/ola", headers=auth(provider, "hdoc"))
    assert ola.status_code == 403 or ola.json().get("total") == 0
    bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    assert (await send(http, provider, "gp", bundle)).status_code == 202
    await hub_of(platform).settle()
    inbox = await http.get(
        f"/fhir/$messages?party={world.HOSPITAL_HER}", headers=auth(provider, "hdoc")
    )
    assert inbox.status_code == 200 and len(inbox.json()["parameter"]) == 1
    message_id = bundle["entry"][0]["resource"]["id"]
    fetched = await http.get(f"/fhir/$message?id={message_id}", headers=auth(provider, "hdoc"))
    assert fetched.status_code == 200 and fetched.json()["type"] == "message"
    referral = await http.get(
        "/fhir/ServiceRequest?subject=Patient/kari", headers=auth(provider, "hdoc")
    )
    assert referral.status_code == 200 and referral.json()["total"] == 1


async def test_strangers_see_no_box_and_no_message(site):
    http, provider, platform = site
    bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    assert (await send(http, provider, "gp", bundle)).status_code == 202
    await hub_of(platform).settle()
    message_id = bundle["entry"][0]["resource"]["id"]
    for who in ("stranger", "kari"):
        box = await http.get(
            f"/fhir/$messages?party={world.GP_HER}&box=sent", headers=auth(provider, who)
        )
        assert box.status_code == 403
        fetched = await http.get(f"/fhir/$message?id={message_id}", headers=auth(provider, who))
        assert fetched.status_code == 404
        status = await http.get(
            f"/fhir/$message-status?id={message_id}", headers=auth(provider, who)
        )
        assert status.status_code == 404
    # the sender sees its own sent box and the status, but may not answer its own message
    sent = await http.get(
        f"/fhir/$messages?party={world.GP_HER}&box=sent", headers=auth(provider, "gp")
    )
    assert sent.status_code == 200 and len(sent.json()["parameter"]) == 1
    answer = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "message", "valueString": message_id},
            {"name": "status", "valueCode": "1"},
        ],
    }
    own = await http.post("/fhir/$message-receipt", json=answer, headers=auth(provider, "gp"))
    assert own.status_code == 404


async def test_the_gp_reads_the_discharge_summary_through_the_shared_record(site):
    http, provider, platform = site
    bundle = world.message(
        "EPIKRISE", world.HOSPITAL_HER, world.GP_HER, [world.discharge_summary()]
    )
    assert (await send(http, provider, "hdoc", bundle)).status_code == 202
    await hub_of(platform).settle()
    found = await http.get("/fhir/Composition?subject=Patient/kari", headers=auth(provider, "gp"))
    assert found.status_code == 200 and found.json()["total"] == 1
    assert found.json()["entry"][0]["resource"]["title"] == "Epikrise"
    other = await http.get(
        "/fhir/Composition?subject=Patient/kari", headers=auth(provider, "stranger")
    )
    assert other.status_code == 403 or other.json().get("total") == 0


async def test_sending_reading_and_importing_are_audited(site):
    http, provider, platform = site
    bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    assert (await send(http, provider, "stranger", bundle)).status_code == 403
    assert (await send(http, provider, "gp", bundle)).status_code == 202
    await hub_of(platform).settle()
    message_id = bundle["entry"][0]["resource"]["id"]
    await http.get(f"/fhir/$message?id={message_id}", headers=auth(provider, "hdoc"))
    await platform.security.audit.stop()  # flush the read events
    await platform.security.audit.start()
    events = [orjson.loads(bytes(r.event)) for r in await probes.audit_rows(platform.store)]
    queries = [
        base64.b64decode(e["query"])
        for event in events
        for e in event.get("entity", [])
        if e.get("query")
    ]
    text = b" ".join([*queries, orjson.dumps(events)])
    assert text.count(message_id.encode()) >= 3  # sent, imported, fetched
    assert b"$process-message" in text and b"message-import" in text and b"$message" in text
    refused = [e for e in events if e.get("outcome") != "0" and b"Sara Fremmed" in orjson.dumps(e)]
    assert refused, "the stranger's refused send left no audit event"
