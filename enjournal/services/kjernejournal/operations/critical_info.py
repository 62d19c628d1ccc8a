"""``POST Patient/[id]/$kj-critical-info``: register, update or remove (entered-in-error)
one entry of critical information, by a physician; the recorder comes from the token."""

from __future__ import annotations

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Forbidden, Invalid, NotFound
from enjournal.rest.interactions.common import validate_for_write
from enjournal.rest.message import FhirResponse, version_headers
from enjournal.services.inputs import operation_parameters, refused
from enjournal.services.kjernejournal import records, rules
from enjournal.services.kjernejournal.operations.base import ServiceBase, named_reference

KJ_TYPES = ("AllergyIntolerance", "Condition", "Procedure", "Device", "Flag")
# The element naming the patient, and the one naming who registered, per type.
PATIENT_ELEMENT = {
    "AllergyIntolerance": "patient",
    "Condition": "subject",
    "Procedure": "subject",
    "Device": "patient",
    "Flag": "subject",
}
RECORDER_ELEMENT = {
    "AllergyIntolerance": "recorder",
    "Condition": "recorder",
    "Procedure": "recorder",
    "Flag": "author",
}


class CriticalInfoOperation(ServiceBase):
    async def critical_info(self, request, repo) -> FhirResponse:
        tx = repo.trusted  # its own access rules decide, below
        patient_id = request.path[1]
        guard = request.guard
        values = operation_parameters(request, "$kj-critical-info")
        if "remove" not in values and "resource" not in values:
            raise Invalid("$kj-critical-info needs the parameter 'resource' or 'remove'")
        if guard is not None:
            try:
                rules.may_register(guard.principal.kind, guard.principal.profession)
            except Forbidden as error:
                message = error.message
                raise refused(request, "c", "$kj-critical-info", message, patient_id) from None
        access = await self.access(request, tx, patient_id, "$kj-critical-info")
        await tx.read("Patient", patient_id)  # after the rules: they answer alike for none
        now = self.now()
        if "remove" in values:
            resource, status = await self._remove(tx, patient_id, values["remove"], request, now)
        else:
            resource, status = await self._register(
                tx, patient_id, values.get("resource"), request, now
            )
        validate_for_write(resource)
        if status == 201:
            stored = await tx.create(resource)
        else:
            stored = await tx.update(resource, resource["id"])
        await self.audit(
            request,
            tx,
            patient_id,
            access,
            action="C" if status == 201 else "U",
            interaction="$kj-critical-info",
            refs=[f"{stored.type}/{stored.id}"],
        )
        headers = version_headers(stored, request.base_url, location=status == 201)
        return FhirResponse(status, stored.content, headers, stored)

    async def _register(self, tx, patient_id, resource, request, now) -> tuple[dict, int]:
        if not isinstance(resource, dict) or resource.get("resourceType") not in KJ_TYPES:
            raise Invalid("give the entry as parameter 'resource': one of " + ", ".join(KJ_TYPES))
        type_ = resource["resourceType"]
        element = PATIENT_ELEMENT[type_]
        named = (resource.get(element) or {}).get("reference")
        if named and named not in (f"Patient/{patient_id}",):
            raise Invalid(
                f"{type_}.{element} names another patient", expression=f"{type_}.{element}"
            )
        resource[element] = {"reference": f"Patient/{patient_id}"}
        category = rules.category_of(resource)
        rules.complete(resource)
        rules.check_entry(resource, category)
        previous = None
        if resource.get("id") and await tx.exists(type_, resource["id"]):
            current = await tx.read_for_update(type_, resource["id"])
            previous = jsonio.loads(current.content)
            if (
                not records.is_kj(previous)
                or (previous.get(element) or {}).get("reference") != f"Patient/{patient_id}"
            ):
                raise Invalid(
                    f"{type_}/{resource['id']} is not this patient's critical information"
                )
        else:
            resource.pop("id", None)
        self._stamp(resource, category, request, now, previous)
        return resource, 201 if previous is None else 200

    async def _remove(self, tx, patient_id, target, request, now) -> tuple[dict, int]:
        ref = named_reference(target)
        if ref is None or ref[0] not in KJ_TYPES:
            raise Invalid("remove names an entry, e.g. AllergyIntolerance/123")
        current = await tx.read_for_update(*ref)
        resource = jsonio.loads(current.content)
        element = PATIENT_ELEMENT[ref[0]]
        if (
            not records.is_kj(resource)
            or (resource.get(element) or {}).get("reference") != f"Patient/{patient_id}"
        ):
            raise NotFound(f"{ref[0]}/{ref[1]} is not this patient's critical information")
        rules.mark_entered_in_error(resource)
        category = rules.category_of(resource)
        self._stamp(resource, category, request, now, jsonio.loads(current.content))
        return resource, 200

    def _stamp(self, resource, category, request, now, previous) -> None:
        """Tag, category and who registered (from the token; the first registrar is kept,
        later changes name the updater)."""
        type_ = resource["resourceType"]
        meta = resource.setdefault("meta", {})
        meta["tag"] = [t for t in meta.get("tag", []) if t.get("system") != rules.KJ] + [
            {"system": rules.KJ, "code": category.code, "display": category.display}
        ]
        if type_ in ("Condition", "Flag"):
            codings = [{"system": rules.KJ, "code": category.code, "display": category.display}]
            if category.nhn_code:
                codings.append(
                    {
                        "system": "http://nhn.no/kj/fhir/CodeSystem/CriticalInfoCategory",
                        "code": category.nhn_code,
                    }
                )
            others = [
                c
                for c in resource.get("category", [])
                if not any(x.get("system") == rules.KJ for x in c.get("coding", []))
            ]
            resource["category"] = [{"coding": codings}, *others]
        guard = request.guard
        principal = guard.principal if guard is not None else None
        me = rules.recorder_role(
            principal.hpr if principal else None,
            principal.name if principal else None,
            principal.org_nr if principal else None,
            principal.profession if principal else None,
            "recorder",
        )
        contained = [
            c for c in resource.get("contained", []) if c.get("id") not in ("recorder", "updater")
        ]
        extensions = [
            e
            for e in resource.get("extension", [])
            if e.get("url") not in (rules.KJ_UPDATER, rules.KJ_UPDATED, rules.REGISTERED_BY)
        ]
        if previous is not None:
            first = next(
                (c for c in previous.get("contained", []) if c.get("id") == "recorder"), me
            )
            contained.append(first)
            updater = dict(me, id="updater")
            contained.append(updater)
            extensions.append(
                {"url": rules.KJ_UPDATER, "valueReference": {"reference": "#updater"}}
            )
            extensions.append(
                {"url": rules.KJ_UPDATED, "valueDateTime": now.isoformat(timespec="seconds")}
            )
        else:
            contained.append(me)
        extensions.append(
            {"url": rules.REGISTERED_BY, "valueReference": {"reference": "#recorder"}}
        )
        resource["contained"] = contained
        resource["extension"] = extensions
        if type_ in RECORDER_ELEMENT:
            resource[RECORDER_ELEMENT[type_]] = {"reference": "#recorder"}
        if type_ in ("AllergyIntolerance", "Condition") and not resource.get("recordedDate"):
            resource["recordedDate"] = now.isoformat(timespec="seconds")
