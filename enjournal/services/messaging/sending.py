"""Sending a message: ``$process-message`` (FHIR) and the EDI facade's post both end in
``send``, which checks the envelope against the address register and writes the message to
the ledger and the outbox in the caller's transaction.  The relay (``relay.py``) hands it to
the transport; the receiving side (``receiving.py``) checks the content and answers with an
application receipt.

Refused before it is sent (HTTP 4xx, nothing stored): a sender the caller may not act for,
a receiver the address register does not know (AppRec E21's case), a receiver that does
not take that type of message, a message id already used.
"""

from __future__ import annotations

import uuid

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Conflict, Forbidden, Invalid, Unprocessable
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR
from enjournal.rest.message import FhirResponse, info_outcome
from enjournal.services.messaging import rules
from enjournal.services.messaging.addresses import acts_for, find_party
from enjournal.storage import messaging as db

DEFINITION = "http://enjournal.no/fhir/OperationDefinition/"


async def send(tx, principal, envelope: rules.Envelope, content_type: str, body: bytes, now: int):
    """Check ``envelope`` and queue the message: ledger and outbox, in ``tx``."""
    if not await acts_for(tx, principal, envelope.sender):
        raise Forbidden(f"this token may not send as HER-id {envelope.sender}")
    # read fresh, not from the worker's cache: a party just deactivated takes nothing more
    party = await find_party(tx, envelope.receiver, fresh=True)
    if party is None:
        raise Unprocessable(f"HER-id {envelope.receiver} is not in the address register (E21)")
    if not party.active:
        raise Unprocessable(f"HER-id {envelope.receiver} ({party.name}) is inactive")
    if not party.receives(envelope.type):
        raise Unprocessable(
            f"HER-id {envelope.receiver} ({party.name}) does not receive {envelope.type} messages"
        )
    patient = await patient_of(tx, content_type, body)
    message = ledger_row(envelope, content_type, body, now, patient=patient)
    if not await db.record(tx, message):
        raise Conflict(f"a message with id {envelope.id} was sent already")
    await db.enqueue(tx, db.Outgoing(envelope.id, envelope.receiver, content_type, body, now))
    return message


def ledger_row(envelope: rules.Envelope, content_type: str, body: bytes, now: int, **states):
    """The ledger's row of a message (``states``: its patient, published, delivered)."""
    return db.Message(
        id=envelope.id,
        type=envelope.type,
        sender=envelope.sender,
        receiver=envelope.receiver,
        refers=envelope.refers,
        content_type=content_type,
        body=body,
        created=now,
        **states,
    )


async def patient_of(tx, content_type: str, body: bytes) -> str | None:
    """The record's id of the patient a message names, if known: so every read of it is
    audited with its patient, before its import or without one (a rejected message)."""
    try:
        if content_type == rules.XML:
            from enjournal.services.messaging.xml import from_xml

            bundle = from_xml(body)
        else:
            bundle = jsonio.loads(body)
        number = rules.patient_number(rules.obj(bundle))
    except (rules.Rejection, ValueError):
        return None
    found = await tx.by_identifier("Patient", (OID_FNR, OID_DNR), number, limit=1)
    return found[0].id if found else None


class Sending:
    def __init__(self, platform):
        self.platform = platform

    def now(self) -> int:
        return int(self.platform.clock().timestamp() * 1000)

    async def process_message(self, request, repo) -> FhirResponse:
        """``POST [base]/$process-message``: a FHIR message Bundle, sent on asynchronously
        (202); its receipt comes back as an APPREC message to the sender.  An XML body
        (``Content-Type: application/xml``) is a KITH document: ``process_document``."""
        if is_xml(request):
            return await self.process_document(request, repo)
        bundle = request.json()
        try:
            envelope = rules.envelope_of(bundle)
        except ValueError as error:
            raise Invalid(str(error)) from None
        if envelope.type == rules.APPREC:
            raise Invalid("a receipt is sent with $message-receipt, naming the message it answers")
        tx = repo.trusted  # its own access rules decide: acts_for, in send()
        principal = request.context.principal if request.context else None
        body = jsonio.dumps(bundle)
        await send(tx, principal, envelope, rules.FHIR_JSON, body, self.now())
        audit_sent(request, envelope)
        return accepted(request, envelope.id)

    async def process_document(self, request, repo) -> FhirResponse:
        """``POST [base]/$process-message?sender=&receiver=&type=[&id=]`` with an XML body
        (MsgHead with Dialogmelding, the EDI facade's businessDocument): sent as it is, its
        envelope from the query; the receiver reads and checks the XML (T01, T02, T10)."""
        envelope = document_envelope(request.params)
        if not request.body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
            raise Invalid("an application/xml body must be an XML document")
        principal = request.context.principal if request.context else None
        await send(repo.trusted, principal, envelope, rules.XML, request.body, self.now())
        audit_sent(request, envelope)
        return accepted(request, envelope.id)


def is_xml(request) -> bool:
    media = (request.header("content-type") or "").split(";")[0].strip().lower()
    return media in (rules.XML, "text/xml")


def document_envelope(params: list[tuple[str, str]]) -> rules.Envelope:
    """The envelope of an XML message from the query: ``sender``, ``receiver`` (HER-ids),
    ``type`` (kodeverk 8279, not APPREC) and ``id`` (a new one when not given)."""
    found = dict(params)
    sender, receiver = found.get("sender", ""), found.get("receiver", "")
    if not (sender.isdigit() and receiver.isdigit() and len(sender) + len(receiver) <= 40):
        raise Invalid(
            "an XML message names its parties in the query: ?sender=<HER-id>&receiver=<HER-id>"
            "&type=<kodeverk 8279>[&id=<message id>]"
        )
    if found.get("type") not in rules.CONTENT:
        raise Invalid("type is the message's function (kodeverk 8279): " + ", ".join(rules.CONTENT))
    id_ = found.get("id") or str(uuid.uuid4())
    if not rules.valid_id(id_):
        raise Invalid("id is 1 to 200 letters, digits and ._:- (a UUID, say)")
    return rules.Envelope(id_, found["type"], sender, receiver)


def audit_sent(request, envelope: rules.Envelope, patient: str | None = None) -> None:
    if request.context is not None:
        request.context.record(
            action="C",
            subtype="$process-message",
            patient_id=patient,
            query=f"message={envelope.id} type={envelope.type} "
            f"from={envelope.sender} to={envelope.receiver}",
        )


def accepted(request, message_id: str) -> FhirResponse:
    status_url = f"{request.base_url}/$message-status?id={message_id}"
    return FhirResponse(
        202,
        jsonio.dumps(info_outcome(f"message {message_id} accepted for delivery")),
        {"Content-Location": status_url},
    )
