"""``GET|POST Patient/[id]/$kj-privacy``: the citizen's restriction, blocking and
reservation; ``POST Patient/[id]/$kj-lift-block``: a health worker lifts a block."""

from __future__ import annotations

from datetime import datetime

from enjournal.fhir.errors import Forbidden, NotFound
from enjournal.rest.interactions.common import validate_for_write
from enjournal.rest.message import FhirResponse
from enjournal.security.audit.codes import BLOCK_LIFTED
from enjournal.services.inputs import operation_parameters, refused
from enjournal.services.kjernejournal import records, rules
from enjournal.services.kjernejournal.operations.base import ServiceBase
from enjournal.services.kjernejournal.privacy import consent_id, to_consent


class PrivacyOperations(ServiceBase):
    async def privacy(self, request, repo) -> FhirResponse:
        tx = repo.trusted  # its own access rules decide, below
        patient_id = request.path[1]
        guard = request.guard
        action = "u" if request.method == "POST" else "r"
        values = operation_parameters(request, "$kj-privacy")
        if guard is not None:
            facts = await guard.facts(tx, patient_id)
            if guard.principal.kind != "citizen" or not facts.own_record:
                message = "privacy settings are the patient's own to read and change"
                raise refused(request, action, "$kj-privacy", message, patient_id)
        await tx.read("Patient", patient_id)
        current, _ = await records.privacy(tx, patient_id)
        if request.method == "POST":
            now = self.now()
            try:
                updated = rules.privacy_from_parameters(values, now, current)
            except Forbidden as error:
                raise refused(request, "u", "$kj-privacy", error.message, patient_id) from None
            await _save(tx, to_consent(patient_id, updated, now), patient_id)
            current = updated
            if guard is not None:
                _audit_change(request, "$kj-privacy", patient_id, "PATRQT")
        return FhirResponse.of(_privacy_parameters(current))

    async def lift_block(self, request, repo) -> FhirResponse:
        """A health worker who is not blocked lifts the patient's block of another (with a
        reason), as helsenorge sends the patient to (domain.md 2.3).  Audited, and shown in
        the patient's access log; the free-text reason is kept in the settings' history,
        not in the log (citizens' logs show no free text, domain.md 10)."""
        tx = repo.trusted  # its own access rules decide, below
        patient_id = request.path[1]
        values = operation_parameters(request, "$kj-lift-block", required=("hpr", "reason"))
        hpr, reason = str(values["hpr"]).strip(), str(values["reason"]).strip()
        current, _ = await records.privacy(tx, patient_id)
        await self._may_lift(request, tx, patient_id, current)
        await tx.read("Patient", patient_id)
        caller_hpr = request.guard.principal.hpr if request.guard is not None else None
        try:
            updated = rules.lift_block(current, hpr, caller_hpr or "trusted", reason)
        except Forbidden as error:
            raise refused(request, "u", "$kj-lift-block", error.message, patient_id) from None
        now = self.now()
        consent = to_consent(patient_id, updated, now)
        consent["extension"] = [_lifted(hpr, caller_hpr, reason, now)]
        await _save(tx, consent, patient_id)
        context = request.context
        if context is not None:
            _audit_change(
                request,
                "$kj-lift-block",
                patient_id,
                "TREAT",
                organisation_name=await records.organisation_name(tx, context.principal.org_nr),
                outcome_desc=BLOCK_LIFTED.format(hpr=hpr),  # a template: shown to the citizen
            )
        return FhirResponse.of(_privacy_parameters(updated))

    async def _may_lift(self, request, tx, patient_id: str, privacy: rules.Privacy) -> None:
        """Health personnel with a care relationship whom the patient has not blocked."""
        guard = request.guard
        if guard is None:
            return
        principal = guard.principal
        if principal.kind != "personnel":
            message = "a block is lifted by a health worker who is not blocked, or the helpline"
            raise refused(request, "u", "$kj-lift-block", message, patient_id)
        if privacy.reserved_at is not None:
            message = "no kjernejournal exists for this patient"
            raise refused(request, "u", "$kj-lift-block", message, patient_id, NotFound)
        facts = await guard.facts(tx, patient_id)
        if facts.blocked_by_consent or (principal.hpr and principal.hpr in privacy.blocked):
            message = "a health worker the patient has blocked cannot lift a block"
            raise refused(request, "u", "$kj-lift-block", message, patient_id)
        if facts.care_relationship is None:
            message = "lifting a block needs a care relationship with the patient"
            raise refused(request, "u", "$kj-lift-block", message, patient_id)


async def _save(tx, consent: dict, patient_id: str) -> None:
    validate_for_write(consent)
    await tx.update(consent, consent_id(patient_id))


def _audit_change(request, operation: str, patient_id: str, purpose: str, **details) -> None:
    """The audit event of a change to the patient's privacy settings (their Consent)."""
    request.context.record(
        action="U",
        subtype=operation,
        patient_id=patient_id,
        entities=[f"Consent/{consent_id(patient_id)}"],
        purpose=purpose,
        **details,
    )


LIFTED = "http://enjournal.no/fhir/StructureDefinition/kj-block-lifted"


def _lifted(hpr: str, by: str | None, reason: str, now: datetime) -> dict:
    """Who lifted which block, when and why (kept in the Consent's version history)."""
    parts = [
        {"url": "blocked", "valueString": hpr},
        {"url": "reason", "valueString": reason[:500]},
        {"url": "when", "valueDateTime": now.isoformat(timespec="seconds")},
    ]
    if by:
        parts.append({"url": "by", "valueString": by})
    return {"url": LIFTED, "extension": parts}


def _privacy_parameters(privacy: rules.Privacy) -> dict:
    out: list[dict] = [{"name": "restrict", "valueCode": p} for p in sorted(privacy.restricted)]
    out += [{"name": "block", "valueString": h} for h in sorted(privacy.blocked)]
    out.append({"name": "reserved", "valueBoolean": privacy.reserved_at is not None})
    if privacy.reserved_at is not None:
        out.append(
            {
                "name": "reservedAt",
                "valueDateTime": privacy.reserved_at.isoformat(timespec="seconds"),
            }
        )
        deletion = privacy.reserved_at + rules.RESERVATION_GRACE
        out.append({"name": "deletionAt", "valueDateTime": deletion.isoformat(timespec="seconds")})
    return {"resourceType": "Parameters", "parameter": out}
