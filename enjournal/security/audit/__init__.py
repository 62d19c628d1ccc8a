"""The tamper-evident audit log: every access to health data, as FHIR R4 AuditEvents.

Kjernejournal-style rules (docs: /work/shared/docs/domain.md 2.3): all activity is logged, and
the citizen can see who looked at their record, their name, role and organisation, when, on
what basis (consent, emergency / nødrett) and whether something was changed.

One module per job:

* ``events``: :func:`audit_event` builds a valid AuditEvent for one REST interaction by one
  :class:`~enjournal.security.principal.Principal` (``codes`` holds its vocabulary).
* ``columns`` and ``chain``: the indexed columns derived from an event, its canonical JSON
  and :func:`chain_hash`.
* ``appending``: :func:`append` writes events in the caller's transaction, so a write and
  its audit event commit together or not at all.  Call it last in the transaction: it locks
  the one-row ``audit_head`` until commit, which serialises audited writes.
* ``writer``: :class:`AuditWriter` records events for reads: callers wait until their events
  are committed, and concurrent callers share one transaction (group commit).
* ``verify`` walks the hash chain (``command``: ``enjournal audit verify``).
* ``citizen_view``: :func:`access_log` and :func:`access_events`, the citizen's view;
  ``redaction``: what of an event the citizen sees (no free text, domain.md 10).

The chain: ``hash = sha256(prev_hash || seq (8 bytes, big-endian) || event)``, where ``event``
is the stored canonical JSON (orjson, sorted keys) and the first ``prev_hash`` is 32 zero
bytes.  ``audit_head`` holds the last seq and hash, so removing events from the end is
caught too.  Database triggers reject UPDATE and DELETE, but whoever can drop a trigger can
edit rows: the chain is what catches that.  Rewriting the chain from some event to the end
is only caught against a copy of the head hash kept elsewhere (``verify`` reports it, so it
can be anchored, e.g. in the operations log or an external timestamping service).
"""

from __future__ import annotations

from enjournal.security.audit.appending import append
from enjournal.security.audit.chain import ZERO_HASH, chain_hash
from enjournal.security.audit.citizen_view import (
    EventPage,
    LogFilter,
    access_events,
    access_log,
    citizen_actors,
    requestor_and_organisation,
)
from enjournal.security.audit.command import verify_command
from enjournal.security.audit.events import audit_event
from enjournal.security.audit.verify import Problem, VerifyResult, verify
from enjournal.security.audit.writer import AuditWriter

__all__ = [
    "ZERO_HASH",
    "AuditWriter",
    "EventPage",
    "LogFilter",
    "Problem",
    "VerifyResult",
    "access_events",
    "access_log",
    "append",
    "audit_event",
    "chain_hash",
    "citizen_actors",
    "requestor_and_organisation",
    "verify",
    "verify_command",
]
