"""Kjernejournal's rules as plain functions (no I/O): what critical information is, who may
register it, who may read the record on which access basis, and the citizen's privacy
settings.  Sources: ../shared/docs/domain.md section 2 (ehelse.no, helsenorge.no, NHN's
Critical Information FHIR API); assumptions are marked [unverified] and listed in
docs/kjernejournal.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from enjournal.fhir.errors import Forbidden, Invalid, NotFound, Unprocessable
from enjournal.security.policy import INSIGHT

# ---- code systems and markers ----------------------------------------------------------------

#: meta.tag system marking a resource as kjernejournal content; the code is its category.
KJ = "http://enjournal.no/fhir/CodeSystem/kjernejournal"
#: Consent.category of the citizen's kjernejournal privacy settings.
PRIVACY_CATEGORY = {"system": KJ, "code": "personvern", "display": "Personverninnstillinger"}
#: NHN's profile extensions and code systems (domain.md 2.2).
KJ_SOURCE_OF_INFORMATION = "http://nhn.no/kj/fhir/StructureDefinition/KjSourceOfInformation"
KJ_PRESUMED = "http://nhn.no/kj/fhir/StructureDefinition/KjPresumed"
KJ_UPDATER = "http://nhn.no/kj/fhir/StructureDefinition/KjUpdater"
KJ_UPDATED = "http://nhn.no/kj/fhir/StructureDefinition/KjUpdatedDateTime"
KJ_PROFESSIONS = "http://nhn.no/kj/fhir/CodeSystem/CategoriesOfHealthProfessionals"
KJ_DRUG_TRADE_NAME = "http://nhn.no/kj/fhir/CodeSystem/DrugTradeName"
KJ_INACTIVE_INGREDIENT = "inactiveIngredient"  # code.extension url: excipient (hjelpestoff)
ATC = "http://www.whocc.no/atc"
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10", "urn:oid:2.16.578.1.12.4.1.1.7110"})
#: enjournal's extension naming who registered an entry (a contained PractitionerRole).
REGISTERED_BY = "http://enjournal.no/fhir/StructureDefinition/kj-registered-by"
PATIENT_REPORTED = "http://enjournal.no/fhir/StructureDefinition/kj-patient-reported"

# ---- categories of critical information -------------------------------------------------------


@dataclass(frozen=True)
class Category:
    code: str
    display: str  # Norwegian, as helsenorge names it
    types: tuple[str, ...]  # the resource types it is stored as
    nhn_code: str | None = None  # NHN's category code where known (only 5 and 9 confirmed)


CATEGORIES = {
    c.code: c
    for c in (
        Category("legemiddelreaksjon", "Legemiddelreaksjon", ("AllergyIntolerance",)),
        Category("annen-allergi", "Annen allergi", ("AllergyIntolerance",)),
        Category("anestesikomplikasjon", "Komplikasjon ved anestesi", ("Condition",)),
        Category("kritisk-tilstand", "Kritisk medisinsk tilstand", ("Condition",), "5"),
        Category("smitte", "Smitte", ("Condition",)),
        Category("behandling", "Pågående behandling", ("Procedure",)),
        Category("implantat", "Implantat", ("Device",)),
        Category("livsforlengende", "Avgrensning av livsforlengende behandling", ("Flag",)),
        Category("prosedyreendring", "Annen prosedyreendring", ("Flag",), "9"),
    )
}
#: The tag code of the citizen's own registrations (never critical information).
PATIENT_REGISTRATION = "egen-registrering"

#: Professions that may register critical information: physicians (Volven 9060 LE).  NHN says
#: "sometimes nurse or psychologist" without saying when, so they are not allowed by default.
#: [unverified]
REGISTERING_PROFESSIONS = frozenset({"LE"})

# ---- the record's parts, which the citizen can restrict (sperre) ---------------------------

PARTS = {
    "kritisk-info": "Kritisk informasjon",
    "legemidler": "Legemidler",
    "vaksiner": "Vaksiner",
    "besokshistorikk": "Besøkshistorikk",
    "egne-registreringer": "Pasientens egne registreringer",
}
WHOLE_RECORD = "hele"

# ---- access basis (nhn-access-basis) ---------------------------------------------------------

UNNTAK, SAMTYKKE, FORHOYET, AKUTT = "UNNTAK", "SAMTYKKE", "FORHOYET_SAMTYKKE", "AKUTT"
BASES = frozenset({UNNTAK, SAMTYKKE, FORHOYET, AKUTT})
GP_RELATIONSHIPS = frozenset({"gp-list", "gp-list (same office)"})

RESERVATION_GRACE = timedelta(days=30)
MEDICATION_HISTORY = timedelta(days=3 * 365)
MAX_PATIENT_CONDITIONS = 30


# ---- privacy settings --------------------------------------------------------------------------


@dataclass(frozen=True)
class Privacy:
    """The citizen's kjernejournal privacy settings (helsenorge personverninnstillinger)."""

    restricted: frozenset[str] = frozenset()  # parts, or WHOLE_RECORD
    blocked: frozenset[str] = frozenset()  # HPR numbers
    reserved_at: datetime | None = None  # reservation against having a kjernejournal
    # When a new kjernejournal started after a reservation's deletion: it holds nothing
    # from before (domain.md 2.3, "a new KJ starts empty from the new date").
    started_at: datetime | None = None

    def restricts(self, part: str) -> bool:
        return WHOLE_RECORD in self.restricted or part in self.restricted

    def before_start(self, moment: str | None) -> bool:
        """Is this FHIR date or instant from before the kjernejournal's (new) start?  A
        date-only value on the start day counts as before: it cannot be placed after."""
        if self.started_at is None:
            return False
        if not moment:
            return True  # undated: cannot be shown to be part of the new kjernejournal
        start = self.started_at.astimezone(UTC)
        if len(moment) <= 10:
            return moment[:10] <= start.date().isoformat()
        try:
            when = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return True
        return (when if when.tzinfo else when.replace(tzinfo=UTC)) < start

    def deletion_due(self, now: datetime) -> bool:
        """Reserved more than 30 days ago: the kjernejournal is to be deleted."""
        return self.reserved_at is not None and now >= self.reserved_at + RESERVATION_GRACE


