"""What the message centre's pages show, as pure functions of the API's answers: a message's
summary (from ``$messages`` and ``$message-status``), its content as plain text (a referral,
a discharge summary's sections, a dialogue message and its attachments), and the labels of
the codes.  No I/O; the XHTML of a message is reduced to text here, never shown as HTML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from html.parser import HTMLParser

from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR
from enjournal.services.messaging import rules
from enjournal.web.i18n import N_

# The message types (kodeverk 8279) by their Norwegian names, the states and receipts: as
# messages of the catalogues (English msgids, bokmål and nynorsk translations).
TYPES = {
    "HENVIS": N_("Referral"),
    "EPIKRISE": N_("Discharge summary"),
    "DIALOG_HELSEFAGLIG": N_("Dialogue message: clinical"),
    "DIALOG_FORESPORSEL": N_("Dialogue message: question"),
    "DIALOG_SVAR": N_("Dialogue message: answer"),
    "DIALOG_NOTAT": N_("Dialogue message: note"),
    rules.APPREC: N_("Application receipt"),
}
STATES = {
    "queued": N_("queued"),
    "published": N_("sent"),
    "delivered": N_("delivered"),
    "read": N_("read"),
}
RECEIPTS = {
    rules.OK: N_("OK"),
    rules.REJECTED: N_("Rejected"),
    rules.PARTLY_OK: N_("OK with an error in a part"),
}
MAX_TEXT = 20_000  # characters of one text shown (a section, a note); more is cut
# A page reads a bounded part of any message, whatever it holds: it may be one its receiver
# rejected (it is in the inbox all the same), so nothing about its shape or size is trusted.
MAX_RESOURCES, MAX_ITEMS = 50, 50  # resources read, sections and attachments shown
MAX_MARKUP = 200_000  # characters of a narrative parsed (its first MAX_TEXT are shown)
UNREADABLE = N_("Part of the message could not be read and is not shown.")
MALFORMED = (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError)
FHIR_DATE = re.compile(
    r"\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])(T[0-2]\d:[0-5]\d(:[0-5]\d(\.\d+)?)?(Z|[+-][01]\d:[0-5]\d))?)?)?"
)


@dataclass
class Summary:
    """One message as ``$messages`` or ``$message-status`` describe it."""

    id: str
    type: str
    sender: str
    receiver: str
    state: str
    sent: str | None = None
    delivered: str | None = None
    read: str | None = None
    overdue: bool = False
    receipt: str | None = None  # kodeverk 8258: 1, 2, 3
    receipt_at: str | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def unread(self) -> bool:
        return self.read is None


def summaries(answer: dict) -> list[Summary]:
    """The messages of a ``$messages`` answer."""
    return [summary(p.get("part") or []) for p in answer.get("parameter") or []]


def status(answer: dict) -> Summary:
    """The message of a ``$message-status`` answer."""
    return summary(answer.get("parameter") or [])


def summary(parts: list[dict]) -> Summary:
    values = {p.get("name"): p for p in parts}
    found = Summary(
        id=_string(values.get("id")),
        type=str((values.get("type") or {}).get("valueCoding", {}).get("code", "")),
        sender=_string(values.get("sender")),
        receiver=_string(values.get("receiver")),
        state=str((values.get("state") or {}).get("valueCode", "")),
        sent=_time(values.get("sent")),
        delivered=_time(values.get("delivered")),
        read=_time(values.get("read")),
        overdue=(values.get("overdue") or {}).get("valueBoolean") is True,
    )
    if "receipt" in values:
        _receipt(found, values["receipt"].get("part") or [])
    return found


def _receipt(found: Summary, parts: list[dict]) -> None:
    for part in parts:
        if part.get("name") == "status":
            found.receipt = str((part.get("valueCoding") or {}).get("code", ""))
        elif part.get("name") == "received":
            found.receipt_at = part.get("valueDateTime")
        elif part.get("name") == "error":
            error = {p.get("name"): p for p in part.get("part") or []}
            code = str((error.get("code") or {}).get("valueCoding", {}).get("code", ""))
            found.errors.append((code, _string(error.get("text"))))


def _string(part: dict | None) -> str:
    return str((part or {}).get("valueString") or "")


def _time(part: dict | None) -> str | None:
    return (part or {}).get("valueDateTime")


def newest_first(found: list[Summary], unread_first: bool = False) -> list[Summary]:
    """By time sent, the newest first; the unread before the read when asked."""
    ordered = sorted(found, key=lambda s: s.sent or "", reverse=True)
    return sorted(ordered, key=lambda s: not s.unread) if unread_first else ordered


# --- the content -----------------------------------------------------------------------------


@dataclass
class Section:
    title: str
    text: str
    label: bool = True  # the title is a message of the catalogues (else the message's own)


@dataclass
class Attachment:
    title: str
    content_type: str
    size: int | None


@dataclass
class Content:
    """What a message says, as text only."""

    patient: str = ""  # name
    patient_id: str = ""  # fødselsnummer or D-number
    title: str = ""
    date: str = ""  # a discharge summary's date (FHIR dateTime)
    sections: list[Section] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be read


def content_of(bundle: object) -> Content:
    """The readable content of a FHIR message Bundle (a partial one when it is odd)."""
    found = Content()
    try:
        header = rules.header_of(bundle)
    except ValueError as error:
        found.problems.append(str(error))
        return found
    kind = str(rules.obj(header.get("eventCoding")).get("code", ""))
    for resource in rules.resources(bundle)[:MAX_RESOURCES]:  # type: ignore[arg-type]
        try:
            _add(found, kind, resource)
        except MALFORMED:  # a field of a shape FHIR does not allow: shown as far as it goes
            if UNREADABLE not in found.problems:
                found.problems.append(UNREADABLE)
    found.sections, found.attachments = found.sections[:MAX_ITEMS], found.attachments[:MAX_ITEMS]
    if found.date and not _valid_date(found.date):
        _section(found, N_("Date"), found.date[:100])
        found.date = ""
    return found


def _valid_date(text: str) -> bool:
    """A FHIR date or dateTime that names a real day (the page formats it)."""
    if not FHIR_DATE.fullmatch(text):
        return False
    if len(text) >= 10:
        try:
            date.fromisoformat(text[:10])
        except ValueError:
            return False
    return True


def _add(found: Content, kind: str, resource: dict) -> None:
    type_ = resource.get("resourceType")
    if type_ == "Patient" and not found.patient_id:
        found.patient, found.patient_id = patient_name(resource), patient_number(resource)
    elif type_ == "ServiceRequest":
        _referral(found, resource)
    elif type_ == "Composition":
        _composition(found, resource)
    elif type_ == "Communication":
        _communication(found, resource)


def patient_name(patient: dict) -> str:
    for name in patient.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        parts = [*name.get("given", []), name.get("family", "")]
        if any(parts):
            return " ".join(str(p) for p in parts if p)
    return ""


def patient_number(patient: dict) -> str:
    for ident in patient.get("identifier") or []:
        if ident.get("system") in (OID_FNR, OID_DNR) and ident.get("value"):
            return str(ident["value"])
    return ""


def _referral(found: Content, request: dict) -> None:
    found.title = found.title or concept_text(request.get("code"))
    _section(found, N_("Asked for"), concept_text(request.get("code")))
    reasons = [concept_text(c) for c in request.get("reasonCode") or []]
    _section(found, N_("Reason"), "\n".join(r for r in reasons if r))
    _section(found, N_("Priority"), str(request.get("priority") or ""))
    notes = [str(n.get("text") or "") for n in request.get("note") or []]
    _section(found, N_("Note"), "\n\n".join(n for n in notes if n))


def _composition(found: Content, composition: dict) -> None:
    found.title = found.title or str(composition.get("title") or "")
    authors = [str(a.get("display") or "") for a in composition.get("author") or []]
    _section(found, N_("Author"), ", ".join(a for a in authors if a))
    found.date = found.date or str(composition.get("date") or "")
    for section in composition.get("section") or []:
        _composition_section(found, section)


def _composition_section(found: Content, section: dict, depth: int = 0) -> None:
    div = (section.get("text") or {}).get("div")
    title = str(section.get("title") or "") or concept_text(section.get("code"))
    text = text_of_xhtml(div) if isinstance(div, str) else ""
    _section(found, title or N_("Section"), text, label=not title)
    if depth < 3:
        for inner in section.get("section") or []:
            _composition_section(found, inner, depth + 1)


def _communication(found: Content, communication: dict) -> None:
    for payload in communication.get("payload") or []:
        if isinstance(payload.get("contentString"), str):
            _section(found, N_("Message"), payload["contentString"])
        attachment = payload.get("contentAttachment")
        if isinstance(attachment, dict):
            found.attachments.append(attachment_of(attachment))


def attachment_of(attachment: dict) -> Attachment:
    size = attachment.get("size")
    return Attachment(
        title=str(attachment.get("title") or attachment.get("url") or ""),
        content_type=str(attachment.get("contentType") or ""),
        size=size if isinstance(size, int) else None,
    )


def _section(found: Content, title: str, text: str, label: bool = True) -> None:
    if text.strip():
        found.sections.append(Section(title, text.strip()[:MAX_TEXT], label))


def concept_text(concept: object) -> str:
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    shown = [str(c.get("display") or c.get("code") or "") for c in concept.get("coding") or []]
    return ", ".join(s for s in shown if s)


# --- XHTML as text ---------------------------------------------------------------------------

_BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}
_SKIPPED = {"script", "style"}


class _Text(HTMLParser):
    """The text of an XHTML fragment: the characters only, a line break per block."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in _SKIPPED:
            self.skipping += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in _SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def text_of_xhtml(div: str) -> str:
    """A narrative's text, without its markup (shown escaped, as text)."""
    parser = _Text()
    parser.feed(div[:MAX_MARKUP])
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    return "\n".join(line for line in lines if line)
