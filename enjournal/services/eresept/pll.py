"""The patient's medication list (PLL, Pasientens legemiddelliste, domain 3.5) and the
citizen's reservation against dispensing reports to the GP (domain 3.1).

    GET  /Patient/{id}/$medication-list        the current list (a FHIR List, code
                                               "medications"); empty if none was made
    POST /Patient/{id}/$medication-list        a prescriber replaces it (Parameters 'list');
                                               an entry stopped (``deleted: true``) or
                                               removed withdraws the patient's dispensable
                                               prescriptions of that medicine (seponering)
    POST /Patient/{id}/$reserve-gp-reports     the citizen reserves ('reserve' true) or not
"""

from __future__ import annotations

from datetime import datetime

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Gone, Invalid, NotFound
from enjournal.rest.interactions.common import validate_for_write
from enjournal.rest.message import FhirResponse
from enjournal.services.eresept import api, drugs, queries, rules
from enjournal.services.eresept.actors import audit, caller
from enjournal.services.eresept.reports import (
    GP_REPORTS,
    RESERVATION,
    pll_id,
    reservation_id,
)
from enjournal.services.eresept.rules import Prescription
from enjournal.services.inputs import operation_parameters, refused

LIST_CODE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/list-example-use-codes",
            "code": "medications",
        }
    ],
    "text": "Pasientens legemiddelliste",
}


async def medication_list(request, repo) -> FhirResponse:
    """The patient's medication list (PLL): read as the patient's record is; changed only
    here (a plain write of ``List/pll-*`` is refused by the guard hook), by a prescriber
    (the e-resept rule) who may read the patient's record."""
    patient_id = request.path[1]
    if request.method == "GET":
        # Whoever may read the record reads its list, a pharmacist too (the service's rule:
        # the pharmacy's role covers no List), unless a Consent hides the list itself.
        await repo.read("Patient", patient_id, "$medication-list")
        if await repo.consent_hides(patient_id, f"List/{pll_id(patient_id)}"):
            message = f"List/{pll_id(patient_id)} is not known"
            raise refused(request, "r", "$medication-list", message, patient_id, NotFound)
        stored = await repo.trusted.content_of("List", pll_id(patient_id))
        if stored is not None:
            return FhirResponse(200, bytes(stored))
        return FhirResponse.of(_empty(patient_id))
    return await _update(request, repo, patient_id)


def _empty(patient_id: str) -> dict:
    return {
        "resourceType": "List",
        "id": pll_id(patient_id),
        "status": "current",
        "mode": "working",
        "code": LIST_CODE,
        "subject": {"reference": f"Patient/{patient_id}"},
    }


async def _update(request, repo, patient_id: str) -> FhirResponse:
    tx = repo.trusted  # the prescriber rule and the read of the patient's record decide
    params = operation_parameters(request, "$medication-list", required=("list",))
    actor = await caller(request, tx, params, ("List", "u"))
    if actor.profession not in rules.PRESCRIBERS or actor.kind not in ("personnel", "trusted"):
        message = "only a prescriber updates the medication list (PLL)"
        raise refused(request, "U", "$medication-list", message, patient_id)
    # After the rule, so a caller who may not write learns nothing of who is registered.
    await repo.read("Patient", patient_id, "$medication-list")
    new = params.get("list")
    if not isinstance(new, dict) or new.get("resourceType") != "List":
        raise Invalid("$medication-list needs Parameters with a List in 'list'")
    now = api.clock()
    resource = {**_empty(patient_id), "date": _instant(now)}
    entries = []
    listed = new.get("entry", [])
    if not isinstance(listed, list) or not all(isinstance(e, dict) for e in listed):
        raise Invalid("the PLL's List.entry must be an array of entries")
    for entry in listed:
        item = entry.get("item")
        ref = item.get("reference") if isinstance(item, dict) else None
        ref = ref if isinstance(ref, str) else ""
        if not ref.startswith("Medication/") or await drugs.product(tx, ref) is None:
            raise Invalid(f"a PLL entry names a catalogue Medication, not {ref!r}")
        entries.append(entry)
    # A stopped medicine leaves the working list (lst-2: ``deleted`` is for change lists).
    kept = [e for e in entries if not e.get("deleted")]
    if kept:
        resource["entry"] = kept
    validate_for_write(resource)
    old = await _old_list(tx, patient_id)
    stopped = _stopped(old, entries)
    withdrawn, locked = await _withdraw_stopped(tx, patient_id, stopped, now)
    stored = await tx.update(resource, pll_id(patient_id))
    audit(request, "U", "$medication-list", patient_id, [f"List/{stored.id}", *withdrawn])
    # A privacy-locked prescription is withdrawn too, but not named to the caller.
    withdrawn = [ref for ref in withdrawn if ref not in locked]
    return FhirResponse.of(
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "list", "resource": jsonio.loads(stored.content)},
                *({"name": "withdrawn", "valueReference": {"reference": r}} for r in withdrawn),
            ],
        }
    )


