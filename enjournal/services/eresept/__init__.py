"""The e-resept service: prescriptions through the prescription intermediary
(Reseptformidleren), dispensing, the patient's medication list (PLL), interaction checks
against the FEST catalogue.  docs/eresept.md describes roles, operations and rules;
../shared/docs/domain.md section 3 is the source.
"""

from __future__ import annotations

from enjournal.rest.operations import Operation
from enjournal.rest.operations import register as register_operation
from enjournal.services import Job

DELETE_EVERY = 3600.0  # seconds between passes of the deletion job


def _answering_conflicts(handler, name: str):
    """An unacknowledged severe interaction answers 409 with the DetectedIssues contained in
    the OperationOutcome.  It is raised before anything is written, so answering (which
    commits the transaction) writes nothing but the refusal's audit event."""
    from enjournal.services.eresept.actors import audit
    from enjournal.services.eresept.api import InteractionConflict

    async def run(request, tx):
        try:
            return await handler(request, tx)
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
            return conflict.response()

    return run


def register(context) -> list[Job]:
    from enjournal.services.eresept import api, jobs, pll

    api.clock = context.clock
    jobs.define_search_parameters()
    post = ("POST",)
    for name, instance, handler in (
        ("prescribe", False, _answering_conflicts(api.prescribe, "prescribe")),
        ("take", True, api.take),
        ("release", True, api.release),
        ("dispense", True, _answering_conflicts(api.dispense, "dispense")),
        ("withdraw", True, api.withdraw),
        ("privacy-lock", True, api.privacy_lock),
    ):
        register_operation(
            Operation(name, "MedicationRequest", instance, handler, post, writes=True)
        )
    register_operation(Operation("dispensable", "MedicationRequest", False, api.dispensable, post))
    register_operation(
        Operation("medication-list", "Patient", True, pll.medication_list, ("GET", "POST"), post)
    )
    register_operation(
        Operation("reserve-gp-reports", "Patient", True, pll.reserve_gp_reports, post, True)
    )
    _install_guard_hooks()
    return [Job("eresept-delete-prescriptions", DELETE_EVERY, jobs.delete_prescriptions)]


async def _hide_locked(guard, tx, action, resource, patients) -> str | None:
    """A privacy-locked prescription (låst resept) is invisible to dispensers except through
    $dispensable with its reference number; this closes the plain REST read and search."""
    from enjournal.security.policy import PHARMACY_PROFESSIONS
    from enjournal.services.eresept.rules import PRIVACY_EXT

    if resource.get("resourceType") != "MedicationRequest" or action not in ("r", "s"):
        return None
    if guard.principal.profession not in PHARMACY_PROFESSIONS:
        return None
    if any(e.get("url") == PRIVACY_EXT for e in resource.get("extension", [])):
        return "a locked prescription is shown only with its reference number"
    return None


def _install_guard_hooks() -> None:
    """Once per process: the privacy-lock hook, and the reservation Consent's category as
    one the general Consent rules leave to this service."""
    from enjournal.security import guard
    from enjournal.services.eresept.reports import RESERVATION
    from enjournal.services.eresept.rules import PRIVACY_EXT

    if all(check is not _hide_locked for _, check in guard.RESOURCE_HOOKS):
        guard.RESOURCE_HOOKS.append((PRIVACY_EXT.encode(), _hide_locked))
    guard.SERVICE_CONSENT_SYSTEMS.add(RESERVATION)
