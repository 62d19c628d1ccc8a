"""Velferdsteknologi's FHIR operations: the care staff's and the response centre's steps.

- ``POST Task/[id]/$vkp-acknowledge``: a nurse takes an alert, or a responder accepts a
  safety alarm (requested -> accepted).
- ``POST Task/[id]/$vkp-arrived``: a responder is at the door (safety alarms only).
- ``POST Task/[id]/$vkp-close`` (``action``: what was done; ``outcome``: a code, alarms):
  closed, its DetectedIssue final with the action as its mitigation.
- ``GET $vkp-response-times`` (``from``, ``to``: dates): per municipality, how fast safety
  alarms were accepted and closed (count, open, median and 90th percentile in seconds, the
  share accepted within the deadline), over the alarms the caller may see.

All read and write through the request's guarded repository, so only staff who may reach
the patient (a care relationship at their municipality) act on an alert, and each step is
audited like any other write.
"""

from __future__ import annotations

from dataclasses import asdict

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Conflict, Forbidden, Invalid, NotFound
from enjournal.fhir.search import parse_search
from enjournal.rest.message import FhirResponse, version_headers
from enjournal.rest.operations import Operation
from enjournal.services.inputs import operation_parameters
from enjournal.services.velferdsteknologi import alarms, alerts

DEFINITION = "https://enjournal.no/fhir/OperationDefinition/"
HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
MAX_ACTION = 2_000  # characters of "what was done": a note, not a document
MAX_REPORTED = 10_000  # alarms in one report; a longer period is asked for in parts


class Steps:
    def __init__(self, platform):
        self.platform = platform

    def now(self):
        return self.platform.clock()

    async def acknowledge(self, request, repo) -> FhirResponse:
        op = "$vkp-acknowledge"
        operation_parameters(request, op)
        current, work = await self._alert(request, repo, op)
        if _is_alarm(work):
            return await self._step(request, repo, current, alarms.accept, work, _who(request))
        return await self._step(request, repo, current, alerts.acknowledge, work, _who(request))

    async def arrived(self, request, repo) -> FhirResponse:
        op = "$vkp-arrived"
        operation_parameters(request, op)
        current, work = await self._alert(request, repo, op)
        if not _is_alarm(work):
            raise Invalid("$vkp-arrived is a step of safety alarms")
        return await self._step(request, repo, current, alarms.arrived, work)

    async def close(self, request, repo) -> FhirResponse:
        op = "$vkp-close"
        params = operation_parameters(request, op, required=("action",))
        action, outcome = params["action"], params.get("outcome")
        if not isinstance(action, str) or not action.strip():
            raise Invalid("'action' (what was done) must be a non-empty valueString")
        if len(action) > MAX_ACTION:
            raise Invalid(f"'action' is longer than {MAX_ACTION} characters")
        current, work = await self._alert(request, repo, op)
        if _is_alarm(work):
            code = outcome.get("code") if isinstance(outcome, dict) else outcome
            response = await self._step(request, repo, current, alarms.close, work, action, code)
        else:
            response = await self._step(
                request, repo, current, alerts.close, work, _who(request), action
            )
        await self._finish_issue(repo, work, action)
        return response

    async def response_times(self, request, repo) -> FhirResponse:
        _staff_only(request, "$vkp-response-times")
        params = operation_parameters(request, "$vkp-response-times")
        criteria = [("code", f"{alerts.ALERT}|{alarms.KIND}"), ("_count", str(MAX_REPORTED))]
        for name, prefix in (("from", "ge"), ("to", "le")):
            if params.get(name):
                criteria.append(("authored-on", f"{prefix}{params[name]}"))
        query = parse_search("Task", criteria, strict=True, parameters=repo.search_parameters)
        found = (await repo.search(query, "$vkp-response-times")).matches
        tasks = [jsonio.loads(s.content) for s in found]
        report = alarms.response_times(tasks, _municipality)
        return FhirResponse.of(_report(report))

    async def _alert(self, request, repo, op: str):
        _staff_only(request, op)
        current = await repo.for_update("Task", request.path[1], op)
        work = jsonio.loads(current.content)
        if not alerts.is_alert(work):
            raise NotFound(f"Task/{request.path[1]} is not a follow-up alert")
        return current, work

    async def _step(self, request, repo, current, step, work, *args) -> FhirResponse:
        try:
            changed = step(work, *args, self.now())
        except ValueError as error:  # an illegal step (IllegalStep is one)
            raise Conflict(str(error)) from None
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


def _staff_only(request, op: str) -> None:
    """The steps and the report are the care staff's and the response centre's: a citizen
    (even on their own alert) gets a 403, as does a caller without a principal."""
    principal = request.guard.principal if request.guard is not None else None
    if principal is not None and principal.kind == "citizen":
        raise Forbidden(f"{op} is for health personnel")


def _is_alarm(work: dict) -> bool:
    codes = (work.get("code") or {}).get("coding") or [{}]
    return codes[0].get("code") == alarms.KIND


def _who(request) -> dict:
    """The acting health worker, by HPR number (as the audit log names them)."""
    principal = request.guard.principal if request.guard is not None else None
    if principal is None or not principal.hpr:
        return {"display": principal.label if principal else "system"}
    return {"identifier": {"system": HPR, "value": principal.hpr}, "display": principal.name or ""}


def _municipality(task: dict) -> str | None:
    """The municipality an alarm belongs to: its requester (the device's owner)."""
    requester = task.get("requester") or {}
    ident = requester.get("identifier") or {}
    return ident.get("value") or requester.get("display") or requester.get("reference")


def _report(report: dict) -> dict:
    parts = []
    for municipality, stats in report.items():
        values = [{"name": "municipality", "valueString": municipality}]
        for name, value in asdict(stats).items():
            if value is not None:
                kind = "valueInteger" if isinstance(value, int) else "valueDecimal"
                values.append({"name": name.replace("_", "-"), kind: value})
        parts.append({"name": "municipality", "part": values})
    return {"resourceType": "Parameters", "parameter": parts}


def register(platform) -> None:
    steps = Steps(platform)
    for name, handler in (
        ("vkp-acknowledge", steps.acknowledge),
        ("vkp-arrived", steps.arrived),
        ("vkp-close", steps.close),
    ):
        platform.operations.add(
            Operation(
                name, "Task", True, handler, ("POST",), writes=True, definition=DEFINITION + name
            )
        )
    platform.operations.add(
        Operation(
            "vkp-response-times",
            None,
            False,
            steps.response_times,
            ("GET",),
            definition=DEFINITION + "vkp-response-times",
        )
    )
