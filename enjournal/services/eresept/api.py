"""The e-resept operations on MedicationRequest: the prescription's life in the
prescription intermediary (Reseptformidleren, RF), domain 3.1-3.4.  docs/eresept.md shows
each with an example.

    POST /MedicationRequest/$prescribe          prescriber issues (M1): prescribing.py
    POST /MedicationRequest/$dispensable        dispenser lists a patient's (M9.1/M9.2)
    POST /MedicationRequest/{id}/$take          dispenser takes it under dispensing (M9.3/M9.4)
    POST /MedicationRequest/{id}/$release       ... gives it back undispensed
    POST /MedicationRequest/{id}/$dispense      ... dispenses (M10; reports M6, M8)
    POST /MedicationRequest/{id}/$withdraw      prescriber withdraws (M5)
    POST /MedicationRequest/{id}/$privacy-lock  citizen locks it (låst resept, M4.1/M4.2)

Each runs in one store transaction; every state change reads the prescription with
``read_for_update`` (row lock on PostgreSQL, the single writer on SQLite), checks the rules
on what it read, then writes, so concurrent pharmacies and workers cannot both win.
"""

from __future__ import annotations

import math
import secrets
from datetime import datetime

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Conflict, Forbidden, Invalid, NotFound, Unprocessable
from enjournal.rest.interactions.common import validate_for_write
from enjournal.rest.message import FhirResponse
from enjournal.services.eresept import drugs, interactions, queries, rules
from enjournal.services.eresept.actors import Actor, audit, caller
from enjournal.services.eresept.reports import current_atcs, dispense_resources, patient_record
from enjournal.services.eresept.rules import Prescription
from enjournal.services.eresept.state import current
from enjournal.services.inputs import operation_parameters, refused


def clock() -> datetime:
    """The time now, by the serving platform's clock (tests may replace this function)."""
    return current().clock()


# ---- the dispenser's steps ---------------------------------------------------------------


async def dispensable(request, repo) -> FhirResponse:
    """A patient's dispensable prescriptions by national identity number; privacy-locked
    ones only with their reference number.  Each shows who holds it under dispensing."""
    tx = repo.trusted  # its own access rules decide, below
    params = operation_parameters(request, "$dispensable", required=("patient",))
    actor = await caller(request, tx, params, ("MedicationRequest", "s"))
    pid = _string(params, "patient")
    if not pid:
        raise Invalid("name the patient's national identity number in 'patient'")
    patient_id, prescriptions = await queries.patient_and_prescriptions(tx, pid)
    _require_dispenser(request, actor, "R", "$dispensable", patient_id)
    reference = _string(params, "reference-number")
    wanted = rules.reference_hash(reference) if reference else None
    today = clock().date()
    found = []
    for resource in prescriptions:
        p = Prescription(resource)
        if not rules.dispensable(p, today, reference_hash_=wanted):
            continue
        if actor.bandagist and p.product_kind == "legemiddel":
            continue
        found.append(_public(resource))
    refs = [f"MedicationRequest/{r['id']}" for r in found]
    audit(request, "R", "$dispensable", patient_id, refs)
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found),
        "entry": [
            {
                "fullUrl": f"{request.base_url}/MedicationRequest/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in found
        ],
    }
    return FhirResponse(200, jsonio.dumps(bundle))


def _public(resource: dict) -> dict:
    """The prescription without the privacy lock's hash."""
    out = dict(resource)
    rest = [e for e in resource.get("extension", []) if e.get("url") != rules.PRIVACY_EXT]
    if rest:
        out["extension"] = rest
    return out


async def _locked(request, tx, params, operation: str) -> tuple[Actor, Prescription]:
    """The caller and the prescription, read for update.  A privacy-locked prescription
    (låst resept) is answered as unknown to anyone but the patient and its prescriber
    unless the caller gives its ``reference-number`` (domain 3.3), in every operation."""
    actor = await caller(request, tx, params, ("MedicationRequest", "u"))
    stored = await tx.read_for_update("MedicationRequest", request.path[1])
    p = Prescription(jsonio.loads(stored.content))
    if not p.issued_here:
        raise NotFound(f"MedicationRequest/{p.id} is not an e-prescription (it has no reseptID)")
    if not await _lock_opened(tx, actor, p, _string(params, "reference-number")):
        raise refused(
            request,
            "U",
            operation,
            f"MedicationRequest/{p.id} is not known",
            p.patient_id,
            NotFound,
        )
    return actor, p


