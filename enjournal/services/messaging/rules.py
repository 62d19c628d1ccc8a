"""Messaging's rules as plain functions: the message types, what each must carry, the
application receipt (AppRec) and its codes.  No I/O.

A message is a FHIR ``message`` Bundle whose first entry is a MessageHeader: its
``eventCoding`` is the message's function (kodeverk 8279, "Meldingens funksjon"), its
``sender`` and ``destination.receiver`` carry HER-ids, ``focus`` names the clinical content.
An application receipt is a message of type APPREC whose ``MessageHeader.response`` names the
original message; its status (kodeverk 8258) is in an extension, its errors (kodeverk 8221)
in the OperationOutcome of ``response.details``.  domain.md section 5 and 10.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR, OID_HER_ID, is_valid_fnr

FUNCTION_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.8279"  # Meldingens funksjon
STATUS_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.8258"  # AppRec status
ERROR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.8221"  # AppRec error codes
STATUS_EXTENSION = "http://enjournal.no/fhir/StructureDefinition/apprec-status"
# The type of the message a receipt answers (AppRec's OriginalMsgId/MsgType)
ORIGINAL_TYPE_EXTENSION = "http://enjournal.no/fhir/StructureDefinition/apprec-original-type"
FHIR_JSON, XML = "application/fhir+json", "application/xml"

APPREC = "APPREC"
# Each message type and the resource its MessageHeader.focus must name.
CONTENT: dict[str, str] = {
    "HENVIS": "ServiceRequest",  # referral
    "EPIKRISE": "Composition",  # discharge summary
    "DIALOG_HELSEFAGLIG": "Communication",  # dialogue message: clinical question or note
    "DIALOG_FORESPORSEL": "Communication",  # dialogue message: question
    "DIALOG_SVAR": "Communication",  # dialogue message: answer
    "DIALOG_NOTAT": "Communication",  # dialogue message: note
}
TYPES = frozenset({*CONTENT, APPREC})

OK, REJECTED, PARTLY_OK = "1", "2", "3"  # kodeverk 8258
STATUS_TEXT = {OK: "OK", REJECTED: "Avvist", PARTLY_OK: "OK, feil i delmelding"}
RESPONSE_CODE = {OK: "ok", REJECTED: "fatal-error", PARTLY_OK: "ok"}  # MessageHeader.response
# Kodeverk 8221, the application receipt's error codes (those the platform uses or accepts).
ERRORS: dict[str, str] = {
    "E10": "Ugyldig meldingsidentifikator",
    "E20": "Lege finnes ikke",
    "E21": "Mottaker finnes ikke",
    "E30": "Pasientens fødselsnummer mangler",
    "E31": "Pasientens fødselsnummer er feil",
    "E32": "Pasientens navn mangler",
    "E35": "Pasienten finnes ikke i mottakersystemet",
    "E36": "Pasientopplysninger er utilstrekkelige",
    "S01": "Feil på signatur",
    "S02": "Ugyldig sertifikat",
    "S03": "Tilbaketrukket sertifikat",
    "S99": "Annen feil på signatur eller sertifikat",
    "T01": "Ikke XML / ikke 'well formed' / uleselig",
    "T02": "XML validerer ikke",
    "T10": "Støtter ikke meldingsformatet",
    "T99": "Annen feil på format",
    "X99": "Annen feil",
}


class Rejection(Exception):
    """The receiver's system refuses a message: an AppRec with status 2 and ``code``."""

    def __init__(self, code: str, text: str | None = None):
        super().__init__(text or ERRORS.get(code, code))
        self.code, self.text = code, text or ERRORS.get(code, code)


@dataclass
class Envelope:
    """What the transport needs of a message: from its MessageHeader (or MsgHead)."""

    id: str
    type: str
    sender: str  # HER-id
    receiver: str  # HER-id
    refers: str | None = None  # APPREC: the original message's id
    status: str | None = None  # APPREC: kodeverk 8258
    errors: list[list[str]] = field(default_factory=list)  # APPREC: [[code, text], ...]


def obj(value: object) -> dict:
    """``value`` if it is a JSON object, else an empty one: a message is read field by field
    without trusting its shape (any JSON may arrive)."""
    return value if isinstance(value, dict) else {}


