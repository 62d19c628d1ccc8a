"""The citizen's view of the audit log: who looked at or changed their record, newest first.

Two shapes of one page query: :func:`access_log` gives plain entries (name, role,
organisation, basis ...), :func:`access_events` the AuditEvents that ``Patient/$access-log``
answers with, filtered (:class:`LogFilter`) and stripped of free text (``redaction``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson

from enjournal.fhir.datetime import format_instant
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR, OID_HPR, OID_ORGNR
from enjournal.security.audit.codes import (
    ACCESS_BASIS,
    ACCESS_BASIS_SYSTEM,
    ACT_REASON,
    CLIENT_ID_SYSTEM,
    PURPOSES,
)
from enjournal.security.audit.redaction import citizen_copy
from enjournal.storage import audit_log

# Rows one page reads at most when the organisation filter runs in Python: past this a page
# may come back short (even empty), with a next link to go on from where it stopped.
SCAN_LIMIT = 5000


@dataclass(frozen=True)
class EventPage:
    events: list[bytes]  # the citizen's copies of the events (JSON), newest first
    next_seq: int | None  # ``before_seq`` of the next page; None on the last page


@dataclass(frozen=True)
class LogFilter:
    """What the citizen narrows the log to: ``recorded`` within ``since``..``until`` (epoch
    ms, inclusive) and the organisation (organisasjonsnummer) the reader acted for."""

    since: int | None = None
    until: int | None = None
    organisation: str | None = None


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
    where: LogFilter = LogFilter(),
) -> EventPage:
    """One page of up to ``count`` events about the patient, newest first, as the citizen
    sees them (``redaction.citizen_copy``: no free text).

    The time bounds and ``skip_actors`` (the citizen's own look-ups) are in the query; the
    organisation is pre-filtered in the query by its number's bytes in the event, then
    checked on the parsed event, reading on until the page is full and one more match is
    found (so a next link means more matches), or :data:`SCAN_LIMIT` rows are read (then the
    page may be short, and its next link goes on from the last row read).
    """
    events: list[bytes] = []
    last_seq = 0
    matches = _matches(tx, patient_id, count + 1, before_seq, skip_actors, where)
    async with aclosing(matches):
        async for seq, event in matches:
            if event is None:  # the scan limit: the next page goes on from here
                return EventPage(events, seq)
            if len(events) == count:
                return EventPage(events, last_seq)  # one more match: there is a next page
            events.append(orjson.dumps(citizen_copy(event)))
            last_seq = seq
    return EventPage(events, None)


async def _matches(
    tx: Any,
    patient_id: str,
    batch: int,
    cursor: int | None,
    skip_actors: frozenset[str],
    where: LogFilter,
) -> AsyncGenerator[tuple[int, dict | None], None]:
    """(seq, event) of the matching events, newest first, read ``batch`` rows at a time;
    then (seq of the last row read, None) if :data:`SCAN_LIMIT` rows were read."""
    needle = f'"{where.organisation}"'.encode() if where.organisation else None
    scanned = 0
    while True:
        rows = await audit_log.patient_rows(
            tx,
            patient_id,
            batch,
            cursor,
            since=where.since,
            until=where.until,
            skip_actors=skip_actors,
            containing=needle,
        )
        for row in rows:
            event = orjson.loads(bytes(row[6]))
            if not where.organisation or _organisation_number(event) == where.organisation:
                yield int(row[0]), event
        scanned += len(rows)
        if len(rows) < batch:
            return
        cursor = int(rows[-1][0])
        if scanned >= SCAN_LIMIT:
            yield cursor, None
            return


async def access_log(
    tx: Any, patient_id: str, *, count: int = 50, before_seq: int | None = None
) -> list[dict]:
    """What the citizen sees about access to their record, newest first.

    Each entry: ``seq`` (cursor for the next page: pass it as ``before_seq``), ``when``,
    ``who`` (name), ``who_kind`` (personnel, citizen, system), ``hpr``, ``role`` and
    ``role_code`` (profession), ``organisation`` and ``organisation_number``, ``action``
    ("read" or "changed"), ``interaction``, ``resources`` (types looked at), ``basis`` and
    ``basis_text`` (v3-ActReason purpose), ``access_basis`` and ``access_basis_text`` (NHN
    code: SAMTYKKE ...), ``emergency`` and ``success``.  No free text: the emergency reason a
    health worker wrote stays in the audit log (domain.md 10).
    """
    rows = await audit_log.patient_rows(tx, patient_id, count, before_seq)
    return [_entry(row) for row in rows]


def _entry(row: tuple) -> dict:
    seq, recorded, action, outcome, _purpose, emergency, data, _actor = row
    event = orjson.loads(bytes(data))
    person, org = requestor_and_organisation(event)
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
        "success": outcome == "0",
    }


def requestor_and_organisation(event: dict) -> tuple[dict, dict]:
    """The agent who asked (the person) and the organisation they asked from."""
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


def _organisation_number(event: dict) -> str | None:
    """The organisation number of the event's organisation agent."""
    _, org = requestor_and_organisation(event)
    ident = (org.get("who") or {}).get("identifier") or {}
    return ident.get("value") if ident.get("system") in (None, OID_ORGNR) else None


def _resource_types(event: dict) -> list[str]:
    """The types of the domain resources the event names (role 4)."""
    return sorted(
        {
            ent["what"]["reference"].split("/")[0]
            for ent in event.get("entity") or ()
            if (ent.get("role") or {}).get("code") == "4" and "reference" in ent.get("what", {})
        }
    )