def privacy_from_parameters(values: dict, now: datetime, current: Privacy) -> Privacy:
    """The settings a citizen's ``$kj-privacy`` call asks for: ``restrict`` (part codes or
    ``hele``), ``block`` (HPR numbers) and ``reserve`` (true/false).  Missing ones keep their
    current value; a reservation keeps its first date while it stands.  Blocks are only
    added here: lifting one goes through a health worker who is not blocked, or the
    helpline (domain.md 2.3), so a list that leaves out a current block is refused.
    Withdrawing a reservation after its 30 days starts a new, empty kjernejournal."""

    def many(name: str) -> list[str] | None:
        if name not in values:
            return None
        raw = values[name]
        items = raw if isinstance(raw, list) else [raw]
        return [str(i).strip() for i in items if i is not None and str(i).strip()]

    restricted = many("restrict")
    if restricted is not None:
        unknown = [p for p in restricted if p != WHOLE_RECORD and p not in PARTS]
        if unknown:
            raise Invalid(
                f"unknown part(s) {', '.join(unknown)}: use {WHOLE_RECORD} or " + ", ".join(PARTS)
            )
    blocked = many("block")
    if blocked is not None:
        bad = [h for h in blocked if not h.isdigit() or not 4 <= len(h) <= 9]
        if bad:
            raise Invalid(f"not an HPR number: {', '.join(bad)}")
        if current.blocked - set(blocked):
            raise Forbidden(
                "a block is lifted by a health worker who is not blocked "
                "(Patient/[id]/$kj-lift-block) or the helpline, not by the patient"
            )
    reserved_at, started_at = current.reserved_at, current.started_at
    if "reserve" in values:
        reserve = _boolean(values["reserve"])
        if reserve and reserved_at is None:
            reserved_at = now
        elif not reserve and reserved_at is not None:
            if current.deletion_due(now):
                started_at = now  # the old one is (or is due to be) deleted
            reserved_at = None
    return Privacy(
        frozenset(restricted) if restricted is not None else current.restricted,
        frozenset(blocked) if blocked is not None else current.blocked,
        reserved_at,
        started_at,
    )


