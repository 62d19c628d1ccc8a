"""Receiving: what the hub does with each message the transport delivers, in one database
transaction per batch: the inbox (a redelivered message has no second effect), the receiver's
checks, the import of the clinical content into the record, the ledger, and the application
receipt, which goes into the outbox in that same transaction.

The receiver's system decides automatically where it can (domain.md 10, kodeverk 8221): a
body that is not XML (T01), XML that does not validate (T02), a format it does not take
(T10), content that is not what the type needs (T99), the patient's national id missing
(E30) or wrong (E31), a patient the record does not know (E35): each is answered with an
AppRec "avvist" (2) at once.  An accepted message is answered OK by its receiver's system
when the address register says that system answers automatically, else by a person
(``$message-receipt``).  A receipt is never answered.

Imported content becomes part of the shared record: a referral's ServiceRequest names the
receiver as performer (which gives the receiving organisation its care relationship, and
nobody else: the sender cannot name a third party), a discharge summary's Composition is
the patient's for the GP to read, a dialogue message is a Communication to the receiver.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import orjson

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Busy, FhirError
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR
from enjournal.security.audit import append
from enjournal.security.audit.events import audit_event
from enjournal.security.principal import Principal
from enjournal.services.messaging import rules
from enjournal.services.messaging.addresses import find_party
from enjournal.services.messaging.sending import ledger_row
from enjournal.services.messaging.transport import Envelope, Outcome
from enjournal.storage import messaging as db
from enjournal.storage import storage_unavailable

log = logging.getLogger("enjournal.messaging")
IMPORTED = (*rules.CONTENT.values(), rules.ATTACHMENTS)  # check_content allows one type each
STORAGE_WAITS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # seconds: about half a minute in all
# Errors that malformed content (not the database or the transport) raises while it is read:
# answered with a T99 receipt, never retried.
MALFORMED = (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError)
HUB = Principal("system", "messaging-hub", "messaging-hub", frozenset(), "Meldingsformidler")


class _StorageDown(Exception):
    """The database cannot be reached: no message is to blame."""


class _Redo(Exception):
    """A write was refused after others of the same message: redo it in its own transaction."""

    def __init__(self, rejection: rules.Rejection):
        self.rejection = rejection


class Receiver:
    def __init__(self, platform):
        self.platform = platform
        self.counts: dict[str, int] = {}

    @property
    def store(self):
        return self.platform.store

    def now(self) -> int:
        return int(self.platform.clock().timestamp() * 1000)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    async def handle(self, batch: list[Envelope]) -> list[Outcome]:
        """The transport's handler.  While the database is away the batch waits here, with
        a doubling pause (the next messages would fail alike), without using up its
        deliveries; after ``STORAGE_WAITS`` it goes back to the transport for later."""
        for pause in (*STORAGE_WAITS, None):
            try:
                return await self._handle(batch)
            except _StorageDown as down:
                if pause is None:
                    break
                log.warning(
                    "messaging: the database is unavailable (%s); waiting %s s", down, pause
                )
                await asyncio.sleep(pause)
        return ["retry"] * len(batch)

    async def _handle(self, batch: list[Envelope]) -> list[Outcome]:
        """One transaction for the batch; on any failure each message alone, so one bad
        message costs only itself a retry."""
        try:
            return await self._batch(batch)
        except _Redo as redo:
            if len(batch) == 1:
                return [await self._rejected_alone(batch[0], redo.rejection)]
        except Exception as error:
            if storage_unavailable(error):
                raise _StorageDown(type(error).__name__) from error
            if len(batch) == 1:
                log.exception("message %s failed; delivered again later", batch[0].id[:100])
                return ["retry"]
        return [(await self._handle([envelope]))[0] for envelope in batch]

    async def _rejected_alone(self, envelope: Envelope, rejection: rules.Rejection) -> Outcome:
        """A message whose import failed half way: rolled back, now only rejected."""
        now = self.now()
        async with self.store.transaction() as tx:
            state, known = await db.take_delivery(tx, envelope.id, now)
            if state == db.DUPLICATE:
                return "ack"
            _, header = self._read(envelope, known)
            if known is None:
                await db.record(tx, _foreign_row(header, envelope, now))
            await self._answer(
                tx, header, envelope.content_type, rules.REJECTED, rejection, now,
                local=known is not None,
            )  # fmt: skip
        return "ack"

    async def _batch(self, batch: list[Envelope]) -> list[Outcome]:
        async with self.store.transaction() as tx:
            events: list[dict] = []
            outcomes = [await self._one(tx, e, events, alone=len(batch) == 1) for e in batch]
            if events:
                await tx.flush()
                await append(tx, events)
        return outcomes

    async def _one(self, tx, envelope: Envelope, events: list, alone: bool) -> Outcome:
        now = self.now()
        state, known = await db.take_delivery(tx, envelope.id, now)
        if state == db.DUPLICATE:
            self.count("duplicate")
            return "ack"
        try:
            bundle, header = self._read(envelope, known)
        except rules.Rejection as rejection:
            if known is None:  # nobody to answer: the dead-letter queue keeps it for a person
                self.count("unreadable")
                return "dead"
            header = _envelope_of(known)
            await self._answer(
                tx, header, known.content_type, rules.REJECTED, rejection, now, local=True
            )
            return "ack"
        if known is None:  # another hub's message: the receiver's ledger row
            await db.record(tx, _foreign_row(header, envelope, now))
        if header.type == rules.APPREC:
            await self._receipt(tx, header, now)
            return "ack"
        try:
            patient, created = await self._import(tx, header, bundle, alone)
        except rules.Rejection as rejection:
            await self._answer(
                tx, header, envelope.content_type, rules.REJECTED, rejection, now,
                local=known is not None,
            )  # fmt: skip
            return "ack"
        if known is None or known.patient != patient:  # usually found when it was sent
            await db.set_patient(tx, header.id, patient)
        events.append(_import_event(header, patient, created, now))
        party = await find_party(tx, header.receiver)
        if party is not None and party.automatic_receipt:
            await self._answer(
                tx, header, envelope.content_type, rules.OK, None, now, local=known is not None
            )
        self.count("imported")
        return "ack"

    def _read(self, envelope: Envelope, known) -> tuple[dict, rules.Envelope]:
        """The message as a FHIR Bundle and its envelope, checked against the transport's;
        Rejection for what the receiver cannot read."""
        if envelope.content_type == rules.XML:
            from enjournal.services.messaging.xml import from_xml

            bundle = from_xml(envelope.body)
        else:
            try:
                bundle = orjson.loads(envelope.body)
            except orjson.JSONDecodeError:
                raise rules.Rejection("T99", "the message is not valid JSON") from None
        try:
            header = rules.envelope_of(bundle)
        except ValueError as error:
            raise rules.Rejection("T99", str(error)) from None
        if header.id != envelope.id or header.receiver != envelope.route:
            raise rules.Rejection("E10", "the message's id or receiver is not the envelope's")
        if known is not None and (known.sender, known.type) != (header.sender, header.type):
            raise rules.Rejection("E10", "the message's sender or type is not the one sent")
        return bundle, header

    async def _import(self, tx, header: rules.Envelope, bundle: dict, alone: bool):
        """Write the message's clinical content into the record; (patient id, references)."""
        rules.check_content(header.type, bundle)
        number = rules.patient_number(bundle)
        found = await tx.by_identifier("Patient", (OID_FNR, OID_DNR), number, limit=1)
        if not found:
            raise rules.Rejection("E35")
        patient = found[0].id
        party = await find_party(tx, header.receiver)
        try:
            for resource in rules.resources(bundle):  # as sent: what the sender vouches for
                if resource.get("resourceType") in IMPORTED:
                    _validate(resource)
            resources = _content(bundle, patient, header, party.reference if party else None)
        except MALFORMED:
            log.exception("message %s: content not readable", header.id[:100])
            raise rules.Rejection("T99", "the message's content could not be read") from None
        created: list[str] = []
        for resource in resources:
            try:
                stored = await tx.create(resource, id_=resource["id"])
            except Busy:
                raise  # the database, not the message: waited out in ``handle``
            except (FhirError, *MALFORMED) as error:
                text = error.message if isinstance(error, FhirError) else "not storable"
                rejection = rules.Rejection("T99", f"{resource['resourceType']}: {text}"[:500])
                if created or not alone:
                    raise _Redo(rejection) from None
                raise rejection from None
            created.append(f"{stored.type}/{stored.id}")
        return patient, created

    async def _receipt(self, tx, header, now: int) -> None:
        """An APPREC (in the sender's inbox now): the original's status in the sender's
        ledger.  Only the original's receiver may answer it."""
        original = await db.get(tx, header.refers or "")
        if original is None or (original.receiver, original.sender) != (
            header.sender,
            header.receiver,
        ):
            self.count("receipt-ignored")
            return
        await db.receipt(tx, original.id, header.id, header.status or "", header.errors, now)
        self.count("receipt")

    async def _answer(
        self, tx, header, content_type, status, rejection, now: int, *, local: bool
    ) -> None:
        """Send the AppRec for ``header`` (never for a receipt)."""
        if header.type == rules.APPREC:
            return
        errors = [[rejection.code, rejection.text]] if rejection else []
        await answer(tx, header, content_type, status, errors, now, self.platform, local=local)
        self.count("rejected" if status == rules.REJECTED else "answered")


