"""The portal citizens' e-prescriptions, issued the way a GP issues them: the ``gp`` demo
user calls e-resept's ``$prescribe`` (docs/eresept.md) in process, through
``Platform.handle`` (the HTTP API's path: token verified, access policy, audit), and the
``pharmacist`` demo user takes and dispenses some of them (``$take``, ``$dispense``).

So they carry a reseptID and RF's status: the portal can privacy-lock them, the pharmacy
finds them in ``$dispensable``, and the portal's dispensings and earlier prescriptions have
content.  The medicines are FEST packages of the shipped demo catalogue
(``fest/data/demo-fest.xml``), chosen so that none interacts severely with another.

Idempotent per patient: a patient who already has an e-prescription gets none (a reused
demo database keeps its prescriptions, locks and dispensings).  Their reseptIDs and
authoring times are the operation's (random, now): what is fixed is which medicines each
citizen has and which one is dispensed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson

from enjournal.demo.users import SCOPES, demo_users
from enjournal.rest.message import FhirRequest
from enjournal.services.eresept.rules import RESEPT_ID


@dataclass(frozen=True)
class Item:
    varenr: str  # the FEST package (Medication/fest-<varenr>)
    dosage: str
    quantity: int  # per dispensing (stk)
    repeats: int = 0  # reit
    dispensed: bool = False  # taken and fully dispensed by the demo pharmacy


# Patient id, or the ``citizen`` demo user (last: see ``planned``) -> what the GP prescribes.
PLANS: dict[str, tuple[Item, ...]] = {
    "demo-forelder": (
        Item("900221", "1 tablett om morgenen", 100, repeats=3),  # levotyroksin
        Item("900192", "1 tablett ved behov, høyst 4 i døgnet", 20),  # paracetamol 1 g
        Item("900241", "2 tabletter om morgenen i 5 dager", 10, dispensed=True),
    ),
    "demo-barn-5": (
        Item("900191", "1/2 tablett ved feber, høyst 4 i døgnet", 20, repeats=1),
        Item("900151", "1 kapsel 3 ganger daglig i 7 dager", 21),  # amoksicillin
    ),
    "demo-barn-13": (
        Item("900191", "1 tablett ved behov, høyst 4 i døgnet", 20, repeats=1),
        Item("900161", "1 tablett 3 ganger daglig i 7 dager", 21),  # fenoksymetylpenicillin
    ),
    "demo-fullmaktsgiver": (
        Item("900181", "1 tablett 2 ganger daglig", 100, repeats=3),  # metformin
        Item("900121", "1 tablett om kvelden", 30),
    ),
    "demo-fullmektig": (
        Item("900121", "1 tablett om kvelden", 30, repeats=3),
        Item("900201", "1 tablett om morgenen", 30),  # enalapril
    ),
    "citizen": (
        Item("900191", "1-2 tabletter ved behov, høyst 8 i døgnet", 20, repeats=2),
        Item("900121", "1 tablett om kvelden", 30),  # atorvastatin
        Item("900241", "2 tabletter om morgenen i 5 dager", 10, dispensed=True),  # prednisolon
    ),
}
log = logging.getLogger("enjournal.demo")
ISSUER = "urn:enjournal:demo-loader"  # the in-process provider's; its tokens never leave


async def load_prescriptions(platform) -> int:
    """Issue the plan's prescriptions to the patients who have no e-prescription yet (and
    dispense the marked ones); how many were issued.  0 without the demo users."""
    users = {u.name: u for u in await demo_users(platform.store)}
    if not {"gp", "pharmacist"} <= users.keys():
        return 0
    provider, verifier = _throw_away_provider(users)
    own_security = platform.security is None
    if own_security:  # the batch command's platform: the audit writer and the facts cache
        from enjournal.security.setup import Security

        platform.security = Security(verifier=verifier, provider=provider)
        await platform.security.start(platform.store)
    try:
        gp, pharmacist = [
            await verifier.verify(provider.issue_token(users[name], scopes=SCOPES[name]))
            for name in ("gp", "pharmacist")
        ]
        issued = 0
        for patient, items in planned(users).items():
            if await _has_eprescription(platform, gp, patient):
                continue
            try:
                issued += await _issue(platform, gp, pharmacist, patient, items)
            except RuntimeError as error:  # e.g. another seed's citizen with a clashing medicine
                log.warning("%s", error)
        return issued
    finally:
        if own_security:
            await platform.security.stop()
            platform.security = None


def planned(users: dict) -> dict[str, tuple[Item, ...]]:
    """Patient id -> the plan's prescriptions.  The ``citizen`` is the GP's first listed
    patient: in a database without the generated population that is a portal patient, who
    keeps their own plan."""
    out: dict[str, tuple[Item, ...]] = {}
    for who, items in PLANS.items():
        patient = users[who].patient if who in users else who
        if patient:
            out.setdefault(patient, items)
    return out


def _throw_away_provider(users: dict):
    """An embedded provider for the demo users, with a fresh key, and a verifier trusting
    only it: the tokens are verified as the API verifies them and never leave the process."""
    from enjournal.security.keys import generate
    from enjournal.security.provider import Provider, ProviderConfig
    from enjournal.security.tokens import TokenVerifier

    config = ProviderConfig(issuer=ISSUER, key=generate(), users=list(users.values()))
    provider = Provider(config)
    return provider, TokenVerifier([provider.issuer_config()])


async def _call(platform, principal, method: str, path: str, body: dict | None = None) -> dict:
    """One FHIR interaction in process (``path``'s query unencoded); RuntimeError (naming
    the outcome) unless 2xx."""
    segments, _, query = path.partition("?")
    params = [tuple(p.split("=", 1)) for p in query.split("&") if p]
    request = FhirRequest(
        method,
        segments.split("/"),
        params=params,  # type: ignore[arg-type]
        headers={"content-type": "application/fhir+json"} if body else {},
        body=orjson.dumps(body) if body else b"",
    )
    response = await platform.handle(request, principal)
    answer = orjson.loads(response.body) if response.body else {}
    if not 200 <= response.status < 300:
        raise RuntimeError(f"demo prescriptions: {method} {path}: {response.status} {answer}")
    return answer


async def _has_eprescription(platform, gp, patient: str) -> bool:
    query = f"subject=Patient/{patient}&identifier={RESEPT_ID}|&_count=1"  # any reseptID
    found = await _call(platform, gp, "GET", f"MedicationRequest?{query}")
    return bool(found.get("entry"))


async def _issue(platform, gp, pharmacist, patient: str, items: tuple[Item, ...]) -> int:
    """Prescribe ``items`` (and dispense the marked ones); RuntimeError on a refusal, the
    ones issued before it kept."""
    issued = 0
    for item in items:
        answer = await _call(
            platform, gp, "POST", "MedicationRequest/$prescribe", _body(patient, item)
        )
        prescription = _parameter(answer, "prescription")
        if item.dispensed:
            await _dispense(platform, pharmacist, prescription["id"])
        issued += 1
    return issued


def _body(patient: str, item: Item) -> dict:
    request = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        "medicationReference": {"reference": f"Medication/fest-{item.varenr}"},
        "dosageInstruction": [{"text": item.dosage}],
        "dispenseRequest": {
            "numberOfRepeatsAllowed": item.repeats,
            "quantity": {"value": item.quantity, "unit": "stk"},
        },
    }
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "prescription", "resource": request}],
    }


async def _dispense(platform, pharmacist, prescription_id: str) -> None:
    """The demo pharmacy takes the prescription and dispenses all of it (it is closed)."""
    empty = {"resourceType": "Parameters"}
    base = f"MedicationRequest/{prescription_id}"
    await _call(platform, pharmacist, "POST", f"{base}/$take", empty)
    await _call(platform, pharmacist, "POST", f"{base}/$dispense", empty)


def _parameter(parameters: dict, name: str) -> dict:
    return next(p["resource"] for p in parameters.get("parameter", []) if p["name"] == name)
