"""The tamper-evident audit log: every access to health data, as FHIR R4 AuditEvents.

Kjernejournal-style rules (docs: /work/shared/docs/domain.md 2.3): all activity is logged, and
the citizen can see who looked at their record, their name, role and organisation, when, on
what basis (consent, emergency / nødrett) and whether something was changed.

* :func:`audit_event` builds a valid AuditEvent (http://hl7.org/fhir/R4/auditevent.html) for
  one REST interaction by one :class:`~enjournal.security.principal.Principal`.
* :func:`append` writes events in the caller's transaction, so a write and its audit event
  commit together or not at all.  Call it last in the transaction: it locks the one-row
  ``audit_head`` until commit, which serialises audited writes.
* :class:`AuditWriter` records events for reads: callers wait until their events are
  committed, and concurrent callers share one transaction (group commit).
* :func:`verify` walks the hash chain; :func:`access_log` is the citizen's view.

The chain: ``hash = sha256(prev_hash || seq (8 bytes, big-endian) || event)``, where ``event``
is the stored canonical JSON (orjson, sorted keys) and the first ``prev_hash`` is 32 zero
bytes.  ``audit_head`` holds the last seq and hash, so removing events from the end is
caught too.  Database triggers reject UPDATE and DELETE, but whoever can drop a trigger can
edit rows: the chain is what catches that.  Rewriting the chain from some event to the end
is only caught against a copy of the head hash kept elsewhere (``verify`` reports it, so it
can be anchored, e.g. in the operations log or an external timestamping service).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from enjournal.fhir.datetime import date_range, format_instant
from enjournal.fhir.errors import Busy
from enjournal.fhir.norwegian_ids import OID_DNR, OID_FNR, OID_HPR, OID_ORGNR
from enjournal.security.principal import Principal

__all__ = [
    "AuditWriter",
    "Problem",
    "VerifyResult",
    "access_log",
    "append",
    "audit_event",
    "chain_hash",
    "verify",
    "verify_command",
]

# ---- code systems ---------------------------------------------------------------------------

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SECURITY_ROLE_TYPE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
PROFESSION = "urn:oid:2.16.578.1.12.4.1.1.9060"  # Volven 9060, kategori helsepersonell

# enjournal's own identifiers and extensions (no national equivalent found).
CLIENT_ID_SYSTEM = "https://enjournal.no/fhir/NamingSystem/client-id"
SUBJECT_SYSTEM = "https://enjournal.no/fhir/NamingSystem/subject"
ACCESS_BASIS_SYSTEM = "https://enjournal.no/fhir/CodeSystem/access-basis"
REQUEST_ID_EXT = "https://enjournal.no/fhir/StructureDefinition/request-id"
EMERGENCY_REASON_EXT = "https://enjournal.no/fhir/StructureDefinition/emergency-reason"

ZERO_HASH = bytes(32)

_RESTFUL_CODES = frozenset(
    [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history",
        "history-instance",
        "history-type",
        "history-system",
        "create",
        "search",
        "search-type",
        "search-system",
        "capabilities",
        "transaction",
        "batch",
        "operation",
    ]
)

_PURPOSES = {  # v3-ActReason display, and the citizen's wording (Norwegian)
    "TREAT": ("treatment", "Helsehjelp"),
    "ETREAT": ("Emergency Treatment", "Nødrett (akutt helsehjelp)"),
    "BTG": ("break the glass", "Nødrett (akutt helsehjelp)"),
    "PATRQT": ("patient requested", "Etter ditt ønske"),
    "HOPERAT": ("healthcare operations", "Drift av helsetjenesten"),
    "HSYSADMIN": ("health system administration", "Systemadministrasjon"),
    "HLEGAL": ("legal", "Rettslig grunnlag"),
    "PUBHLTH": ("public health", "Folkehelse"),
    "HRESCH": ("healthcare research", "Helseforskning"),
}
_EMERGENCY_PURPOSES = frozenset({"ETREAT", "BTG"})

# NHN access-basis codes (domain.md 2.3): shown to the citizen as the basis for access.
_ACCESS_BASIS = {
    "UNNTAK": "Unntak fra samtykke",
    "SAMTYKKE": "Samtykke",
    "FORHOYET_SAMTYKKE": "Samtykke til å åpne sperrede opplysninger",
    "AKUTT": "Nødrett (akutt helsehjelp)",
}

# Volven 9060 (kategori helsepersonell): the common codes.  [unverified beyond these]
_PROFESSIONS = {
    "LE": "Lege",
    "SP": "Sykepleier",
    "TL": "Tannlege",
    "JO": "Jordmor",
    "FA": "Farmasøyt",
    "FA1": "Provisorfarmasøyt",
    "FA2": "Reseptarfarmasøyt",
    "FT": "Fysioterapeut",
    "PS": "Psykolog",
    "HF": "Helsefagarbeider",
    "AA": "Ambulansearbeider",
    "BI": "Bioingeniør",
    "ET": "Ergoterapeut",
    "VP": "Vernepleier",
    "RA": "Radiograf",
}

_ACTOR_PREFIX = {
    OID_HPR: "hpr",
    OID_FNR: "fnr",
    OID_DNR: "dnr",
    CLIENT_ID_SYSTEM: "client",
    SUBJECT_SYSTEM: "sub",
}


# ---- building events ------------------------------------------------------------------------


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
) -> dict:
    """A FHIR R4 AuditEvent for one interaction.

    ``action`` is AuditEvent.action (C R U D E), ``subtype`` the restful-interaction code
    (read, vread, search-type, create, update, delete, history-instance, ...) or an operation
    name (``$everything``), ``outcome`` "0" success, "4" minor failure, "8" serious failure,
    ``entities`` references such as ``Observation/123``, ``purpose`` a v3-ActReason code
    (TREAT, ETREAT for emergency access, PATRQT, HOPERAT ...), ``access_basis`` an NHN basis
    code (UNNTAK, SAMTYKKE, FORHOYET_SAMTYKKE, AKUTT) shown to the citizen.  Emergency access
    (purpose ETREAT/BTG, basis AKUTT, or a reason given) is flagged with the security label
    BTG on the patient entity and the reason in its ``detail`` and in an extension.
    """
    ms = int(time.time() * 1000) if recorded_ms is None else recorded_ms
    emergency = (
        purpose in _EMERGENCY_PURPOSES or access_basis == "AKUTT" or emergency_reason is not None
    )
    purpose_codings = [_purpose_coding(purpose)]
    if access_basis:
        purpose_codings.append(
            _coding(ACCESS_BASIS_SYSTEM, access_basis, _ACCESS_BASIS.get(access_basis))
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
    display = _PURPOSES.get(purpose, (None, None))[0]
    return _coding(ACT_REASON, purpose, display)


def _subtype(subtype: str) -> list[dict]:
    if subtype in _RESTFUL_CODES:
        return [_coding(RESTFUL_INTERACTION, subtype, subtype)]
    # An operation: the interaction is "operation", and the operation's name is kept too.
    return [_coding(RESTFUL_INTERACTION, "operation", "operation"), {"code": subtype}]


def _agents(principal: Principal, purpose_of_use: list[dict], org_name: str | None) -> list:
    agent: dict[str, Any] = {}
    if principal.kind == "personnel":
        agent["type"] = {"coding": [_coding(SECURITY_ROLE_TYPE, "humanuser", "human user")]}
        if principal.profession:
            display = _PROFESSIONS.get(principal.profession)
            agent["role"] = [{"coding": [_coding(PROFESSION, principal.profession, display)]}]
        if principal.hpr:
            ident = {"system": OID_HPR, "value": principal.hpr}
        else:
            ident = {"system": SUBJECT_SYSTEM, "value": principal.subject}
        who: dict[str, Any] = {"type": "Practitioner", "identifier": ident}
    elif principal.kind == "citizen":
        agent["type"] = {"coding": [_coding(SECURITY_ROLE_TYPE, "humanuser", "human user")]}
        agent["role"] = [{"text": "Innbygger"}]
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


# ---- the columns derived from an event ------------------------------------------------------


def _columns(event: dict) -> tuple:
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
            prefix = _ACTOR_PREFIX.get(ident.get("system"), "id")
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
    if purpose in _EMERGENCY_PURPOSES:
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


def _canonical(event: dict) -> bytes:
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def chain_hash(prev_hash: bytes, seq: int, event: bytes) -> bytes:
    """``sha256(prev_hash || seq as 8 bytes big-endian || event bytes)``."""
    digest = hashlib.sha256(prev_hash)
    digest.update(seq.to_bytes(8, "big", signed=True))
    digest.update(event)
    return digest.digest()


def _prepare(events: Iterable[dict]) -> list[tuple[tuple, bytes]]:
    prepared = []
    for event in events:
        if "recorded" not in event:
            event["recorded"] = format_instant(int(time.time() * 1000))
        prepared.append((_columns(event), _canonical(event)))
    return prepared


# ---- appending ------------------------------------------------------------------------------

_INSERT = (
    "INSERT INTO audit_log (seq, recorded, patient_id, actor, action, outcome, purpose, "
    "emergency, event, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


async def append(conn: Any, events: list[dict]) -> None:
    """Append ``events`` to the chain inside the caller's (write) transaction."""
    await _append_prepared(conn, _prepare(events))


