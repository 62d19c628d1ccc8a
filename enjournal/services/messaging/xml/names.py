"""The XML names messaging speaks: the KITH namespaces of MsgHead 1.2, Dialogmelding 1.0/1.1,
AppRec 1.0/1.1 and the base64 container, and the kodeverk OIDs the XML carries (without the
``urn:oid:`` prefix FHIR puts in front of them)."""

from __future__ import annotations

MSGHEAD = "http://www.kith.no/xmlstds/msghead/2006-05-24"
DIALOG_1_0 = "http://www.kith.no/xmlstds/dialog/2006-10-11"
DIALOG_1_1 = "http://www.kith.no/xmlstds/dialog/2013-01-23"
APPREC_1_0 = "http://www.kith.no/xmlstds/apprec/2004-11-21"
APPREC_1_1 = "http://www.kith.no/xmlstds/apprec/2012-02-15"
BASE64 = "http://www.kith.no/xmlstds/base64container"
DIALOGS = (DIALOG_1_1, DIALOG_1_0)

MSGHEAD_VERSION = "v1.2 2006-05-24"  # MsgInfo/MIGversion is fixed to this by the schema
APPREC_VERSION = "v1.1 2012-02-15"

# Kodeverk, as the XML's S attribute carries them.
ORGANISATION_ID = "2.16.578.1.12.4.1.1.9051"  # ID-typer for organisatoriske enheter: HER
PERSON_ID = "2.16.578.1.12.4.1.1.8116"  # ID-type for personer: FNR, DNR, HER, HPR
DIALOG_THEME = "2.16.578.1.12.4.1.1.7322"  # Tema for helsefaglig dialog
REQUEST_TYPE = "2.16.578.1.12.4.1.1.9153"  # Type opplysninger ved pasientsamhandling, fra lege
FUNCTION = "2.16.578.1.12.4.1.1.8279"  # Meldingens funksjon
STATUS = "2.16.578.1.12.4.1.1.8258"  # AppRec status
ERROR = "2.16.578.1.12.4.1.1.8221"  # AppRec error


def q(namespace: str, name: str) -> str:
    """Clark notation of an element name: ``{namespace}name``."""
    return f"{{{namespace}}}{name}"
