"""The access policy: who may read and write whose health data, as rules in one place.

Each rule is a small function over facts gathered by ``enjournal.security.guard``; none of
them touches the database, so the whole policy reads (and tests) as a table.

1. A system client acts within its SMART ``system/`` scopes; a register's client reads
   only through export operations.
2. A citizen reads their own record and that of a child in their care under 12 who lives at
   the same address (domain brief 2.3); a citizen writes only their own Consents.
3. Health personnel reach a patient's data only with an active care relationship (the
   patient is on their GP list, has an encounter or episode of care at their organisation,
   or was referred there) or by emergency access with a stated reason, which is allowed,
   flagged and audited.
4. Roles limit resource types: a pharmacist sees prescriptions and dispensations (and who
   the patient is), not the whole record, and writes only dispensations.
5. SMART scopes bound everything; a personnel token whose access comes only from
   ``patient/`` scopes reaches only the patient it was launched for.
6. A patient's Consent is honoured: a denial that names the caller (practitioner or
   organisation) holds even in an emergency; a general restriction yields only to
   emergency access.
Resources outside any patient's compartment (organisations, practitioners, medications,
terminology) are readable by any authenticated caller; the directory (practitioners, their
roles, organisations) is written only by system clients, since the guard finds the caller's
care relationships through it (``enjournal.security.grants`` holds the other writes that
grant access).
"""

from __future__ import annotations

from dataclasses import dataclass

from enjournal.security.principal import Principal
from enjournal.security.scopes import grant, is_register_client

# Volven 9060 profession codes whose holders work at a pharmacy.
# farmasøyt (FA, and FA1/FA2 provisor-/reseptarfarmasøyt), apotektekniker (AT)
PHARMACY_PROFESSIONS = frozenset({"FA", "FA1", "FA2", "AT"})
PHARMACY_TYPES = frozenset({"Patient", "MedicationRequest", "MedicationDispense", "Medication"})
# What a pharmacy writes itself: the dispensing.  Prescriptions change only through the
# e-resept operations, and the patient's identity is not the pharmacy's to change.
PHARMACY_WRITES = frozenset({"MedicationDispense"})
CHILD_AGE_LIMIT = 12
# Helsenorge's service areas (tjenesteområder, domain brief 4.1) a representative may hold:
# 1 "Innsyn i opplysninger registrert om deg" (reading the record) and 3 "Digitale
# helsetjenester" (messages, appointments and forms with the GP office).
INSIGHT, SERVICES = "1", "3"
# What a citizen writes in their own (or a represented person's) compartment: the digital
# services with the GP office.  Each goes through a helsenorge operation that fills in who
# wrote it from the token.
CITIZEN_SERVICE_TYPES = frozenset({"Communication", "Appointment", "QuestionnaireResponse"})
# NATIONAL_FORMS: the forms helsenorge serves to citizens (the self-report form); a health
# worker who rewrote one would change what every citizen is asked, so system clients only.
NATIONAL_FORMS = frozenset({"Questionnaire"})
# The directory: who the caller is and where they work (the guard finds a caller's
# Practitioner by HPR number, their Organization by organisation number, their roles).  It is
# kept by the national registers (HPR, Enhetsregisteret, NHN's address register), so writing
# it is granting access: system clients only.
DIRECTORY = frozenset(
    {
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "OrganizationAffiliation",
        "Location",
        "HealthcareService",
        "Endpoint",
    }
)

# FHIR v3 ActReason purposes of use, as written to the audit log.
TREAT, EMERGENCY, PATIENT_REQUEST, SYSTEM = "TREAT", "ETREAT", "PATRQT", "HOPERAT"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    purpose: str = TREAT
    emergency: bool = False
    reason: str = ""  # why (for the audit log and for a refusal's message)
    # With several patients: those whose record only the emergency opened (empty: all).
    emergency_for: frozenset[str] = frozenset()

    def for_patient(self, patient: str | None) -> Decision:
        """This decision as it concerns one patient (what their audit record says)."""
        if not self.emergency or not self.emergency_for or patient in self.emergency_for:
            return self
        return Decision(self.allowed, TREAT, False, self.reason)


@dataclass
class PatientFacts:
    """What the guard found out about the caller's relation to one patient."""

    patient_id: str
    own_record: bool = False  # citizen: this is the caller
    child_in_care: bool = False  # citizen: a child under 12 at the caller's address
    # citizen acting for another person (a child, or by fullmakt): the service areas they
    # hold for this patient (``INSIGHT``, ``SERVICES``); own_record and child_in_care hold all
    areas: frozenset[str] = frozenset()
    care_relationship: str | None = None  # personnel: "gp-list", "encounter", "referral"...
    blocked_by_consent: bool = False  # a Consent denies this caller by name
    restricted_by_consent: bool = False  # a Consent restricts the record generally
    blocked_refs: frozenset[str] = frozenset()  # resources a Consent denies this caller