async def _append_prepared(conn: Any, prepared: list[tuple[tuple, bytes]]) -> None:
    if not prepared:
        return
    # Lock the head: on PostgreSQL other writers wait here until this transaction ends; on
    # SQLite the single writer lock already serialises write transactions.
    lock = " FOR UPDATE" if conn.dialect == "postgres" else ""
    head = await conn.fetchrow(f"SELECT seq, hash FROM audit_head WHERE id = 1{lock}")
    if head is None:
        raise RuntimeError("audit_head is missing: the audit log is damaged (run audit verify)")
    seq, prev = int(head[0]), bytes(head[1])
    rows = []
    for columns, data in prepared:
        seq += 1
        digest = chain_hash(prev, seq, data)
        rows.append((seq, *columns, data, prev, digest))
        prev = digest
    await conn.executemany(_INSERT, rows)
    await conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", seq, prev)


_STOP = object()


class AuditWriter:
    """Records audit events outside a write transaction (for reads), with group commit.

    ``await record(events)`` returns once the events are committed.  A background task takes
    everything waiting in the (bounded) queue, up to ``max_batch`` callers, and appends it in
    one write transaction, so many concurrent reads cost one commit, not one each.
    """

    def __init__(
        self,
        store: Any,
        *,
        max_batch: int = 256,
        max_queue: int = 10_000,
        synchronous: bool = True,
    ):
        self.store = store
        # False: on PostgreSQL, commit batches with synchronous_commit off.  A read then
        # waits for its events to be committed but not flushed to disk: a crash of the
        # database server (not of enjournal) can lose the last fraction of a second of read
        # events.  Writes' events are always in the write's own, synchronous transaction.
        self.synchronous = synchronous
        self.max_batch = max_batch
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task | None = None
        self._closing = False
        self.batches = 0  # committed transactions, for metrics and tests

    async def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        """Commit everything queued, then stop."""
        if self._task is None:
            return
        self._closing = True
        await self._queue.put(_STOP)
        await self._task
        self._task = None

    async def __aenter__(self) -> AuditWriter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def record(self, events: list[dict]) -> None:
        if self._task is None or self._closing:
            raise RuntimeError("the audit writer is not running")
        prepared = _prepare(events)  # a malformed event fails its caller, not the batch
        if not prepared:
            return
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((prepared, future))
        # Shielded: a cancelled caller still gets its events written.
        await asyncio.shield(future)

    async def _run(self) -> None:
        stop = False
        while not stop:
            item = await self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            await self._commit(batch)

    async def _commit(self, batch: list) -> None:
        prepared = [row for rows, _ in batch for row in rows]
        error: BaseException | None = None
        for attempt in range(3):
            try:
                async with self.store.transaction(write=True) as tx:
                    if not self.synchronous and tx.conn.dialect == "postgres":
                        await tx.conn.execute("SET LOCAL synchronous_commit TO OFF")
                    await _append_prepared(tx.conn, prepared)
                error = None
                break
            except Busy as exc:
                error = exc
                await asyncio.sleep(0.05 * (attempt + 1))
            except Exception as exc:  # the callers get the error; the writer keeps running
                error = exc
                break
        if error is None:
            self.batches += 1
        for _, future in batch:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


