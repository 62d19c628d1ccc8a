"""``POST /MedicationRequest/$prescribe``: a prescriber issues an e-prescription to RF (M1),
checked against the prescriber's rights, the product's group and the patient's current
medicines (interactions from FEST; a severe one must be acknowledged)."""

from __future__ import annotations

import secrets
from datetime import date

from enjournal.fhir.errors import Conflict, Forbidden, Invalid, Unprocessable
from enjournal.fhir.norwegian_ids import OID_HER_ID, OID_HPR, OID_ORGNR
from enjournal.rest.interactions.common import validate_for_write
from enjournal.rest.message import FhirResponse
from enjournal.services.eresept import drugs, interactions, queries, rules
from enjournal.services.eresept.actors import Actor, audit, caller
from enjournal.services.eresept.api import clock, parameters_of, reference_id
from enjournal.services.eresept.reports import current_atcs, patient_record
from enjournal.services.eresept.rules import Prescription
from enjournal.services.inputs import operation_parameters, refused

# ---- prescribing ---------------------------------------------------------------------------


async def prescribe(request, repo) -> FhirResponse:
    tx = repo.trusted  # its own access rules decide, below
    params = operation_parameters(request, "$prescribe", also=("MedicationRequest",))
    body = params.get("prescription")
    if body is None and request.method == "POST" and request.body:
        candidate = request.json()
        body = candidate if candidate.get("resourceType") == "MedicationRequest" else None
    if not isinstance(body, dict) or body.get("resourceType") != "MedicationRequest":
        raise Invalid("$prescribe needs a MedicationRequest (or Parameters with 'prescription')")
    actor = await caller(request, tx, params, ("MedicationRequest", "c"))
    if actor.kind not in ("personnel", "trusted") or actor.profession not in rules.PRESCRIBERS:
        patient = (body.get("subject") or {}).get("reference", "").partition("/")[2]
        raise refused(request, "C", "$prescribe", "only a prescriber prescribes", patient or None)
    hpr = actor.hpr or _hpr_in(body) if actor.kind == "trusted" else actor.hpr
    validate_for_write(body)
    patient_id = reference_id(body.get("subject"), "Patient", "MedicationRequest.subject")
    record = await patient_record(tx, patient_id)
    if record.patient is None:
        raise Unprocessable(f"Patient/{patient_id} is not known", expression="subject")
    product = await _product_of(tx, body)
    try:
        rules.check_prescriber(actor.profession, hpr, product.group)
    except Forbidden as error:
        raise refused(request, "C", "$prescribe", error.message, patient_id) from None
    blue = _reimbursement(body) is not None
    request_ = body.get("dispenseRequest") or {}
    repeats = int(request_.get("numberOfRepeatsAllowed") or 0)
    rules.check_repeats(product.group, repeats, blue)
    quantity = float((request_.get("quantity") or {}).get("value") or 0)
    if quantity <= 0:
        raise Unprocessable(
            "the quantity to dispense is required and positive",
            expression="MedicationRequest.dispenseRequest.quantity",
        )
    now = clock()
    start, requested_end = _validity_in(request_, now.date())
    end = rules.validity(start, product.atc, blue, requested_end)
    performer = await _named_dispenser(tx, request_.get("performer"), product.kind)

    atcs = await current_atcs(tx, record)
    found = await drugs.interactions(tx, product.atc, [a for a, _ in atcs])
    # Any prescriber may prescribe (as in RF), but the patient's medicines are shown only
    # to one who may read the record: the check still protects the patient, unnamed.
    sees_record = not found or await repo.reads_record(patient_id)
    if not sees_record and any(i.severity == "high" for i in found):
        raise refused(request, "C", "$prescribe", UNNAMED_SEVERE, patient_id, Conflict)
    interactions.require_acknowledged(found, params, patient_id)

    resource = _prescription(body, actor, hpr, product, patient_id, now, start, end, performer)
    resource["dispenseRequest"]["numberOfRepeatsAllowed"] = repeats
    p = Prescription(resource)
    p.set_status(rules.EXPEDITABLE)
    p.set_remaining(quantity * (1 + repeats))
    validate_for_write(resource)
    stored = await tx.create(resource)
    ref = f"MedicationRequest/{stored.id}"
    issues = await interactions.store_issues(tx, found, patient_id, ref, atcs, params)
    audit(request, "C", "$prescribe", patient_id, [ref, *interactions.issues_refs(issues)])
    out = [("prescription", resource)] + [("issue", i) for i in issues if sees_record]
    return FhirResponse.of(parameters_of(out), 201, Location=f"{request.base_url}/{ref}")


