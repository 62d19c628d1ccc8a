"""An outside reviewer's attacks on messaging, over HTTP with personnel tokens: what a
sender can make the import write, what breaks the consumer, what answers 500, what goes
unaudited.  Each finding (M-1..M-14, named in the test's docstring or comments) was an
``xfail(strict=True)`` test until its class was fixed; the others are attacks that held."""

from __future__ import annotations

import base64
import uuid

import orjson
import pytest

from enjournal.services.messaging import addresses, rules
from enjournal.services.messaging.hub import hub_of
from enjournal.services.messaging.relay import Relay
from enjournal.services.messaging.xml import to_xml
from enjournal.settings import Settings
from tests import probes
from tests.services.messaging import world
from tests.services.messaging.secured import (
    auth,
    close_site,
    open_site,
    post_json,
    send,
)

pytestmark = pytest.mark.backends("sqlite")
KJ = "http://enjournal.no/fhir/CodeSystem/kjernejournal"


@pytest.fixture
async def site(store):
    settings = Settings(database_url="unused", public_url="http://test")
    http, provider, platform = await open_site(store, settings)
    yield http, provider, platform
    await close_site(http, platform)


@pytest.fixture
async def small_site(store):
    """A server whose request limit is 10 kB."""
    settings = Settings(database_url="unused", public_url="http://test", max_body_bytes=10_000)
    http, provider, platform = await open_site(store, settings)
    yield http, provider, platform
    await close_site(http, platform)


def id_of(bundle: dict) -> str:
    return bundle["entry"][0]["resource"]["id"]


def dialogue_to_hospital(*extra: dict) -> dict:
    """A DIALOG_NOTAT from the GP to the hospital about Kari, with ``extra`` content."""
    return world.message(
        "DIALOG_NOTAT", world.GP_HER, world.HOSPITAL_HER, [world.dialogue(), *extra]
    )


async def stored(platform, type_: str) -> list[dict]:
    return [orjson.loads(body) for _, body in await probes.current_of_type(platform.store, type_)]


async def status_of(http, provider, who: str, message_id: str) -> dict:
    answer = await http.get(f"/fhir/$message-status?id={message_id}", headers=auth(provider, who))
    assert answer.status_code == 200, answer.text
    return {p["name"]: p for p in answer.json()["parameter"]}


async def audit_events(platform) -> list[dict]:
    await platform.security.audit.stop()  # flush the request events
    await platform.security.audit.start()
    return [orjson.loads(bytes(r.event)) for r in await probes.audit_rows(platform.store)]


def no_server_error(response) -> None:
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text


# ---- what a sender can make the import write ------------------------------------------------


# M-1 a dialogue carrying a ServiceRequest grants a care relationship (fixed)
async def test_a_dialogue_message_cannot_smuggle_a_referral(site):
    http, provider, platform = site
    bundle = dialogue_to_hospital(world.referral("not a referral: a dialogue"))
    assert (await send(http, provider, "gp", bundle)).status_code == 202
    await hub_of(platform).settle()
    # only HENVIS makes the receiver a referral's performer (and gives it the patient)
    assert await stored(platform, "ServiceRequest") == []
    seen = await http.get("/fhir/Patient/kari", headers=auth(provider, "hdoc"))
    assert seen.status_code in (403, 404)


async def test_a_plain_dialogue_grants_the_receiver_nothing(site):
    http, provider, platform = site
    bundle = world.message(
        "DIALOG_NOTAT", world.GP_HER, world.HOSPITAL_HER, [world.dialogue()], world.OLA
    )
    assert (await send(http, provider, "gp", bundle)).status_code == 202
    await hub_of(platform).settle()
    assert len(await stored(platform, "Communication")) == 1
    seen = await http.get("/fhir/Patient/ola", headers=auth(provider, "hdoc"))
    assert seen.status_code in (403, 404)


# M-2 the sender's meta.tag and meta.security are imported (fixed)
async def test_the_sender_cannot_label_or_tag_what_is_imported(site):
    http, provider, platform = site
    note = world.dialogue()
    note["meta"] = {
        "tag": [{"system": KJ, "code": "personvern"}],
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                      "code": "R"}],
    }  # fmt: skip
    bundle = world.message("DIALOG_NOTAT", world.GP_HER, world.HOSPITAL_HER, [note])
    assert (await send(http, provider, "gp", bundle)).status_code == 202
    await hub_of(platform).settle()
    (imported,) = await stored(platform, "Communication")
    assert "tag" not in imported["meta"] and "security" not in imported["meta"]


