"""The EDI 2.0-style REST facade over HTTP on a secured server (bearer tokens of the
organisations' systems): sending an XML businessDocument, the receiver's unread list, the
document, read, its AppRec and the sender's status; and the refusals with NHN's error codes
(401, 1001, 1010, 1100, 1102, 1201, 1202).  The XML round trip runs on SQLite and
PostgreSQL once the XML module (``messaging.xml``) is there."""

from __future__ import annotations

import base64
import importlib.util
import uuid

import httpx
import orjson
import pytest

from enjournal.bootstrap import close_platform, compose, open_platform
from enjournal.fhir.errors import Unauthorized
from enjournal.security.principal import Principal
from enjournal.security.ratelimit import MemoryLimiter
from enjournal.security.setup import worker_security
from enjournal.server.app import create_app
from enjournal.services.messaging.hub import hub_of
from enjournal.settings import Settings
from tests.probes import audit_rows
from tests.services.messaging import world

pytestmark = pytest.mark.backends("sqlite")
ROOT = "/edi/api/v3"
HAS_XML = importlib.util.find_spec("enjournal.services.messaging.xml") is not None
SCOPES = frozenset({"system/*.cruds"})
MSGHEAD = "http://www.kith.no/xmlstds/msghead/2006-05-24"


def system(name: str, org_nr: str) -> Principal:
    return Principal("system", name, name, SCOPES, name, org_nr=org_nr)


TOKENS = {
    "gp": system("gp-epj", world.GP_ORG),
    "hospital": system("hospital-dips", world.HOSPITAL_ORG),
    "pharmacy": system("pharmacy-fm", world.PHARMACY_ORG),
}


class Verifier:
    """Tokens by name: the systems of world.py's organisations."""

    issuers: dict = {}

    async def verify(self, token: str) -> Principal:
        if token not in TOKENS:
            raise Unauthorized("unknown token")
        return TOKENS[token]

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def secured(store_url):
    settings = Settings(database_url=store_url, auth=True, terminology_check=False, jobs=False)
    security = worker_security(settings)
    security.verifier, security.limiter = Verifier(), MemoryLimiter()  # type: ignore[assignment]
    platform = await open_platform(compose(settings, security=security, serving=True))
    await security.start(platform.store)
    await world.load(platform.store)
    yield platform
    await hub_of(platform).close()
    await security.stop()
    await close_platform(platform)


@pytest.fixture
async def http(secured):
    app = create_app(secured.settings, platform=secured)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def auth(who: str) -> dict:
    return {"Authorization": f"Bearer {who}"}


def minimal_document(message_id: str) -> bytes:
    """A MsgHead with its id only: enough for the envelope; the receiver would refuse it."""
    return (
        f'<MsgHead xmlns="{MSGHEAD}"><MsgInfo><MsgId>{message_id}</MsgId></MsgInfo></MsgHead>'
    ).encode()


def order(document: bytes, sender: str, receivers: list[str], **changes) -> dict:
    body = {
        "businessDocument": base64.b64encode(document).decode(),
        "senderHerId": int(sender),
        "receiverHerIds": [int(r) for r in receivers],
        "contentType": "application/xml",
        "contentTransferEncoding": "base64",
        "messageTypeIdentificator": "DIALOG_HELSEFAGLIG",
        "applicationName": "Test EPJ",
        "applicationVersion": "1.0",
    }
    return {**body, **changes}


async def post(http, who: str, body: dict):
    return await http.post(f"{ROOT}/messages", json=body, headers=auth(who))


def refused(response, status: int, code: int) -> None:
    assert response.status_code == status, response.text
    assert response.json()["errorCode"] == code
    assert "Traceback" not in response.text and world.KARI not in response.text


async def test_a_document_to_one_receiver_keeps_its_msgid(http):
    message_id = str(uuid.uuid4())
    document = minimal_document(message_id)
    response = await post(http, "hospital", order(document, world.HOSPITAL_HER, [world.GP_HER]))
    assert response.status_code == 202, response.text
    assert response.json()["id"] == message_id
    assert response.headers["location"].endswith(f"/messages/{message_id}")
    status = await http.get(f"{ROOT}/messages/{message_id}/status", headers=auth("hospital"))
    entry = status.json()["statusList"][0]
    assert entry["receiverHerId"] == int(world.GP_HER)
    assert entry["transportDeliveryState"] == "Unconfirmed" and "apprecInfo" not in entry
    meta = (await http.get(f"{ROOT}/Messages/{message_id}", headers=auth("hospital"))).json()
    assert meta["senderHerId"] == int(world.HOSPITAL_HER)
    assert meta["businessDocumentMsgType"] == "DIALOG_HELSEFAGLIG"


