"""The EDI 2.0-style REST facade (NHN's Meldingstjener API, version 3) for systems that speak
neither FHIR nor AMQP: a thin adapter whose every route becomes messaging's FHIR operations,
called in process with the caller's principal (``Platform.handle``), so the policy, the
HER-id check (``addresses.acts_for``) and the audit apply as to any FHIR client.

Under ``/edi/api/v3`` (a bearer token as for ``/fhir``; ``Messages`` also spelled so):

- ``POST /messages``: {businessDocument (base64 XML), senderHerId, receiverHerIds,
  contentType application/xml, contentTransferEncoding base64, messageTypeIdentificator,
  applicationName, applicationVersion, receiverHerIdsSubset?} -> 202 {id, assignedIds}: one
  message per receiver (``$process-message`` with the XML), each with its own id
- ``GET /messages?receiverHerIds=``: the unread messages of those parties (``$messages``)
- ``GET /messages/{id}``, ``.../business-document`` (``BusinessDocument``), ``PUT .../read``,
  ``GET .../status`` (transport and AppRec), ``POST .../apprec`` {appRecStatus, appRecErrorList}

Errors are JSON ``{"errorCode", "description"}`` with NHN's codes: 1001 invalid, 1010 not
found, 1100 AppRec on an AppRec, 1102 sender HER-id not authorised, 1201 not the addressee,
1202 receiver HER-id not authorised.  Descriptions say what is wrong with the request, never
what a message holds.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from enjournal.rest.message import FhirRequest, FhirResponse
from enjournal.services.messaging import rules

log = logging.getLogger("enjournal.messaging.edi")

PREFIX = "/edi"
ROOT = PREFIX + "/api/v3"
MAX_RECEIVERS = 50
INVALID, NOT_FOUND, APPREC_ON_APPREC = 1001, 1010, 1100
SENDER_NOT_AUTHORISED, NOT_ADDRESSEE, RECEIVER_NOT_AUTHORISED = 1102, 1201, 1202
INTERNAL = 1000
# kodeverk 8258 <-> the API's names
APPREC_STATUS = {
    rules.OK: "Ok",
    rules.REJECTED: "Rejected",
    rules.PARTLY_OK: "OkErrorInMessagePart",
}
STATUS_CODE = {name: code for code, name in APPREC_STATUS.items()}


class EdiError(Exception):
    def __init__(self, status: int, code: int, description: str, **extra):
        super().__init__(description)
        self.status, self.code, self.description, self.extra = status, code, description, extra


def mount(platform) -> None:
    """Add the facade's routes (serving only) and put ``/edi`` behind the bearer token."""
    facade = Facade(platform)
    platform.routes.extend(facade.routes())
    protected = tuple(platform.bearer_paths)
    if PREFIX not in protected:
        platform.bearer_paths = (*protected, PREFIX)


