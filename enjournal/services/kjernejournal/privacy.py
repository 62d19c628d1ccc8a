"""The citizen's kjernejournal privacy settings as one FHIR Consent per patient.

Restriction (sperre) of the whole record or of parts, blocked health personnel (by HPR
number) and the reservation against having a kjernejournal (helsenorge
personverninnstillinger, domain.md 2.3) are nested ``deny`` provisions under a ``permit``
top provision, in a Consent whose category is kjernejournal's own.  The general access
guard skips this category (``platform.consent_systems``); the kjernejournal access
check reads it.  Its id is fixed per patient (``kj-privacy-<patient id>``), so it is read by
id and its history is the history of the settings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from enjournal.fhir.datetime import date_range
from enjournal.fhir.norwegian_ids import OID_HPR
from enjournal.services.kjernejournal.rules import KJ, PRIVACY_CATEGORY, Privacy

SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
RESTRICT, BLOCK, RESERVE = "sperre", "blokkering", "reservasjon"


def consent_id(patient_id: str) -> str:
    return f"kj-privacy-{patient_id}"


def to_consent(patient_id: str, privacy: Privacy, now: datetime) -> dict:
    provisions: list[dict] = []
    for part in sorted(privacy.restricted):
        provisions.append({"type": "deny", "code": [_concept(RESTRICT, part)]})
    for hpr in sorted(privacy.blocked):
        provisions.append(
            {
                "type": "deny",
                "code": [_concept(BLOCK, "hpr")],
                "actor": [
                    {
                        "role": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                    "code": "PRCP",
                                }
                            ]
                        },
                        "reference": {"identifier": {"system": OID_HPR, "value": hpr}},
                    }
                ],
            }
        )
    if privacy.reserved_at is not None:
        provisions.append(
            {
                "type": "deny",
                "code": [_concept(RESERVE, "kjernejournal")],
                "period": {"start": privacy.reserved_at.isoformat(timespec="seconds")},
            }
        )
    consent: dict[str, Any] = {
        "resourceType": "Consent",
        "id": consent_id(patient_id),
        "meta": {"tag": [{"system": KJ, "code": "personvern"}]},
        "status": "active",
        "scope": {"coding": [{"system": SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [PRIVACY_CATEGORY]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": now.isoformat(timespec="seconds"),
        "policyRule": {"text": "Forskrift om nasjonal kjernejournal (kjernejournalforskriften)"},
        "provision": {"type": "permit"},
    }
    if privacy.started_at is not None:
        # The kjernejournal exists from this moment (a new one after a reservation).
        consent["provision"]["period"] = {"start": _format(privacy.started_at)}
    if provisions:
        consent["provision"]["provision"] = provisions
    return consent


def from_consent(consent: dict | None) -> Privacy:
    if not consent or consent.get("status") != "active":
        return Privacy()
    restricted, blocked, reserved_at = set(), set(), None
    top = consent.get("provision") or {}
    started = (top.get("period") or {}).get("start")
    for provision in top.get("provision", []):
        if provision.get("type") != "deny":
            continue
        for concept in provision.get("code", []):
            for coding in concept.get("coding", []):
                kind, _, value = (coding.get("code") or "").partition(":")
                if coding.get("system") != KJ:
                    continue
                if kind == RESTRICT:
                    restricted.add(value)
                elif kind == BLOCK:
                    for actor in provision.get("actor", []):
                        ident = (actor.get("reference") or {}).get("identifier") or {}
                        if ident.get("system") == OID_HPR and ident.get("value"):
                            blocked.add(ident["value"])
                elif kind == RESERVE:
                    start = (provision.get("period") or {}).get("start")
                    if start:
                        reserved_at = _instant(start)
    return Privacy(
        frozenset(restricted),
        frozenset(blocked),
        reserved_at,
        _instant(started) if started else None,
    )


def _format(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _concept(kind: str, value: str) -> dict:
    return {"coding": [{"system": KJ, "code": f"{kind}:{value}"}]}


def _instant(value: str) -> datetime:
    from datetime import UTC

    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return datetime.fromtimestamp(date_range(value)[0] / 1000, UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
