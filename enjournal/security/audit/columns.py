"""The indexed columns of an audit_log row, derived from its event (so verify can check
that nobody changed a column without changing the event)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from enjournal.fhir.datetime import date_range
from enjournal.security.audit.codes import ACT_REASON, ACTOR_PREFIX, EMERGENCY_PURPOSES


def event_columns(event: dict) -> tuple:
    """(recorded, patient_id, actor, action, outcome, purpose, emergency) of an event."""
    if event.get("resourceType") != "AuditEvent":
        raise ValueError("an audit event must be an AuditEvent")
    recorded = _instant_ms(event["recorded"])
    patient_id = None
    emergency = False
    for entity in event.get("entity") or ():
        if (entity.get("role") or {}).get("code") == "1":
            ref = (entity.get("what") or {}).get("reference") or ""
            if ref.startswith("Patient/"):
                patient_id = ref[8:]
        for label in entity.get("securityLabel") or ():
            if label.get("code") == "BTG":
                emergency = True
    actor = "unknown"
    for agent in event.get("agent") or ():
        if agent.get("requestor"):
            ident = (agent.get("who") or {}).get("identifier") or {}
            prefix = ACTOR_PREFIX.get(ident.get("system"), "id")
            actor = f"{prefix}:{ident.get('value')}"
            break
    purpose = None
    for concept in event.get("purposeOfEvent") or ():
        for coding in concept.get("coding") or ():
            if coding.get("system") == ACT_REASON:
                purpose = coding.get("code")
                break
        if purpose:
            break
    if purpose in EMERGENCY_PURPOSES:
        emergency = True
    return (recorded, patient_id, actor, event["action"], event["outcome"], purpose, emergency)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _instant_ms(value: str) -> int:
    """A FHIR instant as epoch ms (fast path for the ones audit_event writes)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return date_range(value)[0]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MS
