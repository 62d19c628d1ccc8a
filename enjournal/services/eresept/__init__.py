"""The e-resept service: prescriptions through the prescription intermediary
(Reseptformidleren), dispensing, the patient's medication list (PLL), interaction checks
against the FEST catalogue.  docs/eresept.md describes roles, operations and rules;
../shared/docs/domain.md section 3 is the source.
"""

from __future__ import annotations

from enjournal.rest.operations import Operation
from enjournal.services import Job

DELETE_EVERY = 3600.0  # seconds between passes of the deletion job


def _answering_conflicts(handler, name: str):
    """An unacknowledged severe interaction answers 409 with the DetectedIssues contained in
    the OperationOutcome.  It is raised before anything is written, so answering (which
    commits the transaction) writes nothing but the refusal's audit event."""
    from enjournal.rest.errors import error_response
    from enjournal.services.eresept.actors import audit
    from enjournal.services.eresept.interactions import InteractionConflict

    async def run(request, repo):
        try:
            return await handler(request, repo)
        except InteractionConflict as conflict:
            audit(
                request,
                "C",
                f"${name}",
                conflict.patient_id,
                [],
                outcome="4",
                description=conflict.message,
            )
            return error_response(conflict)

    return run


def register(context) -> list[Job]:
    """Add the operations, guard hooks and search parameters to the platform ``context``.
    Its operations run with one ``EreseptState`` of its own (the platform's clock and the
    service's caches, ``state.py``), so platforms in one process share none of it."""
    from dataclasses import replace

    from enjournal.services.eresept import api, jobs, pll, prescribing
    from enjournal.services.eresept.state import EreseptState, serving

    jobs.define_search_parameters(context.search_parameters)
    state = EreseptState(clock=context.clock)
    for operation in _operations(api, prescribing, pll):
        context.operations.add(replace(operation, handler=serving(operation.handler, state)))
    _install_guard_hooks(context)
    return [Job("eresept-delete-prescriptions", DELETE_EVERY, jobs.delete_prescriptions)]


def _operations(api, prescribing, pll) -> list[Operation]:
    """The service's operations (docs/eresept.md)."""
    post = ("POST",)
    writing = [
        Operation(name, "MedicationRequest", instance, handler, post, writes=True)
        for name, instance, handler in (
            ("prescribe", False, _answering_conflicts(prescribing.prescribe, "prescribe")),
            ("take", True, api.take),
            ("release", True, api.release),
            ("dispense", True, _answering_conflicts(api.dispense, "dispense")),
            ("withdraw", True, api.withdraw),
            ("privacy-lock", True, api.privacy_lock),
        )
    ]
    return [
        *writing,
        Operation("dispensable", "MedicationRequest", False, api.dispensable, post),
        Operation("medication-list", "Patient", True, pll.medication_list, ("GET", "POST"), post),
        Operation("reserve-gp-reports", "Patient", True, pll.reserve_gp_reports, post, True),
    ]


async def _hide_locked(guard, tx, action, resource, patients) -> str | None:
    """A privacy-locked prescription (låst resept) is invisible without its reference number
    (domain 3.3), to every health worker and system: the number can only be given to the
    e-resept operations, so plain reads and searches never show it.  The patient sees their
    own (the general policy limits citizens to their record), and so does the prescriber who
    issued it: they wrote it, and must be able to withdraw it [unverified: RF's M9.5 list is
    the prescriber's own; no source says the lock hides a prescription from its author]."""
    from enjournal.services.eresept.rules import PRIVACY_EXT

    if resource.get("resourceType") != "MedicationRequest" or action not in ("r", "s"):
        return None
    if not any(e.get("url") == PRIVACY_EXT for e in resource.get("extension", [])):
        return None
    principal = guard.principal
    if principal.kind == "citizen":
        return None
    requester = (resource.get("requester") or {}).get("identifier") or {}
    if principal.kind == "personnel" and principal.hpr and requester.get("value") == principal.hpr:
        return None
    return "a locked prescription is shown only with its reference number"


async def _plain_writes(guard, tx, action, resource, patients) -> str | None:
    """E-prescriptions, the medication list (PLL) and the reservation against GP reports
    change only through the e-resept operations: a plain create, update or delete would
    bypass the chain's rules (the prescriber rule, the withdrawal of stopped medicines),
    and could lift the patient's privacy lock or reservation for them."""
    if action not in ("c", "u", "d") or not await _owned(tx, action, resource):
        return None
    return "changed only through the e-resept operations ($prescribe, $medication-list, ...)"


async def _owned(tx, action: str, resource: dict) -> bool:
    """Is this (new or stored) resource the service's: an e-prescription or the
    reservation Consent?  An update is judged on the stored version too, since the new
    content may have dropped what marks it."""
    from enjournal.fhir import jsonio
    from enjournal.fhir.errors import Gone, NotFound
    from enjournal.services.eresept.reports import PLL_PREFIX

    type_ = resource.get("resourceType")
    if type_ == "List":  # the PLL has a fixed id per patient (reports.pll_id)
        return str(resource.get("id", "")).startswith(PLL_PREFIX)
    if type_ not in ("MedicationRequest", "Consent"):
        return False
    if _marks_owned(resource):
        return True
    if action != "u" or not resource.get("id"):
        return False
    try:
        stored = await tx.read(type_, resource["id"])
    except (NotFound, Gone):
        return False
    return _marks_owned(jsonio.loads(stored.content))


def _marks_owned(resource: dict) -> bool:
    from enjournal.services.eresept.reports import RESERVATION
    from enjournal.services.eresept.rules import Prescription

    if resource.get("resourceType") == "MedicationRequest":
        return Prescription(resource).issued_here
    return any(
        c.get("system") == RESERVATION
        for concept in resource.get("category", [])
        for c in concept.get("coding", [])
    )


def _install_guard_hooks(context) -> None:
    """The privacy-lock and plain-write hooks, and the reservation Consent's category as one
    the general Consent rules leave to this service (``add_hook`` is idempotent)."""
    from enjournal.services.eresept.reports import PLL_PREFIX, RESERVATION
    from enjournal.services.eresept.rules import PRIVACY_EXT, RESEPT_ID

    for marker, check in (
        (PRIVACY_EXT, _hide_locked),
        (RESEPT_ID, _plain_writes),
        (RESERVATION, _plain_writes),
        (PLL_PREFIX, _plain_writes),  # in a stored PLL's id: a plain delete is checked too
    ):
        context.add_hook(marker.encode(), check)
    context.consent_systems.add(RESERVATION)
