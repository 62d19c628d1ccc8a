"""From the platform's FHIR message Bundle to KITH XML: MsgHead 1.2 with a Dialogmelding 1.1
for DIALOG_* messages, a standalone AppRec 1.1 for APPREC.  Every document written is
checked against its schema before it leaves (a ValueError names the first error: that is a
bug here or a Bundle this module cannot express, never the receiver's problem).
"""

from __future__ import annotations

import base64

from lxml import etree

from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR
from enjournal.services.messaging import rules
from enjournal.services.messaging.rules import Rejection
from enjournal.services.messaging.xml import names, parsing
from enjournal.services.messaging.xml.reading import ORIGINAL_EXTENSION

PATIENT_ID_TYPES = {OID_FNR: ("FNR", "Fødselsnummer"), OID_DNR: ("DNR", "D-nummer")}
# The Dialogmelding's subject when the Communication names no topic.
DEFAULT_THEME = {
    "system": f"urn:oid:{names.DIALOG_THEME}",
    "code": "6",
    "display": "Henvendelse om pasient",
}
DEFAULT_REQUEST = {
    "system": f"urn:oid:{names.REQUEST_TYPE}",
    "code": "99",
    "display": "Annen henvendelse",
}


def to_xml(bundle: dict) -> bytes:
    """The XML of a DIALOG_* or APPREC message Bundle (UTF-8, with declaration); ValueError
    for another type or for a Bundle that does not make a valid document."""
    envelope = rules.envelope_of(bundle)
    if envelope.type == rules.APPREC:
        root = apprec(bundle, envelope)
    elif rules.CONTENT.get(envelope.type) == "Communication":
        root = msghead(bundle, envelope)
    else:
        raise ValueError(f"{envelope.type} has no XML form here (only DIALOG_* and APPREC)")
    try:
        parsing.validate(root)
    except Rejection as error:
        raise ValueError(f"the XML written does not validate: {error.text}") from None
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def add(parent: etree._Element, name: str, text: str | None = None, **attributes) -> etree._Element:
    """A child in the parent's namespace, with text and the attributes that have a value."""
    namespace = etree.QName(parent).namespace or ""
    element = etree.SubElement(parent, names.q(namespace, name))
    for key, value in attributes.items():
        if value:
            element.set(key, value)
    if text is not None:
        element.text = text
    return element


def add_coding(parent: etree._Element, name: str, coding: dict) -> etree._Element:
    """A KITH CV from a FHIR Coding (the system's ``urn:oid:`` prefix dropped)."""
    system = str(coding.get("system") or "")
    oid = system.removeprefix("urn:oid:") if system.startswith("urn:oid:") else None
    return add(parent, name, V=coding.get("code"), S=oid, DN=coding.get("display"))


# --- MsgHead with Dialogmelding ---------------------------------------------------------


def msghead(bundle: dict, envelope: rules.Envelope) -> etree._Element:
    root = etree.Element(names.q(names.MSGHEAD, "MsgHead"), nsmap={None: names.MSGHEAD})
    info = add(root, "MsgInfo")
    add(info, "Type", V=envelope.type, DN=envelope.type.replace("_", " ").capitalize())
    add(info, "MIGversion", names.MSGHEAD_VERSION)
    add(info, "GenDate", bundle.get("timestamp"))
    add(info, "MsgId", envelope.id)
    header = rules.header_of(bundle)
    organisation(add(info, "Sender"), envelope.sender, header.get("sender"))
    receiver = (header.get("destination") or [{}])[0].get("receiver")
    organisation(add(info, "Receiver"), envelope.receiver, receiver)
    patient = next(iter(of_type(bundle, "Patient")), None)
    if patient is not None:
        add_patient(info, patient)
    communication = rules.check_content(envelope.type, bundle)
    add_dialog(root, envelope.type, communication)
    for attachment in payload_of(communication, "contentAttachment"):
        add_attachment(root, attachment)
    return root


def of_type(bundle: dict, resource_type: str) -> list[dict]:
    return [r for r in rules.resources(bundle) if r.get("resourceType") == resource_type]


def organisation(parent: etree._Element, her: str, reference: object) -> None:
    """One level of Organisation carrying the HER-id the envelope routes by."""
    display = reference.get("display") if isinstance(reference, dict) else None
    element = add(parent, "Organisation")
    add(element, "OrganisationName", display or f"HER-id {her}")
    ident = add(element, "Ident")
    add(ident, "Id", her)
    add(ident, "TypeId", V="HER", S=names.ORGANISATION_ID, DN="HER-id")


