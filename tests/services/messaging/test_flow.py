"""Each message type end to end on the embedded transport, on SQLite and PostgreSQL:
``$process-message`` -> ledger + outbox -> relay -> queue -> receiver (inbox, checks, import
into the record) -> AppRec back -> the sender's ledger; refused receivers; rejected content
with the right kodeverk 8221 code; a redelivered message has one effect."""

from __future__ import annotations

import orjson
import pytest

from enjournal.services.messaging import rules
from enjournal.services.messaging.hub import hub_of
from enjournal.services.messaging.transport import Envelope
from enjournal.storage import messaging as db
from enjournal.storage.base import unavailable
from tests.services.messaging import world

pytestmark = pytest.mark.backends("sqlite", "postgres")


@pytest.fixture
async def loaded(platform):
    await world.load(platform.store)
    return platform


async def post(client, bundle: dict):
    return await client.post(
        "/fhir/$process-message",
        content=orjson.dumps(bundle),
        headers={"content-type": "application/fhir+json"},
    )


async def ledger(platform, message_id: str) -> db.Message:
    async with platform.store.transaction(write=False) as tx:
        row = await db.get(tx, message_id)
    assert row is not None
    return row


def header_id(bundle: dict) -> str:
    return bundle["entry"][0]["resource"]["id"]


async def test_referral_is_imported_and_answered_automatically(loaded, client):
    bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    response = await post(client, bundle)
    assert response.status_code == 202, response.text
    assert "$message-status?id=" in response.headers["content-location"]
    await hub_of(loaded).settle()
    row = await ledger(loaded, header_id(bundle))
    assert row.published and row.delivered and row.patient == "kari"
    assert row.receipt == rules.OK and row.errors == []
    found = (await client.get("/fhir/ServiceRequest?subject=Patient/kari")).json()
    assert found["total"] == 1
    referral = found["entry"][0]["resource"]
    assert referral["performer"] == [{"reference": "Organization/hospital"}]
    assert referral["meta"]["source"].startswith(f"urn:her:{world.GP_HER}#")


async def test_discharge_summary_lands_in_the_record_and_waits_for_a_person(loaded, client):
    bundle = world.message(
        "EPIKRISE", world.HOSPITAL_HER, world.GP_HER, [world.discharge_summary()]
    )
    assert (await post(client, bundle)).status_code == 202
    await hub_of(loaded).settle()
    row = await ledger(loaded, header_id(bundle))
    assert row.delivered and row.receipt is None  # the GP's system answers by a person
    composition = (await client.get("/fhir/Composition?subject=Patient/kari")).json()
    assert composition["total"] == 1
    inbox = (await client.get(f"/fhir/$messages?party={world.GP_HER}&box=inbox")).json()
    assert [
        p["valueString"] for m in inbox["parameter"] for p in m["part"] if p["name"] == "id"
    ] == [row.id]
    receipt = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "message", "valueString": row.id},
            {"name": "status", "valueCode": "1"},
        ],
    }
    answered = await client.post("/fhir/$message-receipt", json=receipt)
    assert answered.status_code == 202, answered.text
    again = await client.post("/fhir/$message-receipt", json=receipt)
    assert again.status_code == 409
    await hub_of(loaded).settle()
    assert (await ledger(loaded, row.id)).receipt == rules.OK


@pytest.mark.parametrize(
    ("number", "code"), [(None, "E30"), ("02818029237", "E31"), (world.UNKNOWN_PERSON, "E35")]
)
async def test_patient_problems_are_rejected_with_their_code(loaded, client, number, code):
    bundle = world.message(
        "DIALOG_FORESPORSEL", world.GP_HER, world.HOSPITAL_HER, [world.dialogue()], number=number
    )
    assert (await post(client, bundle)).status_code == 202
    await hub_of(loaded).settle()
    row = await ledger(loaded, header_id(bundle))
    assert row.receipt == rules.REJECTED
    assert [e[0] for e in row.errors or []] == [code]
    communications = (await client.get("/fhir/Communication")).json()
    assert communications["total"] == 0  # nothing of a rejected message is imported


async def test_content_the_type_needs_is_missing(loaded, client):
    bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.dialogue()])
    assert (await post(client, bundle)).status_code == 202
    await hub_of(loaded).settle()
    row = await ledger(loaded, header_id(bundle))
    assert row.receipt == rules.REJECTED and row.errors[0][0] == "T99"


async def test_invalid_fhir_content_is_rejected_not_imported(loaded, client):
    bad = world.referral()
    bad["status"] = "not-a-status"
    bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [bad])
    assert (await post(client, bundle)).status_code == 202
    await hub_of(loaded).settle()
    row = await ledger(loaded, header_id(bundle))
    assert row.receipt == rules.REJECTED and "status" in row.errors[0][1]
    assert (await client.get("/fhir/ServiceRequest")).json()["total"] == 0