async def test_a_document_goes_to_one_receiver_and_the_subset_picks_it(http):
    receivers = [world.GP_HER, world.PHARMACY_HER]
    body = order(minimal_document("same-id"), world.HOSPITAL_HER, receivers)
    response = await post(http, "hospital", body)
    assert response.status_code == 400 and response.json()["errorCode"] == 1001
    assert "one receiver per business document" in response.json()["description"]
    subset = order(minimal_document("x"), world.HOSPITAL_HER, receivers,
                   receiverHerIdsSubset=[int(world.PHARMACY_HER)])  # fmt: skip
    only = await post(http, "hospital", subset)
    assert only.status_code == 202, only.text
    assigned = only.json()["assignedIds"]
    assert [a["receiverHerId"] for a in assigned] == [int(world.PHARMACY_HER)]
    found = await http.get(f"{ROOT}/messages/{assigned[0]['id']}/status", headers=auth("hospital"))
    assert found.json()["statusList"][0]["receiverHerId"] == int(world.PHARMACY_HER)


async def test_without_a_token_the_facade_answers_401(http):
    response = await http.get(f"{ROOT}/messages?receiverHerIds={world.GP_HER}")
    assert response.status_code == 401
    assert "bearer" in response.headers["www-authenticate"].lower()
    sent = await http.post(f"{ROOT}/messages", json={})
    assert sent.status_code == 401


async def test_sending_as_another_her_id_is_refused_with_1102(http):
    body = order(minimal_document(str(uuid.uuid4())), world.HOSPITAL_HER, [world.GP_HER])
    refused(await post(http, "pharmacy", body), 403, 1102)


async def test_reading_another_partys_box_is_refused_with_1202(http):
    response = await http.get(
        f"{ROOT}/messages?receiverHerIds={world.GP_HER}", headers=auth("pharmacy")
    )
    refused(response, 403, 1202)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        orjson.dumps({"senderHerId": 1}),
        orjson.dumps(order(b"<x/>", world.HOSPITAL_HER, [world.GP_HER], contentType="text/plain")),
        orjson.dumps(order(b"<x/>", world.HOSPITAL_HER, [], receiverHerIds=[])),
        orjson.dumps(order(b"<x/>", world.HOSPITAL_HER, [world.GP_HER], businessDocument="%%")),
        orjson.dumps(order(b"<x/>", world.HOSPITAL_HER, [], receiverHerIds=["12ab"])),
        orjson.dumps(order(b"no xml", world.HOSPITAL_HER, [world.GP_HER])),
        orjson.dumps(
            order(b"<x/>", world.HOSPITAL_HER, [world.GP_HER], messageTypeIdentificator="APPREC")
        ),
    ],
)
async def test_a_bad_order_is_refused_with_1001(http, raw):
    response = await http.post(
        f"{ROOT}/messages",
        content=raw,
        headers={**auth("hospital"), "content-type": "application/json"},
    )
    refused(response, 400, 1001)


async def test_an_unknown_message_is_1010_and_an_unknown_receiver_is_invalid(http):
    for path in ("status", "business-document"):
        response = await http.get(f"{ROOT}/messages/nope/{path}", headers=auth("gp"))
        refused(response, 404, 1010)
    refused(await http.put(f"{ROOT}/messages/nope/read", headers=auth("gp")), 404, 1010)
    body = order(minimal_document(str(uuid.uuid4())), world.HOSPITAL_HER, ["89999999"])
    refused(await post(http, "hospital", body), 422, 1001)


needs_xml = pytest.mark.skipif(not HAS_XML, reason="enjournal.services.messaging.xml not present")