# M-3 the content may name the patient as its author/sender (fixed)
async def test_the_content_cannot_make_the_patient_its_author(site):
    http, provider, platform = site
    summary = world.discharge_summary()
    summary["author"] = [{"reference": "urn:uuid:p1"}]
    bundle = world.message("EPIKRISE", world.GP_HER, world.GP_HER, [summary])
    bundle["entry"][0]["resource"]["destination"][0]["receiver"]["identifier"]["value"] = (
        world.GP_HER
    )
    assert (await send(http, provider, "gp", bundle)).status_code == 202
    await hub_of(platform).settle()
    (imported,) = await stored(platform, "Composition")
    assert {"reference": "Patient/kari"} not in imported["author"]


# M-4 no bound on the resources one message imports; audit names 50 (fixed)
async def test_every_resource_a_message_writes_is_audited(site):
    http, provider, platform = site
    notes = [world.dialogue(f"del {n}") for n in range(60)]
    bundle = world.message("DIALOG_NOTAT", world.GP_HER, world.HOSPITAL_HER, notes)
    assert (await send(http, provider, "gp", bundle)).status_code == 202
    await hub_of(platform).settle()
    written = {f"Communication/{c['id']}" for c in await stored(platform, "Communication")}
    named = {
        e["what"]["reference"]
        for event in await audit_events(platform)
        if orjson.dumps(event).count(b"message-import")
        for e in event.get("entity", [])
        if "reference" in (e.get("what") or {})
    }
    assert written <= named


# ---- what breaks the consumer, what answers 500 ---------------------------------------------


def with_bad_meta() -> dict:
    """A dialogue whose Communication has ``meta`` as a string: not FHIR, for T99."""
    note = world.dialogue()
    note["meta"] = "not an object"
    return world.message("DIALOG_NOTAT", world.GP_HER, world.HOSPITAL_HER, [note])


# M-5 malformed content crashes the consumer: retried, dead, no AppRec (fixed)
async def test_malformed_content_is_rejected_with_an_apprec_not_retried(site):
    http, provider, platform = site
    bundle = with_bad_meta()
    assert (await send(http, provider, "gp", bundle)).status_code == 202
    await hub_of(platform).settle()
    status = await status_of(http, provider, "gp", id_of(bundle))
    assert "receipt" in status, status["state"]
    codes = [p["valueCoding"]["code"] for p in status["receipt"]["part"] if p["name"] == "status"]
    assert codes == [rules.REJECTED]


async def test_a_poison_message_does_not_hold_back_the_others(site):
    http, provider, platform = site
    poison, good = with_bad_meta(), dialogue_to_hospital()
    for bundle in (poison, good):
        assert (await send(http, provider, "gp", bundle)).status_code == 202
    await hub_of(platform).settle()
    assert (await status_of(http, provider, "gp", id_of(good)))["state"]["valueCode"] == "delivered"
    assert len(await stored(platform, "Communication")) == 1


def header_broken(how: str) -> dict:
    bundle = dialogue_to_hospital()
    header = bundle["entry"][0]["resource"]
    if how == "eventCoding":
        header["eventCoding"] = ["HENVIS"]
    elif how == "destination":
        header["destination"] = ["urn:her:" + world.HOSPITAL_HER]
    elif how == "entry":
        bundle["entry"] = ["MessageHeader"]
    else:  # an APPREC whose status extension is not an object
        header["eventCoding"]["code"] = rules.APPREC
        header["response"] = {"identifier": str(uuid.uuid4()), "extension": ["1"]}
    return bundle


# M-6 a malformed MessageHeader answers 500, not 400 (fixed)
@pytest.mark.parametrize("how", ["eventCoding", "destination", "entry", "apprec-extension"])
async def test_a_malformed_header_is_a_400(site, how):
    http, provider, _platform = site
    no_server_error(await send(http, provider, "gp", header_broken(how)))


# M-7 EDI POST /messages with a list as messageTypeIdentificator: 500 (fixed)
async def test_edi_post_with_a_list_for_the_type_is_a_400(site):
    http, provider, _platform = site
    body = {"contentType": "application/xml", "contentTransferEncoding": "base64",
            "messageTypeIdentificator": ["DIALOG_NOTAT"]}  # fmt: skip
    answer = await http.post(
        "/edi/api/v3/messages", content=orjson.dumps(body), headers=auth(provider, "gp")
    )
    no_server_error(answer)
    assert answer.json()["errorCode"] == 1001