@pytest.mark.parametrize(
    ("receiver", "type_", "why"),
    [
        ("89999999", "HENVIS", "not in the address register"),
        (world.PHARMACY_HER, "HENVIS", "does not receive HENVIS"),
        (world.GP_HER, "HENVIS", "does not receive HENVIS"),
    ],
)
async def test_receivers_that_cannot_take_it_are_refused_before_sending(
    loaded, client, receiver, type_, why
):
    bundle = world.message(type_, world.HOSPITAL_HER, receiver, [world.referral()])
    response = await post(client, bundle)
    assert response.status_code == 422
    assert why in response.text
    async with loaded.store.transaction(write=False) as tx:
        assert await db.get(tx, header_id(bundle)) is None
        assert await db.claim(tx, 2**62, 1, 10) == []


async def test_a_message_id_is_sent_once(loaded, client):
    bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    assert (await post(client, bundle)).status_code == 202
    assert (await post(client, bundle)).status_code == 409


async def test_a_redelivered_message_has_one_effect(loaded, client):
    bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    assert (await post(client, bundle)).status_code == 202
    envelope = Envelope(
        header_id(bundle), world.HOSPITAL_HER, rules.FHIR_JSON, orjson.dumps(bundle)
    )
    receiver = hub_of(loaded).receiver
    assert await receiver.handle([envelope, envelope]) == ["ack", "ack"]
    assert await receiver.handle([envelope]) == ["ack"]
    assert receiver.counts["duplicate"] == 2 and receiver.counts["imported"] == 1
    assert (await client.get("/fhir/ServiceRequest")).json()["total"] == 1
    await hub_of(loaded).settle()
    assert (await client.get("/fhir/ServiceRequest")).json()["total"] == 1


async def test_a_receipt_is_never_answered_and_only_its_receiver_may_send_it(loaded, client):
    bundle = world.message("HENVIS", world.GP_HER, world.CLINIC_HER, [world.referral()])
    assert (await post(client, bundle)).status_code == 202
    await hub_of(loaded).settle()
    original = rules.Envelope(header_id(bundle), "HENVIS", world.GP_HER, world.CLINIC_HER)
    forged = rules.receipt_message(
        rules.Envelope(original.id, "HENVIS", world.GP_HER, world.PHARMACY_HER),
        rules.REJECTED, [["X99", "forged"]], "2026-12-03T10:00:00+00:00", "urn:test",
    )  # fmt: skip
    envelope = Envelope(header_id(forged), world.GP_HER, rules.FHIR_JSON, orjson.dumps(forged))
    assert await hub_of(loaded).receiver.handle([envelope]) == ["ack"]
    assert (await ledger(loaded, original.id)).receipt is None


async def send_xml(platform, data: bytes, message_id: str, type_: str, receiver: str) -> None:
    from enjournal.services.messaging.sending import send

    envelope = rules.Envelope(message_id, type_, world.GP_HER, receiver)
    async with platform.store.transaction() as tx:
        await send(tx, None, envelope, rules.XML, data, 1_000)


async def test_an_xml_dialogue_message_is_imported_and_answered_in_xml(loaded, client):
    from enjournal.services.messaging.xml import from_xml, to_xml

    bundle = world.message(
        "DIALOG_FORESPORSEL", world.GP_HER, world.HOSPITAL_HER, [world.dialogue()]
    )
    message_id = header_id(bundle)
    await send_xml(loaded, to_xml(bundle), message_id, "DIALOG_FORESPORSEL", world.HOSPITAL_HER)
    await hub_of(loaded).settle()
    row = await ledger(loaded, message_id)
    assert row.receipt == rules.OK  # the hospital's system answers automatically
    receipt = await ledger(loaded, row.receipt_id or "")
    assert receipt.content_type == rules.XML and b"AppRec" in receipt.body
    assert rules.envelope_of(from_xml(receipt.body)).refers == message_id
    found = (await client.get("/fhir/Communication?subject=Patient/kari")).json()
    assert found["total"] == 1


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"this is not xml", "T01"),
        (b'<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"/>', "T02"),
    ],
)
async def test_unreadable_xml_is_rejected_with_its_code(loaded, data, code):
    await send_xml(loaded, data, "xml-1", "DIALOG_NOTAT", world.HOSPITAL_HER)
    await hub_of(loaded).settle()
    row = await ledger(loaded, "xml-1")
    assert row.delivered and row.receipt == rules.REJECTED
    assert [e[0] for e in row.errors or []] == [code]