# ---- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str  # changed | removed | reordered | inserted | head-mismatch
    detail: str


@dataclass
class VerifyResult:
    checked: int = 0  # rows whose hash and link were verified
    last_seq: int = 0  # the last seq in the log
    head_seq: int = 0
    head_hash: bytes = ZERO_HASH
    problem: Problem | None = None
    seconds: float = field(default=0.0)

    @property
    def ok(self) -> bool:
        return self.problem is None


_SELECT_PAGE = (
    "SELECT seq, recorded, patient_id, actor, action, outcome, purpose, emergency, event, "
    "prev_hash, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"
)
_COLUMN_NAMES = ("recorded", "patient_id", "actor", "action", "outcome", "purpose", "emergency")


async def verify(conn: Any, *, page_size: int = 2000) -> VerifyResult:
    """Walk the chain in seq order, a page at a time, and report the first problem.

    Run it in one read transaction (PostgreSQL's read transactions are repeatable read, so
    the walk sees one consistent snapshot).
    """
    started = time.monotonic()
    result = VerifyResult()
    head = await conn.fetchrow("SELECT seq, hash FROM audit_head WHERE id = 1")
    if head is None:
        result.problem = Problem(0, "head-mismatch", "the audit_head row is missing")
    else:
        result.head_seq, result.head_hash = int(head[0]), bytes(head[1])
    expected_seq, prev = 1, ZERO_HASH
    cursor = -(2**62)
    while result.problem is None:
        rows = await conn.fetch(_SELECT_PAGE, cursor, page_size)
        for row in rows:
            problem = await _check_row(conn, row, expected_seq, prev)
            if problem is not None:
                result.problem = problem
                break
            result.checked += 1
            result.last_seq = int(row[0])
            expected_seq, prev = result.last_seq + 1, bytes(row[10])
        if result.problem is not None or len(rows) < page_size:
            break
        cursor = int(rows[-1][0])
    if result.problem is None:
        result.problem = _check_head(result, prev)
    result.seconds = time.monotonic() - started
    return result


