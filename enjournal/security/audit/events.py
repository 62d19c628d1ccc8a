"""Building one FHIR R4 AuditEvent (http://hl7.org/fhir/R4/auditevent.html) for one
interaction by one :class:`~enjournal.security.principal.Principal`."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable
from typing import Any

from enjournal.fhir.datetime import format_instant
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR, OID_HPR, OID_ORGNR
from enjournal.security.audit.codes import (
    ACCESS_BASIS,
    ACCESS_BASIS_SYSTEM,
    ACT_REASON,
    AUDIT_EVENT_TYPE,
    CITIZEN_ROLE,
    CLIENT_ID_SYSTEM,
    DICOM,
    EMERGENCY_PURPOSES,
    EMERGENCY_REASON_EXT,
    ENTITY_TYPE,
    OBJECT_ROLE,
    PROFESSION,
    PROFESSIONS,
    PURPOSES,
    REQUEST_ID_EXT,
    RESTFUL_CODES,
    RESTFUL_INTERACTION,
    ROLE_CLASS,
    SECURITY_ROLE_TYPE,
    SOURCE_TYPE,
    SUBJECT_SYSTEM,
)
from enjournal.security.principal import Principal


def audit_event(
    principal: Principal,
    *,
    action: str,
    subtype: str,
    outcome: str = "0",
    patient_id: str | None = None,
    entities: Iterable[str] = (),
    purpose: str = "TREAT",
    emergency_reason: str | None = None,
    request_id: str | None = None,
    query: str | None = None,
    access_basis: str | None = None,
    organisation_name: str | None = None,
    outcome_desc: str | None = None,
    recorded_ms: int | None = None,
    emergency: bool | None = None,
) -> dict:
    """A FHIR R4 AuditEvent for one interaction.

    ``action`` is AuditEvent.action (C R U D E), ``subtype`` the restful-interaction code
    (read, vread, search-type, create, update, delete, history-instance, ...) or an operation
    name (``$everything``), ``outcome`` "0" success, "4" minor failure, "8" serious failure,
    ``entities`` references such as ``Observation/123``, ``purpose`` a v3-ActReason code
    (TREAT, ETREAT for emergency access, PATRQT, HOPERAT ...), ``access_basis`` an NHN basis
    code (UNNTAK, SAMTYKKE, FORHOYET_SAMTYKKE, AKUTT) shown to the citizen.  Emergency access
    (purpose ETREAT/BTG, basis AKUTT, or a reason given) is flagged with the security label
    BTG on the patient entity and the reason in its ``detail`` and in an extension;
    ``emergency``, when given, says so instead (the policy's decision, not the stated basis).
    """
    ms = int(time.time() * 1000) if recorded_ms is None else recorded_ms
    if emergency is None:  # not said: read from the purpose, the basis and the reason
        emergency = (
            purpose in EMERGENCY_PURPOSES or access_basis == "AKUTT" or emergency_reason is not None
        )
    purpose_codings = [_purpose_coding(purpose)]
    if access_basis:
        purpose_codings.append(
            _coding(ACCESS_BASIS_SYSTEM, access_basis, ACCESS_BASIS.get(access_basis))
        )
    purpose_of_use = [{"coding": purpose_codings}]

    event: dict[str, Any] = {"resourceType": "AuditEvent"}
    extensions = []
    if request_id:
        extensions.append({"url": REQUEST_ID_EXT, "valueString": request_id})
    if emergency and emergency_reason:
        extensions.append({"url": EMERGENCY_REASON_EXT, "valueString": emergency_reason})
    if extensions:
        event["extension"] = extensions
    event["type"] = _coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation")
    event["subtype"] = _subtype(subtype)
    event["action"] = action
    event["recorded"] = format_instant(ms)
    event["outcome"] = outcome
    if outcome_desc:
        event["outcomeDesc"] = outcome_desc
    event["purposeOfEvent"] = purpose_of_use
    event["agent"] = _agents(principal, purpose_of_use, organisation_name)
    event["source"] = {
        "site": "enjournal",
        "observer": {"display": "enjournal"},
        "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
    }
    entity = _entities(patient_id, entities, query, emergency, emergency_reason)
    if entity:
        event["entity"] = entity
    return event


def _coding(system: str, code: str, display: str | None = None) -> dict:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _purpose_coding(purpose: str) -> dict:
    display = PURPOSES.get(purpose, (None, None))[0]
    return _coding(ACT_REASON, purpose, display)


def _subtype(subtype: str) -> list[dict]:
    if subtype in RESTFUL_CODES:
        return [_coding(RESTFUL_INTERACTION, subtype, subtype)]
    # An operation: the interaction is "operation", and the operation's name is kept too.
    return [_coding(RESTFUL_INTERACTION, "operation", "operation"), {"code": subtype}]


def _agents(principal: Principal, purpose_of_use: list[dict], org_name: str | None) -> list:
    agent: dict[str, Any] = {}
    if principal.kind == "personnel":
        agent["type"] = {"coding": [_coding(SECURITY_ROLE_TYPE, "humanuser", "human user")]}
        if principal.profession:
            display = PROFESSIONS.get(principal.profession)
            agent["role"] = [{"coding": [_coding(PROFESSION, principal.profession, display)]}]
        if principal.hpr:
            ident = {"system": OID_HPR, "value": principal.hpr}
        else:
            ident = {"system": SUBJECT_SYSTEM, "value": principal.subject}
        who: dict[str, Any] = {"type": "Practitioner", "identifier": ident}
    elif principal.kind == "citizen":
        agent["type"] = {"coding": [_coding(SECURITY_ROLE_TYPE, "humanuser", "human user")]}
        agent["role"] = [{"text": CITIZEN_ROLE}]
        if principal.pid:
            system = OID_DNR if principal.pid[:1] in "4567" else OID_FNR
            ident = {"system": system, "value": principal.pid}
        else:
            ident = {"system": SUBJECT_SYSTEM, "value": principal.subject}
        who = {"identifier": ident}
    else:
        agent["type"] = {"coding": [_coding(DICOM, "110150", "Application")]}
        who = {
            "type": "Device",
            "identifier": {"system": CLIENT_ID_SYSTEM, "value": principal.client_id},
        }
    name = principal.name or (principal.client_id if principal.kind == "system" else None)
    if name:
        who["display"] = name
    agent["who"] = who
    if principal.kind != "system" and principal.client_id:
        agent["altId"] = principal.client_id  # the EPJ / app the person used
    if name:
        agent["name"] = name
    agent["requestor"] = True
    agent["purposeOfUse"] = purpose_of_use
    agents = [agent]
    if principal.org_nr:
        org: dict[str, Any] = {
            "type": {"coding": [_coding(ROLE_CLASS, "PROV", "healthcare provider")]},
            "who": {
                "type": "Organization",
                "identifier": {"system": OID_ORGNR, "value": principal.org_nr},
            },
        }
        if org_name:
            org["who"]["display"] = org_name
            org["name"] = org_name
        if principal.her_id:
            org["altId"] = f"HER-id {principal.her_id}"
        org["requestor"] = False
        agents.append(org)
    return agents


def _entities(
    patient_id: str | None,
    references: Iterable[str],
    query: str | None,
    emergency: bool,
    emergency_reason: str | None,
) -> list[dict]:
    out: list[dict] = []
    patient_ref = f"Patient/{patient_id}" if patient_id else None
    if patient_ref:
        entity: dict[str, Any] = {
            "what": {"reference": patient_ref},
            "type": _coding(ENTITY_TYPE, "1", "Person"),
            "role": _coding(OBJECT_ROLE, "1", "Patient"),
        }
        if emergency:
            entity["securityLabel"] = [_coding(ACT_REASON, "BTG", "break the glass")]
            if emergency_reason:
                entity["detail"] = [{"type": "emergency-reason", "valueString": emergency_reason}]
        out.append(entity)
    for ref in references:
        if ref == patient_ref:
            continue
        out.append(
            {
                "what": {"reference": ref},
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
            }
        )
    if query:
        out.append(
            {
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "24", "Query"),
                "query": base64.b64encode(query.encode()).decode("ascii"),
            }
        )
    return out