async def test_the_demo_traffic_shows_every_state(platform):
    """On the demo population: referrals answered automatically, summaries and a question
    waiting for the GP office, a note to a pharmacy waiting."""
    from enjournal.demo.population import generate_population
    from enjournal.rest.message import FhirRequest
    from enjournal.services.messaging.samples import demo_messages

    for bundle in generate_population(12, 7):
        request = FhirRequest("POST", [], [], {}, orjson.dumps(bundle), "http://test/fhir")
        assert (await platform.handle(request)).status == 200
    assert await demo_messages(platform, 1_000) == 6
    assert await demo_messages(platform, 1_000) == 0  # once
    await hub_of(platform).settle()
    async with platform.store.transaction(write=False) as tx:
        rows = [await db.get(tx, m.id) for m in await db.overdue(tx, 2_000, 100)]
    states = sorted((m.type, m.delivered is not None) for m in rows if m)
    assert ("EPIKRISE", True) in states and ("DIALOG_NOTAT", True) in states
    assert not [m for m in rows if m and m.type.startswith("HENVIS")]  # answered: not overdue


class Flaky:
    """The platform's store, unreachable for its first ``down`` transactions (a database
    restarting): what the receiver does then is under test, not the database."""

    def __init__(self, store, down: int):
        self.store, self.down = store, down

    def transaction(self, **kwargs):
        if self.down > 0:
            self.down -= 1
            raise unavailable("the connection to the database was lost; try again", 1)
        return self.store.transaction(**kwargs)


async def test_a_database_outage_waits_and_uses_up_no_delivery(loaded, client, monkeypatch):
    """The store's "try again later" (Busy, which the backends make of a lost connection)
    from opening a transaction."""
    from enjournal.services.messaging import receiving

    monkeypatch.setattr(receiving, "STORAGE_WAITS", (0.01, 0.01, 0.01))
    bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    assert (await post(client, bundle)).status_code == 202
    envelope = Envelope(
        header_id(bundle), world.HOSPITAL_HER, rules.FHIR_JSON, orjson.dumps(bundle)
    )
    receiver = receiving.Receiver(loaded)
    real = loaded.store
    monkeypatch.setattr(loaded, "store", Flaky(real, down=2))
    assert await receiver.handle([envelope]) == ["ack"]  # after two failed tries, in place
    monkeypatch.setattr(loaded, "store", Flaky(real, down=10))
    assert await receiver.handle([envelope]) == ["retry"]  # still down: back, for later
    monkeypatch.setattr(loaded, "store", real)
    assert (await client.get("/fhir/ServiceRequest")).json()["total"] == 1


