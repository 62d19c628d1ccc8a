"""The sender's and the receiver's view of their messages, and the receipt a person sends.

- ``GET [base]/$messages?party=<HER-id>&box=inbox|sent[&unread=true][&before=<ms>][&_count=]``
- ``GET [base]/$message?id=``: the message as sent (FHIR JSON or XML); audited as a read of
  the patient's data, allowed to its sender and its receiver only
- ``POST [base]/$message-read?id=``: the receiver has taken it in
- ``GET [base]/$message-status?id=``: queued, published, delivered, read; its receipt
- ``POST [base]/$message-receipt``: Parameters ``message`` (id), ``status`` (8258: 1, 2, 3),
  ``error`` (repeating, parts ``code`` (8221) and ``text``): the receiver's AppRec

A party is seen only by whoever acts for it (``addresses.acts_for``); a message id the caller
may not see answers as one that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime

from enjournal.fhir.errors import Conflict, Forbidden, Gone, Invalid, NotFound
from enjournal.rest.message import FhirResponse
from enjournal.rest.operations import parameters
from enjournal.services.messaging import rules
from enjournal.services.messaging.addresses import acts_for
from enjournal.services.messaging.receiving import answer
from enjournal.services.messaging.sending import accepted
from enjournal.storage import messaging as db

MAX_COUNT = 500


class Boxes:
    def __init__(self, platform):
        self.platform = platform

    def now(self) -> int:
        return int(self.platform.clock().timestamp() * 1000)

    async def messages(self, request, repo) -> FhirResponse:
        args = parameters(request, ("party", "box", "unread", "before", "_count"))
        party = _text(args.get("party"), "party (one HER-id)")
        box = args.get("box") or "inbox"
        if box not in ("inbox", "sent"):
            raise Invalid("box is 'inbox' or 'sent'")
        tx = repo.trusted  # its own access rule decides: acts_for, below
        if not await acts_for(tx, _principal(request), party):
            raise Forbidden(f"this token may not read the messages of HER-id {party}")
        limit = _count(args.get("_count"))
        rows = await db.listing(
            tx,
            [party],
            sent=box == "sent",
            unread=_flag(args.get("unread"), "unread"),
            before=_cursor(args.get("before")),
            limit=limit,
        )
        deadline = self.now() - self.platform.settings.messaging_receipt_seconds * 1000
        found = [_summary(m, deadline) for m in rows]
        if len(rows) == limit:  # there may be more: the next page starts after the last row
            found.append({"name": "next", "valueString": f"{rows[-1].created}:{rows[-1].id}"})
        return FhirResponse.of({"resourceType": "Parameters", "parameter": found})

    async def message(self, request, repo) -> FhirResponse:
        row = await self._visible(request, repo)
        if not row.body:
            raise Gone(
                f"message {row.id}'s content was removed after its receipt (kept "
                f"{self.platform.settings.messaging_keep_days} days); it is in the record"
            )
        _audit(request, row, "R", "$message")
        media = rules.XML if row.content_type == rules.XML else "application/fhir+json"
        return FhirResponse(200, row.body, {"Content-Type": media})

    async def read(self, request, repo) -> FhirResponse:
        row = await self._visible(request, repo, receiver_only=True)
        await db.mark_read(repo.trusted, row.id, self.now())
        row = await db.get(repo.trusted, row.id) or row  # as it is now: read
        return FhirResponse.of(_status(row, self._deadline()))

    async def status(self, request, repo) -> FhirResponse:
        row = await self._visible(request, repo)
        return FhirResponse.of(_status(row, self._deadline()))

    async def receipt(self, request, repo) -> FhirResponse:
        """The receiver's AppRec for a message it received."""
        row = await self._visible(request, repo, receiver_only=True, from_body=True)
        if row.type == rules.APPREC:
            raise Invalid("a receipt is not answered with a receipt")
        status, errors = _receipt_input(request)
        problem = rules.check_receipt(status, errors)
        if problem:
            raise Invalid(problem)
        tx = repo.trusted
        original = rules.Envelope(row.id, row.type, row.sender, row.receiver)
        receipt_id = await answer(
            tx, original, row.content_type, status, errors, self.now(), self.platform,
            local=row.published is not None,  # sent from here (another hub's have none)
        )  # fmt: skip
        if receipt_id is None:
            raise Conflict(f"message {row.id} has been answered already")
        _audit(request, row, "C", "$message-receipt")
        return accepted(request, receipt_id)

    def _deadline(self) -> int:
        return self.now() - self.platform.settings.messaging_receipt_seconds * 1000

    async def _visible(self, request, repo, *, receiver_only=False, from_body=False) -> db.Message:
        """The message named by ``id``, if the caller acts for its receiver (or its sender);
        NotFound otherwise, as for one that does not exist."""
        args = parameters(request, ("id", "message")) if from_body else parameters(request, ("id",))
        message_id = _text(args.get("message") or args.get("id"), "message" if from_body else "id")
        tx = repo.trusted  # its own access rule decides, here
        row = await db.get(tx, message_id)
        principal = _principal(request)
        if row is not None:
            if row.delivered is not None and await acts_for(tx, principal, row.receiver):
                return row
            if not receiver_only and await acts_for(tx, principal, row.sender):
                return row
            if request.context is not None:  # someone else's message: a refused access
                request.context.refuse(
                    "r", _name(request), "not a party of the message", row.patient
                )
        raise NotFound(f"no message {message_id[:100]} of yours")