def add_patient(info: etree._Element, patient: dict) -> None:
    element = add(info, "Patient")
    name = (patient.get("name") or [{}])[0]
    if name.get("family"):
        add(element, "FamilyName", name["family"])
    given = name.get("given") or []
    if given:
        add(element, "GivenName", " ".join(given))
    for identifier in patient.get("identifier") or []:
        kind = PATIENT_ID_TYPES.get(identifier.get("system"))
        if kind and identifier.get("value"):
            ident = add(element, "Ident")
            add(ident, "Id", identifier["value"])
            add(ident, "TypeId", V=kind[0], S=names.PERSON_ID, DN=kind[1])


def payload_of(communication: dict, kind: str) -> list:
    return [
        p[kind] for p in communication.get("payload") or [] if isinstance(p, dict) and kind in p
    ]


def add_dialog(root: etree._Element, type_: str, communication: dict) -> None:
    """The first Document: the Dialogmelding 1.1, a Forespørsel for DIALOG_FORESPORSEL,
    else a Notat; the text is the Communication's contentString payloads."""
    ref = document(root, "XML", "XML-instans", "text/xml")
    content = add(ref, "Content")
    dialog = etree.SubElement(
        content, names.q(names.DIALOG_1_1, "Dialogmelding"), nsmap={None: names.DIALOG_1_1}
    )
    body = "\n\n".join(str(t) for t in payload_of(communication, "contentString"))
    topic = ((communication.get("topic") or {}).get("coding") or [None])[0]
    if type_ == "DIALOG_FORESPORSEL":
        request = add(dialog, "Foresporsel")
        add_coding(request, "TypeForesp", topic or DEFAULT_REQUEST)
        add(request, "Sporsmal", body)
    else:
        note = add(dialog, "Notat")
        add_coding(note, "TemaKodet", topic or DEFAULT_THEME)
        add(note, "TekstNotatInnhold", body)


def document(root: etree._Element, kind: str, display: str, mime: str | None) -> etree._Element:
    """A Document with its RefDoc of document-reference type ``kind`` (kodeverk 8114)."""
    ref = add(add(root, "Document"), "RefDoc")
    add(ref, "MsgType", V=kind, DN=display)
    if mime:
        add(ref, "MimeType", mime)
    return ref


def add_attachment(root: etree._Element, attachment: dict) -> None:
    ref = document(root, "A", "Vedlegg", attachment.get("contentType"))
    if attachment.get("title"):
        add(ref, "Description", attachment["title"])
    content = add(ref, "Content")
    data = base64.b64encode(base64.b64decode(attachment.get("data") or "", validate=True))
    container = etree.SubElement(
        content, names.q(names.BASE64, "Base64Container"), nsmap={None: names.BASE64}
    )
    container.text = data.decode("ascii")


# --- AppRec 1.1 ---------------------------------------------------------------------------


def apprec(bundle: dict, envelope: rules.Envelope) -> etree._Element:
    root = etree.Element(names.q(names.APPREC_1_1, "AppRec"), nsmap={None: names.APPREC_1_1})
    add(root, "MsgType", V=rules.APPREC, DN="Applikasjonskvittering")
    add(root, "MIGversion", names.APPREC_VERSION)
    add(root, "SoftwareName", "enjournal")
    add(root, "GenDate", bundle.get("timestamp"))
    add(root, "Id", envelope.id)
    institution(add(root, "Sender"), envelope.sender)
    institution(add(root, "Receiver"), envelope.receiver)
    status = envelope.status or ""
    add(root, "Status", V=status, DN=rules.STATUS_TEXT.get(status))
    for code, text in envelope.errors:
        add(root, "Error", V=code, S=names.ERROR, DN=text)
    original = add(root, "OriginalMsgId")
    type_ = original_type(rules.header_of(bundle))
    add(original, "MsgType", V=type_, DN=type_ and type_.replace("_", " ").capitalize())
    add(original, "IssueDate", bundle.get("timestamp"))
    add(original, "Id", envelope.refers)
    return root


def institution(parent: etree._Element, her: str) -> None:
    inst = add(add(parent, "HCP"), "Inst")
    add(inst, "Name", f"HER-id {her}")
    add(inst, "Id", her)
    add(inst, "TypeId", V="HER", DN="HER-id")


def original_type(header: dict) -> str | None:
    """The original message's type, when the receipt names it (``ORIGINAL_EXTENSION``)."""
    for extension in (header.get("response") or {}).get("extension") or []:
        if extension.get("url") == ORIGINAL_EXTENSION:
            return (extension.get("valueCoding") or {}).get("code")
    return None
