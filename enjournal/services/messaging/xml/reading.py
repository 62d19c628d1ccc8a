"""From KITH XML to the platform's FHIR message Bundle.

MsgHead 1.2 carrying a Dialogmelding (1.1, or 1.0) becomes a DIALOG_* message: its MsgInfo
the MessageHeader, its Patient a Patient entry, the Dialogmelding's Notat or Forespørsel a
Communication (the MessageHeader's focus) and each attached document (RefDoc of type "A"
with a base64 container) one of the Communication's attachments.  A standalone AppRec (1.0
or 1.1) becomes an APPREC message built by ``rules.receipt_message``.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from lxml import etree

from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR
from enjournal.services.messaging import rules
from enjournal.services.messaging.xml import names, parsing

OSLO = ZoneInfo("Europe/Oslo")
PATIENT_SYSTEMS = {"FNR": OID_FNR, "DNR": OID_DNR}
ORIGINAL_EXTENSION = rules.ORIGINAL_TYPE_EXTENSION


def from_xml(data: bytes) -> dict:
    """The FHIR message Bundle of a KITH XML message; ``rules.Rejection`` T01 (not XML), T02
    (not valid against its schema), T10 (a format or message type not supported), T99."""
    root = parsing.parse(data)
    parsing.check_supported(root)
    parsing.validate(root)
    if parsing.namespace_of(root) == names.MSGHEAD:
        return dialog_message(root)
    return receipt(root, parsing.namespace_of(root))


def child(element: etree._Element | None, *path: str) -> etree._Element | None:
    """The first element down ``path`` (local names, any namespace)."""
    for name in path:
        if element is None:
            return None
        element = element.find(f"{{*}}{name}")
    return element


def text(element: etree._Element | None, *path: str) -> str | None:
    found = child(element, *path)
    return found.text.strip() if found is not None and found.text else None


def value(element: etree._Element | None, *path: str, attribute: str = "V") -> str | None:
    found = child(element, *path)
    return found.get(attribute) if found is not None else None


def instant(xml_datetime: str | None) -> str:
    """An xs:dateTime as a FHIR instant; without a zone it is taken as Norwegian time."""
    try:
        moment = datetime.fromisoformat((xml_datetime or "").replace("Z", "+00:00"))
    except ValueError:
        raise rules.Rejection("T02", "GenDate is not a date and time Python reads") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=OSLO)
    return moment.isoformat()


# --- MsgHead with Dialogmelding ---------------------------------------------------------


def dialog_message(root: etree._Element) -> dict:
    info = child(root, "MsgInfo")
    type_ = value(info, "Type") or ""
    if type_ not in rules.CONTENT or rules.CONTENT[type_] != "Communication":
        raise rules.Rejection("T10", f"unsupported message type {type_[:40]!r} in MsgHead")
    sender = party_her(child(info, "Sender", "Organisation"), "Sender")
    receiver = party_her(child(info, "Receiver", "Organisation"), "Receiver")
    header = rules.message_header(text(info, "MsgId") or "", type_, sender, receiver, "")
    header["source"] = {"endpoint": f"urn:her:{sender}"}
    entries = patient_entries(child(info, "Patient"))
    communication = dialog_communication(root, entries, instant(text(info, "GenDate")))
    entries.append(communication)
    header["focus"] = [{"reference": communication["fullUrl"]}]
    return rules.message_bundle(header, entries, instant(text(info, "GenDate")))


def party_her(organisation: etree._Element | None, role: str) -> str:
    """The HER-id of the most specific party: the person, else the innermost organisation
    with one.  Rejection E21/T99 when there is none (the message cannot be routed)."""
    found: str | None = None
    while organisation is not None:
        found = her_in(organisation) or found
        person = child(organisation, "HealthcareProfessional")
        found = her_in(person) or found
        organisation = child(organisation, "Organisation")
    if found is None or not found.isdigit():
        raise rules.Rejection("E21" if role == "Receiver" else "T99", f"{role} has no HER-id")
    return found


def her_in(element: etree._Element | None) -> str | None:
    for ident in element.findall("{*}Ident") if element is not None else []:
        if value(ident, "TypeId") == "HER":
            return text(ident, "Id")
    return None


def patient_entries(patient: etree._Element | None) -> list[dict]:
    """The MsgHead's Patient as a Patient entry (none when the message has no patient)."""
    if patient is None:
        return []
    resource: dict = {"resourceType": "Patient", "id": uuid.uuid4().hex}
    identifiers = [
        {"system": PATIENT_SYSTEMS[kind], "value": text(ident, "Id")}
        for ident in patient.findall("{*}Ident")
        if (kind := value(ident, "TypeId") or "") in PATIENT_SYSTEMS and text(ident, "Id")
    ]
    if identifiers:
        resource["identifier"] = identifiers
    name = person_name(patient)
    if name:
        resource["name"] = [name]
    return [{"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}]


def person_name(person: etree._Element) -> dict:
    name: dict = {}
    if family := text(person, "FamilyName"):
        name["family"] = family
    given = [g for g in (text(person, "GivenName"), text(person, "MiddleName")) if g]
    if given:
        name["given"] = given
    return name


def dialog_communication(root: etree._Element, entries: list[dict], sent: str) -> dict:
    """The Communication of the Dialogmelding and the attachments that travel with it."""
    documents = root.findall("{*}Document")
    dialog = first_dialog(documents)
    note = child(dialog, "Notat")
    request = child(dialog, "Foresporsel") if note is None else child(note, "Foresporsel")
    topic = coding_of(child(note, "TemaKodet") if note is not None else None) or coding_of(
        child(request, "TypeForesp")
    )
    body = content_text(child(note, "TekstNotatInnhold")) or content_text(
        child(request, "Sporsmal")
    )
    resource: dict = {"resourceType": "Communication", "id": uuid.uuid4().hex}
    resource["status"] = "completed"
    if entries:
        resource["subject"] = {"reference": entries[0]["fullUrl"]}
    if topic:
        resource["topic"] = {"coding": [topic]}
    resource["sent"] = sent
    payload: list[dict] = [{"contentString": body}] if body else []
    payload += [{"contentAttachment": a} for a in attachments(documents)]
    if payload:
        resource["payload"] = payload
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def first_dialog(documents: list[etree._Element]) -> etree._Element:
    for document in documents:
        for namespace in names.DIALOGS:
            found = document.find(f"{{*}}RefDoc/{{*}}Content/{{{namespace}}}Dialogmelding")
            if found is not None:
                return found
    raise rules.Rejection("T99", "the MsgHead carries no Dialogmelding")


def coding_of(element: etree._Element | None) -> dict | None:
    """A KITH CV (V, S, DN) as a FHIR Coding."""
    if element is None or not (element.get("V") or element.get("DN")):
        return None
    coding = {"system": f"urn:oid:{element.get('S')}"} if element.get("S") else {}
    if element.get("V"):
        coding["code"] = element.get("V")
    if element.get("DN"):
        coding["display"] = element.get("DN")
    return coding


def content_text(element: etree._Element | None) -> str | None:
    """The text of a free-text element (anyType: plain text or XHTML)."""
    if element is None:
        return None
    joined = "".join(element.itertext()).strip()
    return joined or None


def attachments(documents: list[etree._Element]) -> list[dict]:
    """The attached documents (RefDoc MsgType "A") whose content is a base64 container."""
    found = []
    for document in documents:
        ref = child(document, "RefDoc")
        container = child(ref, "Content", "Base64Container")
        if value(ref, "MsgType") != "A" or container is None:
            continue
        data = "".join((container.text or "").split())
        attachment = {"contentType": text(ref, "MimeType") or "application/octet-stream"}
        attachment["data"] = base64.b64encode(base64.b64decode(data)).decode("ascii")
        if description := text(ref, "Description"):
            attachment["title"] = description
        if issued := value(ref, "IssueDate"):
            attachment["creation"] = issued
        found.append(attachment)
    return found


# --- AppRec ---------------------------------------------------------------------------------


def receipt(root: etree._Element, namespace: str) -> dict:
    """An AppRec as an APPREC message: to the original's sender from its receiver."""
    if value(root, "MsgType") != rules.APPREC:
        raise rules.Rejection("T10", "an AppRec's MsgType is APPREC")
    sender = hcp_her(child(root, "Sender", "HCP"), "Sender")
    receiver = hcp_her(child(root, "Receiver", "HCP"), "Receiver")
    original = child(root, "OriginalMsgId")
    status = value(root, "Status") or ""
    if status not in rules.STATUS_TEXT:
        raise rules.Rejection("T99", "an AppRec's status is 1, 2 or 3 (kodeverk 8258)")
    errors = [
        [error.get("V") or "X99", error.get("DN") or rules.ERRORS.get(error.get("V") or "", "")]
        for error in root.findall(f"{{{namespace}}}Error")
    ]
    original_type = value(original, "MsgType") or ""
    refers = rules.Envelope(text(original, "Id") or "", original_type, receiver, sender)
    bundle = rules.receipt_message(
        refers, status, errors, instant(text(root, "GenDate")), f"urn:her:{sender}"
    )
    return with_receipt_id(bundle, text(root, "Id") or "")


def with_receipt_id(bundle: dict, id_: str) -> dict:
    """The receipt's own id (``receipt_message`` makes a new one)."""
    header = bundle["entry"][0]["resource"]
    header["id"] = id_
    bundle["entry"][0]["fullUrl"] = f"urn:uuid:{id_}"
    return bundle


def hcp_her(hcp: etree._Element | None, role: str) -> str:
    """The HER-id of an AppRec party: the most specific of person, department, institution
    (their Id with TypeId HER, or an AdditionalId of type HER)."""
    institution = child(hcp, "Inst")
    candidates = [institution, *(institution.findall("{*}Dept") if institution is not None else [])]
    candidates += institution.findall("{*}HCPerson") if institution is not None else []
    candidates.append(child(hcp, "HCProf"))
    found = [her for c in candidates if (her := apprec_her(c))]
    if not found:
        raise rules.Rejection("E21" if role == "Receiver" else "T99", f"{role} has no HER-id")
    return found[-1]


def apprec_her(party: etree._Element | None) -> str | None:
    if party is None:
        return None
    if value(party, "TypeId") == "HER" and (text(party, "Id") or "").isdigit():
        return text(party, "Id")
    for extra in party.findall("{*}AdditionalId"):
        if value(extra, "Type") == "HER" and (text(extra, "Id") or "").isdigit():
            return text(extra, "Id")
    return None
