"""What a dispensing leaves behind, and the patient's current medicines.

A dispensing is a MedicationDispense; its reports (M6 to the prescriber, M8 to the GP,
domain 3.1) are Communications whose payload references it.  The GP's copy is skipped when
the patient reserved against GP reports (a Consent written by ``pll.reserve``).
"""

from __future__ import annotations

from datetime import datetime

from enjournal.fhir.norwegian_ids import OID_HPR, OID_ORGNR
from enjournal.services.eresept import drugs, queries, rules
from enjournal.services.eresept.rules import Prescription
from enjournal.storage.store import new_id

REPORT_KIND = "https://enjournal.no/fhir/CodeSystem/eresept-message"  # M6, M8 (domain 3.2)
RESERVATION = "https://enjournal.no/fhir/CodeSystem/eresept-reservation"
GP_REPORTS = "utleveringsrapport-fastlege"


PLL_PREFIX = "pll-"


def pll_id(patient_id: str) -> str:
    """The one current medication list (PLL) of a patient has a fixed id, so updates of it
    lock one row and there is never a second list."""
    return PLL_PREFIX + patient_id


def reservation_id(patient_id: str) -> str:
    return f"m8-reservation-{patient_id}"


async def patient_record(tx, patient_id: str) -> queries.PatientRecord:
    """The patient, prescriptions, PLL and GP-report reservation: one read."""
    return await queries.patient_record(
        tx, patient_id, pll_id(patient_id), reservation_id(patient_id)
    )


async def current_atcs(tx, record: queries.PatientRecord) -> list[tuple[str, str]]:
    """(ATC, reference) of the patient's current medicines: dispensable prescriptions and the
    entries of the medication list (PLL) that are not stopped.  Privacy-locked prescriptions
    are left out, as from Legemidler i bruk (domain 3.3): an interaction found with one would
    name it to a caller without its reference number."""
    out: list[tuple[str, str]] = []
    for resource in record.prescriptions:
        p = Prescription(resource)
        if p.status not in (rules.EXPEDITABLE, rules.UNDER_DISPENSING) or p.privacy_hash:
            continue
        ref = (resource.get("medicationReference") or {}).get("reference")
        product = await drugs.product(tx, ref) if ref else None
        if product is not None and product.atc:
            out.append((product.atc, f"MedicationRequest/{p.id}"))
    for entry in (record.pll or {}).get("entry", []):
        ref = (entry.get("item") or {}).get("reference")
        if entry.get("deleted") or not ref:
            continue
        product = await drugs.product(tx, ref)
        if product is not None and product.atc:
            out.append((product.atc, ref))
    return out


def gp_reports_reserved(record: queries.PatientRecord) -> bool:
    return (record.reservation or {}).get("status") == "active"


async def dispense_resources(
    tx,
    p: Prescription,
    saved: dict,
    actor,
    product,
    quantity: float,
    now: datetime,
    record: queries.PatientRecord,
) -> tuple[dict, list[str]]:
    """Store the MedicationDispense and its reports (one ``create_many``: the dispense's id
    is chosen here so the reports can reference it): the dispense, the reports'
    references."""
    when = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    performers = [
        {
            "actor": {
                "identifier": {"system": OID_ORGNR, "value": actor.org_nr},
                **({"display": actor.org_name} if actor.org_name else {}),
            }
        }
    ]
    if actor.hpr:
        performers.append({"actor": {"identifier": {"system": OID_HPR, "value": actor.hpr}}})
    unit = ((p.resource.get("dispenseRequest") or {}).get("quantity") or {}).copy()
    unit["value"] = int(quantity) if float(quantity).is_integer() else quantity
    dispense = {
        "resourceType": "MedicationDispense",
        "status": "completed",
        "medicationReference": {
            "reference": f"Medication/{product.medication_id}",
            "display": product.name,
        },
        "subject": {"reference": f"Patient/{p.patient_id}"},
        "performer": performers,
        "authorizingPrescription": [{"reference": f"MedicationRequest/{p.id}"}],
        "quantity": unit,
        "whenHandedOver": when,
    }
    if "dosageInstruction" in saved:
        dispense["dosageInstruction"] = saved["dosageInstruction"]
    dispense_id = new_id()
    dispense_ref = f"MedicationDispense/{dispense_id}"
    recipients = [("M6", saved.get("requester"))]
    # No GP report (M8) of a privacy-locked prescription: it would show the GP what the
    # lock hides from every health worker but its prescriber [unverified: no source].
    if not gp_reports_reserved(record) and not p.privacy_hash:
        for gp in (record.patient or {}).get("generalPractitioner", []):
            recipients.append(("M8", gp))
    reports = []
    for kind, recipient in recipients:
        if not recipient:
            continue
        reports.append(
            {
                "resourceType": "Communication",
                "status": "completed",
                "category": [{"coding": [{"system": REPORT_KIND, "code": kind}]}],
                "subject": {"reference": f"Patient/{p.patient_id}"},
                "about": [{"reference": f"MedicationRequest/{p.id}"}],
                "sent": when,
                "recipient": [recipient],
                "payload": [{"contentReference": {"reference": dispense_ref}}],
            }
        )
    # stamps id and meta into each resource
    stored = await tx.create_many([dispense, *reports], [dispense_id] + [None] * len(reports))
    return dispense, [f"Communication/{s.id}" for s in stored[1:]]
