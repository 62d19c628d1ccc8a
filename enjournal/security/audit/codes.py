"""The code systems, identifiers and display tables an audit event is written in."""

from __future__ import annotations

from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR, OID_HPR

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SECURITY_ROLE_TYPE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
PROFESSION = "urn:oid:2.16.578.1.12.4.1.1.9060"  # Volven 9060, kategori helsepersonell

# enjournal's own identifiers and extensions (no national equivalent found).
CLIENT_ID_SYSTEM = "https://enjournal.no/fhir/NamingSystem/client-id"
SUBJECT_SYSTEM = "https://enjournal.no/fhir/NamingSystem/subject"
ACCESS_BASIS_SYSTEM = "https://enjournal.no/fhir/CodeSystem/access-basis"
REQUEST_ID_EXT = "https://enjournal.no/fhir/StructureDefinition/request-id"
EMERGENCY_REASON_EXT = "https://enjournal.no/fhir/StructureDefinition/emergency-reason"

RESTFUL_CODES = frozenset(
    [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history",
        "history-instance",
        "history-type",
        "history-system",
        "create",
        "search",
        "search-type",
        "search-system",
        "capabilities",
        "transaction",
        "batch",
        "operation",
    ]
)

PURPOSES = {  # v3-ActReason display, and the citizen's wording (Norwegian)
    "TREAT": ("treatment", "Helsehjelp"),
    "ETREAT": ("Emergency Treatment", "Nødrett (akutt helsehjelp)"),
    "BTG": ("break the glass", "Nødrett (akutt helsehjelp)"),
    "PATRQT": ("patient requested", "Etter ditt ønske"),
    "HOPERAT": ("healthcare operations", "Drift av helsetjenesten"),
    "HSYSADMIN": ("health system administration", "Systemadministrasjon"),
    "HLEGAL": ("legal", "Rettslig grunnlag"),
    "PUBHLTH": ("public health", "Folkehelse"),
    "HRESCH": ("healthcare research", "Helseforskning"),
}
EMERGENCY_PURPOSES = frozenset({"ETREAT", "BTG"})

# NHN access-basis codes (domain.md 2.3): shown to the citizen as the basis for access.
ACCESS_BASIS = {
    "UNNTAK": "Unntak fra samtykke",
    "SAMTYKKE": "Samtykke",
    "FORHOYET_SAMTYKKE": "Samtykke til å åpne sperrede opplysninger",
    "AKUTT": "Nødrett (akutt helsehjelp)",
}

# Volven 9060 (kategori helsepersonell): the common codes.  [unverified beyond these]
PROFESSIONS = {
    "LE": "Lege",
    "SP": "Sykepleier",
    "TL": "Tannlege",
    "JO": "Jordmor",
    "FA": "Farmasøyt",
    "FA1": "Provisorfarmasøyt",
    "FA2": "Reseptarfarmasøyt",
    "FT": "Fysioterapeut",
    "PS": "Psykolog",
    "HF": "Helsefagarbeider",
    "AA": "Ambulansearbeider",
    "BI": "Bioingeniør",
    "ET": "Ergoterapeut",
    "VP": "Vernepleier",
    "RA": "Radiograf",
}

# Texts this server writes into events from fixed templates (no caller's free text in them):
# the only texts a citizen's copy of an event keeps (``redaction``).
CITIZEN_ROLE = "Innbygger"  # agent.role.text of a citizen
BLOCK_LIFTED = "Blokkering av helsepersonell (HPR {hpr}) opphevet"  # $kj-lift-block outcomeDesc

ACTOR_PREFIX = {
    OID_HPR: "hpr",
    OID_FNR: "fnr",
    OID_DNR: "dnr",
    CLIENT_ID_SYSTEM: "client",
    SUBJECT_SYSTEM: "sub",
}
