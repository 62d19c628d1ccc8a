"""The citizen's view of the audit log: who looked at or changed their record, newest first.

Two shapes of one page query: :func:`access_log` gives plain entries (name, role,
organisation, basis ...), :func:`access_events` the stored AuditEvents that
``Patient/$access-log`` answers with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from enjournal.fhir.datetime import format_instant
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR, OID_HPR
from enjournal.security.audit.codes import (
    ACCESS_BASIS,
    ACCESS_BASIS_SYSTEM,
    ACT_REASON,
    CLIENT_ID_SYSTEM,
    EMERGENCY_REASON_EXT,
    PURPOSES,
)
from enjournal.storage import audit_log


@dataclass(frozen=True)
class EventPage:
    events: list[bytes]  # stored AuditEvent JSON, newest first
    next_seq: int | None  # ``before_seq`` of the next page; None on the last page


def citizen_actors(pid: str | None) -> frozenset[str]:
    """The ``actor`` column values a citizen with this national id is logged under."""
    return frozenset({f"fnr:{pid}", f"dnr:{pid}"})


async def access_events(
    tx: Any,
    patient_id: str,
    *,
    count: int = 50,
    before_seq: int | None = None,
    skip_actors: frozenset[str] = frozenset(),
) -> EventPage:
    """One page of ``count`` stored events about the patient, newest first.

    Events by ``skip_actors`` (the citizen's own look-ups) are left out of the page rather
    than replaced, so a page can hold fewer than ``count`` events and still have a next one.
    """
    rows = await audit_log.patient_rows(tx, patient_id, count + 1, before_seq)
    events = [bytes(row[6]) for row in rows[:count] if row[7] not in skip_actors]
    next_seq = int(rows[count - 1][0]) if len(rows) > count else None
    return EventPage(events, next_seq)


async def access_log(
    tx: Any, patient_id: str, *, count: int = 50, before_seq: int | None = None
) -> list[dict]:
    """What the citizen sees about access to their record, newest first.

    Each entry: ``seq`` (cursor for the next page: pass it as ``before_seq``), ``when``,
    ``who`` (name), ``who_kind`` (personnel, citizen, system), ``hpr``, ``role`` and
    ``role_code`` (profession), ``organisation`` and ``organisation_number``, ``action``
    ("read" or "changed"), ``interaction``, ``resources`` (types looked at), ``basis`` and
    ``basis_text`` (v3-ActReason purpose), ``access_basis`` and ``access_basis_text`` (NHN
    code: SAMTYKKE ...), ``emergency`` and ``emergency_reason``, ``success``.
    """
    rows = await audit_log.patient_rows(tx, patient_id, count, before_seq)
    return [_entry(row) for row in rows]


def _entry(row: tuple) -> dict:
    seq, recorded, action, outcome, _purpose, emergency, data, _actor = row
    event = orjson.loads(bytes(data))
    person, org = _requestor_and_organisation(event)
    ident = (person.get("who") or {}).get("identifier") or {}
    system = ident.get("system")
    basis, access = _purpose_codes(event)
    return {
        "seq": int(seq),
        "when": format_instant(int(recorded)),
        "who": person.get("name") or (person.get("who") or {}).get("display"),
        "who_kind": _actor_kind(system),
        "hpr": ident.get("value") if system == OID_HPR else None,
        **_role(person),
        "organisation": org.get("name"),
        "organisation_number": ((org.get("who") or {}).get("identifier") or {}).get("value"),
        "action": "read" if action in ("R", "E") else "changed",
        "interaction": (event.get("subtype") or [{}])[-1].get("code"),
        "resources": _resource_types(event),
        "basis": basis,
        "basis_text": PURPOSES.get(basis or "", (None, None))[1],
        "access_basis": access,
        "access_basis_text": ACCESS_BASIS.get(access or ""),
        "emergency": bool(emergency),
        "emergency_reason": _emergency_reason(event),
        "success": outcome == "0",
    }


def _requestor_and_organisation(event: dict) -> tuple[dict, dict]:
    person: dict = {}
    org: dict = {}
    for agent in event.get("agent") or ():
        if agent.get("requestor"):
            person = agent
        elif (agent.get("who") or {}).get("type") == "Organization":
            org = agent
    return person, org


def _actor_kind(system: str | None) -> str:
    if system in (OID_FNR, OID_DNR):
        return "citizen"
    return "system" if system == CLIENT_ID_SYSTEM else "personnel"


def _role(person: dict) -> dict:
    role = (person.get("role") or [{}])[0]
    coding = (role.get("coding") or [{}])[0]
    return {
        "role": coding.get("display") or coding.get("code") or role.get("text"),
        "role_code": coding.get("code"),
    }


def _purpose_codes(event: dict) -> tuple[str | None, str | None]:
    """(v3-ActReason purpose, NHN access basis) of the event."""
    basis = access = None
    for coding in (event.get("purposeOfEvent") or [{}])[0].get("coding") or ():
        if coding.get("system") == ACCESS_BASIS_SYSTEM:
            access = coding.get("code")
        elif coding.get("system") == ACT_REASON:
            basis = coding.get("code")
    return basis, access


def _emergency_reason(event: dict) -> str | None:
    reason = None
    for ext in event.get("extension") or ():
        if ext.get("url") == EMERGENCY_REASON_EXT:
            reason = ext.get("valueString")
    return reason


def _resource_types(event: dict) -> list[str]:
    """The types of the domain resources the event names (role 4)."""
    return sorted(
        {
            ent["what"]["reference"].split("/")[0]
            for ent in event.get("entity") or ()
            if (ent.get("role") or {}).get("code") == "4" and "reference" in ent.get("what", {})
        }
    )