class Facade:
    def __init__(self, platform):
        self.platform = platform

    async def body(self, request) -> bytes:
        """The request's body, refused past the platform's request limit (as /fhir's)."""
        limit = self.platform.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise EdiError(413, INVALID, f"the request is larger than {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise EdiError(413, INVALID, f"the request is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def routes(self) -> list[Route]:
        table = [
            ("", self.send, "POST"),
            ("", self.unread, "GET"),
            ("/{id}", self.metadata, "GET"),
            ("/{id}/business-document", self.document, "GET"),
            ("/{id}/BusinessDocument", self.document, "GET"),
            ("/{id}/read", self.read, "PUT"),
            ("/{id}/Read", self.read, "PUT"),
            ("/{id}/status", self.status, "GET"),
            ("/{id}/Status", self.status, "GET"),
            ("/{id}/apprec", self.apprec, "POST"),
        ]
        by_path: dict[str, dict[str, object]] = {}
        for messages in ("messages", "Messages"):
            for tail, handler, method in table:
                by_path.setdefault(f"{ROOT}/{messages}{tail}", {})[method] = handler
        return [
            Route(path, dispatcher(handlers), methods=list(handlers))
            for path, handlers in by_path.items()
        ]

    async def call(self, request: Request, method: str, operation: str, params=(), body=b"",
                   media: str = "application/fhir+json") -> FhirResponse:  # fmt: skip
        """One FHIR operation, in process, as the caller."""
        headers = {"content-type": media, "accept": "application/fhir+json"}
        fhir_request = FhirRequest(
            method, [f"${operation}"], list(params), headers, body, self.platform.settings.fhir_base
        )
        principal = request.scope.get("state", {}).get("principal")
        return await self.platform.handle(fhir_request, principal)

    async def send(self, request: Request) -> Response:
        order = parse_order(await self.body(request))
        sent: list[dict] = []
        for receiver, id_ in zip(order["receivers"], order["ids"], strict=True):
            params = [("sender", order["sender"]), ("receiver", receiver),
                      ("type", order["type"]), ("id", id_)]  # fmt: skip
            answer = await self.call(request, "POST", "process-message", params,
                                     order["document"], rules.XML)  # fmt: skip
            if answer.status != 202:
                raise refusal(answer, SENDER_NOT_AUTHORISED, assignedIds=sent)
            sent.append({"receiverHerId": her_number(receiver), "id": id_})
        location = f"{ROOT}/messages/{sent[0]['id']}"
        return JSONResponse({"id": sent[0]["id"], "assignedIds": sent}, 202, {"Location": location})

    async def unread(self, request: Request) -> Response:
        parties = request.query_params.getlist("receiverHerIds") or request.query_params.getlist(
            "receiverHerId"
        )
        if not parties or len(parties) > MAX_RECEIVERS or not all(map(valid_her, parties)):
            raise EdiError(400, INVALID, "receiverHerIds: one or more HER-ids")
        found: list[dict] = []
        for party in dict.fromkeys(parties):
            params = [("party", party), ("box", "inbox"), ("unread", "true")]
            answer = await self.call(request, "GET", "messages", params)
            if answer.status != 200:
                raise refusal(answer, RECEIVER_NOT_AUTHORISED)
            found.extend(listed(summary) for summary in body_of(answer).get("parameter") or [])
        return JSONResponse(found)

    async def metadata(self, request: Request) -> Response:
        summary = await self.summary(request)
        return JSONResponse(
            {
                "id": summary["id"],
                "senderHerId": her_number(summary["sender"]),
                "receiverHerIds": [her_number(summary["receiver"])],
                "businessDocumentMsgType": summary["type"],
            }
        )

    async def document(self, request: Request) -> Response:
        answer = await self.call(request, "GET", "message", [("id", message_id(request))])
        if answer.status != 200:
            raise refusal(answer, NOT_ADDRESSEE)
        media = rules.XML if answer.headers.get("Content-Type") == rules.XML else rules.FHIR_JSON
        body = answer.body or b""
        if media == rules.FHIR_JSON:
            media, body = as_xml(body)
        document = base64.b64encode(body).decode("ascii")
        return JSONResponse(
            {
                "businessDocument": document,
                "contentType": media,
                "contentTransferEncoding": "base64",
            }
        )

    async def read(self, request: Request) -> Response:
        id_ = message_id(request)
        answer = await self.call(request, "POST", "message-read", [("id", id_)])
        if answer.status != 200:
            await self.not_addressee(request, id_)
            raise refusal(answer, NOT_ADDRESSEE)
        return Response(status_code=204)

    async def status(self, request: Request) -> Response:
        summary = await self.summary(request)
        entry: dict = {
            "receiverHerId": her_number(summary["receiver"]),
            "transportDeliveryState": "Unconfirmed"
            if summary["state"] == "queued"
            else "Acknowledged",
            "sent": summary["state"] != "queued",
            "state": summary["state"],
        }
        receipt = summary.get("receipt")
        if receipt:
            entry["apprecInfo"] = {
                "appRecStatus": APPREC_STATUS.get(receipt["status"], receipt["status"]),
                "appRecErrorList": [
                    {"errorCode": code, "details": text} for code, text in receipt["errors"]
                ],
            }
        return JSONResponse({"statusList": [entry]})

    async def apprec(self, request: Request) -> Response:
        id_ = message_id(request)
        status, errors = parse_apprec(await self.body(request))
        summary = await self.summary(request)
        if summary["type"] == rules.APPREC:
            raise EdiError(400, APPREC_ON_APPREC, "an AppRec is not answered with an AppRec")
        receipt = {"resourceType": "Parameters", "parameter": [
            {"name": "message", "valueString": id_}, {"name": "status", "valueCode": status},
            *({"name": "error", "part": [{"name": "code", "valueCode": code},
                                         {"name": "text", "valueString": text}]}
              for code, text in errors),
        ]}  # fmt: skip
        answer = await self.call(request, "POST", "message-receipt", (), orjson.dumps(receipt))
        if answer.status == 404:
            raise EdiError(403, NOT_ADDRESSEE, f"this client is not the addressee of message {id_}")
        if answer.status != 202:
            raise refusal(answer, NOT_ADDRESSEE)
        receipt_id = (answer.headers.get("Content-Location") or "").rpartition("id=")[2]
        return JSONResponse({"id": receipt_id}, 202)

    async def summary(self, request: Request) -> dict:
        """The message's summary (``$message-status``), as its sender or receiver sees it."""
        answer = await self.call(request, "GET", "message-status", [("id", message_id(request))])
        if answer.status != 200:
            raise refusal(answer, RECEIVER_NOT_AUTHORISED)
        return flatten(body_of(answer).get("parameter") or [])

    async def not_addressee(self, request: Request, id_: str) -> None:
        """1201 when the caller sees the message (as its sender) but is not its receiver."""
        answer = await self.call(request, "GET", "message-status", [("id", id_)])
        if answer.status == 200:
            raise EdiError(403, NOT_ADDRESSEE, f"this client is not the addressee of message {id_}")


def dispatcher(handlers: dict):
    """One Starlette endpoint for a path's methods; every refusal as EDI JSON, never a 500
    with a trace."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handlers[request.method](request)
        except EdiError as error:
            return error_json(error)
        except Exception:
            log.exception("EDI facade: unexpected error")
            return error_json(EdiError(500, INTERNAL, "internal error; see the server's log"))

    return endpoint


def error_json(error: EdiError) -> JSONResponse:
    body = {"errorCode": error.code, "description": error.description, **error.extra}
    return JSONResponse(body, error.status)


def refusal(answer: FhirResponse, forbidden_code: int, **extra) -> EdiError:
    """The FHIR operation's refusal as NHN's code: 403 -> ``forbidden_code``."""
    codes = {403: forbidden_code, 404: NOT_FOUND, 401: forbidden_code}
    status = answer.status if 400 <= answer.status < 500 else 500
    if status == 500:
        return EdiError(500, INTERNAL, "internal error; see the server's log", **extra)
    return EdiError(status, codes.get(status, INVALID), diagnostics(answer), **extra)


def diagnostics(answer: FhirResponse) -> str:
    issues = body_of(answer).get("issue") or [{}]
    return str(issues[0].get("diagnostics") or "refused")[:300]


def body_of(answer: FhirResponse) -> dict:
    try:
        found = orjson.loads(answer.body or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


def message_id(request: Request) -> str:
    id_ = request.path_params["id"]
    if not rules.valid_id(id_):
        raise EdiError(400, INVALID, "the message id is 1 to 200 letters, digits and ._:-")
    return id_


def valid_her(value: object) -> bool:
    text = str(value)
    return not isinstance(value, bool) and text.isdigit() and len(text) <= 20


def her_number(her: str) -> int | str:
    """A HER-id as the API writes it: a number."""
    return int(her) if her.isdigit() else her


def parse_json(raw: bytes) -> dict:
    try:
        found = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise EdiError(400, INVALID, "the body is not valid JSON") from None
    if not isinstance(found, dict):
        raise EdiError(400, INVALID, "the body is a JSON object")
    return found


def parse_order(raw: bytes) -> dict:
    """What ``POST /messages`` asks: sender, receivers (with their ids), type, document."""
    body = parse_json(raw)
    if body.get("contentType") != rules.XML or body.get("contentTransferEncoding") != "base64":
        raise EdiError(400, INVALID, "contentType application/xml, contentTransferEncoding base64")
    kind = body.get("messageTypeIdentificator")
    if not isinstance(kind, str) or kind not in rules.CONTENT:
        raise EdiError(400, INVALID, "messageTypeIdentificator: " + ", ".join(rules.CONTENT))
    sender = body.get("senderHerId")
    if not valid_her(sender):
        raise EdiError(400, INVALID, "senderHerId is a HER-id")
    receivers = chosen_receivers(body)
    document = decoded(body.get("businessDocument"))
    envelope = agrees_with_document(document, str(sender), receivers[0], kind)
    return {
        "sender": str(sender),
        "receivers": receivers,
        "ids": [envelope.id if envelope else document_id(document) or str(uuid.uuid4())],
        "type": body["messageTypeIdentificator"],
        "document": document,
    }


def as_xml(body: bytes) -> tuple[str, bytes]:
    """A FHIR message as the KITH XML a system without FHIR reads, where the platform writes
    its type (dialogue messages and receipts); else as it is, FHIR JSON."""
    from enjournal.services.messaging.xml import to_xml

    try:
        return rules.XML, to_xml(orjson.loads(body))
    except (rules.Rejection, ValueError, TypeError, KeyError):
        return rules.FHIR_JSON, body


def agrees_with_document(
    document: bytes, sender: str, receiver: str, kind: str
) -> rules.Envelope | None:
    """The document's envelope; 400 when its MsgHead names another sender, receiver or type
    than the request: refused here, before its patient's data goes to a receiver who would
    only reject it (E10).  A document that cannot be read goes on (None): its receiver
    answers it (T01, T02, T10), as the AppRec rules have it."""
    from enjournal.services.messaging.xml import from_xml

    try:
        envelope = rules.envelope_of(from_xml(document))
    except (rules.Rejection, ValueError):
        return None
    said = (envelope.sender, envelope.receiver, envelope.type)
    if said != (sender, receiver, kind):
        raise EdiError(
            400, INVALID,
            f"the document's MsgHead names sender {said[0]}, receiver {said[1]} and type "
            f"{said[2]}; the request says {sender}, {receiver} and {kind}",
        )  # fmt: skip
    return envelope


def chosen_receivers(body: dict) -> list[str]:
    """``receiverHerIds``, or those of ``receiverHerIdsSubset`` (each one of them)."""
    receivers = body.get("receiverHerIds")
    if not isinstance(receivers, list) or not receivers or len(receivers) > MAX_RECEIVERS:
        raise EdiError(400, INVALID, f"receiverHerIds: 1 to {MAX_RECEIVERS} HER-ids")
    if not all(map(valid_her, receivers)):
        raise EdiError(400, INVALID, "receiverHerIds holds something that is not a HER-id")
    chosen = [str(r) for r in dict.fromkeys(receivers)]
    subset = body.get("receiverHerIdsSubset") or body.get("ReceiverHerIdsSubset")
    if subset:
        if not isinstance(subset, list) or not {str(s) for s in subset} <= set(chosen):
            raise EdiError(400, INVALID, "receiverHerIdsSubset names receivers of receiverHerIds")
        chosen = [r for r in chosen if r in {str(s) for s in subset}]
    if len(chosen) > 1:
        # A MsgHead names its one receiver and its id; copies to others would each be
        # rejected (E10) by a receiver that checks them, so each receiver gets its own post.
        raise EdiError(
            400, INVALID, "one receiver per business document: its MsgHead names the receiver"
        )
    return chosen


def decoded(document: object) -> bytes:
    if not isinstance(document, str) or not document:
        raise EdiError(400, INVALID, "businessDocument is the base64 of an XML document")
    try:
        return base64.b64decode(document, validate=True)
    except (binascii.Error, ValueError):
        raise EdiError(400, INVALID, "businessDocument is not valid base64") from None


def document_id(document: bytes) -> str | None:
    """MsgHead/MsgInfo/MsgId of a document that does not validate (its receiver will say
    why), if it is well-formed XML; None otherwise: its receiver judges it."""
    from enjournal.services.messaging.xml import names, parsing

    try:
        root = parsing.parse(document)
    except rules.Rejection:
        return None
    found = root.findtext(f"{names.q(names.MSGHEAD, 'MsgInfo')}/{names.q(names.MSGHEAD, 'MsgId')}")
    text = (found or "").strip()
    return text if rules.valid_id(text) else None


def parse_apprec(raw: bytes) -> tuple[str, list[list[str]]]:
    """``{appRecStatus, appRecErrorList: [{errorCode, details}]}`` -> (8258 code, errors)."""
    body = parse_json(raw)
    status = STATUS_CODE.get(str(body.get("appRecStatus")))
    if status is None:
        raise EdiError(400, INVALID, "appRecStatus is Ok, Rejected or OkErrorInMessagePart")
    listed_errors = body.get("appRecErrorList") or []
    if not isinstance(listed_errors, list) or not all(isinstance(e, dict) for e in listed_errors):
        raise EdiError(400, INVALID, "appRecErrorList is a list of {errorCode, details}")
    errors = [
        [str(e.get("errorCode") or ""), str(e.get("details") or "")[:500]] for e in listed_errors
    ]
    problem = rules.check_receipt(status, [[c, t or rules.ERRORS.get(c, "")] for c, t in errors])
    if problem:
        raise EdiError(400, INVALID, problem)
    return status, errors


def flatten(parts: list) -> dict:
    """A ``$message-status`` summary's parts as plain values (the receipt's too)."""
    found: dict = {}
    for part in parts:
        name = part.get("name")
        if name == "receipt":
            found["receipt"] = receipt_of(part.get("part") or [])
            continue
        coding = part.get("valueCoding")
        found[name] = (
            coding.get("code")
            if isinstance(coding, dict)
            else next((v for k, v in part.items() if k.startswith("value")), None)
        )
    return found


def receipt_of(parts: list) -> dict:
    receipt: dict = {"errors": []}
    for part in parts:
        if part.get("name") == "status":
            receipt["status"] = (part.get("valueCoding") or {}).get("code")
        elif part.get("name") == "error":
            inner = {p.get("name"): p for p in part.get("part") or []}
            code = (inner.get("code", {}).get("valueCoding") or {}).get("code", "")
            receipt["errors"].append([code, inner.get("text", {}).get("valueString", "")])
    return receipt


def listed(summary: dict) -> dict:
    """One unread message as ``GET /messages`` lists it."""
    found = flatten(summary.get("part") or [])
    return {
        "id": found.get("id"),
        "receiverHerId": her_number(str(found.get("receiver"))),
        "senderHerId": her_number(str(found.get("sender"))),
        "messageTypeIdentificator": found.get("type"),
        "sent": found.get("sent"),
    }