def decide(
    principal: Principal,
    action: str,  # c r u d s (SMART)
    resource_type: str,
    facts: PatientFacts | None,  # None: the resource is in no patient's compartment
    *,
    emergency_reason: str | None = None,
) -> Decision:
    context = grant(principal.scopes, resource_type, action)
    if context is None:
        return Decision(
            False, reason=f"the token's scopes do not allow {action} on {resource_type}"
        )
    if (
        context == "patient"
        and facts is not None
        and principal.kind != "citizen"
        and facts.patient_id != principal.patient
    ):
        # SMART: patient/ scopes reach only the patient the app was launched for.
        return Decision(False, reason="the token's patient/ scopes cover only its launch patient")
    if facts is None:
        return _shared_data(principal, action, resource_type)
    if principal.kind == "system":
        return _system(principal, action, resource_type)
    if principal.kind == "citizen":
        return _citizen(action, resource_type, facts)
    return _personnel(principal, action, resource_type, facts, emergency_reason)


def _shared_data(principal: Principal, action: str, resource_type: str) -> Decision:
    if action in ("r", "s"):
        return Decision(True, SYSTEM if principal.kind == "system" else TREAT)
    if principal.kind == "citizen":
        return Decision(False, reason="citizens cannot change shared data")
    if resource_type in NATIONAL_FORMS and principal.kind != "system":
        return Decision(
            False, reason=f"{resource_type} is a national form, published by system clients only"
        )
    if resource_type in DIRECTORY and principal.kind != "system":
        return Decision(
            False,
            reason=f"{resource_type} is part of the directory, kept by the national registers",
        )
    return Decision(True, SYSTEM if principal.kind == "system" else TREAT)


def _system(principal: Principal, action: str, resource_type: str) -> Decision:
    if is_register_client(principal.scopes):
        return Decision(False, reason="a register's client reads only through export operations")
    return Decision(True, SYSTEM)


def _citizen(action: str, resource_type: str, facts: PatientFacts) -> Decision:
    """What the patient may do themself, narrowed to the areas a representative holds: a
    representative never gets more than the person represented has."""
    own = _citizen_own(action, resource_type, facts)
    if not own.allowed or facts.own_record or facts.child_in_care:
        return own
    if not facts.areas:
        return Decision(False, PATIENT_REQUEST, reason="not the caller's record")
    needed = _area_needed(action, resource_type)
    if needed is None or not (needed & facts.areas):
        return Decision(False, PATIENT_REQUEST, reason="outside the representation's areas")
    return own


def _citizen_own(action: str, resource_type: str, facts: PatientFacts) -> Decision:
    if not (facts.own_record or facts.child_in_care or facts.areas):
        return Decision(False, PATIENT_REQUEST, reason="not the caller's record")
    if action in ("r", "s"):
        return Decision(True, PATIENT_REQUEST)
    if resource_type == "Consent" and facts.own_record:
        return Decision(True, PATIENT_REQUEST)
    if resource_type in CITIZEN_SERVICE_TYPES and action in ("c", "u"):
        return Decision(True, PATIENT_REQUEST)  # messages, appointments, forms
    return Decision(False, PATIENT_REQUEST, reason="citizens cannot change clinical data")


def _area_needed(action: str, resource_type: str) -> frozenset[str] | None:
    """The areas, any of which lets a representative do ``action`` on ``resource_type``."""
    if resource_type == "Patient" and action in ("r", "s"):
        return frozenset({INSIGHT, SERVICES})  # whom one acts for
    if resource_type in CITIZEN_SERVICE_TYPES:
        return frozenset({SERVICES})
    return frozenset({INSIGHT}) if action in ("r", "s") else None


def _personnel(
    principal: Principal,
    action: str,
    resource_type: str,
    facts: PatientFacts,
    emergency_reason: str | None,
) -> Decision:
    if principal.profession in PHARMACY_PROFESSIONS and resource_type not in PHARMACY_TYPES:
        return Decision(False, reason=f"a pharmacist's role does not cover {resource_type}")
    pharmacy = principal.profession in PHARMACY_PROFESSIONS
    if pharmacy and action in ("c", "u", "d") and resource_type not in PHARMACY_WRITES:
        return Decision(False, reason=f"a pharmacist's role does not change {resource_type}")
    if facts.blocked_by_consent:
        return Decision(False, reason="the patient has blocked this health worker or organisation")
    if facts.care_relationship and not facts.restricted_by_consent:
        return Decision(True, TREAT, reason=f"care relationship: {facts.care_relationship}")
    if emergency_reason:
        return Decision(True, EMERGENCY, emergency=True, reason=emergency_reason)
    if facts.restricted_by_consent:
        return Decision(False, reason="the patient has restricted access; emergency access only")
    return Decision(False, reason="no care relationship with this patient")
