"""``POST /$kj-status``: NHN's status call: does the patient have critical information, when
did it change, restricted, reserved, is the caller blocked; no content, not audit-logged."""

from __future__ import annotations

import orjson

from enjournal.fhir.datetime import format_instant
from enjournal.fhir.errors import Forbidden, Invalid, NotFound
from enjournal.rest.message import FhirResponse
from enjournal.services.inputs import operation_parameters
from enjournal.services.kjernejournal import records, rules
from enjournal.services.kjernejournal.operations.base import ServiceBase
from enjournal.services.kjernejournal.operations.critical_info import KJ_TYPES


class StatusOperation(ServiceBase):
    async def status(self, request, repo) -> FhirResponse:
        tx = repo.trusted  # its own access rules decide, below
        guard = request.guard
        if guard is not None and guard.principal.kind != "personnel":
            raise Forbidden("the status call is for health personnel")
        values = operation_parameters(request, "$kj-status")
        nin = values.get("nin") or request.header("nhn-patient-nin")
        if not isinstance(nin, str) or not nin.strip():
            raise Invalid("name the patient: parameter nin or header nhn-patient-nin")
        patient_id = await records.patient_by_nin(tx, nin.strip())
        if patient_id is None:
            raise NotFound("no patient with this national identity number")
        privacy, _ = await records.privacy(tx, patient_id)
        hpr = guard.principal.hpr if guard is not None else None
        out: list[dict] = []
        changed: dict[str, int] = {}
        active = 0
        if privacy.reserved_at is None:
            for row in await records.patient_rows(tx, patient_id, KJ_TYPES):
                if not records.is_kj(row.content):
                    continue
                resource = orjson.loads(row.content)
                tag = records.kj_tag(resource)
                if tag == rules.PATIENT_REGISTRATION or privacy.before_start(
                    (resource.get("meta") or {}).get("lastUpdated")
                ):
                    continue
                changed[tag or row.type] = max(changed.get(tag or row.type, 0), row.last_updated)
                if not rules.entered_in_error(resource):
                    active += 1
        out.append({"name": "hasCriticalInformation", "valueBoolean": active > 0})
        if changed:
            out.append(
                {"name": "lastChanged", "valueDateTime": format_instant(max(changed.values()))}
            )
            for category, ms in sorted(changed.items()):
                out.append(
                    {
                        "name": "changed",
                        "part": [
                            {"name": "category", "valueCode": category},
                            {"name": "dateTime", "valueDateTime": format_instant(ms)},
                        ],
                    }
                )
        out.append({"name": "restricted", "valueBoolean": bool(privacy.restricted)})
        for part in sorted(privacy.restricted):
            out.append({"name": "restrictedPart", "valueCode": part})
        out.append({"name": "reserved", "valueBoolean": privacy.reserved_at is not None})
        out.append({"name": "callerBlocked", "valueBoolean": bool(hpr and hpr in privacy.blocked)})
        return FhirResponse.of({"resourceType": "Parameters", "parameter": out})
