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
    "HENVISNING": "ServiceRequest",  # referral
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


def her_of(reference: object) -> str | None:
    """The HER-id a Reference carries in its identifier (``urn:oid:2.16.578.1.12.4.1.2``)."""
    if not isinstance(reference, dict):
        return None
    ident = reference.get("identifier")
    if isinstance(ident, dict) and ident.get("system") == OID_HER_ID:
        value = ident.get("value")
        return value if isinstance(value, str) and value.isdigit() else None
    return None


def header_of(bundle: object) -> dict:
    """The MessageHeader of a message Bundle; ValueError saying what is wrong."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ValueError("a message is a Bundle")
    if bundle.get("type") != "message":
        raise ValueError("the Bundle's type must be 'message'")
    entries = bundle.get("entry")
    first = entries[0].get("resource") if isinstance(entries, list) and entries else None
    if not isinstance(first, dict) or first.get("resourceType") != "MessageHeader":
        raise ValueError("a message Bundle's first entry must be its MessageHeader")
    return first


def envelope_of(bundle: object) -> Envelope:
    """The envelope of a FHIR message; ValueError saying what is missing or wrong."""
    header = header_of(bundle)
    event = header.get("eventCoding") or {}
    if event.get("system") != FUNCTION_SYSTEM or event.get("code") not in TYPES:
        raise ValueError(
            f"MessageHeader.eventCoding must be a code of {FUNCTION_SYSTEM}: "
            + ", ".join(sorted(TYPES))
        )
    id_ = header.get("id")
    if not isinstance(id_, str) or not id_:
        raise ValueError("the MessageHeader needs an id: the message's id")
    sender = her_of(header.get("sender"))
    if sender is None:
        raise ValueError("MessageHeader.sender must carry the sender's HER-id as identifier")
    receivers = [her_of(d.get("receiver")) for d in header.get("destination") or []]
    if len(receivers) != 1 or receivers[0] is None:
        raise ValueError(
            "a message has one destination whose receiver carries the receiver's HER-id"
        )
    envelope = Envelope(id_, event["code"], sender, receivers[0])
    if envelope.type == APPREC:
        _receipt_parts(header, envelope, bundle)  # type: ignore[arg-type]  # header_of checked it
    return envelope


def _receipt_parts(header: dict, envelope: Envelope, bundle: dict) -> None:
    response = header.get("response") or {}
    original = response.get("identifier")
    if not isinstance(original, str) or not original:
        raise ValueError("an APPREC's MessageHeader.response.identifier names the original")
    envelope.refers = original
    status = next(
        (
            e.get("valueCoding", {}).get("code")
            for e in response.get("extension") or []
            if e.get("url") == STATUS_EXTENSION
        ),
        None,
    )
    if status not in STATUS_TEXT:
        raise ValueError(f"an APPREC's status ({STATUS_EXTENSION}) is 1, 2 or 3 ({STATUS_SYSTEM})")
    envelope.status = status
    envelope.errors = errors_of(_entry(bundle, (response.get("details") or {}).get("reference")))


def _entry(bundle: dict, url: object) -> dict | None:
    """The resource of the entry whose fullUrl is ``url``."""
    for entry in bundle.get("entry") or []:
        if isinstance(entry, dict) and url and entry.get("fullUrl") == url:
            return entry.get("resource")
    return None


def errors_of(outcome: object) -> list[list[str]]:
    """[[code, text], ...] of kodeverk 8221 in an OperationOutcome."""
    found: list[list[str]] = []
    issues = outcome.get("issue") if isinstance(outcome, dict) else None
    for issue in issues if isinstance(issues, list) else []:
        for coding in ((issue or {}).get("details") or {}).get("coding") or []:
            if coding.get("system") == ERROR_SYSTEM and coding.get("code"):
                text = (issue.get("details") or {}).get("text") or ERRORS.get(coding["code"], "")
                found.append([coding["code"], str(text)[:500]])
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
    return [
        e["resource"]
        for e in bundle.get("entry", [])[1:]
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    ]


def patient_number(bundle: dict) -> str:
    """The national id (FNR or D-number) of the message's patient, checked; Rejection with
    E30 (missing) or E31 (not a valid number)."""
    patients = [r for r in resources(bundle) if r.get("resourceType") == "Patient"]
    numbers = [
        i.get("value")
        for p in patients
        for i in p.get("identifier") or []
        if isinstance(i, dict) and i.get("system") in (OID_FNR, OID_DNR)
    ]
    if not numbers or not isinstance(numbers[0], str):
        raise Rejection("E30")
    if not is_valid_fnr(numbers[0]):
        raise Rejection("E31")
    return numbers[0]


def check_content(message_type: str, bundle: dict) -> dict:
    """The focus resource the type requires, present and named by MessageHeader.focus;
    Rejection T99 naming what is missing."""
    wanted = CONTENT[message_type]
    found = [r for r in resources(bundle) if r.get("resourceType") == wanted]
    if not found:
        raise Rejection("T99", f"a {message_type} message carries a {wanted}")
    focus = header_of(bundle).get("focus") or []
    if not focus:
        raise Rejection("T99", f"MessageHeader.focus must name the {wanted}")
    return found[0]


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