async def _check_row(conn: Any, row: tuple, expected_seq: int, prev: bytes) -> Problem | None:
    seq = int(row[0])
    data, row_prev, row_hash = bytes(row[8]), bytes(row[9]), bytes(row[10])
    if seq < expected_seq:
        return Problem(seq, "inserted", f"seq {seq} is before the start of the chain")
    if seq > expected_seq:
        missing = (
            f"seq {expected_seq}" if seq == expected_seq + 1 else f"seqs {expected_seq}..{seq - 1}"
        )
        return Problem(expected_seq, "removed", f"{missing} missing: the next event is seq {seq}")
    linked = row_prev == prev
    self_ok = chain_hash(row_prev, seq, data) == row_hash
    if linked and not self_ok:
        return Problem(seq, "changed", f"event {seq} does not match its hash")
    if not linked and self_ok:
        return Problem(
            seq - 1,
            "changed",
            f"event {seq} does not link to event {seq - 1}: event {seq - 1} was changed and "
            "re-hashed, or events were removed and the chain rebuilt",
        )
    if not linked:
        other = await conn.fetchrow(
            "SELECT seq FROM audit_log WHERE prev_hash = ? AND seq <> ? ORDER BY seq LIMIT 1",
            prev,
            seq,
        )
        if other is not None:
            return Problem(
                seq,
                "reordered",
                f"the event that follows seq {seq - 1} is stored as seq {int(other[0])}, not {seq}",
            )
        return Problem(
            seq,
            "removed",
            f"event {seq} does not link to event {seq - 1}: events were removed before it "
            "and the rest renumbered",
        )
    try:
        derived = _columns(orjson.loads(data))
    except Exception as exc:  # hash-valid but unreadable: only a broken writer does this
        return Problem(seq, "changed", f"event {seq} cannot be read: {exc}")
    stored = tuple(row[1:8])
    for name, want, got in zip(_COLUMN_NAMES, derived, stored, strict=True):
        if (bool(got) if name == "emergency" else got) != want:
            return Problem(seq, "changed", f"column {name} of event {seq} differs from the event")
    return None


def _check_head(result: VerifyResult, last_hash: bytes) -> Problem | None:
    last, head = result.last_seq, result.head_seq
    if head > last:
        return Problem(
            last + 1,
            "head-mismatch",
            f"the head says {head} events but the log ends at {last}: "
            f"events {last + 1}..{head} were removed from the end",
        )
    if head < last:
        return Problem(
            head + 1,
            "head-mismatch",
            f"the log has events after the head ({head}): events {head + 1}..{last} were "
            "added without the head, or the head was moved back",
        )
    if result.head_hash != last_hash:
        return Problem(head, "head-mismatch", f"the head hash does not match event {head}")
    return None


# ---- the citizen's view ---------------------------------------------------------------------


