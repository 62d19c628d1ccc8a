"""Reading XML safely and checking it against the vendored KITH schemas.

The parser never touches the network, never expands entities and keeps libxml2's size
limits (``huge_tree=False``: one text node, e.g. a base64 attachment, may be up to 10 MB).
A document with a DTD is refused outright: no KITH message has one, and refusing it is the
simplest defence against entity bombs and external entities.  Each root namespace has one
compiled ``XMLSchema``, built once; MsgHead's schema also knows the documents its
``RefDoc/Content`` may carry, because the schema checks that content strictly.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from lxml import etree

from enjournal.services.messaging.rules import Rejection
from enjournal.services.messaging.xml import names

SCHEMAS = Path(__file__).parent / "schemas"
# The schema files each root namespace needs (its own first, then what it may carry).
SCHEMA_FILES: dict[str, tuple[str, ...]] = {
    names.MSGHEAD: ("MsgHead-v1_2.xsd", "dialogmelding-v1.1.xsd", "dialogmelding-v1.0.xsd"),
    names.APPREC_1_0: ("apprec-v1.0.xsd",),
    names.APPREC_1_1: ("apprec-v1.1.xsd",),
}
RESOURCE_LIMIT = 114  # libxml2's XML_ERR_RESOURCE_LIMIT: e.g. a text node over 10 MB
CONTENT_NAMESPACES = frozenset({*names.DIALOGS, names.BASE64})


def parser() -> etree.XMLParser:
    """A parser that reads only what it is given."""
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)


def parse(data: bytes) -> etree._Element:
    """The document's root; Rejection T01 for what is not well-formed XML, T99 for a DTD."""
    if not isinstance(data, bytes | bytearray) or not data.strip():
        raise Rejection("T01")
    try:
        tree = etree.fromstring(bytes(data), parser()).getroottree()
    except etree.XMLSyntaxError as error:
        if error.code == RESOURCE_LIMIT:  # well-formed, perhaps, but beyond what we read
            raise Rejection("T99", f"too large to read: {str(error).split(',')[0]}") from None
        raise Rejection("T01") from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise Rejection("T99", "a message may not carry a document type declaration (DTD)")
    return tree.getroot()


def namespace_of(element: etree._Element) -> str:
    return etree.QName(element).namespace or ""


def check_supported(root: etree._Element) -> None:
    """Rejection T10 for a root or a MsgHead content this platform does not read."""
    namespace = namespace_of(root)
    if namespace not in SCHEMA_FILES:
        raise Rejection("T10", f"unsupported message format: {etree.QName(root).localname}")
    if namespace == names.MSGHEAD:
        for content in root.iter(names.q(names.MSGHEAD, "Content")):
            for child in content.iterchildren("{*}*"):
                if namespace_of(child) not in CONTENT_NAMESPACES:
                    raise Rejection("T10", f"unsupported document in MsgHead: {child.tag}")


def validate(root: etree._Element) -> None:
    """Rejection T02 with the first schema error (its line and what broke, no values)."""
    schema = schema_for(namespace_of(root))
    if schema.validate(root):
        return
    error = schema.error_log[0]
    raise Rejection("T02", f"line {error.line}: {redacted(error.message)}"[:300])


def redacted(message: str) -> str:
    """A schema error without the values it quotes (they may be patient data) and without
    namespaces (long, and known from the root).  libxml2 writes "Element 'X'[, attribute
    'Y']: what is wrong"; names cannot hold a quote, so everything quoted after them goes."""
    message = re.sub(r"\{[^}]*\}", "", message)
    names_part, separator, rest = message.partition("': ")
    if not separator:
        names_part, rest = "", message
    return names_part + separator + re.sub(r"'.*'", "(value)", rest, flags=re.S)


@cache
def schema_for(namespace: str) -> etree.XMLSchema:
    """The compiled schema for a root namespace: a small wrapper importing its files."""
    files = SCHEMA_FILES[namespace]
    imports = "".join(
        f'<xs:import namespace="{target_of(name)}" schemaLocation="{name}"/>' for name in files
    )
    wrapper = f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">{imports}</xs:schema>'
    document = etree.fromstring(wrapper, parser(), base_url=f"{SCHEMAS.as_uri()}/")
    return etree.XMLSchema(document)


def target_of(filename: str) -> str:
    """The targetNamespace a vendored schema file declares."""
    root = etree.parse(str(SCHEMAS / filename), parser()).getroot()
    return str(root.get("targetNamespace"))