# M-8 a FHIR message id has no length limit (XML ids have 200) (fixed)
async def test_a_message_id_longer_than_the_boxes_take_is_refused(site):
    http, provider, _platform = site
    bundle = dialogue_to_hospital()
    bundle["entry"][0]["resource"]["id"] = "x" * 5000
    answer = await send(http, provider, "gp", bundle)
    assert answer.status_code == 400  # today 202: stored, relayed, then no box can name it


async def test_deeply_nested_json_is_refused_at_the_door(site):
    http, provider, _platform = site
    note = world.dialogue()
    note["_deep"] = "DEEP"
    raw = orjson.dumps(dialogue_to_hospital(note))
    raw = raw.replace(b'"DEEP"', b'{"a":' * 600 + b"1" + b"}" * 600)
    headers = {**auth(provider, "gp"), "content-type": "application/fhir+json"}
    answer = await http.post("/fhir/$process-message", content=raw, headers=headers)
    assert answer.status_code == 400


# ---- duplicates -----------------------------------------------------------------------------


async def test_an_id_is_sent_once_and_a_message_is_answered_once(site):
    http, provider, platform = site
    bundle = world.message("DIALOG_NOTAT", world.GP_HER, world.CLINIC_HER, [world.dialogue()])
    bundle["entry"][0]["resource"]["eventCoding"]["code"] = "HENVIS"
    bundle["entry"][2]["resource"] = world.referral()
    assert (await send(http, provider, "gp", bundle)).status_code == 202
    assert (await send(http, provider, "gp", bundle)).status_code == 409
    await hub_of(platform).settle()
    receipt = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "message", "valueString": id_of(bundle)},
            {"name": "status", "valueCode": "1"},
        ],
    }
    first = await post_json(http, provider, "hdoc", "/fhir/$message-receipt", receipt)
    again = await post_json(http, provider, "hdoc", "/fhir/$message-receipt", receipt)
    assert (first.status_code, again.status_code) == (202, 409)
    assert len(await stored(platform, "ServiceRequest")) == 1


# ---- audit ----------------------------------------------------------------------------------


def about(events: list[dict], subtype: str, who: str) -> list[dict]:
    return [
        e for e in events
        if subtype in orjson.dumps(e.get("subtype")).decode() and who in orjson.dumps(e).decode()
    ]  # fmt: skip


# M-9 $message read before delivery is audited without its patient (fixed)
async def test_fetching_a_message_is_audited_with_its_patient(site):
    http, provider, platform = site
    bundle = dialogue_to_hospital()
    assert (await send(http, provider, "gp", bundle)).status_code == 202
    fetched = await http.get(f"/fhir/$message?id={id_of(bundle)}", headers=auth(provider, "gp"))
    assert fetched.status_code == 200 and world.KARI in fetched.text
    (event,) = about(await audit_events(platform), '"$message"', "Gina Lege")
    assert "Patient/kari" in orjson.dumps(event).decode()


# M-10 probing another party's message id (404) is not audited (fixed)
async def test_a_stranger_asking_for_a_message_is_audited(site):
    http, provider, platform = site
    bundle = dialogue_to_hospital()
    assert (await send(http, provider, "gp", bundle)).status_code == 202
    for operation in ("$message", "$message-status"):
        url = f"/fhir/{operation}?id={id_of(bundle)}"
        assert (await http.get(url, headers=auth(provider, "stranger"))).status_code == 404
    events = await audit_events(platform)
    assert about(events, '"$message"', "Sara Fremmed"), "the stranger's probe left no trace"


# ---- more of what the content can carry -----------------------------------------------------


# M-11 a dialogue imports a Composition: a forged epikrise in the record (fixed)
async def test_a_dialogue_message_cannot_write_a_discharge_summary(site):
    http, provider, platform = site
    bundle = world.message(
        "DIALOG_NOTAT", world.HOSPITAL_HER, world.GP_HER,
        [world.dialogue(), world.discharge_summary("not sent as an EPIKRISE")],
    )  # fmt: skip
    assert (await send(http, provider, "hdoc", bundle)).status_code == 202
    await hub_of(platform).settle()
    assert await stored(platform, "Composition") == []


# ---- the EDI facade's door ------------------------------------------------------------------