def _name(request) -> str:
    return "/".join(request.path)[:60] or "message"


def _principal(request):
    return request.context.principal if request.context is not None else None


def _text(value, name: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise Invalid(f"{name} is required (at most 200 characters)")
    return value.strip()


def _count(value) -> int:
    """``_count``: 1 to MAX_COUNT, 100 when not given."""
    count = _int(value, "_count")
    if count is None:
        return 100
    if not 1 <= count <= MAX_COUNT:
        raise Invalid(f"_count is 1 to {MAX_COUNT}")
    return count


def _flag(value, name: str) -> bool:
    text = str(value or "false").lower()
    if text not in ("true", "false"):
        raise Invalid(f"{name} is true or false")
    return text == "true"


def _cursor(value) -> tuple[int, str | None] | None:
    """``before``: the ``next`` a page ended with (``<ms>:<id>``), or a time in epoch ms."""
    if value in (None, ""):
        return None
    ms, _, after = str(value).partition(":")
    stamp = _int(ms, "before")
    if stamp is None or (after and not rules.valid_id(after)):
        raise Invalid("before is the 'next' of the page before (or a time in epoch ms)")
    return stamp, after or None


def _int(value, name: str) -> int | None:
    if value in (None, ""):
        return None
    text = str(value)
    if not text.isdigit() or len(text) > 15:
        raise Invalid(f"{name} must be a whole number")
    return int(text)


def _receipt_input(request) -> tuple[str, list[list[str]]]:
    """``status`` and ``error`` parts (``code``, ``text``) of a $message-receipt, each value
    as a code, a string, a Coding (as $message-status shows them) or an integer."""
    args = parameters(request, ("status", "error"))
    errors = args.get("error") or []
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        errors = [errors]  # one error: its parts, not a list of them
    found = []
    for parts in errors if isinstance(errors, list) else []:
        named = {p.get("name"): _value(p) for p in parts if isinstance(p, dict)}
        code = named.get("code", "")
        found.append([code, named.get("text", "")[:500] or rules.ERRORS.get(code, "")])
    return _value({"v": args.get("status")}), found


def _value(part: dict) -> str:
    """A part's value as text, whatever its type (valueCode, valueString, valueCoding...)."""
    value = next((v for k, v in part.items() if k.startswith("value") or k == "v"), "")
    if isinstance(value, dict):
        value = value.get("code", "")
    return "" if value is None or isinstance(value, list | dict) else str(value)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _state(m: db.Message) -> str:
    if m.read_at is not None:
        return "read"
    if m.delivered is not None:
        return "delivered"
    return "published" if m.published is not None else "queued"


def _status(m: db.Message, deadline: int) -> dict:
    return {"resourceType": "Parameters", "parameter": _summary(m, deadline)["part"]}


def _summary(m: db.Message, deadline: int) -> dict:
    parts = [
        {"name": "id", "valueString": m.id},
        {"name": "type", "valueCoding": {"system": rules.FUNCTION_SYSTEM, "code": m.type}},
        {"name": "sender", "valueString": m.sender},
        {"name": "receiver", "valueString": m.receiver},
        {"name": "state", "valueCode": _state(m)},
        {"name": "sent", "valueDateTime": _iso(m.created)},
    ]
    for name, ms in (("published", m.published), ("delivered", m.delivered), ("read", m.read_at)):
        if ms is not None:
            parts.append({"name": name, "valueDateTime": _iso(ms)})
    if m.refers:
        parts.append({"name": "refers", "valueString": m.refers})
    if m.receipt:
        parts.append(_receipt_part(m))
    elif m.type != rules.APPREC:
        parts.append({"name": "overdue", "valueBoolean": m.created < deadline})
    return {"name": "message", "part": parts}


def _receipt_part(m: db.Message) -> dict:
    status = m.receipt or ""
    part = [
        {"name": "id", "valueString": m.receipt_id or ""},
        {
            "name": "status",
            "valueCoding": {
                "system": rules.STATUS_SYSTEM,
                "code": status,
                "display": rules.STATUS_TEXT.get(status, status),
            },
        },
        {"name": "received", "valueDateTime": _iso(m.receipt_at)},
    ]
    for code, text in m.errors or []:
        part.append(
            {
                "name": "error",
                "part": [
                    {"name": "code", "valueCoding": {"system": rules.ERROR_SYSTEM, "code": code}},
                    {"name": "text", "valueString": text},
                ],
            }
        )
    return {"name": "receipt", "part": part}


def _audit(request, row: db.Message, action: str, interaction: str) -> None:
    if request.context is not None:
        request.context.record(
            action=action,
            subtype=interaction,
            patient_id=row.patient,
            entities=[f"Patient/{row.patient}"] if row.patient else [],
            query=f"message={row.id} type={row.type} from={row.sender} to={row.receiver}",
        )