async def _lock_opened(tx, actor: Actor, p: Prescription, number: str | None) -> bool:
    """May this caller act on the prescription despite a privacy lock?  The patient (their
    own), the prescriber who issued it, or anyone giving the reference number."""
    if p.privacy_hash is None:
        return True
    if number and rules.reference_hash(number) == p.privacy_hash:
        return True
    if actor.kind == "personnel" and actor.hpr and _same_prescriber(p, actor):
        return True
    if actor.kind == "citizen" and actor.pid:
        return actor.pid in await queries.patient_pids(tx, p.patient_id)
    return False


def _require_dispenser(request, actor: Actor, action: str, operation: str, patient_id) -> None:
    if not actor.dispenser or not actor.org_nr:
        message = "only pharmacy or bandagist staff (with an organisation) may do this"
        raise refused(request, action, operation, message, patient_id)


async def _save(tx, p: Prescription) -> dict:
    """Store the changed prescription; the resource as stored (``update`` stamps id and
    meta into it, so it need not be parsed back)."""
    validate_for_write(p.resource)
    await tx.update(p.resource, p.id)
    return p.resource


async def take(request, repo) -> FhirResponse:
    tx = repo.trusted  # its own access rules decide, below
    params = operation_parameters(request, "$take")
    actor, p = await _locked(request, tx, params, "$take")
    _require_dispenser(request, actor, "U", "$take", p.patient_id)
    ref = f"MedicationRequest/{p.id}"
    try:
        rules.take(p, actor.org_nr, actor.org_name, clock(), bandagist=actor.bandagist)
    except (Conflict, Forbidden) as error:
        audit(request, "U", "$take", p.patient_id, [ref], outcome="4", description=error.message)
        raise
    saved = await _save(tx, p)
    audit(request, "U", "$take", p.patient_id, [ref])
    return FhirResponse.of(_public(saved))


async def release(request, repo) -> FhirResponse:
    tx = repo.trusted  # its own access rules decide, below
    params = operation_parameters(request, "$release")
    actor, p = await _locked(request, tx, params, "$release")
    _require_dispenser(request, actor, "U", "$release", p.patient_id)
    rules.release(p, actor.org_nr)
    saved = await _save(tx, p)
    audit(request, "U", "$release", p.patient_id, [f"MedicationRequest/{p.id}"])
    return FhirResponse.of(_public(saved))


async def dispense(request, repo) -> FhirResponse:
    """Dispense ``quantity`` (default: one prescribed quantity, or what remains if less),
    optionally another package (``medication``: a substitute).  The report goes to the
    prescriber and, unless the patient reserved against it, the GP."""
    tx = repo.trusted  # its own access rules decide, below
    params = operation_parameters(request, "$dispense")
    actor, p = await _locked(request, tx, params, "$dispense")
    _require_dispenser(request, actor, "C", "$dispense", p.patient_id)
    ref = f"MedicationRequest/{p.id}"
    quantity = _number(params.get("quantity"))
    if quantity is None:
        quantity = min(p.quantity, p.remaining) if p.remaining > 0 else p.quantity
    now = clock()
    medication_ref = _string(params, "medication") or (
        p.resource.get("medicationReference") or {}
    ).get("reference", "")
    product = await drugs.product(tx, medication_ref)
    if product is None:
        raise Unprocessable(f"{medication_ref} is not in the drug catalogue (FEST)")
    if actor.bandagist and product.kind == "legemiddel":
        message = "a bandagist may not dispense a medicine"
        raise refused(request, "C", "$dispense", message, p.patient_id)
    try:
        closed = rules.dispense(p, actor.org_nr, quantity, now)
    except (Conflict, Invalid) as error:
        audit(
            request, "C", "$dispense", p.patient_id, [ref], outcome="4", description=error.message
        )
        raise
    record = await patient_record(tx, p.patient_id)
    atcs = [(a, r) for a, r in await current_atcs(tx, record) if r != ref]
    found = await drugs.interactions(tx, product.atc, [a for a, _ in atcs])
    interactions.require_acknowledged(found, params, p.patient_id)
    saved = await _save(tx, p)
    dispensed, reports = await dispense_resources(
        tx, p, saved, actor, product, quantity, now, record
    )
    dispensed_ref = f"MedicationDispense/{dispensed['id']}"
    issues = await interactions.store_issues(tx, found, p.patient_id, dispensed_ref, atcs, params)
    audit(request, "C", "$dispense", p.patient_id, [ref, dispensed_ref, *reports])
    out = [("prescription", _public(saved)), ("dispense", dispensed)]
    out += [("issue", i) for i in issues]
    out.append(("closed", {"valueBoolean": closed}))
    return FhirResponse.of(parameters_of(out))


