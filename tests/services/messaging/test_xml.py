"""Messaging's XML (MsgHead 1.2 + Dialogmelding, AppRec 1.0/1.1): reading into FHIR message
Bundles, writing them back valid against the vendored KITH schemas, and refusing what is not
XML, not valid, not supported, or hostile (entity bombs, external entities).  No database."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest
from lxml import etree

from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR
from enjournal.fhir.validation import check
from enjournal.services.messaging import rules
from enjournal.services.messaging.xml import from_xml, names, parsing, to_xml

DATA = Path(__file__).parent / "data" / "xml"
NOW = "2026-06-01T10:15:00+02:00"
FNR = "13116900216"  # a synthetic, well-formed test number


def dialog(type_="DIALOG_HELSEFAGLIG", text="Hei, æøå <b>&", files=(), system=OID_FNR):
    """A DIALOG_* message Bundle as the platform builds one."""
    header = rules.message_header("msg-1", type_, "8094866", "8142626", "https://x/fhir")
    header["focus"] = [{"reference": "urn:uuid:c1"}]
    patient = {"resourceType": "Patient", "identifier": [{"system": system, "value": FNR}]}
    patient["name"] = [{"family": "Testesen", "given": ["Kari", "Marie"]}]
    payload: list[dict] = [{"contentString": text}]
    payload += [{"contentAttachment": {"contentType": "application/pdf", "data": f}} for f in files]
    communication = {"resourceType": "Communication", "status": "completed", "payload": payload}
    communication["subject"] = {"reference": "urn:uuid:p1"}
    entries = [
        {"fullUrl": "urn:uuid:p1", "resource": patient},
        {"fullUrl": "urn:uuid:c1", "resource": communication},
    ]
    return rules.message_bundle(header, entries, NOW)


def of_type(bundle: dict, resource_type: str) -> dict:
    return next(r for r in rules.resources(bundle) if r["resourceType"] == resource_type)


def payload(bundle: dict, kind: str) -> list:
    return [p[kind] for p in of_type(bundle, "Communication")["payload"] if kind in p]


def schema_valid(data: bytes) -> bool:
    root = etree.fromstring(data, parsing.parser())
    return parsing.schema_for(parsing.namespace_of(root)).validate(root)


def rejection(data: bytes) -> rules.Rejection:
    with pytest.raises(rules.Rejection) as caught:
        from_xml(data)
    return caught.value


# --- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "type_", sorted(t for t, r in rules.CONTENT.items() if r == "Communication")
)
def test_dialog_round_trip_keeps_envelope_patient_and_text(type_):
    original = dialog(type_)
    data = to_xml(original)
    assert schema_valid(data)
    back = from_xml(data)
    assert rules.envelope_of(back) == rules.envelope_of(original)
    patient = of_type(back, "Patient")
    assert patient["identifier"] == [{"system": OID_FNR, "value": FNR}]
    assert rules.patient_number(back) == FNR
    assert payload(back, "contentString") == ["Hei, æøå <b>&"]
    assert rules.check_content(type_, back) is of_type(back, "Communication")
    assert back["timestamp"] == NOW


def test_dialog_round_trip_keeps_d_number_and_topic():
    original = dialog("DIALOG_NOTAT", system=OID_DNR)
    topic = {"system": "urn:oid:2.16.578.1.12.4.1.1.7322", "code": "8", "display": "Forespørsel"}
    of_type(original, "Communication")["topic"] = {"coding": [topic]}
    back = from_xml(to_xml(original))
    assert of_type(back, "Patient")["identifier"][0]["system"] == OID_DNR
    assert of_type(back, "Communication")["topic"]["coding"] == [topic]


def test_attachments_keep_their_bytes():
    pdf, other = b"%PDF-1.4\n" + bytes(range(256)), b"%PDF-1.7 second"
    files = [base64.b64encode(f).decode() for f in (pdf, other)]
    back = from_xml(to_xml(dialog(files=files)))
    found = payload(back, "contentAttachment")
    assert [base64.b64decode(a["data"]) for a in found] == [pdf, other]
    assert {a["contentType"] for a in found} == {"application/pdf"}


def test_large_attachment_of_5_mb():
    pdf = b"%PDF-1.4\n" + os.urandom(5 * 1024 * 1024)
    started = time.monotonic()
    back = from_xml(to_xml(dialog(files=[base64.b64encode(pdf).decode()])))
    assert base64.b64decode(payload(back, "contentAttachment")[0]["data"]) == pdf
    assert time.monotonic() - started < 10


def test_imported_resources_pass_the_platforms_validation():
    back = from_xml((DATA / "dialog-foresporsel.xml").read_bytes())
    for resource in rules.resources(back):
        check({**resource})


@pytest.mark.parametrize("status", [rules.OK, rules.REJECTED, rules.PARTLY_OK])
def test_receipt_round_trip_keeps_status_and_errors(status):
    errors = [] if status == rules.OK else [["E35", "Pasienten finnes ikke"], ["T02", "linje 3"]]
    original = rules.envelope_of(dialog())
    receipt = rules.receipt_message(original, status, errors, NOW, "https://x/fhir")
    data = to_xml(receipt)
    assert etree.QName(etree.fromstring(data)).namespace == names.APPREC_1_1
    assert schema_valid(data)
    back = rules.envelope_of(from_xml(data))
    assert back == rules.envelope_of(receipt)
    assert (back.refers, back.status, back.errors) == ("msg-1", status, errors)
    assert (back.sender, back.receiver) == (original.receiver, original.sender)


def test_receipt_read_back_keeps_the_originals_type():
    data = (DATA / "apprec-1.0.xml").read_bytes()
    again = from_xml(to_xml(from_xml(data)))
    assert b'<MsgType V="DIALOG_FORESPORSEL"' in to_xml(again)


# --- reading what other systems send ----------------------------------------------------


def test_msghead_from_another_system():
    bundle = from_xml((DATA / "dialog-foresporsel.xml").read_bytes())
    envelope = rules.envelope_of(bundle)
    assert (envelope.id, envelope.type) == (
        "7f0c7d3e-1b52-4a53-9d6e-1c2a3b4c5d6e",
        "DIALOG_FORESPORSEL",
    )
    # the most specific party: the GP, and the municipality's service
    assert (envelope.sender, envelope.receiver) == ("8094867", "8142627")
    assert bundle["timestamp"] == "2026-06-01T10:15:00+02:00"  # no zone given: Norwegian time
    assert payload(bundle, "contentString") == ["Kan dere sende oppdatert legemiddelliste?"]
    assert of_type(bundle, "Patient")["name"] == [{"family": "Testesen", "given": ["Kari"]}]
    focus = rules.header_of(bundle)["focus"][0]["reference"]
    assert focus == bundle["entry"][-1]["fullUrl"]


def test_apprec_1_0_from_another_system():
    bundle = from_xml((DATA / "apprec-1.0.xml").read_bytes())
    envelope = rules.envelope_of(bundle)
    assert envelope.id == "5b0e1c2d-0000-4000-8000-000000000001"
    assert (envelope.sender, envelope.receiver) == ("8142627", "8094866")
    assert envelope.refers == "7f0c7d3e-1b52-4a53-9d6e-1c2a3b4c5d6e"
    assert envelope.status == rules.REJECTED
    assert [code for code, _ in envelope.errors] == ["E35", "E21"]


def test_every_vendored_schema_compiles():
    for namespace in parsing.SCHEMA_FILES:
        assert isinstance(parsing.schema_for(namespace), etree.XMLSchema)


# --- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"not xml", b'{"resourceType": "Bundle"}', b"<a><b></a>"])
def test_not_xml_is_t01(data):
    assert rejection(data).code == "T01"


def test_schema_failure_is_t02_with_a_line_and_no_patient_data():
    data = to_xml(dialog()).replace(b"<MsgId>", b"<DateOfBirth>1969-11-13</DateOfBirth><MsgId>")
    found = rejection(data)
    assert found.code == "T02"
    assert found.text.startswith(
        "line 2:"
    )  # the root, after the declaration, and "DateOfBirth" in found.text
    assert "1969" not in found.text


def test_bad_value_is_t02_without_the_value():
    data = to_xml(dialog()).replace(NOW.encode(), b"13116900216")
    found = rejection(data)
    assert found.code == "T02" and FNR not in found.text


@pytest.mark.parametrize(
    "data",
    [
        b'<Henvisning xmlns="http://www.kith.no/xmlstds/henvisning/2005-07-08"/>',
        b"<MsgHead/>",  # no namespace
        (DATA / "dialog-foresporsel.xml")
        .read_bytes()
        .replace(names.DIALOG_1_1.encode(), b"http://www.kith.no/xmlstds/epikrise/2006-09-23"),
    ],
)
def test_unsupported_format_is_t10(data):
    assert rejection(data).code == "T10"


def test_unsupported_message_type_is_t10():
    data = to_xml(dialog()).replace(b'V="DIALOG_HELSEFAGLIG"', b'V="SYKMELDING"')
    assert rejection(data).code == "T10"


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE MsgHead [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
 <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
]>
<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">&g;</MsgHead>"""


