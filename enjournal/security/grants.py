"""Writes that grant access, and who may make them.

The guard derives access from shared data: the caller's Practitioner (HPR identifier),
Organization (orgnr identifier) and PractitionerRoles; a patient's GP
(Patient.generalPractitioner) and the GP's office; encounters, episodes of care and referrals
that point at the caller (``facts.CARE_LINKS``); Consents that deny; and, for a citizen, the
Patient with their national id and the children a parent RelatedPerson links them to at the
same address.  Writing any of that is granting access, so once the ordinary policy has allowed
a write these rules decide whether this caller may make that grant:

- the directory (``policy.DIRECTORY``) is written by system clients only (a rule of
  ``policy.py``, since it needs no data);
- a Patient's national ids, birth date, address, address protection (the
  ``adressebeskyttelse`` label in ``meta.security``, which ``representation.py`` reads) and
  GP come from Folkeregisteret and fastlegeregisteret: personnel and citizens may not set or
  change them (a new Patient registered by personnel names no GP and no protection; an
  update that leaves the label out changes it, and is refused like any other such field);
- a RelatedPerson that makes someone a parent (parent role and an identifier) comes from
  Folkeregisteret too: system clients only; one that is a fullmakt (HPOWATT and an
  identifier) is given by the patient through helsenorge's ``$fullmakt`` alone;
- an encounter, episode of care or referral that points at the caller themselves needs a care
  relationship the caller already has, and not through emergency access, so nobody turns an
  emergency access (or none) into an ordinary relationship for themselves;
- a Consent that denies access (a deny provision anywhere) is not created, changed or
  deleted by personnel: a blocked health worker cannot lift their own block.
- a Schedule and its Slots are the office's own: personnel write (or delete) them only when
  the Schedule's actor is the caller, their role or their organisation (helsenorge's
  ``$book``/``$cancel`` change Slots through the trusted store after their own rules).
System clients write all of it, within their scopes.
"""

from __future__ import annotations

from enjournal.fhir import jsonio
from enjournal.fhir.indexing import index_resource
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR
from enjournal.security.policy import Decision
from enjournal.security.representation import ADDRESS_PROTECTION
from enjournal.storage import StoredResource, Transaction

REGISTER_FIELDS = ("birthDate", "address")  # Folkeregisteret's, compared as stored
CALENDAR = ("Schedule", "Slot")  # an office's own: citizens book what it offers


async def checked_write(guard, tx: Transaction, action: str, resource: dict, decision: Decision):
    """``decision`` for writing ``resource``, refused if the write grants access the caller
    may not grant.  For an update the stored version is read to see what changes."""
    if not decision.allowed or action not in ("c", "u") or guard.principal.kind == "system":
        return decision
    old = await _stored(tx, resource) if action == "u" else None
    reason = await _refusal(guard, tx, resource, old)
    return Decision(False, decision.purpose, reason=reason) if reason else decision


def checked_delete(guard, stored: StoredResource, decision: Decision) -> Decision:
    """``decision`` for deleting ``stored``: a denying Consent or a parent link stays."""
    if not decision.allowed or guard.principal.kind == "system":
        return decision
    if stored.type not in ("Consent", "RelatedPerson"):
        return decision
    old = jsonio.loads(stored.content)
    reason = _consent_refusal(guard, None, old) or _parent_link_refusal(None, old)
    return Decision(False, decision.purpose, reason=reason) if reason else decision


async def checked_calendar(guard, tx, stored: StoredResource, decision: Decision) -> Decision:
    """``decision`` for deleting ``stored``: a Schedule or Slot only by its own office."""
    if not decision.allowed or guard.principal.kind == "system":
        return decision
    if stored.type not in CALENDAR:
        return decision
    reason = await _calendar_refusal(guard, tx, jsonio.loads(stored.content))
    return Decision(False, decision.purpose, reason=reason) if reason else decision


