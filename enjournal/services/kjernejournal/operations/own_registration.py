"""``POST Patient/[id]/$kj-own-registration``: the patient's own registrations (contacts,
communication needs, diseases from a fixed list), by the patient or a parent of a child
under 12 (``own.py``); ``GET /$kj-own-condition-codes``: that list as a CodeSystem."""

from __future__ import annotations

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Conflict, Forbidden, Invalid, NotFound
from enjournal.rest.interactions.common import validate_for_write
from enjournal.rest.message import FhirResponse, info_outcome, version_headers
from enjournal.security.scopes import grant
from enjournal.services.inputs import operation_parameters, refused
from enjournal.services.kjernejournal import own, records
from enjournal.services.kjernejournal.operations.base import ServiceBase, named_reference


class OwnRegistrationOperations(ServiceBase):
    async def own_registration(self, request, repo) -> FhirResponse:
        """Add, change or remove one of the patient's own registrations.  The patient
        (own record) or a parent of a child under 12 at the same address (domain.md 2.3:
        parents represent children under 12 on helsenorge); never health personnel."""
        tx = repo.trusted  # its own access rules decide, below
        patient_id = request.path[1]
        guard = request.guard
        registrant = None
        if guard is not None:
            principal = guard.principal
            if principal.kind != "citizen":
                message = (
                    "the patient's own registrations are registered by the patient, "
                    "not by health personnel"
                )
                raise refused(request, "u", "$kj-own-registration", message, patient_id)
            facts = await guard.facts(tx, patient_id)
            if not (facts.own_record or facts.child_in_care):
                message = (
                    "own registrations are made by the patient, or a parent for a child under 12"
                )
                raise refused(request, "u", "$kj-own-registration", message, patient_id)
            if facts.child_in_care:
                registrant = own.parent(principal.pid, principal.name, patient_id)
        await tx.read_for_update("Patient", patient_id)  # one writer per patient: the 30 limit
        privacy, _ = await records.privacy(tx, patient_id)
        if privacy.reserved_at is not None:
            raise Conflict(
                "the patient has reserved against having a kjernejournal; withdraw the "
                "reservation ($kj-privacy) before registering"
            )
        values = operation_parameters(request, "$kj-own-registration")
        if "remove" in values:
            return await self._remove_own(request, tx, patient_id, values["remove"])
        resource = own.clean(values.get("resource"), patient_id)
        type_ = resource["resourceType"]
        self._check_scope(request, type_, "u" if resource.get("id") else "c")
        mine = [
            jsonio.loads(row.content)
            for row in await records.patient_rows(tx, patient_id, own.TYPES)
            if records.is_kj(row.content)
        ]
        mine = [r for r in mine if own.is_own(r, patient_id)]
        if resource.get("id"):
            current = next(
                (r for r in mine if (r["resourceType"], r["id"]) == (type_, resource["id"])),
                None,
            )
            if current is None:
                raise NotFound(f"{type_}/{resource['id']} is not one of your own registrations")
        if type_ == "Condition":
            own.check_conditions(
                sum(
                    1
                    for r in mine
                    if r["resourceType"] == "Condition" and r["id"] != resource.get("id")
                )
            )
        own.stamp(resource, patient_id, registrant, self.now())
        validate_for_write(resource)
        if resource.get("id"):
            stored, status = await tx.update(resource, resource["id"]), 200
        else:
            stored, status = await tx.create(resource), 201
        self._audit_own(request, patient_id, "C" if status == 201 else "U", stored)
        headers = version_headers(stored, request.base_url, location=status == 201)
        return FhirResponse(status, stored.content, headers, stored)

    async def _remove_own(self, request, tx, patient_id, target) -> FhirResponse:
        ref = named_reference(target)
        if ref is None or ref[0] not in own.TYPES:
            raise Invalid("remove names a registration, e.g. Condition/123")
        self._check_scope(request, ref[0], "d")
        current = await tx.read_for_update(*ref)
        if not own.is_own(jsonio.loads(current.content), patient_id):
            raise NotFound(f"{ref[0]}/{ref[1]} is not one of your own registrations")
        await tx.delete(*ref)
        self._audit_own(request, patient_id, "D", current)
        return FhirResponse.of(info_outcome(f"{ref[0]}/{ref[1]} removed"))

    def _check_scope(self, request, type_: str, action: str) -> None:
        guard = request.guard
        if guard is not None and grant(guard.principal.scopes, type_, action) is None:
            raise Forbidden(f"the token's scopes do not allow this change of {type_}")

    def _audit_own(self, request, patient_id: str, action: str, stored) -> None:
        if request.context is None:
            return
        request.context.record(
            action=action,
            subtype="$kj-own-registration",
            patient_id=patient_id,
            entities=[f"{stored.type}/{stored.id}"],
            purpose="PATRQT",
        )

    async def own_condition_codes(self, request, repo) -> FhirResponse:
        return FhirResponse.of(own.code_system())
