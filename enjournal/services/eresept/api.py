"""The e-resept operations on MedicationRequest: the prescription's life in the
prescription intermediary (Reseptformidleren, RF), domain 3.1-3.4.  docs/eresept.md shows
each with an example.

    POST /MedicationRequest/$prescribe          prescriber issues (M1)
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
from datetime import date, datetime

import orjson

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Conflict, Forbidden, Invalid, Issue, NotFound, Unprocessable
from enjournal.fhir.norwegian_ids import OID_HER_ID, OID_HPR, OID_ORGNR
from enjournal.rest.interactions.common import validate_for_write
from enjournal.rest.message import FhirResponse
from enjournal.services.eresept import drugs, queries, rules
from enjournal.services.eresept.actors import Actor, audit, caller
from enjournal.services.eresept.reports import current_atcs, dispense_resources, patient_record
from enjournal.services.eresept.rules import Prescription
from enjournal.services.eresept.state import current
from enjournal.services.inputs import operation_parameters, refused


def clock() -> datetime:
    """The time now, by the serving platform's clock (tests may replace this function)."""
    return current().clock()


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
    patient_id = _reference_id(body.get("subject"), "Patient", "MedicationRequest.subject")
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
    sees_record = await repo.reads_record(patient_id)
    if not sees_record and any(i.severity == "high" for i in found):
        raise refused(request, "C", "$prescribe", UNNAMED_SEVERE, patient_id, Conflict)
    _require_acknowledged(found, params, patient_id)

    resource = _prescription(body, actor, hpr, product, patient_id, now, start, end, performer)
    resource["dispenseRequest"]["numberOfRepeatsAllowed"] = repeats
    p = Prescription(resource)
    p.set_status(rules.EXPEDITABLE)
    p.set_remaining(quantity * (1 + repeats))
    validate_for_write(resource)
    stored = await tx.create(resource)
    ref = f"MedicationRequest/{stored.id}"
    issues = await _store_issues(tx, found, patient_id, ref, atcs, params)
    audit(request, "C", "$prescribe", patient_id, [ref, *issues_refs(issues)])
    out = [("prescription", resource)] + [("issue", i) for i in issues if sees_record]
    return FhirResponse.of(_parameters(out), 201, Location=f"{request.base_url}/{ref}")


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


# ---- interactions ----------------------------------------------------------------------


def _acknowledged(params: dict) -> set[str]:
    value = params.get("acknowledge") or []
    values = value if isinstance(value, list) else [value]
    return {str(v) for v in values}


def _require_acknowledged(found, params: dict, patient_id: str) -> None:
    """The most severe interactions need the caller to name them in ``acknowledge``; else
    409 with an OperationOutcome listing them and the DetectedIssues contained."""
    missing = [i for i in found if i.severity == "high" and i.id not in _acknowledged(params)]
    if missing:
        raise InteractionConflict(missing, patient_id)


class InteractionConflict(Conflict):
    """409 naming each unacknowledged interaction in an issue of its own, with the
    DetectedIssues contained; ``rest.errors.error_response`` renders it."""

    def __init__(self, interactions, patient_id: str):
        self.interactions = interactions
        self.patient_id = patient_id
        super().__init__(
            "severe interaction(s) need an acknowledgement: "
            + ", ".join(f"{i.id} ({i.atc_a} + {i.atc_b})" for i in interactions)
        )
        self.issues += [_interaction_issue(i) for i in interactions]
        self.contained = [
            {**drugs.detected_issue(i, f"Patient/{patient_id}", []), "id": f"issue{n}"}
            for n, i in enumerate(interactions)
        ]


def _interaction_issue(found) -> Issue:
    diagnostics = f"{found.severity}: {found.atc_a} + {found.atc_b}: {found.consequence}"
    return Issue("error", "business-rule", diagnostics, details=found.id)


async def _store_issues(tx, found, patient_id, new_ref, atcs, params) -> list[dict]:
    """Store the detected interactions (acknowledged ones with the acknowledgement)."""
    acknowledged = _acknowledged(params)
    out: list[dict] = []
    for interaction in found:
        implicated = [new_ref] + [
            ref for atc, ref in atcs if _matches(atc, interaction.atc_a, interaction.atc_b)
        ]
        issue = drugs.detected_issue(interaction, f"Patient/{patient_id}", implicated)
        if interaction.id in acknowledged:
            issue.setdefault("mitigation", []).append(
                {"action": {"text": "Acknowledged by the prescriber or pharmacist"}}
            )
        out.append(issue)
    if out:
        await tx.create_many(out)  # stamps id and meta into each issue
    return out


def _matches(atc: str, a: str, b: str) -> bool:
    return bool(atc) and (atc.startswith(a) or atc.startswith(b))


def issues_refs(issues: list[dict]) -> list[str]:
    return [f"DetectedIssue/{i['id']}" for i in issues]


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
    return FhirResponse(200, orjson.dumps(bundle))


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
    _require_acknowledged(found, params, p.patient_id)
    saved = await _save(tx, p)
    dispensed, reports = await dispense_resources(
        tx, p, saved, actor, product, quantity, now, record
    )
    dispensed_ref = f"MedicationDispense/{dispensed['id']}"
    issues = await _store_issues(tx, found, p.patient_id, dispensed_ref, atcs, params)
    audit(request, "C", "$dispense", p.patient_id, [ref, dispensed_ref, *reports])
    out = [("prescription", _public(saved)), ("dispense", dispensed)]
    out += [("issue", i) for i in issues]
    out.append(("closed", {"valueBoolean": closed}))
    return FhirResponse.of(_parameters(out))


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
    return FhirResponse.of(_parameters([("reference-number", {"valueString": number})]))


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


def _reference_id(reference: dict | None, type_: str, where: str) -> str:
    ref = (reference or {}).get("reference") or ""
    kind, _, id_ = ref.partition("/")
    if kind != type_ or not id_:
        raise Invalid(f"{where} must reference a {type_}", expression=where)
    return id_


def _parameters(parts: list[tuple[str, dict]]) -> dict:
    out = []
    for name, value in parts:
        if "resourceType" in value:
            out.append({"name": name, "resource": value})
        else:
            out.append({"name": name, **value})
    return {"resourceType": "Parameters", "parameter": out}