def test_billion_laughs_is_refused_without_expanding():
    started = time.monotonic()
    found = rejection(BOMB)
    assert found.code in ("T01", "T99")
    assert time.monotonic() - started < 1


def test_external_entity_is_refused_without_reading_it(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    template = (DATA / "dialog-foresporsel.xml").read_text(encoding="utf-8")
    body = template.split("?>", 1)[1].replace("<Sporsmal>", "<Sporsmal>&xxe;", 1)
    doctype = f'<!DOCTYPE MsgHead [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>'
    found = rejection(f'<?xml version="1.0" encoding="UTF-8"?>{doctype}{body}'.encode())
    assert found.code in ("T01", "T99")
    assert "TOP-SECRET" not in found.text


def test_the_parser_never_expands_entities():
    parser = parsing.parser()
    root = etree.fromstring(b'<!DOCTYPE a [<!ENTITY e "expanded">]><a>&e;</a>', parser)
    assert "expanded" not in "".join(root.itertext())


# --- what to_xml refuses ----------------------------------------------------------------


def test_to_xml_refuses_types_it_has_no_form_for():
    bundle = dialog()
    rules.header_of(bundle)["eventCoding"]["code"] = "HENVIS"
    with pytest.raises(ValueError, match="no XML form"):
        to_xml(bundle)


def test_to_xml_refuses_a_bundle_that_is_not_a_message():
    with pytest.raises(ValueError):
        to_xml({"resourceType": "Bundle", "type": "collection"})


def test_a_text_node_beyond_the_parsers_limit_is_t99_not_t01():
    too_big = base64.b64encode(os.urandom(8 * 1024 * 1024)).decode()  # ~11 MB of base64
    found = rejection(to_xml(dialog(files=[too_big])))
    assert found.code == "T99" and "too large" in found.text


def test_dialogmelding_1_0_is_read():
    data = to_xml(dialog("DIALOG_NOTAT")).replace(
        names.DIALOG_1_1.encode(), names.DIALOG_1_0.encode()
    )
    back = from_xml(data)
    assert payload(back, "contentString") == ["Hei, æøå <b>&"]
    assert rules.envelope_of(back).type == "DIALOG_NOTAT"