# M-12 the EDI facade reads bodies past the request limit (fixed)
async def test_the_edi_facade_keeps_the_request_limit(small_site):
    http, provider, _platform = small_site
    padding = "<!-- " + "x" * 20_000 + " -->"
    document = f"<MsgHead>{padding}</MsgHead>".encode()
    body = {
        "businessDocument": base64.b64encode(document).decode(),
        "senderHerId": int(world.GP_HER),
        "receiverHerIds": [int(world.HOSPITAL_HER)],
        "contentType": "application/xml",
        "contentTransferEncoding": "base64",
        "messageTypeIdentificator": "DIALOG_NOTAT",
    }
    answer = await http.post(
        "/edi/api/v3/messages", content=orjson.dumps(body), headers=auth(provider, "gp")
    )
    assert answer.status_code in (400, 413), answer.text  # today 202, and stored
    listed = await http.get(
        f"/fhir/$messages?party={world.GP_HER}&box=sent", headers=auth(provider, "gp")
    )
    assert listed.json().get("parameter", []) == []


async def test_the_fhir_door_keeps_the_request_limit(small_site):
    http, provider, _platform = small_site
    note = world.dialogue("x" * 20_000)
    answer = await send(http, provider, "gp", dialogue_to_hospital(note))
    assert answer.status_code == 413


# ---- XML: envelope against body, entity bombs ------------------------------------------------


async def post_xml(http, provider, who: str, document: bytes, **envelope: str):
    query = "&".join(f"{k}={v}" for k, v in envelope.items())
    headers = {**auth(provider, who), "content-type": "application/xml"}
    return await http.post(f"/fhir/$process-message?{query}", content=document, headers=headers)


def receipt_codes(status: dict) -> list[str]:
    """The receipt's status and error codes, e.g. ["2", "E10"]."""
    found = []
    for part in status["receipt"]["part"]:
        if part["name"] == "status":
            found.append(part["valueCoding"]["code"])
        elif part["name"] == "error":
            found += [p["valueCoding"]["code"] for p in part["part"] if p["name"] == "code"]
    return found


async def test_an_xml_body_naming_another_sender_is_rejected_e10(site):
    http, provider, platform = site
    forged = world.message(
        "DIALOG_NOTAT", world.PHARMACY_HER, world.HOSPITAL_HER, [world.dialogue()]
    )
    envelope = {"sender": world.GP_HER, "receiver": world.HOSPITAL_HER,
                "type": "DIALOG_NOTAT", "id": id_of(forged)}  # fmt: skip
    answer = await post_xml(http, provider, "gp", to_xml(forged), **envelope)
    assert answer.status_code == 202, answer.text
    await hub_of(platform).settle()
    assert await stored(platform, "Communication") == []
    assert receipt_codes(await status_of(http, provider, "gp", id_of(forged))) == ["2", "E10"]


async def test_an_entity_bomb_is_rejected_without_reading_it(site):
    http, provider, platform = site
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            f'<!ENTITY lol{n} "{("&lol" + str(n - 1) + ";") * 10}">'.encode()
            if n
            else b'<!ENTITY lol0 "&lol;&lol;">'
            for n in range(9)
        )
        + b"]><MsgHead>&lol8;</MsgHead>"
    )
    message_id = str(uuid.uuid4())
    envelope = {"sender": world.GP_HER, "receiver": world.HOSPITAL_HER,
                "type": "DIALOG_NOTAT", "id": message_id}  # fmt: skip
    assert (await post_xml(http, provider, "gp", bomb, **envelope)).status_code == 202
    await hub_of(platform).settle()
    assert receipt_codes(await status_of(http, provider, "gp", message_id))[0] == "2"


# ---- the queue and the worker's memory -------------------------------------------------------


class RefusingBroker:
    """A transport that refuses (as RabbitMQ does a message over its max size) one id."""

    def __init__(self, refused: str):
        self.refused = refused
        self.published: list[str] = []

    async def publish(self, envelopes) -> None:
        if any(e.id == self.refused for e in envelopes):
            raise RuntimeError("message too large")
        self.published += [e.id for e in envelopes]


# M-13 one message the broker refuses holds back its whole relay batch (fixed)
async def test_one_refused_message_does_not_hold_back_the_outbox(site):
    http, provider, platform = site
    poison, good = dialogue_to_hospital(), dialogue_to_hospital()
    for bundle in (poison, good):
        assert (await send(http, provider, "gp", bundle)).status_code == 202
    broker = RefusingBroker(id_of(poison))
    await Relay(platform, broker).run_once()  # type: ignore[arg-type]
    assert id_of(good) in broker.published


# M-14 the party cache keeps every HER-id asked for, unbounded (fixed)
async def test_asking_for_unknown_parties_does_not_grow_memory_without_bound(site):
    _http, _provider, platform = site
    addresses.forget()
    async with platform.store.transaction(write=False) as tx:
        for n in range(1500):
            await addresses.find_party(tx, str(90_000_000 + n))
    held = len(addresses._cache)
    addresses.forget()  # the next test starts with an empty cache either way
    assert held <= 1024