async def access_log(
    conn: Any, patient_id: str, *, count: int = 50, before_seq: int | None = None
) -> list[dict]:
    """What the citizen sees about access to their record, newest first.

    Each entry: ``seq`` (cursor for the next page: pass it as ``before_seq``), ``when``,
    ``who`` (name), ``who_kind`` (personnel, citizen, system), ``hpr``, ``role`` and
    ``role_code`` (profession), ``organisation`` and ``organisation_number``, ``action``
    ("read" or "changed"), ``interaction``, ``resources`` (types looked at), ``basis`` and
    ``basis_text`` (v3-ActReason purpose), ``access_basis`` and ``access_basis_text`` (NHN
    code: SAMTYKKE ...), ``emergency`` and ``emergency_reason``, ``success``.
    """
    sql = (
        "SELECT seq, recorded, action, outcome, purpose, emergency, event FROM audit_log "
        "WHERE patient_id = ?"
    )
    args: list[Any] = [patient_id]
    if before_seq is not None:
        sql += " AND seq < ?"
        args.append(before_seq)
    rows = await conn.fetch(sql + " ORDER BY seq DESC LIMIT ?", *args, count)
    return [_entry(row) for row in rows]


def _entry(row: tuple) -> dict:
    seq, recorded, action, outcome, _purpose, emergency, data = row
    event = orjson.loads(bytes(data))
    person: dict = {}
    org: dict = {}
    for agent in event.get("agent") or ():
        if agent.get("requestor"):
            person = agent
        elif (agent.get("who") or {}).get("type") == "Organization":
            org = agent
    ident = (person.get("who") or {}).get("identifier") or {}
    system = ident.get("system")
    kind = (
        "citizen"
        if system in (OID_FNR, OID_DNR)
        else "system"
        if system == CLIENT_ID_SYSTEM
        else "personnel"
    )
    role_coding = ((person.get("role") or [{}])[0].get("coding") or [{}])[0]
    role_text = (person.get("role") or [{}])[0].get("text")
    basis = access = None
    for coding in (event.get("purposeOfEvent") or [{}])[0].get("coding") or ():
        if coding.get("system") == ACCESS_BASIS_SYSTEM:
            access = coding.get("code")
        elif coding.get("system") == ACT_REASON:
            basis = coding.get("code")
    reason = None
    for ext in event.get("extension") or ():
        if ext.get("url") == EMERGENCY_REASON_EXT:
            reason = ext.get("valueString")
    subtype = (event.get("subtype") or [{}])[-1].get("code")
    resources = sorted(
        {
            ent["what"]["reference"].split("/")[0]
            for ent in event.get("entity") or ()
            if (ent.get("role") or {}).get("code") == "4" and "reference" in ent.get("what", {})
        }
    )
    return {
        "seq": int(seq),
        "when": format_instant(int(recorded)),
        "who": person.get("name") or (person.get("who") or {}).get("display"),
        "who_kind": kind,
        "hpr": ident.get("value") if system == OID_HPR else None,
        "role": role_coding.get("display") or role_coding.get("code") or role_text,
        "role_code": role_coding.get("code"),
        "organisation": org.get("name"),
        "organisation_number": ((org.get("who") or {}).get("identifier") or {}).get("value"),
        "action": "read" if action in ("R", "E") else "changed",
        "interaction": subtype,
        "resources": resources,
        "basis": basis,
        "basis_text": _PURPOSES.get(basis or "", (None, None))[1],
        "access_basis": access,
        "access_basis_text": _ACCESS_BASIS.get(access or ""),
        "emergency": bool(emergency),
        "emergency_reason": reason,
        "success": outcome == "0",
    }


# ---- the command ----------------------------------------------------------------------------


async def verify_command(database_url: str) -> int:
    """``enjournal audit verify``: check the chain, print a report; 0 when intact, else 1."""
    from rich.console import Console
    from rich.table import Table

    from enjournal.storage import open_store

    console = Console()
    try:
        store = await open_store(database_url, migrate=False)
    except Exception as exc:
        console.print(f"[bold red]cannot open the database:[/] {exc}")
        return 1
    try:
        async with store.transaction(write=False) as tx:
            result = await verify(tx.conn)
    except Exception as exc:
        console.print(f"[bold red]cannot read the audit log:[/] {exc}")
        return 1
    finally:
        await store.close()
    table = Table(title="Audit log verification", show_header=False)
    table.add_row("events verified", f"{result.checked:,}")
    table.add_row("last seq in log", str(result.last_seq))
    table.add_row("head seq", str(result.head_seq))
    table.add_row("head hash (keep a copy)", result.head_hash.hex())
    table.add_row("time", f"{result.seconds:.2f} s")
    console.print(table)
    if result.ok:
        console.print("[bold green]intact:[/] every event is chained to the one before it")
        return 0
    problem = result.problem
    assert problem is not None
    console.print(f"[bold red]TAMPERED ({problem.kind}) at seq {problem.seq}:[/] {problem.detail}")
    return 1