async def answer(
    tx, original: rules.Envelope, content_type, status, errors, now, platform, *, local: bool
):
    """The AppRec for ``original``, in ``tx``; its id, or None if ``original`` has been
    answered already.  To a sender on this platform (``local``: its message was sent here)
    it is delivered in this same transaction: in the sender's inbox, and the original's
    status in its ledger, as the hub would do on receiving it.  To another hub's sender it
    goes into the outbox."""
    iso = platform.clock().isoformat()
    bundle = rules.receipt_message(original, status, errors, iso, platform.settings.fhir_base)
    if content_type == rules.XML:
        from enjournal.services.messaging.xml import to_xml

        body = to_xml(bundle)
    else:
        content_type, body = rules.FHIR_JSON, jsonio.dumps(bundle)
    receipt = rules.envelope_of(bundle)
    receipt.refers = original.id
    delivered = now if local else None
    message = ledger_row(receipt, content_type, body, now, published=delivered, delivered=delivered)
    if not await db.record(tx, message):
        return None
    if local:
        await db.receipt(tx, original.id, receipt.id, status, errors, now)
    else:
        await db.enqueue(tx, db.Outgoing(receipt.id, receipt.receiver, content_type, body, now))
    return receipt.id


def _envelope_of(row: db.Message) -> rules.Envelope:
    return rules.Envelope(row.id, row.type, row.sender, row.receiver, row.refers)


