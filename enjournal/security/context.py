"""One request's access context: who asks, on what basis, and the audit trail it leaves.

The server builds it once per authenticated request, beside the principal: the NHN access
basis (``nhn-access-basis``: UNNTAK, SAMTYKKE, FORHOYET_SAMTYKKE, AKUTT) and, for AKUTT, the
reason (``nhn-access-reason``) are parsed here and nowhere else, so that every audit record
of the request carries them, whichever service or interaction made it.  Services that need
their own audit detail (a kjernejournal read's purpose, the parts it opened) add their event
through ``record``; the router writes the request's events with its write, or through the
audit writer after a read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from enjournal.fhir.errors import Invalid
from enjournal.security.audit.codes import ACCESS_BASIS
from enjournal.security.principal import Principal

EMERGENCY = "AKUTT"
#: The NHN access bases a request may state (domain.md 2.3).
BASES = frozenset(ACCESS_BASIS)
# An emergency access reason: long enough to explain, short enough to read in a log.
MIN_REASON_LETTERS, MAX_REASON_LENGTH = 5, 500
_ACTIONS = {"c": "C", "r": "R", "s": "R", "u": "U", "d": "D"}


@dataclass
class AccessContext:
    principal: Principal
    basis: str | None = None  # one of BASES, or None when the request states none
    reason: str | None = None  # the emergency reason (only with AKUTT)
    request_id: str | None = None
    events: list[dict] = field(default_factory=list)
    refusals: int = 0  # refusals recorded, so the router can audit any nobody recorded

    @classmethod
    def from_headers(
        cls, principal: Principal, headers: dict[str, str], request_id: str | None = None
    ) -> AccessContext:
        """The context of a request with these (lower-case) headers; Invalid (400) for a
        basis that is not an NHN code, or AKUTT without a reason that says why."""
        basis = access_basis(headers)
        reason = emergency_reason(headers) if basis == EMERGENCY else None
        return cls(principal, basis, reason, request_id)

    @property
    def emergency(self) -> bool:
        return self.basis == EMERGENCY

    def record(self, *, emergency: bool = False, **fields) -> dict:
        """Add an AuditEvent for this request (``audit_event``'s fields; the principal, the
        request id and a health worker's access basis are filled in).  ``emergency`` says
        the policy granted the access only because of the emergency: stating AKUTT alone
        does not make an access an emergency access, nor does a refused one."""
        from enjournal.security.audit import audit_event

        if fields.get("outcome", "0") != "0":
            self.refusals += 1
            emergency = False
        if self.principal.kind == "personnel":
            # The basis is a health worker's statement; a citizen or a system states none.
            fields.setdefault("access_basis", self.basis)
        if self.principal.kind == "citizen":
            # A citizen acts for themselves (or someone they represent), never to treat:
            # this holds for their refusals too, which name no purpose of their own.
            fields.setdefault("purpose", "PATRQT")
        if emergency:
            fields.setdefault("emergency_reason", self.reason)
        event = audit_event(
            self.principal, request_id=self.request_id, emergency=emergency, **fields
        )
        self.events.append(event)
        return event

    def refuse(self, action: str, interaction: str, reason: str, patient=None) -> None:
        """Audit a refusal (outcome 4) of ``action`` (c r s u d) with its reason."""
        self.record(
            action=_ACTIONS.get(action, "E"),
            subtype=interaction,
            outcome="4",
            patient_id=patient,
            outcome_desc=reason,
        )

    def take_events(self) -> list[dict]:
        """The audit events so far, handed over once (the router writes them)."""
        events, self.events = self.events, []
        return events


def access_basis(headers: dict[str, str]) -> str | None:
    """The stated NHN access basis, upper-cased; None if none is stated."""
    basis = (headers.get("nhn-access-basis") or "").strip().upper() or None
    if basis is not None and basis not in BASES:
        raise Invalid(f"unknown access basis {basis[:40]!r}: use one of {', '.join(sorted(BASES))}")
    return basis


def emergency_reason(headers: dict[str, str]) -> str:
    """``nhn-access-reason`` of an emergency access: required, and it must say why."""
    reason = " ".join(_utf8(headers.get("nhn-access-reason") or "").split())
    if not reason:
        raise Invalid("emergency access (nhn-access-basis: AKUTT) needs nhn-access-reason")
    if sum(c.isalpha() for c in reason) < MIN_REASON_LETTERS:
        # The reason is what a reviewer and the patient later read: "." explains nothing.
        raise Invalid(
            f"nhn-access-reason must say why (at least {MIN_REASON_LETTERS} letters), "
            "e.g. 'bevisstløs pasient i akuttmottak'"
        )
    if len(reason) > MAX_REASON_LENGTH:
        raise Invalid(f"nhn-access-reason is at most {MAX_REASON_LENGTH} characters")
    return reason


def _utf8(header: str) -> str:
    """HTTP servers hand header values over as Latin-1; a reason is written in Norwegian and
    sent as UTF-8 (so "ø" arrives as two Latin-1 characters): it is read back as UTF-8."""
    try:
        return header.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return header