UNNAMED_SEVERE = (
    "this medicine interacts severely with one the patient already uses; the interaction is "
    "shown to a prescriber with a care relationship with the patient, or on emergency access"
)


def _prescription(body, actor: Actor, hpr, product, patient_id, now, start, end, performer):
    requester: dict = {"identifier": {"system": OID_HPR, "value": hpr}}
    if actor.name:
        requester["display"] = actor.name
    resource = {
        "resourceType": "MedicationRequest",
        "identifier": [{"system": rules.RESEPT_ID, "value": secrets.token_hex(16)}],
        "status": "active",
        "intent": "order",
        "category": [
            {"coding": [{"system": rules.PRODUCT_KIND, "code": product.kind}], "text": product.kind}
        ],
        "medicationReference": {
            "reference": f"Medication/{product.medication_id}",
            "display": product.name,
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "requester": requester,
        "dispenseRequest": {
            "validityPeriod": {"start": start.isoformat(), "end": end.isoformat()},
            "quantity": body["dispenseRequest"]["quantity"],
        },
    }
    for key in ("dosageInstruction", "note", "reasonCode", "substitution", "courseOfTherapyType"):
        if key in body:
            resource[key] = body[key]
    if performer is not None:
        resource["dispenseRequest"]["performer"] = performer
    extensions = [{"url": rules.GROUP_EXT, "valueCode": product.group}]
    reimbursement = _reimbursement(body)
    if reimbursement is not None:
        extensions.append(reimbursement)
    institution = _institution(actor)
    if institution is not None:
        extensions.append({"url": rules.ORG_EXT, "valueReference": institution})
    resource["extension"] = extensions
    return resource


def _institution(actor: Actor) -> dict | None:
    """Institutions are named by HER-id, else organisation number (domain 3.4)."""
    if actor.her_id:
        ident = {"system": OID_HER_ID, "value": actor.her_id}
    elif actor.org_nr:
        ident = {"system": OID_ORGNR, "value": actor.org_nr}
    else:
        return None
    out: dict = {"identifier": ident}
    if actor.org_name:
        out["display"] = actor.org_name
    return out


def _hpr_in(body: dict) -> str | None:
    ident = (body.get("requester") or {}).get("identifier") or {}
    return ident.get("value") if ident.get("system") == OID_HPR else None


def _reimbursement(body: dict) -> dict | None:
    return next(
        (e for e in body.get("extension", []) if e.get("url") == rules.REIMBURSEMENT_EXT), None
    )


def _validity_in(request_: dict, today: date) -> tuple[date, date | None]:
    period = request_.get("validityPeriod") or {}
    try:
        start = date.fromisoformat(period["start"][:10]) if period.get("start") else today
        end = date.fromisoformat(period["end"][:10]) if period.get("end") else None
    except ValueError:
        raise Invalid("validityPeriod needs dates", expression="validityPeriod") from None
    if start < today:
        raise Unprocessable("a prescription's validity cannot start in the past")
    return start, end


async def _product_of(tx, body: dict):
    ref = (body.get("medicationReference") or {}).get("reference")
    if ref is None:
        for coding in (body.get("medicationCodeableConcept") or {}).get("coding", []):
            if coding.get("code"):
                ref = coding["code"]  # a varenr
                break
    if not ref:
        raise Unprocessable("name the medicine: medicationReference to a catalogue Medication")
    product = await drugs.product(tx, ref)
    if product is None:
        raise Unprocessable(f"{ref} is not in the drug catalogue (FEST)", expression="medication")
    if not product.active:
        raise Unprocessable(f"{ref} is no longer in the drug catalogue (FEST)")
    return product


async def _named_dispenser(tx, performer: dict | None, kind: str) -> dict | None:
    if not performer:
        return None
    from enjournal.services.eresept.actors import BANDAGIST, org_type

    org_nr = (performer.get("identifier") or {}).get("value")
    if not org_nr and performer.get("reference", "").startswith("Organization/"):
        org = await queries.read_json(tx, "Organization", performer["reference"].split("/")[1])
        org_nr = next(
            (i.get("value") for i in org.get("identifier", []) if i.get("system") == OID_ORGNR),
            None,
        )
    org = await queries.organization(tx, org_nr)
    if org is None:
        raise Unprocessable(
            "the named dispenser is not a known organisation (by organisation number)",
            expression="MedicationRequest.dispenseRequest.performer",
        )
    rules.check_named_dispenser(kind, org_type(org) == BANDAGIST)
    return {
        "reference": f"Organization/{org['id']}",
        "identifier": {"system": OID_ORGNR, "value": org_nr},
        "display": org.get("name", ""),
    }