async def _refusal(guard, tx, new: dict, old: dict | None) -> str | None:
    type_ = new["resourceType"]
    if type_ in CALENDAR:
        return await _calendar_refusal(guard, tx, new, old)
    if type_ == "Patient":
        return _patient_refusal(new, old)
    if type_ == "RelatedPerson":
        return _parent_link_refusal(new, old)
    if type_ == "Consent":
        return _consent_refusal(guard, new, old)
    return await _self_link_refusal(guard, tx, new)


async def _stored(tx, resource: dict) -> dict | None:
    id_ = resource.get("id")
    if not id_ or resource["resourceType"] not in (
        "Patient",
        "RelatedPerson",
        "Consent",
        *CALENDAR,
    ):
        return None  # care links are judged on the new content alone
    if not await tx.exists(resource["resourceType"], id_):
        return None
    return jsonio.loads((await tx.read(resource["resourceType"], id_)).content)


# ---- Patient: identity and GP from the national registers -------------------------------


def _patient_refusal(new: dict, old: dict | None) -> str | None:
    if _protection(new) != (_protection(old) if old else set()):
        # Lifting it exposes a hidden address to a parent or fullmakt; setting it silently
        # ends their access.  Either is Folkeregisteret's decision.
        return (
            "the address protection (Patient.meta.security, adressebeskyttelse) is changed "
            "only by Folkeregisteret"
        )
    if old is None:
        if new.get("generalPractitioner"):
            return (
                "the GP (Patient.generalPractitioner) comes from fastlegeregisteret; "
                "register the patient without it"
            )
        if _national_ids(new) or _carries_national_id(new):
            # A person with a national id is already in Folkeregisteret, so their Patient
            # comes from it (a system client); a second one would split their record and
            # its access (a citizen with two records can no longer be matched to one).
            return (
                "a patient with a national identity number is registered from "
                "Folkeregisteret; register a patient without one only when they have none"
            )
        return None
    if _gps(new) != _gps(old):
        return "the GP (Patient.generalPractitioner) is changed only by fastlegeregisteret"
    if _national_ids(new) != _national_ids(old):
        return "a patient's national identity number is changed only by Folkeregisteret"
    changed = [f for f in REGISTER_FIELDS if new.get(f) != old.get(f)]
    if changed:
        return f"Patient.{changed[0]} is changed only by Folkeregisteret"
    return None


def _protection(patient: dict) -> set[tuple]:
    """The address protection labels, compared whatever else ``meta`` holds."""
    meta = patient.get("meta")
    labels = meta.get("security") or () if isinstance(meta, dict) else ()
    return {
        (label.get("system"), label.get("code"))
        for label in labels
        if isinstance(label, dict) and label.get("system") == ADDRESS_PROTECTION
    }


def _carries_national_id(patient: dict) -> bool:
    """A fødselsnummer or D-nummer under another system, or none, is still one."""
    from enjournal.fhir.norwegian_ids import is_valid_fnr

    return any(
        isinstance(i, dict) and is_valid_fnr(i.get("value"))
        for i in patient.get("identifier") or ()
    )


def _gps(patient: dict) -> set[tuple]:
    """The GP references as the guard finds them (the index rows)."""
    rows = index_resource(patient)["reference"]
    return {row[1:3] for row in rows if row[0] == "general-practitioner"}


def _national_ids(patient: dict) -> set[tuple]:
    return {
        (i.get("system"), i.get("value"))
        for i in patient.get("identifier") or ()
        if isinstance(i, dict) and i.get("system") in (OID_FNR, OID_DNR)
    }


# ---- Schedule and Slot: an office's own calendar -----------------------------------------


async def _calendar_refusal(guard, tx, new: dict, old: dict | None = None) -> str | None:
    """Personnel write a Schedule (and its Slots) only when its actor is themselves, their
    role or their organisation; for an update both the old and the new must be theirs."""
    mine = await guard.finder.caller(tx)
    for resource in (new, old) if old else (new,):
        if not _actors(await _schedule_of(tx, resource)) & mine:
            return f"{new['resourceType']} belongs to another office's Schedule (Schedule.actor)"
    return None


