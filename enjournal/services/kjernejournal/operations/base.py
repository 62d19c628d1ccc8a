"""What every kjernejournal operation shares: the server's settings, signing key and clock,
the caller's access to a record (domain.md 2.3) and the audit event of a read or change."""

from __future__ import annotations

from datetime import datetime

from enjournal.fhir.errors import FhirError, Forbidden
from enjournal.security.context import access_basis
from enjournal.security.keys import load_or_create
from enjournal.security.scopes import grant
from enjournal.services.kjernejournal import records, rules, summary


class ServiceBase:
    """The operations, bound to the server's settings, key and clock."""

    def __init__(self, context):
        self.context = context
        self._key = None

    @property
    def key(self):
        if self._key is None:
            self._key = load_or_create(self.context.settings.signing_key_file)
        return self._key

    def now(self) -> datetime:
        return self.context.clock()

    def server_device(self) -> dict:
        return {
            "resourceType": "Device",
            "id": "enjournal-server",
            "identifier": [
                {"system": "urn:ietf:rfc:3986", "value": self.context.settings.fhir_base}
            ],
            "deviceName": [{"name": "enjournal kjernejournal", "type": "user-friendly-name"}],
        }

    async def access(self, request, tx, patient_id: str, interaction: str) -> rules.Access:
        """The caller's access to this kjernejournal, or the error to answer with (a refusal
        is audited too)."""
        guard, context = request.guard, request.context
        if guard is None:  # security off (core tests, benchmarks)
            return rules.Access(access_basis(request.headers), "TREAT")
        basis = context.basis
        principal = guard.principal
        try:
            if grant(principal.scopes, "Patient", "r") is None:
                raise Forbidden("the token's scopes do not allow reading patient data")
            privacy, _ = await records.privacy(tx, patient_id)
            facts = await guard.facts(tx, patient_id)
            if principal.kind == "citizen":
                return rules.citizen_access(facts.own_record, facts.child_in_care, facts.areas)
            if principal.kind != "personnel":
                raise Forbidden("the kjernejournal is for health personnel and the patient")
            return rules.personnel_access(
                hpr=principal.hpr,
                profession=principal.profession,
                basis=basis,
                reason=guard.emergency_reason,
                care_relationship=facts.care_relationship,
                blocked_by_consent=facts.blocked_by_consent,
                privacy=privacy,
            )
        except FhirError as error:
            context.record(
                action="R",
                subtype=interaction,
                outcome="4",
                patient_id=patient_id,
                purpose="TREAT",  # refused: the emergency opened nothing
                outcome_desc=error.message,
            )
            raise

    async def audit(self, request, tx, patient_id, access, *, action, interaction, refs=()):
        context = request.context
        if context is None:
            return
        event = context.record(
            action=action,
            subtype=interaction,
            patient_id=patient_id,
            entities=list(refs),
            purpose=access.purpose,
            emergency=access.emergency,
            access_basis=access.basis,
            organisation_name=await records.organisation_name(tx, context.principal.org_nr),
        )
        if access.opened_restricted:
            # Flag for follow-up: restricted (sperret) parts were opened.
            for entity in event.get("entity", []):
                if (entity.get("role") or {}).get("code") == "1":
                    entity.setdefault("securityLabel", []).append(
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                            "code": "R",
                            "display": "restricted",
                        }
                    )
                    entity.setdefault("detail", []).append(
                        {
                            "type": "opened-restricted-parts",
                            "valueString": ",".join(sorted(access.opened_restricted)),
                        }
                    )


def named_reference(target) -> tuple[str, str] | None:
    """(type, id) of a ``remove`` parameter: a reference string or a Reference; None for
    anything else (a number, a list: the caller answers 400)."""
    if isinstance(target, dict):
        target = target.get("reference")
    return summary._parse_reference(target) if isinstance(target, str) else None
