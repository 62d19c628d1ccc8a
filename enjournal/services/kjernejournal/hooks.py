"""Kjernejournal's rules inside the general FHIR API (a guard hook: ``platform.add_hook``).

Critical information lives in the shared store as ordinary resources with kjernejournal's
tag, so the general REST API could reach it; this hook keeps the kjernejournal's rules there:
tagged resources are written only through the service's operations (which apply the role
rule and record who registered), and reads honour the patient's reservation, blocking and
restriction (restricted parts open only in an emergency: the general API carries no
heightened-consent basis).
"""

from __future__ import annotations

from enjournal.services.kjernejournal import records
from enjournal.services.kjernejournal.rules import PATIENT_REGISTRATION, Privacy

PART_OF_TAG = {PATIENT_REGISTRATION: "egne-registreringer"}


async def check(guard, tx, action: str, resource: dict, patients) -> str | None:
    if not records.is_kj(resource):
        return None
    if action in ("c", "u", "d"):
        return (
            "kjernejournal entries are changed only through Patient/[id]/$kj-critical-info, "
            "$kj-own-registration and $kj-privacy"
        )
    principal = guard.principal
    if principal.kind == "citizen":
        return None  # the general policy already limits a citizen to their own and children
    if resource.get("resourceType") == "Consent":
        return "the patient's kjernejournal privacy settings are not shown (use $kj-status)"
    for patient in patients or ():
        privacy = await _privacy(guard, tx, patient)
        if privacy.reserved_at is not None:
            return "the patient has reserved against having a kjernejournal"
        if privacy.before_start((resource.get("meta") or {}).get("lastUpdated")):
            return "the entry belongs to a kjernejournal deleted after a reservation"
        if principal.hpr and principal.hpr in privacy.blocked:
            return "the patient has blocked this health worker"
        part = PART_OF_TAG.get(records.kj_tag(resource) or "", "kritisk-info")
        if privacy.restricts(part) and not guard.emergency_reason:
            return "the patient has restricted this part of the kjernejournal"
    return None


async def _privacy(guard, tx, patient: str) -> Privacy:
    cache = guard.request_cache.setdefault("kj-privacy", {})
    if patient not in cache:
        cache[patient], _ = await records.privacy(tx, patient)
    return cache[patient]
