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

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Conflict, Forbidden, Invalid, Unprocessable
from enjournal.rest.message import FhirResponse, info_outcome
from enjournal.services.messaging import rules
from enjournal.services.messaging.addresses import acts_for, find_party
from enjournal.storage import messaging as db

MAX_BODY = 20 * 1024 * 1024  # the platform's request limit; attachments included
DEFINITION = "http://enjournal.no/fhir/OperationDefinition/"


async def send(tx, principal, envelope: rules.Envelope, content_type: str, body: bytes, now: int):
    """Check ``envelope`` and queue the message: ledger and outbox, in ``tx``."""
    if not await acts_for(tx, principal, envelope.sender):
        raise Forbidden(f"this token may not send as HER-id {envelope.sender}")
    party = await find_party(tx, envelope.receiver)
    if party is None:
        raise Unprocessable(f"HER-id {envelope.receiver} is not in the address register (E21)")
    if not party.receives(envelope.type):
        raise Unprocessable(
            f"HER-id {envelope.receiver} ({party.name}) does not receive {envelope.type} messages"
        )
    message = db.Message(
        id=envelope.id,
        type=envelope.type,
        sender=envelope.sender,
        receiver=envelope.receiver,
        refers=envelope.refers,
        content_type=content_type,
        body=body,
        created=now,
    )
    if not await db.record(tx, message):
        raise Conflict(f"a message with id {envelope.id} was sent already")
    await db.enqueue(tx, db.Outgoing(envelope.id, envelope.receiver, content_type, body, now))
    return message


class Sending:
    def __init__(self, platform):
        self.platform = platform

    def now(self) -> int:
        return int(self.platform.clock().timestamp() * 1000)

    async def process_message(self, request, repo) -> FhirResponse:
        """``POST [base]/$process-message``: a FHIR message Bundle, sent on asynchronously
        (202); its receipt comes back as an APPREC message to the sender."""
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
