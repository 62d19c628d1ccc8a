"""Acting for others on helsenorge (domain.md 2.3, 4.1 and 10): the rules as pure functions.

A citizen may act for another person in two ways, each giving service areas
(tjenesteområder, ``policy.INSIGHT`` "1" reading the record and ``policy.SERVICES`` "3"
the digital services with the GP office):

- as a parent: a child under 12 with at least one parent registered at the child's
  address gives both areas; for a child of 12 to 15 the record parts are cut off, and we
  assume the parents keep the digital services (3) when a parent lives with the child;
  from 16 the child is of age in health law and nothing is left;
- by fullmakt (power of attorney): a giver of 16 or more gives a receiver of 18 or more
  the areas it names, for a period (open-ended when it has no end), until revoked.

A confidential address (strengt fortrolig or fortrolig, kode 6/7) on either side gives
nothing.  Also here: how those facts are read from the resources that hold them (a
``RelatedPerson``, a ``Patient``).  Nothing here touches the store; ``facts.py`` finds the
resources, ``services/helsenorge/fullmakt.py`` writes them.  docs/helsenorge.md has the
data model and the assumptions.
"""

from __future__ import annotations

from datetime import date

from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR, birth_date_and_sex
from enjournal.security.policy import CHILD_AGE_LIMIT, INSIGHT, SERVICES

BOTH = frozenset({INSIGHT, SERVICES})
AREAS = {INSIGHT: "Innsyn i opplysninger registrert om deg", SERVICES: "Digitale helsetjenester"}
# "Helserettslig myndig": from 16 a person decides over their own health data.
OF_AGE_IN_HEALTH = 16
GIVER_MIN_AGE = 16
RECEIVER_MIN_AGE = 18

ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
FULLMAKT_CODE = "HPOWATT"
FULLMAKT_DISPLAY = "healthcare power of attorney"
AREA_EXTENSION = "https://enjournal.no/fhir/StructureDefinition/fullmakt-area"
AREA_SYSTEM = "https://enjournal.no/fhir/CodeSystem/helsenorge-service-area"
# Assumed: the national register's address protection, carried on Patient.meta.security.
ADDRESS_PROTECTION = "https://enjournal.no/fhir/CodeSystem/adressebeskyttelse"
CONFIDENTIAL = frozenset({"strengt-fortrolig", "fortrolig", "strengt-fortrolig-utland"})
PARENT_ROLES = frozenset(
    {"MTH", "FTH", "PRN", "NMTH", "NFTH", "GUARD", "MOTHER", "FATHER", "parent", "guardian"}
)
PERSON_SYSTEMS = (OID_FNR, OID_DNR)

# ---- the rules ----------------------------------------------------------------------------


def parent_areas(
    child_age: int | None, same_address: bool, parent_confidential: bool, child_confidential: bool
) -> frozenset[str]:
    """The areas a parent holds for their child."""
    if child_age is None or parent_confidential or child_confidential or not same_address:
        return frozenset()
    if child_age < CHILD_AGE_LIMIT:
        return BOTH
    # From 12 a young person has no digital parental access (domain.md 2.3): not the record,
    # and not their own messages to the GP either (a teenager writes to the GP in confidence).
    return frozenset()


def fullmakt_areas(
    giver_age: int | None,
    receiver_age: int | None,
    period_start: str | None,
    period_end: str | None,
    active: bool,
    areas: frozenset[str],
    giver_confidential: bool,
    receiver_confidential: bool,
    today: date,
) -> frozenset[str]:
    """The areas a fullmakt gives its receiver today (none when it does not hold)."""
    if not active or giver_confidential or receiver_confidential:
        return frozenset()
    if giver_age is None or giver_age < GIVER_MIN_AGE:
        return frozenset()
    if receiver_age is None or receiver_age < RECEIVER_MIN_AGE:
        return frozenset()
    if not within(period_start, period_end, today):
        return frozenset()
    return areas & BOTH


def within(start: str | None, end: str | None, today: date) -> bool:
    """Whether ``today`` lies in the period (dates or instants; both ends count, an open
    end is indefinite, a missing start has always begun)."""
    day = today.isoformat()
    if start and start[:10] > day:
        return False
    return not (end and end[:10] < day)