async def _schedule_of(tx, resource: dict) -> dict | None:
    if resource.get("resourceType") == "Schedule":
        return resource
    schedule = resource.get("schedule")
    ref = schedule.get("reference") if isinstance(schedule, dict) else None
    parts = ref.split("/")[-2:] if isinstance(ref, str) else []
    if len(parts) != 2 or parts[0] != "Schedule" or not await tx.exists(*parts):
        return None
    return jsonio.loads((await tx.read(*parts)).content)


def _actors(schedule: dict | None) -> set[tuple]:
    actors = (schedule or {}).get("actor") or ()
    refs = [a.get("reference") for a in actors if isinstance(a, dict)]
    return {tuple(r.split("/")[-2:]) for r in refs if isinstance(r, str)}


# ---- RelatedPerson: parent links ------------------------------------------------------------


def _parent_link_refusal(new: dict | None, old: dict | None) -> str | None:
    if _is_parent_link(new) or _is_parent_link(old):
        return "a parent's link to a child (RelatedPerson) is kept by Folkeregisteret"
    if _is_fullmakt(new) or _is_fullmakt(old):
        return "a fullmakt is given by the patient on helsenorge (Patient/[id]/$fullmakt)"
    return None


def _is_fullmakt(related: dict | None) -> bool:
    """A RelatedPerson the guard reads as a power of attorney (HPOWATT with an identifier):
    written only by the patient's own ``$fullmakt`` operation."""
    from enjournal.security.representation import is_fullmakt

    return bool(related and related.get("identifier")) and is_fullmakt(related or {})


def _is_parent_link(related: dict | None) -> bool:
    """A RelatedPerson the guard could read as a citizen's child: a parent role and an
    identifier (the guard finds a citizen's children by identifier alone)."""
    from enjournal.security.facts import PARENT_ROLES

    if not related or not related.get("identifier"):
        return False
    roles = {
        c.get("code")
        for r in related.get("relationship") or ()
        if isinstance(r, dict)
        for c in r.get("coding") or ()
        if isinstance(c, dict)
    }
    return bool(roles & PARENT_ROLES)


# ---- Consent: denials -----------------------------------------------------------------------


def _consent_refusal(guard, new: dict | None, old: dict | None) -> str | None:
    if guard.principal.kind != "personnel":
        return None  # citizens: the policy limits them to their own record
    if _denies(new) or _denies(old):
        return (
            "a Consent that denies access is the patient's: health personnel may not "
            "create, change or delete it"
        )
    return None


def _denies(consent: dict | None) -> bool:
    """A deny provision anywhere in the Consent (the guard and the services read them)."""
    if not consent:
        return False
    provisions = [consent.get("provision")]
    while provisions:
        provision = provisions.pop()
        if not isinstance(provision, dict):
            continue
        if provision.get("type") == "deny":
            return True
        provisions.extend(provision.get("provision") or ())
    return False


# ---- care links to the caller themselves ------------------------------------------------


async def _self_link_refusal(guard, tx, resource: dict) -> str | None:
    from enjournal.security.facts import CARE_LINKS

    links = [
        (param, types) for t, _p, param, types, _l in CARE_LINKS if t == resource["resourceType"]
    ]
    if not links:
        return None
    caller = await guard.finder.caller(tx)
    rows = index_resource(resource, tx.search_parameters)["reference"]
    for param, types in links:
        # By id alone, as the guard's relationship query matches them.
        own_ids = {id_ for type_, id_ in caller if type_ in types}
        if any(row[0] == param and row[2] in own_ids for row in rows):
            return await _needs_relationship(guard, tx, resource)
    return None


async def _needs_relationship(guard, tx, resource: dict) -> str | None:
    for patient in guard._patients_in_content(resource) or ():
        facts = await guard.facts(tx, patient)
        ordinary = facts.care_relationship and not (
            facts.restricted_by_consent or facts.blocked_by_consent
        )
        if not ordinary:
            return (
                f"a {resource['resourceType']} naming yourself or your organisation is "
                "recorded only by someone who already has a care relationship with the "
                "patient (emergency access does not count); the admission is registered "
                "by the patient administrative system"
            )
    return None