def _foreign_row(header: rules.Envelope, envelope: Envelope, now: int) -> db.Message:
    """The ledger row of a message another hub sent (none was written when it was sent),
    delivered now."""
    return ledger_row(header, envelope.content_type, envelope.body, now, delivered=now)


def _content(bundle: dict, patient: str, header: rules.Envelope, receiver: str | None) -> list:
    """The resources to import, with new ids and their references into the record."""
    entries = rules.objects(bundle.get("entry"))[1:]
    resources: list[dict] = [_as_dict(e.get("resource")) for e in entries]
    ids = [uuid.uuid4().hex for _ in entries]
    local: dict[str, str] = {}
    for entry, resource, new_id in zip(entries, resources, ids, strict=True):
        type_, url = resource.get("resourceType"), str(entry.get("fullUrl") or "")
        target = f"{type_}/{new_id}"
        # the patient is named only as the subject (``_address``): elsewhere (an author, a
        # sender) a reference to them is dropped, so content cannot pass as the patient's
        if type_ in IMPORTED:
            if url:
                local[url] = target
            if resource.get("id"):
                local[f"{type_}/{resource['id']}"] = target
    out = []
    for resource, new_id in zip(resources, ids, strict=True):
        if resource.get("resourceType") not in IMPORTED:
            continue
        copy = _relinked(resource, local)
        copy["id"] = new_id
        # the sender's tags and security labels are not ours to take (a kjernejournal tag, a
        # confidentiality label, "the patient's own"): meta says only where it came from
        copy["meta"] = {"source": f"urn:her:{header.sender}#{header.id}"[:200]}
        _address(copy, receiver, f"Patient/{patient}")
        out.append(copy)
    return out


def _as_dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _relinked(resource: dict, local: dict[str, str]) -> dict:
    """``resource`` with references to the message's entries pointing into the record; a
    reference to a resource the message does not carry is kept only as its display."""

    def walk(value):
        if isinstance(value, dict):
            out = {k: walk(v) for k, v in value.items()}
            ref = value.get("reference")
            if isinstance(ref, str) and not ref.startswith("#"):
                if ref in local:
                    out["reference"] = local[ref]
                else:
                    out.pop("reference")
                    if not out:
                        out["display"] = "(not part of the message)"
            return out
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(resource)


def _address(resource: dict, receiver: str | None, patient: str) -> None:
    """The message's patient as the subject, the receiver as the referral's performer or the
    dialogue's recipient: the envelope decides whom it is about and for, not the content."""
    resource["subject"] = {"reference": patient}
    if receiver is None:
        return
    if resource["resourceType"] == "ServiceRequest":
        resource["performer"] = [{"reference": receiver}]
    elif resource["resourceType"] == "Communication":
        resource["recipient"] = [{"reference": receiver}]


def _validate(resource: dict) -> None:
    from enjournal.fhir.validation import check

    try:
        check(resource)
    except FhirError as error:
        raise rules.Rejection("T99", f"{resource['resourceType']}: {error.message}"[:500]) from None


def _import_event(header: rules.Envelope, patient: str, created: list[str], now: int) -> dict:
    return audit_event(
        HUB,
        action="C",
        subtype="message-import",
        patient_id=patient,
        entities=created[:50],
        query=f"message={header.id} type={header.type} from={header.sender} to={header.receiver}",
        recorded_ms=now,
    )
