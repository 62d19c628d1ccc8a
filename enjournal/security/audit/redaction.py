"""What a citizen may see of one stored AuditEvent: its coded parts, never free text.

Access logs shown to citizens show the reason template, never the free-text reason a health
worker wrote (domain.md 10).  Free text reaches events through the emergency reason
(``nhn-access-reason``: an extension and the patient entity's ``detail``), ``outcomeDesc``
(refusal messages, which may echo the request; e-resept's conflicts), a search's ``query``,
the request id (an ``X-Request-ID`` header) and an entity's ``detail`` (the restricted parts
opened).  The citizen's copy is built from an allowlist, so a field added to events later
stays out of it until added here: codings keep system, code and display (displays come from
this server's tables), and the only texts kept are the fixed ones of ``codes`` (a citizen's
role, the lifted-block template).  What stays: who (name, HPR, role, organisation), when,
what (interaction, resources), the outcome, the purpose and access basis with their
displays, and the emergency flag (the BTG label).  The audit log itself keeps everything.
"""

from __future__ import annotations

import re
from typing import Any

from enjournal.security.audit.codes import (
    ACCESS_BASIS,
    ACCESS_BASIS_SYSTEM,
    ACT_REASON,
    BLOCK_LIFTED,
    CITIZEN_ROLE,
    PURPOSES,
)

_FIXED_TEXTS = frozenset({CITIZEN_ROLE})
# The templates a kept outcomeDesc must match in full, each slot a number.
_TEMPLATES = (re.compile(re.escape(BLOCK_LIFTED).replace(r"\{hpr\}", r"\d{1,9}")),)


def citizen_copy(event: dict) -> dict:
    """The parts of ``event`` a citizen is shown (a valid R4 AuditEvent)."""
    out: dict[str, Any] = {"resourceType": "AuditEvent"}
    out["type"] = _coding(event.get("type") or {})
    out["subtype"] = [_coding(c) for c in event.get("subtype") or ()]
    for key in ("action", "recorded", "outcome"):
        if key in event:
            out[key] = event[key]
    if _is_template(event.get("outcomeDesc")):
        out["outcomeDesc"] = event["outcomeDesc"]
    if purposes := _purposes(event.get("purposeOfEvent")):
        out["purposeOfEvent"] = purposes
    out["agent"] = [_agent(agent) for agent in event.get("agent") or ()]
    out["source"] = _source(event.get("source") or {})
    if entities := [e for e in map(_entity, event.get("entity") or ()) if e]:
        out["entity"] = entities
    return out


def _coding(coding: dict) -> dict:
    return {k: coding[k] for k in ("system", "code", "display") if k in coding}


def _concept(concept: dict) -> dict:
    """A CodeableConcept's codings; its text only if it is one of the fixed texts."""
    out: dict[str, Any] = {}
    if codings := [_coding(c) for c in concept.get("coding") or ()]:
        out["coding"] = codings
    if concept.get("text") in _FIXED_TEXTS:
        out["text"] = concept["text"]
    return out


def _is_template(text: Any) -> bool:
    return isinstance(text, str) and any(t.fullmatch(text) for t in _TEMPLATES)


def _purposes(concepts: list | None) -> list[dict]:
    """The purpose (v3-ActReason) and access basis codings, displays from the fixed tables
    (the reason template); any text or other coding is dropped."""
    codings = []
    for concept in concepts or ():
        for coding in concept.get("coding") or ():
            if out := _purpose_coding(coding):
                codings.append(out)
    return [{"coding": codings}] if codings else []


def _purpose_coding(coding: dict) -> dict | None:
    system, code = coding.get("system"), coding.get("code")
    if system == ACT_REASON:
        display = PURPOSES.get(code or "", (None, None))[0]
    elif system == ACCESS_BASIS_SYSTEM:
        display = ACCESS_BASIS.get(code or "")
    else:
        return None
    out = {"system": system, "code": code}
    return {**out, "display": display} if display else out


def _agent(agent: dict) -> dict:
    out: dict[str, Any] = {}
    if "type" in agent:
        out["type"] = _concept(agent["type"])
    if roles := [r for r in map(_concept, agent.get("role") or ()) if r]:
        out["role"] = roles
    who = agent.get("who") or {}
    out["who"] = {k: who[k] for k in ("type", "display") if k in who}
    if ident := who.get("identifier"):
        out["who"]["identifier"] = {k: ident[k] for k in ("system", "value") if k in ident}
    for key in ("altId", "name", "requestor"):
        if key in agent:
            out[key] = agent[key]
    if purposes := _purposes(agent.get("purposeOfUse")):
        out["purposeOfUse"] = purposes
    return out


def _source(source: dict) -> dict:
    out: dict[str, Any] = {"observer": {"display": "enjournal"}}
    if "site" in source:
        out["site"] = source["site"]
    if types := [_coding(c) for c in source.get("type") or ()]:
        out["type"] = types
    return out


def _entity(entity: dict) -> dict | None:
    """An entity naming a resource (the patient, what was read): its reference and codes.
    A query entity (the search string) names none and is left out."""
    reference = (entity.get("what") or {}).get("reference")
    if not reference:
        return None
    out: dict[str, Any] = {"what": {"reference": reference}}
    for key in ("type", "role"):
        if key in entity:
            out[key] = _coding(entity[key])
    if labels := [_coding(label) for label in entity.get("securityLabel") or ()]:
        out["securityLabel"] = labels
    return out