async def withdraw(request, repo) -> FhirResponse:
    tx = repo.trusted  # its own access rules decide, below
    params = operation_parameters(request, "$withdraw", required=("reason",))
    actor, p = await _locked(request, tx, params, "$withdraw")
    if actor.kind not in ("personnel", "trusted") or actor.profession not in rules.PRESCRIBERS:
        message = "only a prescriber withdraws a prescription"
        raise refused(request, "U", "$withdraw", message, p.patient_id)
    if actor.kind == "personnel" and not _same_prescriber(p, actor):
        # [unverified] RF lets only the prescriber (or a PLL update) withdraw.
        message = "only the prescriber who issued it may withdraw a prescription"
        raise refused(request, "U", "$withdraw", message, p.patient_id)
    rules.withdraw(p, _string(params, "reason") or "", clock())
    saved = await _save(tx, p)
    audit(request, "U", "$withdraw", p.patient_id, [f"MedicationRequest/{p.id}"])
    return FhirResponse.of(_public(saved))


def _same_prescriber(p: Prescription, actor: Actor) -> bool:
    ident = (p.resource.get("requester") or {}).get("identifier") or {}
    return ident.get("value") == actor.hpr


async def privacy_lock(request, repo) -> FhirResponse:
    """The citizen asks for a låst resept: the prescription disappears from lookups made
    without its reference number, which is returned once (only its hash is stored)."""
    tx = repo.trusted  # its own access rules decide, below
    params = operation_parameters(request, "$privacy-lock")
    actor, p = await _locked(request, tx, params, "$privacy-lock")
    if actor.kind == "citizen":
        if actor.pid not in await queries.patient_pids(tx, p.patient_id):
            # Another patient's prescription: unknown to this citizen, as on a plain read.
            message = f"MedicationRequest/{p.id} is not known"
            raise refused(request, "U", "$privacy-lock", message, p.patient_id, NotFound)
    elif actor.kind != "trusted":
        message = "the patient asks for a privacy lock"
        raise refused(request, "U", "$privacy-lock", message, p.patient_id)
    if p.status in (rules.WITHDRAWN, rules.COMPLETED):
        raise Conflict("the prescription is no longer dispensable")
    number = _reference_number()
    p.set_privacy_hash(rules.reference_hash(number))
    await _save(tx, p)
    audit(request, "U", "$privacy-lock", p.patient_id, [f"MedicationRequest/{p.id}"])
    return FhirResponse.of(parameters_of([("reference-number", {"valueString": number})]))


def _reference_number() -> str:
    # 60 random bits in groups of four: short enough to read out, long enough to guess.
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    raw = "".join(secrets.choice(alphabet) for _ in range(12))
    return "-".join(raw[i : i + 4] for i in range(0, 12, 4))


# ---- helpers ---------------------------------------------------------------------------


def _string(params: dict, name: str) -> str | None:
    value = params.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("value")  # an Identifier
    return str(value).strip() if value not in (None, "") else None


def _number(value) -> float | None:
    if isinstance(value, dict):
        value = value.get("value")  # a Quantity
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Invalid(f"not a number: {str(value)[:40]!r}") from None
    if not math.isfinite(number) or number < 0:
        raise Invalid(f"a quantity must be a finite number, not {str(value)[:40]!r}")
    return number


def reference_id(reference: dict | None, type_: str, where: str) -> str:
    ref = (reference or {}).get("reference") or ""
    kind, _, id_ = ref.partition("/")
    if kind != type_ or not id_:
        raise Invalid(f"{where} must reference a {type_}", expression=where)
    return id_


def parameters_of(parts: list[tuple[str, dict]]) -> dict:
    out = []
    for name, value in parts:
        if "resourceType" in value:
            out.append({"name": name, "resource": value})
        else:
            out.append({"name": name, **value})
    return {"resourceType": "Parameters", "parameter": out}