@pytest.fixture
async def over_rabbitmq(loaded):
    """The platform's hub on the real RabbitMQ, on a queue and exchange of this test's own."""
    import os
    import uuid

    from enjournal.services.messaging.hub import Hub
    from enjournal.services.messaging.transport.rabbit import RabbitTransport

    name = f"flow.{uuid.uuid4().hex[:10]}"
    url = os.environ.get("ENJOURNAL_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
    broker = RabbitTransport(url, queue=name, exchange=name)
    hub = Hub(loaded, broker)
    loaded._messaging_hub = hub
    yield hub
    await broker.drop()
    await hub.close()


@pytest.mark.backends("postgres")
async def test_every_type_end_to_end_over_rabbitmq(loaded, client, over_rabbitmq):
    """A referral (answered automatically), a discharge summary and a question (answered by
    a person: OK, and rejected with E35), a note in XML, each with its receipt."""
    from enjournal.services.messaging.xml import to_xml

    referral = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    summary = world.message(
        "EPIKRISE", world.HOSPITAL_HER, world.GP_HER, [world.discharge_summary()]
    )
    question = world.message(
        "DIALOG_FORESPORSEL", world.HOSPITAL_HER, world.GP_HER, [world.dialogue()]
    )
    note = world.message(
        "DIALOG_NOTAT", world.GP_HER, world.HOSPITAL_HER, [world.dialogue("Notat")]
    )
    for bundle in (referral, summary, question):
        assert (await post(client, bundle)).status_code == 202
    await send_xml(loaded, to_xml(note), header_id(note), "DIALOG_NOTAT", world.HOSPITAL_HER)
    await over_rabbitmq.settle()
    for bundle, status in ((summary, "1"), (question, "2")):
        errors = (
            []
            if status == "1"
            else [{"name": "error", "part": [{"name": "code", "valueCode": "E35"}]}]
        )
        parts = [
            {"name": "message", "valueString": header_id(bundle)},
            {"name": "status", "valueCode": status},
            *errors,
        ]
        body = {"resourceType": "Parameters", "parameter": parts}
        answered = await client.post("/fhir/$message-receipt", json=body)
        assert answered.status_code == 202, answered.text
    await over_rabbitmq.settle()
    receipts = {
        header_id(b): (await ledger(loaded, header_id(b))).receipt
        for b in (referral, summary, question, note)
    }
    assert receipts == {
        header_id(referral): "1",
        header_id(summary): "1",
        header_id(question): "2",
        header_id(note): "1",
    }
    assert (await ledger(loaded, header_id(question))).errors[0][0] == "E35"
    for type_ in ("ServiceRequest", "Composition", "Communication"):
        assert (await client.get(f"/fhir/{type_}?subject=Patient/kari")).json()["total"] >= 1


async def test_a_box_pages_through_messages_of_one_millisecond(loaded, client):
    """Every message on some page exactly once, whatever shares its millisecond."""
    from enjournal.services.messaging.sending import send

    async with loaded.store.transaction() as tx:
        for _ in range(7):
            bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
            await send(
                tx, None, rules.envelope_of(bundle), rules.FHIR_JSON, orjson.dumps(bundle), 5
            )
    seen, cursor = [], ""
    for _ in range(5):
        page = (
            await client.get(f"/fhir/$messages?party={world.GP_HER}&box=sent&_count=3{cursor}")
        ).json()
        rows = [m for m in page["parameter"] if m["name"] == "message"]
        seen += [p["valueString"] for m in rows for p in m["part"] if p["name"] == "id"]
        nxt = [m["valueString"] for m in page["parameter"] if m["name"] == "next"]
        if not nxt:
            break
        cursor = f"&before={nxt[0]}"
    assert len(seen) == 7 == len(set(seen))
    assert (await client.get(f"/fhir/$messages?party={world.GP_HER}&_count=0")).status_code == 400
    assert (
        await client.get(f"/fhir/$messages?party={world.GP_HER}&unread=maybe")
    ).status_code == 400


async def test_a_receipt_takes_its_values_in_any_form_and_read_answers_as_read(loaded, client):
    bundle = world.message(
        "EPIKRISE", world.HOSPITAL_HER, world.GP_HER, [world.discharge_summary()]
    )
    assert (await post(client, bundle)).status_code == 202
    await hub_of(loaded).settle()
    read = (await client.post(f"/fhir/$message-read?id={header_id(bundle)}")).json()
    assert {"name": "state", "valueCode": "read"} in read["parameter"]
    coding = {"system": rules.STATUS_SYSTEM, "code": "3"}
    code = {"system": rules.ERROR_SYSTEM, "code": "E32"}
    error = {"name": "error", "part": [{"name": "code", "valueCoding": code}]}
    parts = [
        {"name": "message", "valueString": header_id(bundle)},
        {"name": "status", "valueCoding": coding},
        error,
    ]
    body = {"resourceType": "Parameters", "parameter": parts}
    assert (await client.post("/fhir/$message-receipt", json=body)).status_code == 202
    await hub_of(loaded).settle()
    row = await ledger(loaded, header_id(bundle))
    assert row.receipt == "3" and row.errors and row.errors[0][0] == "E32"
    missing = {"resourceType": "Parameters", "parameter": [{"name": "status", "valueCode": "1"}]}
    refused = await client.post("/fhir/$message-receipt", json=missing)
    assert refused.status_code == 400 and "message" in refused.text


async def test_a_party_just_deactivated_takes_nothing_more(loaded, client):
    bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    assert (await post(client, bundle)).status_code == 202  # the party is now in the cache
    async with loaded.store.transaction() as tx:
        hospital = orjson.loads((await tx.read("Organization", "hospital")).content)
        hospital["active"] = False
        await tx.update(hospital, "hospital")
    again = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    refused = await post(client, again)
    assert refused.status_code == 422 and "inactive" in refused.text


async def test_a_database_lost_in_the_middle_of_an_import_is_no_rejection(
    loaded, client, monkeypatch
):
    """Busy from a write inside the import is the database's, not the message's: the batch
    waits and goes again; no T99 receipt."""
    from enjournal.services.messaging import receiving
    from enjournal.storage.store import Transaction

    monkeypatch.setattr(receiving, "STORAGE_WAITS", (0.01,))
    bundle = world.message("HENVIS", world.GP_HER, world.HOSPITAL_HER, [world.referral()])
    assert (await post(client, bundle)).status_code == 202
    real, failures = Transaction.create, [1]

    async def create(self, resource, **kwargs):
        if failures:
            failures.pop()
            raise unavailable("the connection to the database was lost; try again", 1)
        return await real(self, resource, **kwargs)

    monkeypatch.setattr(Transaction, "create", create)
    await hub_of(loaded).settle()
    row = await ledger(loaded, header_id(bundle))
    assert row.receipt == rules.OK and not failures
    assert (await client.get("/fhir/ServiceRequest")).json()["total"] == 1