def fullmakt_refusal(
    *,
    giver_age: int | None,
    receiver_age: int | None,
    giver_confidential: bool,
    receiver_confidential: bool,
    same_person: bool,
    start: date,
    end: date | None,
    today: date,
) -> str | None:
    """Why this fullmakt cannot be given, in words for the giver, or None.  Whatever would
    tell the giver something about the receiver beyond their birth number (which shows
    their age) reads the same: "this person cannot receive a fullmakt"."""
    if giver_confidential:
        return "a fullmakt cannot be given while your address is confidential (kode 6 or 7)"
    if giver_age is None or giver_age < GIVER_MIN_AGE:
        return f"you must be {GIVER_MIN_AGE} or older to give a fullmakt"
    if same_person:
        return "you cannot give a fullmakt to yourself"
    # The period before anything about the receiver, so a refusal of the period tells
    # nothing about whether the person exists.
    period = period_refusal(start, end, today)
    if period is not None:
        return period
    if receiver_age is not None and receiver_age < RECEIVER_MIN_AGE:
        return f"the receiver of a fullmakt must be {RECEIVER_MIN_AGE} or older"
    if receiver_age is None or receiver_confidential:
        return NEUTRAL_REFUSAL
    return None


NEUTRAL_REFUSAL = "this person cannot receive a fullmakt on helsenorge"


def period_refusal(start: date, end: date | None, today: date) -> str | None:
    if start < today:
        return "a fullmakt cannot start in the past"
    if end is not None and end < start:
        return "a fullmakt's end comes after its start"
    return None


# ---- reading the facts from resources -----------------------------------------------------


def age(birth_date: str | None, today: date) -> int | None:
    """Whole years from ``birth_date`` (YYYY-MM-DD) to ``today``; None if unknown."""
    if not birth_date or len(birth_date) < 10:
        return None
    try:
        born = date.fromisoformat(birth_date[:10])
    except ValueError:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def age_from_number(pid: str | None, today: date) -> int | None:
    """The age a fødselsnummer (or D-number) tells."""
    decoded = birth_date_and_sex(pid, today=today) if pid else None
    return age(decoded[0].isoformat(), today) if decoded else None


def patient_age(patient: dict, today: date) -> int | None:
    return age(patient.get("birthDate"), today)


def is_confidential(patient: dict) -> bool:
    """A strengt fortrolig or fortrolig address (assumed in ``Patient.meta.security``)."""
    return any(
        label.get("system") == ADDRESS_PROTECTION and label.get("code") in CONFIDENTIAL
        for label in (patient.get("meta") or {}).get("security", [])
    )


def roles(related: dict) -> set[str]:
    return {
        coding.get("code")
        for relationship in related.get("relationship", [])
        for coding in relationship.get("coding", [])
    }


def is_fullmakt(related: dict) -> bool:
    return FULLMAKT_CODE in roles(related)


def is_parent(related: dict) -> bool:
    return bool(roles(related) & PARENT_ROLES)


def names(related: dict, pid: str | None) -> bool:
    """Whether the RelatedPerson is the person with fødselsnummer (or D-number) ``pid``."""
    return bool(pid) and any(
        i.get("system") in PERSON_SYSTEMS and i.get("value") == pid
        for i in related.get("identifier", [])
    )


def person_number(related: dict) -> str | None:
    return next(
        (
            i.get("value")
            for i in related.get("identifier", [])
            if i.get("system") in PERSON_SYSTEMS
        ),
        None,
    )


def patient_of(related: dict) -> str | None:
    """The id of the patient whose RelatedPerson this is (the child, the giver)."""
    ref = (related.get("patient") or {}).get("reference") or ""
    return ref.split("/", 1)[1] if ref.startswith("Patient/") else None


def areas_of(related: dict) -> frozenset[str]:
    """The service areas a fullmakt names."""
    return (
        frozenset(
            (e.get("valueCoding") or {}).get("code") or ""
            for e in related.get("extension", [])
            if e.get("url") == AREA_EXTENSION
            and (e.get("valueCoding") or {}).get("system") == AREA_SYSTEM
        )
        & BOTH
    )


def period(related: dict) -> tuple[str | None, str | None]:
    p = related.get("period") or {}
    return p.get("start"), p.get("end")


def display_name(patient: dict) -> str:
    """A person's name as the portal shows it ("Kari Nordmann")."""
    for name in patient.get("name", []):
        if name.get("text"):
            return name["text"]
        parts = [*name.get("given", []), name.get("family") or ""]
        text = " ".join(p for p in parts if p).strip()
        if text:
            return text
    return ""