def _boolean(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise Invalid("reserve is true or false")


def lift_block(privacy: Privacy, hpr: str, caller_hpr: str | None, reason: str) -> Privacy:
    """A health worker lifts the patient's block of ``hpr`` (domain.md 2.3: "lifting only
    via non-blocked HP or helpline"), stating why.  A blocked health worker lifts none."""
    if not reason.strip():
        raise Invalid("state the reason for lifting the block in 'reason'")
    if not caller_hpr or caller_hpr in privacy.blocked:
        raise Forbidden("a health worker the patient has blocked cannot lift a block")
    if hpr not in privacy.blocked:
        raise Unprocessable(f"the patient has not blocked HPR {hpr}")
    return Privacy(
        privacy.restricted, privacy.blocked - {hpr}, privacy.reserved_at, privacy.started_at
    )


# ---- access --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """A decision on reading a patient's kjernejournal."""

    basis: str | None  # the NHN basis, None for the citizen
    purpose: str  # v3 ActReason for the audit log: TREAT, ETREAT, PATRQT
    withheld: frozenset[str] = field(default_factory=frozenset)  # restricted parts left out
    opened_restricted: frozenset[str] = field(default_factory=frozenset)
    emergency: bool = False

    @property
    def flagged(self) -> bool:
        """Emergency and restricted-part accesses are followed up (domain.md 2.3), and so is
        every claim of AKUTT: whether the emergency was real is the reviewer's question."""
        return self.basis == AKUTT or self.emergency or bool(self.opened_restricted)


def personnel_access(
    *,
    hpr: str | None,
    profession: str | None,
    basis: str | None,
    reason: str | None,
    care_relationship: str | None,
    blocked_by_consent: bool,
    privacy: Privacy,
) -> Access:
    """May a health worker read this kjernejournal, on the basis they state?  Raises the
    typed error to answer with.  Order matters: a block holds even in an emergency."""
    if privacy.reserved_at is not None:
        raise NotFound("no kjernejournal exists for this patient")
    if (hpr and hpr in privacy.blocked) or blocked_by_consent:
        raise Forbidden("the patient has blocked this health worker; this holds in emergencies")
    if profession in ("FA", "FA1", "FA2", "AT"):
        raise Forbidden("a pharmacist's role does not cover the kjernejournal")
    if basis is None:
        raise Invalid(
            "state the access basis in header nhn-access-basis: " + ", ".join(sorted(BASES))
        )
    if basis not in BASES:
        raise Invalid(f"unknown access basis {basis!r}: use one of {', '.join(sorted(BASES))}")
    restricted = frozenset(p for p in PARTS if privacy.restricts(p))
    if basis == AKUTT:
        if not reason:
            raise Invalid("emergency access (AKUTT) needs nhn-access-reason")
        # An emergency access is one the emergency opened: no care relationship, or
        # restricted parts.  AKUTT from the patient's own clinician opens nothing more.
        emergency = care_relationship is None or bool(restricted)
        purpose = "ETREAT" if emergency else "TREAT"
        return Access(basis, purpose, opened_restricted=restricted, emergency=emergency)
    if basis == UNNTAK and care_relationship not in GP_RELATIONSHIPS:
        raise Forbidden("access basis UNNTAK is for the patient's GP (fastlege) only")
    if care_relationship is None:
        raise Forbidden(
            "no care relationship with this patient: consent needs one; "
            "use AKUTT with a reason in an emergency"
        )
    if basis == FORHOYET:
        return Access(basis, "TREAT", opened_restricted=restricted)
    return Access(basis, "TREAT", withheld=restricted)


def citizen_access(
    own_record: bool, child_in_care: bool, areas: frozenset[str] = frozenset()
) -> Access:
    """The citizen reads their own kjernejournal, that of a child under 12 at the same
    address (the guard's facts; not a child from 12), and that of someone whose fullmakt
    gives them the area "innsyn" (helsenorge's service area 1)."""
    if not (own_record or child_in_care or INSIGHT in areas):
        raise NotFound("no kjernejournal of yours with this id")
    return Access(None, "PATRQT")


def may_register(kind: str, profession: str | None) -> None:
    """Critical information is registered by a physician, never the patient."""
    if kind != "personnel":
        raise Forbidden("critical information is registered by health personnel, not patients")
    if profession not in REGISTERING_PROFESSIONS:
        raise Forbidden(
            f"critical information is registered by a physician (profession {profession!r})"
        )


# ---- validation of critical information --------------------------------------------------------

_ICD10 = re.compile(r"^([A-Z])(\d\d)(\.\d{1,2})?$|^([A-Z])(\d\d)(\d{1,2})?$")


def icd10_allowed(code: str) -> bool:
    """ICD-10 codes except chapters XX (V01-Y98, external causes) and XXI (Z00-Z99, factors
    influencing health status), which NHN refuses (domain.md 2.2)."""
    match = _ICD10.match(code.strip().upper())
    if not match:
        return False
    letter = match.group(1) or match.group(4)
    return letter not in ("V", "W", "X", "Y", "Z")


def category_of(resource: dict) -> Category:
    """The critical-information category a resource declares (its KJ category coding)."""
    codes = [
        c.get("code")
        for concept in _as_list(resource.get("category"))
        for c in (concept.get("coding", []) if isinstance(concept, dict) else [])
        if c.get("system") == KJ
    ]
    codes += [
        t.get("code") for t in (resource.get("meta") or {}).get("tag", []) if t.get("system") == KJ
    ]
    type_ = resource["resourceType"]
    if type_ == "AllergyIntolerance" and not codes:
        medication = "medication" in _as_list(resource.get("category"))
        codes = ["legemiddelreaksjon" if medication else "annen-allergi"]
    if type_ == "Procedure" and not codes:
        codes = ["behandling"]
    if type_ == "Device" and not codes:
        codes = ["implantat"]
    for code in codes:
        category = CATEGORIES.get(code)
        if category and type_ in category.types:
            return category
    allowed = [c.code for c in CATEGORIES.values() if type_ in c.types]
    if not allowed:
        raise Unprocessable(f"{type_} is not a kind of critical information")
    raise Unprocessable(
        f"state the category of this {type_} as a {KJ} coding: one of {', '.join(allowed)}",
        expression=f"{type_}.category",
    )


def check_entry(resource: dict, category: Category) -> None:
    """The KJ rules for one entry's content (NHN's profiles, domain.md 2.2)."""
    type_ = resource["resourceType"]
    if not any(e.get("url") == KJ_SOURCE_OF_INFORMATION for e in resource.get("extension", [])):
        raise Unprocessable(
            "each entry records its source of information (extension KjSourceOfInformation)",
            expression=f"{type_}.extension",
        )
    if type_ == "AllergyIntolerance":
        _check_allergy(resource, category)
    elif type_ == "Procedure" and not (resource.get("code") or {}).get("coding"):
        # Procedure-uv-ips: code 1..1 (an IPS document cannot carry a treatment without one).
        raise Unprocessable("an ongoing treatment names what it is", expression="Procedure.code")
    elif type_ == "Condition":
        codings = (resource.get("code") or {}).get("coding", [])
        icd = [c for c in codings if c.get("system") in ICD10_SYSTEMS]
        if not icd:
            raise Unprocessable(
                "a critical condition is coded with ICD-10", expression="Condition.code"
            )
        for coding in icd:
            if not icd10_allowed(coding.get("code", "")):
                raise Unprocessable(
                    f"ICD-10 {coding.get('code')!r} is not allowed: chapters XX (V01-Y98) and "
                    "XXI (Z00-Z99) are excluded",
                    expression="Condition.code",
                )
    elif (
        type_ == "Flag"
        and category.code == "livsforlengende"
        and not (resource.get("period") or {}).get("end")
    ):
        raise Unprocessable(
            "a limit on life-prolonging treatment states how long it is valid (period.end)",
            expression="Flag.period.end",
        )


ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"


def complete(resource: dict) -> None:
    """What an entry's registrar may leave out and the service states: an allergy's
    clinicalStatus is active unless said otherwise (NHN: active or inactive; R4 ait-1 and
    the IPS need one on every entry not entered-in-error)."""
    if resource.get("resourceType") != "AllergyIntolerance" or resource.get("clinicalStatus"):
        return
    if _code(resource.get("verificationStatus")) != "entered-in-error":
        resource["clinicalStatus"] = {"coding": [{"system": ALLERGY_CLINICAL, "code": "active"}]}


def _check_allergy(resource: dict, category: Category) -> None:
    clinical = _code(resource.get("clinicalStatus"))
    if clinical not in (None, "active", "inactive"):
        raise Unprocessable("clinicalStatus is active or inactive", expression="clinicalStatus")
    if resource.get("criticality") not in ("low", "high"):
        raise Unprocessable(
            "criticality is low or high", expression="AllergyIntolerance.criticality"
        )
    verification = _code(resource.get("verificationStatus"))
    if verification not in ("confirmed", "unconfirmed", "entered-in-error"):
        raise Unprocessable(
            "verificationStatus is confirmed or unconfirmed (presumed: KjPresumed)",
            expression="AllergyIntolerance.verificationStatus",
        )
    codings = (resource.get("code") or {}).get("coding", [])
    if category.code == "legemiddelreaksjon" and not codings:
        raise Unprocessable(
            "a drug reaction names the drug: ATC, brand name, active ingredient or excipient",
            expression="AllergyIntolerance.code",
        )
    if not codings and not (resource.get("code") or {}).get("text"):
        # AllergyIntolerance-uv-ips: code 1..1.
        raise Unprocessable(
            "an allergy names its substance (code)", expression="AllergyIntolerance.code"
        )


def entered_in_error(resource: dict) -> bool:
    type_ = resource["resourceType"]
    if type_ in ("AllergyIntolerance", "Condition"):
        return _code(resource.get("verificationStatus")) == "entered-in-error"
    return resource.get("status") == "entered-in-error"


def mark_entered_in_error(resource: dict) -> None:
    """NHN's delete: the entry stays in the history with status entered-in-error."""
    type_ = resource["resourceType"]
    if type_ in ("AllergyIntolerance", "Condition"):
        system = (
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
            if type_ == "AllergyIntolerance"
            else "http://terminology.hl7.org/CodeSystem/condition-ver-status"
        )
        resource["verificationStatus"] = {
            "coding": [{"system": system, "code": "entered-in-error"}]
        }
        resource.pop("clinicalStatus", None)
    else:
        resource["status"] = "entered-in-error"


def recorder_role(
    hpr: str | None, name: str | None, org_nr: str | None, profession: str | None, id_: str
) -> dict:
    """The contained PractitionerRole naming who registered (HPR, organisation, profession),
    as NHN's KjAllergyIntolerance carries it; taken from the token, never from the body."""
    from enjournal.fhir.norwegian_ids import OID_HPR, OID_ORGNR

    role: dict = {"resourceType": "PractitionerRole", "id": id_}
    practitioner: dict = {"identifier": {"system": OID_HPR, "value": hpr or "unknown"}}
    if name:
        practitioner["display"] = name
    role["practitioner"] = practitioner
    if org_nr:
        role["organization"] = {"identifier": {"system": OID_ORGNR, "value": org_nr}}
    if profession:
        role["code"] = [{"coding": [{"system": KJ_PROFESSIONS, "code": profession}]}]
    return role


def medication_window(now: datetime) -> datetime:
    return now - MEDICATION_HISTORY


def _code(concept) -> str | None:
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding", []):
        if coding.get("code"):
            return coding["code"]
    return None


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
