"""Velferdsteknologi's FHIR operations: the care staff's steps on an alert.

- ``POST Task/[id]/$vkp-acknowledge``: a nurse takes the alert (requested -> accepted).
- ``POST Task/[id]/$vkp-close`` (``action``: what was done): the alert is closed, its
  DetectedIssue final with the action as its mitigation.

Both read and write through the request's guarded repository, so only staff who may reach
the patient (a care relationship at their municipality) act on the alert, and each step is
audited like any other write.  Readings themselves come as plain FHIR (a gateway's batch)
or through the hub (``ingest.py``).
"""

from __future__ import annotations

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Conflict, Invalid, NotFound
from enjournal.rest.message import FhirResponse, version_headers
from enjournal.rest.operations import Operation
from enjournal.services.inputs import operation_parameters
from enjournal.services.velferdsteknologi import alerts

DEFINITION = "https://enjournal.no/fhir/OperationDefinition/"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"


class FollowUp:
    def __init__(self, platform):
        self.platform = platform

    def now(self):
        return self.platform.clock()

    async def acknowledge(self, request, repo) -> FhirResponse:
        op = "$vkp-acknowledge"
        operation_parameters(request, op)
        current, work = await self._alert(request, repo, op)
        try:
            changed = alerts.acknowledge(work, _who(request), self.now())
        except ValueError as error:
            raise Conflict(str(error)) from None
        return await self._save(request, repo, current, changed)

    async def close(self, request, repo) -> FhirResponse:
        op = "$vkp-close"
        params = operation_parameters(request, op, required=("action",))
        action = params["action"]
        if not isinstance(action, str) or not action.strip():
            raise Invalid("'action' (what was done) must be a non-empty valueString")
        current, work = await self._alert(request, repo, op)
        try:
            changed = alerts.close(work, _who(request), action, self.now())
        except ValueError as error:
            raise Conflict(str(error)) from None
        await self._finish_issue(repo, work, action)
        return await self._save(request, repo, current, changed)

    async def _alert(self, request, repo, op: str):
        current = await repo.for_update("Task", request.path[1], op)
        work = jsonio.loads(current.content)
        if not alerts.is_alert(work):
            raise NotFound(f"Task/{request.path[1]} is not a follow-up alert")
        return current, work

    async def _save(self, request, repo, current, changed: dict) -> FhirResponse:
        stored = await repo.update(changed, current.id, if_match=current.version, current=current)
        headers = version_headers(stored, request.base_url, location=False)
        return FhirResponse(200, stored.content, headers, stored)

    async def _finish_issue(self, repo, work: dict, action: str) -> None:
        reference = (work.get("focus") or {}).get("reference") or ""
        if not reference.startswith("DetectedIssue/"):
            return
        issue_id = reference.split("/", 1)[1]
        current = await repo.for_update("DetectedIssue", issue_id, "$vkp-close")
        issue = jsonio.loads(current.content)
        issue["status"] = "final"
        issue["mitigation"] = [
            *issue.get("mitigation", []),
            {"action": {"text": action.strip()}, "date": alerts.instant(self.now())},
        ]
        await repo.update(issue, issue_id, if_match=current.version, current=current)


def _who(request) -> dict:
    """The acting health worker, by HPR number (as the audit log names them)."""
    principal = request.guard.principal if request.guard is not None else None
    if principal is None or not principal.hpr:
        return {"display": principal.label if principal else "system"}
    return {"identifier": {"system": HPR, "value": principal.hpr}, "display": principal.name or ""}


def register(platform) -> None:
    service = FollowUp(platform)
    for name, handler in (("vkp-acknowledge", service.acknowledge), ("vkp-close", service.close)):
        platform.operations.add(
            Operation(
                name, "Task", True, handler, ("POST",), writes=True, definition=DEFINITION + name
            )
        )