def objects(value: object) -> list[dict]:
    """The JSON objects of ``value`` if it is a list (others left out), else none."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


MESSAGE_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")


def valid_id(value: object) -> bool:
    """A message id (MsgHead's MsgId too): 1 to 200 letters, digits and ``._:-``, so it is
    safe in a URL path and a link as it is (a UUID is the usual one)."""
    return isinstance(value, str) and MESSAGE_ID.fullmatch(value) is not None


def her_of(reference: object) -> str | None:
    """The HER-id a Reference carries in its identifier (``urn:oid:2.16.578.1.12.4.1.2``)."""
    ident = obj(obj(reference).get("identifier"))
    value = ident.get("value")
    if ident.get("system") == OID_HER_ID and isinstance(value, str):
        return value if value.isdigit() and len(value) <= 12 else None
    return None


def header_of(bundle: object) -> dict:
    """The MessageHeader of a message Bundle; ValueError saying what is wrong."""
    if obj(bundle).get("resourceType") != "Bundle":
        raise ValueError("a message is a Bundle")
    if obj(bundle).get("type") != "message":
        raise ValueError("the Bundle's type must be 'message'")
    entries = objects(obj(bundle).get("entry"))
    first = obj(entries[0].get("resource")) if entries else {}
    if first.get("resourceType") != "MessageHeader":
        raise ValueError("a message Bundle's first entry must be its MessageHeader")
    return first


def envelope_of(bundle: object) -> Envelope:
    """The envelope of a FHIR message; ValueError saying what is missing or wrong."""
    header = header_of(bundle)
    event = obj(header.get("eventCoding"))
    code = event.get("code")
    if event.get("system") != FUNCTION_SYSTEM or not isinstance(code, str) or code not in TYPES:
        raise ValueError(
            f"MessageHeader.eventCoding must be a code of {FUNCTION_SYSTEM}: "
            + ", ".join(sorted(TYPES))
        )
    id_ = header.get("id")
    if not valid_id(id_):
        raise ValueError(
            "the MessageHeader's id is the message's id: 1-200 letters, digits and ._:-"
        )
    sender = her_of(header.get("sender"))
    if sender is None:
        raise ValueError("MessageHeader.sender must carry the sender's HER-id as identifier")
    destinations = header.get("destination")
    one = isinstance(destinations, list) and len(destinations) == 1
    receiver = her_of(obj(destinations[0]).get("receiver")) if one else None  # type: ignore[index]
    if receiver is None:
        raise ValueError(
            "a message has one destination whose receiver carries the receiver's HER-id"
        )
    envelope = Envelope(str(id_), code, sender, receiver)
    if envelope.type == APPREC:
        _receipt_parts(header, envelope, obj(bundle))
    return envelope


def _receipt_parts(header: dict, envelope: Envelope, bundle: dict) -> None:
    response = obj(header.get("response"))
    original = response.get("identifier")
    if not valid_id(original):
        raise ValueError("an APPREC's MessageHeader.response.identifier names the original")
    envelope.refers = str(original)
    codes = [
        obj(e.get("valueCoding")).get("code")
        for e in objects(response.get("extension"))
        if e.get("url") == STATUS_EXTENSION
    ]
    status = codes[0] if codes and isinstance(codes[0], str) else None
    if status not in STATUS_TEXT:
        raise ValueError(f"an APPREC's status ({STATUS_EXTENSION}) is 1, 2 or 3 ({STATUS_SYSTEM})")
    envelope.status = status
    envelope.errors = errors_of(_entry(bundle, obj(response.get("details")).get("reference")))


def _entry(bundle: dict, url: object) -> dict | None:
    """The resource of the entry whose fullUrl is ``url``."""
    for entry in objects(bundle.get("entry")):
        if url and entry.get("fullUrl") == url:
            return obj(entry.get("resource"))
    return None


def errors_of(outcome: object) -> list[list[str]]:
    """[[code, text], ...] of kodeverk 8221 in an OperationOutcome."""
    found: list[list[str]] = []
    for issue in objects(obj(outcome).get("issue")):
        details = obj(issue.get("details"))
        for coding in objects(details.get("coding")):
            code = coding.get("code")
            if coding.get("system") == ERROR_SYSTEM and isinstance(code, str) and code:
                text = details.get("text") or ERRORS.get(code, "")
                found.append([code[:10], str(text)[:500]])
    return found


def check_receipt(status: str, errors: list[list[str]]) -> str | None:
    """Why a receipt may not be sent as it is (None: it may)."""
    if status not in STATUS_TEXT:
        return "the receipt's status is 1 (OK), 2 (rejected) or 3 (OK with an error in part)"
    if status != OK and not errors:
        return "a receipt that is not OK names at least one error (kodeverk 8221)"
    unknown = [code for code, _ in errors if code not in ERRORS]
    if unknown:
        return f"unknown error code(s) {', '.join(unknown)}: use kodeverk 8221"
    return None


def resources(bundle: dict) -> list[dict]:
    """The resources of a message Bundle after its MessageHeader."""
    entries = objects(bundle.get("entry"))[1:]
    return [obj(e.get("resource")) for e in entries if isinstance(e.get("resource"), dict)]


def patient_number(bundle: dict) -> str:
    """The national id (FNR or D-number) of the message's patient, checked; Rejection with
    E30 (missing) or E31 (not a valid number)."""
    patients = [r for r in resources(bundle) if r.get("resourceType") == "Patient"]
    numbers = [
        i.get("value")
        for p in patients
        for i in objects(p.get("identifier"))
        if i.get("system") in (OID_FNR, OID_DNR)
    ]
    if not numbers or not isinstance(numbers[0], str):
        raise Rejection("E30")
    if not is_valid_fnr(numbers[0]):
        raise Rejection("E31")
    return numbers[0]


# What each type may carry besides its Patient: its content, and attachments as
# DocumentReferences; nothing else is imported into the record, so a message of one type
# cannot write another's content (a referral's care relationship, a discharge summary).
ATTACHMENTS = "DocumentReference"
MAX_ATTACHMENTS = 20
DISCHARGE_SUMMARY = ("http://loinc.org", "18842-5")


def check_content(message_type: str, bundle: dict) -> dict:
    """The message's one content resource, of the type its message type needs and named by
    MessageHeader.focus, and nothing but attachments beside it; Rejection T99 saying what
    is wrong."""
    wanted = CONTENT[message_type]
    carried = [r for r in resources(bundle) if r.get("resourceType") != "Patient"]
    found = [r for r in carried if r.get("resourceType") == wanted]
    if len(found) != 1:
        raise Rejection("T99", f"a {message_type} message carries one {wanted}")
    others = {str(r.get("resourceType")) for r in carried} - {wanted, ATTACHMENTS}
    if others:
        raise Rejection(
            "T99", f"a {message_type} message carries no {', '.join(sorted(others))[:200]}"
        )
    if len(carried) - 1 > MAX_ATTACHMENTS:
        raise Rejection("T99", f"a message carries at most {MAX_ATTACHMENTS} attachments")
    if not objects(header_of(bundle).get("focus")):
        raise Rejection("T99", f"MessageHeader.focus must name the {wanted}")
    if message_type == "EPIKRISE" and not _coded(found[0].get("type"), DISCHARGE_SUMMARY):
        raise Rejection(
            "T99", "an EPIKRISE's Composition.type is LOINC 18842-5 (discharge summary)"
        )
    return found[0]


def _coded(concept: object, wanted: tuple[str, str]) -> bool:
    return any(
        (c.get("system"), c.get("code")) == wanted for c in objects(obj(concept).get("coding"))
    )


def receipt_message(
    original: Envelope, status: str, errors: list[list[str]], now_iso: str, source: str
) -> dict:
    """The APPREC for ``original``: from its receiver back to its sender."""
    issues = [
        {
            "severity": "error" if status == REJECTED else "warning",
            "code": "processing",
            "details": {"coding": [{"system": ERROR_SYSTEM, "code": code}], "text": text},
        }
        for code, text in errors
    ]
    response: dict = {
        "identifier": original.id,
        "code": RESPONSE_CODE[status],
        "extension": [
            {
                "url": STATUS_EXTENSION,
                "valueCoding": {
                    "system": STATUS_SYSTEM,
                    "code": status,
                    "display": STATUS_TEXT[status],
                },
            }
        ],
    }
    if original.type:
        response["extension"].append(
            {
                "url": ORIGINAL_TYPE_EXTENSION,
                "valueCoding": {"system": FUNCTION_SYSTEM, "code": original.type},
            }
        )
    entries: list[dict] = []
    if issues:
        outcome_id = str(uuid.uuid4())
        response["details"] = {"reference": f"urn:uuid:{outcome_id}"}
        entries.append(
            {
                "fullUrl": f"urn:uuid:{outcome_id}",
                "resource": {"resourceType": "OperationOutcome", "issue": issues},
            }
        )
    header = message_header(str(uuid.uuid4()), APPREC, original.receiver, original.sender, source)
    header["response"] = response
    return message_bundle(header, entries, now_iso)


def message_header(id_: str, type_: str, sender: str, receiver: str, source: str) -> dict:
    return {
        "resourceType": "MessageHeader",
        "id": id_,
        "eventCoding": {"system": FUNCTION_SYSTEM, "code": type_},
        "destination": [
            {
                "endpoint": f"urn:her:{receiver}",
                "receiver": {"identifier": {"system": OID_HER_ID, "value": receiver}},
            }
        ],
        "sender": {"identifier": {"system": OID_HER_ID, "value": sender}},
        "source": {"endpoint": source},
    }


def message_bundle(header: dict, entries: list[dict], now_iso: str) -> dict:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "message",
        "timestamp": now_iso,
        "entry": [{"fullUrl": f"urn:uuid:{header['id']}", "resource": header}, *entries],
    }


def backoff_ms(attempt: int, base_ms: int = 1000, cap_ms: int = 300_000) -> int:
    """Wait before delivery ``attempt`` (1, 2, ...): doubling from ``base_ms``, capped."""
    return min(cap_ms, base_ms * 2 ** max(0, attempt - 1))
