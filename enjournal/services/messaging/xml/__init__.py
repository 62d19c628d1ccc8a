"""Messaging's XML: the KITH formats of systems that do not speak FHIR (MsgHead 1.2 with
Dialogmelding 1.1, AppRec 1.0/1.1), read into and written from the platform's FHIR message
Bundles.  ``from_xml`` refuses what it cannot take with ``rules.Rejection`` (T01, T02, T10);
``to_xml`` writes only documents valid against the vendored schemas (``schemas/``)."""

from enjournal.services.messaging.xml.reading import from_xml
from enjournal.services.messaging.xml.writing import to_xml

__all__ = ["from_xml", "to_xml"]