@needs_xml
@pytest.mark.backends("sqlite", "postgres")
async def test_a_dialogue_message_round_trip(secured, http):
    from enjournal.services.messaging.xml import to_xml

    bundle = world.message(
        "DIALOG_HELSEFAGLIG", world.HOSPITAL_HER, world.GP_HER, [world.dialogue()]
    )
    message_id = bundle["entry"][0]["resource"]["id"]
    document = to_xml(bundle)
    sent = await post(http, "hospital", order(document, world.HOSPITAL_HER, [world.GP_HER]))
    assert sent.status_code == 202, sent.text
    assert sent.json()["id"] == message_id
    await hub_of(secured).settle()

    unread = await http.get(f"{ROOT}/messages?receiverHerIds={world.GP_HER}", headers=auth("gp"))
    assert [m["id"] for m in unread.json()] == [message_id], unread.text
    assert unread.json()[0]["senderHerId"] == int(world.HOSPITAL_HER)
    fetched = await http.get(f"{ROOT}/messages/{message_id}/BusinessDocument", headers=auth("gp"))
    assert fetched.json()["contentType"] == "application/xml"
    assert base64.b64decode(fetched.json()["businessDocument"]) == document

    # the sender may not mark it read nor answer it: it is not the addressee
    refused(
        await http.put(f"{ROOT}/messages/{message_id}/read", headers=auth("hospital")), 403, 1201
    )
    apprec = {"appRecStatus": "Ok", "appRecErrorList": []}
    answer = await http.post(
        f"{ROOT}/messages/{message_id}/apprec", json=apprec, headers=auth("hospital")
    )
    refused(answer, 403, 1201)

    read = await http.put(f"{ROOT}/messages/{message_id}/read", headers=auth("gp"))
    assert read.status_code == 204, read.text
    again = await http.get(f"{ROOT}/messages?receiverHerIds={world.GP_HER}", headers=auth("gp"))
    assert again.json() == []

    rejected = {"appRecStatus": "Rejected", "appRecErrorList": []}
    refused(
        await http.post(f"{ROOT}/messages/{message_id}/apprec", json=rejected, headers=auth("gp")),
        400,
        1001,
    )
    answered = await http.post(
        f"{ROOT}/messages/{message_id}/apprec", json=apprec, headers=auth("gp")
    )
    assert answered.status_code == 202, answered.text
    receipt_id = answered.json()["id"]
    await hub_of(secured).settle()

    status = await http.get(f"{ROOT}/messages/{message_id}/status", headers=auth("hospital"))
    entry = status.json()["statusList"][0]
    assert entry["transportDeliveryState"] == "Acknowledged"
    assert entry["apprecInfo"] == {"appRecStatus": "Ok", "appRecErrorList": []}

    events = b"".join(row.event for row in await audit_rows(secured.store))
    assert b"$process-message" in events and b"$message-receipt" in events
    assert b"hospital-dips" in events and b"gp-epj" in events  # as the callers themselves

    on_receipt = await http.post(
        f"{ROOT}/messages/{receipt_id}/apprec", json=apprec, headers=auth("hospital")
    )
    refused(on_receipt, 400, 1100)


@pytest.mark.parametrize(
    ("receiver", "kind"),
    [(world.PHARMACY_HER, "DIALOG_HELSEFAGLIG"), (world.GP_HER, "DIALOG_NOTAT")],
)
async def test_a_document_that_names_another_receiver_or_type_is_refused(http, receiver, kind):
    """Refused at once, before its patient's data goes to a receiver who would reject it."""
    from enjournal.services.messaging.xml import to_xml

    bundle = world.message(
        "DIALOG_HELSEFAGLIG", world.HOSPITAL_HER, world.GP_HER, [world.dialogue()]
    )
    body = order(to_xml(bundle), world.HOSPITAL_HER, [receiver], messageTypeIdentificator=kind)
    answer = await post(http, "hospital", body)
    refused(answer, 400, 1001)
    assert "the document's MsgHead names" in answer.json()["description"]


async def test_a_fhir_dialogue_message_is_fetched_as_xml(secured, http):
    """A system that does not speak FHIR reads a message sent as FHIR in its XML form."""
    from enjournal.services.messaging import rules
    from enjournal.services.messaging.xml import from_xml

    bundle = world.message("DIALOG_NOTAT", world.HOSPITAL_HER, world.GP_HER, [world.dialogue()])
    message_id = bundle["entry"][0]["resource"]["id"]
    posted = await http.post(
        "/fhir/$process-message", content=orjson.dumps(bundle),
        headers={**auth("hospital"), "content-type": "application/fhir+json"},
    )  # fmt: skip
    assert posted.status_code == 202, posted.text
    await hub_of(secured).settle()
    fetched = await http.get(f"{ROOT}/messages/{message_id}/business-document", headers=auth("gp"))
    assert fetched.json()["contentType"] == "application/xml"
    document = base64.b64decode(fetched.json()["businessDocument"])
    assert rules.envelope_of(from_xml(document)).id == message_id