async def _old_list(tx, patient_id: str) -> dict | None:
    try:
        stored = await tx.read_for_update("List", pll_id(patient_id))
    except (NotFound, Gone):
        return None
    return jsonio.loads(stored.content)


def _stopped(old: dict | None, entries: list[dict]) -> set[str]:
    """Medicines that were on the list and now are stopped or gone."""
    before = {
        (e.get("item") or {}).get("reference")
        for e in (old or {}).get("entry", [])
        if not e.get("deleted")
    }
    now_active = {(e.get("item") or {}).get("reference") for e in entries if not e.get("deleted")}
    return {r for r in before - now_active if r}


async def _withdraw_stopped(
    tx, patient_id: str, stopped: set[str], now: datetime
) -> tuple[list[str], set[str]]:
    """Seponering withdraws the dispensable prescriptions of the stopped medicines (same
    package, or same ATC code): the withdrawn, and which of them are privacy-locked."""
    if not stopped:
        return [], set()
    atcs = set()
    for ref in stopped:
        product = await drugs.product(tx, ref)
        if product is not None and product.atc:
            atcs.add(product.atc)
    withdrawn, locked = [], set()
    for resource in await queries.prescriptions_of(tx, patient_id):
        ref = (resource.get("medicationReference") or {}).get("reference")
        product = await drugs.product(tx, ref) if ref else None
        same = ref in stopped or (product is not None and product.atc in atcs)
        if not same:
            continue
        stored = await tx.read_for_update("MedicationRequest", resource["id"])
        p = Prescription(jsonio.loads(stored.content))
        if not p.issued_here or p.status not in (rules.EXPEDITABLE, rules.UNDER_DISPENSING):
            continue
        rules.withdraw(p, "Seponert i pasientens legemiddelliste (PLL)", now)
        validate_for_write(p.resource)
        await tx.update(p.resource, p.id)
        withdrawn.append(f"MedicationRequest/{p.id}")
        if p.privacy_hash:
            locked.add(withdrawn[-1])
    return withdrawn, locked


async def reserve_gp_reports(request, repo) -> FhirResponse:
    """The citizen reserves against dispensing reports to their GP (M8)."""
    tx = repo.trusted  # its own access rules decide, below
    patient_id = request.path[1]
    params = operation_parameters(request, "$reserve-gp-reports", required=("reserve",))
    actor = await caller(request, tx, params, ("Consent", "u"))
    if actor.kind == "citizen":
        if actor.pid not in await queries.patient_pids(tx, patient_id):
            # Another patient: unknown to this citizen, as on a plain read.
            message = f"Patient/{patient_id} is not known"
            raise refused(request, "U", "$reserve-gp-reports", message, patient_id, NotFound)
    elif actor.kind != "trusted":
        message = "the patient reserves against reports to the GP"
        raise refused(request, "U", "$reserve-gp-reports", message, patient_id)
    reserve = _boolean(params["reserve"])
    consent = {
        "resourceType": "Consent",
        "status": "active" if reserve else "inactive",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": RESERVATION, "code": GP_REPORTS}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": _instant(api.clock()),
        "policyRule": {"text": "Reservasjon mot utleveringsrapport til fastlege (M8)"},
        # The top-level rule permits: the access guard reads top-level "deny" provisions as
        # access restrictions, and this one only stops a report being sent.
        "provision": {
            "type": "permit",
            "provision": [
                {
                    "type": "deny",
                    "action": [{"coding": [{"system": RESERVATION, "code": GP_REPORTS}]}],
                }
            ],
        },
    }
    # No guard.check_write: the caller was checked above (the patient, by national id), and
    # the guard's hook refuses plain writes of this Consent (e-resept's own).
    validate_for_write(consent)
    stored = await tx.update(consent, reservation_id(patient_id))
    audit(request, "U", "$reserve-gp-reports", patient_id, [f"Consent/{stored.id}"])
    return FhirResponse(200, stored.content)


def _boolean(value) -> bool:
    """``reserve`` as valueBoolean, or a string true/false; anything else is refused
    rather than read as a reservation."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise Invalid("$reserve-gp-reports: 'reserve' is true or false")
    return value


def _instant(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")
