"""Sample messages: builders of the content each message type carries, and the demo's
traffic between the demo population's GP office, its first health trust and a pharmacy, so
the boxes and the message centre show every state on ``make demo``."""

from __future__ import annotations

import uuid

from enjournal.fhir import jsonio
from enjournal.fhir.norwegian_ids import OID_FNR, OID_HER_ID
from enjournal.services.messaging import rules
from enjournal.storage import messaging as db

GP_OFFICE, GP = "legekontor-0001", "legekontor-0001-fastlege-1"  # demo/population.py
PHARMACY = "apotek-0001"


def message(type_: str, sender: str, receiver: str, content: list[dict], number: str | None):
    """A FHIR message of ``type_`` about the patient with national id ``number`` (None: a
    Patient without one), focus on the first content resource."""
    header = rules.message_header(str(uuid.uuid4()), type_, sender, receiver, "urn:enjournal")
    ident = [{"system": OID_FNR, "value": number}] if number else []
    entries = [
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "identifier": ident}}
    ]
    entries += [{"fullUrl": f"urn:uuid:c{n}", "resource": r} for n, r in enumerate(content)]
    if content:
        header["focus"] = [{"reference": "urn:uuid:c0"}]
    return rules.message_bundle(header, entries, "2026-12-03T10:00:00+00:00")


def referral(text: str = "Vurdering av brystsmerter") -> dict:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "urn:uuid:p1"},
        "code": {"text": text},
    }


def discharge_summary(text: str = "Utskrevet i god form") -> dict:
    div = f'<div xmlns="http://www.w3.org/1999/xhtml">{text}</div>'
    return {
        "resourceType": "Composition",
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
        "subject": {"reference": "urn:uuid:p1"},
        "date": "2026-12-03",
        "author": [{"display": "Overlege"}],
        "title": "Epikrise",
        "section": [{"title": "Forløp", "text": {"status": "generated", "div": div}}],
    }


def dialogue(text: str = "Har pasienten fått oppfølging?") -> dict:
    return {
        "resourceType": "Communication",
        "status": "completed",
        "subject": {"reference": "urn:uuid:p1"},
        "payload": [{"contentString": text}],
    }


async def demo_messages(platform, now_ms: int) -> int:
    """The demo's traffic, once (nothing if the GP office has any): referrals to the trust
    (answered automatically), discharge summaries and a question back (waiting for the GP
    office's receipt), a note to a pharmacy (no receipt: overdue after the deadline)."""
    from enjournal.services.messaging.sending import send

    async with platform.store.transaction() as tx:
        plan = await _plan(tx)
        if plan is None:
            return 0
        for bundle in plan:
            envelope = rules.envelope_of(bundle)
            await send(tx, None, envelope, rules.FHIR_JSON, jsonio.dumps(bundle), now_ms)
    return len(plan)


async def _plan(tx) -> list[dict] | None:
    office, trust, pharmacy = (
        await _her(tx, GP_OFFICE),
        await _first_trust(tx),
        await _her(tx, PHARMACY),
    )
    if not (office and trust and pharmacy) or await db.listing(tx, [office], sent=True, limit=1):
        return None
    numbers = await _listed_numbers(tx, 4)
    numbers += [n for n in await _any_numbers(tx, 4) if n not in numbers]
    if len(numbers) < 4:
        return None
    return [
        message("HENVIS", office, trust, [referral("Utredning av hjertebank")], numbers[0]),
        message("HENVIS", office, trust, [referral("Vurdering av kneskade")], numbers[1]),
        message(
            "EPIKRISE",
            trust,
            office,
            [
                discharge_summary(
                    "Innlagt med lungebetennelse. Behandlet med antibiotika, utskrevet i god form."
                )
            ],
            numbers[2],
        ),
        message("EPIKRISE", trust, office, [discharge_summary()], numbers[3]),
        message("DIALOG_FORESPORSEL", trust, office, [dialogue()], numbers[0]),
        message(
            "DIALOG_NOTAT", office, pharmacy, [dialogue("Ny dosering fra mandag.")], numbers[1]
        ),
    ]


async def _her(tx, org_id: str) -> str | None:
    found = await tx.read_many("Organization", [org_id])
    if not found:
        return None
    org = jsonio.loads(found[0].content)
    return next(
        (i["value"] for i in org.get("identifier", []) if i.get("system") == OID_HER_ID), None
    )


async def _first_trust(tx) -> str | None:
    """The HER-id of the first health trust (``hf-...``, in id order), which answers
    automatically in the demo's register (demo/messaging.py)."""
    for found in await tx.with_id_prefix("Organization", "hf-", limit=50):
        org = jsonio.loads(found.content)
        if (org.get("type") or [{}])[0].get("text") == "Helseforetak":
            return await _her(tx, found.id)
    return None


async def _listed_numbers(tx, count: int) -> list[str]:
    """The national ids of the demo GP's listed patients (the first ``count``)."""
    listed = await tx.referencing_target(
        "Practitioner", GP, ("Patient",), "general-practitioner", limit=count
    )
    return _numbers(listed)


async def _any_numbers(tx, count: int) -> list[str]:
    """Other patients', for a small population whose GP lists fewer."""
    return _numbers(await tx.with_id_prefix("Patient", "", limit=count))


def _numbers(found_patients) -> list[str]:
    numbers: list[str] = []
    for found in found_patients:
        patient = jsonio.loads(found.content)
        numbers += [
            i["value"] for i in patient.get("identifier", []) if i.get("system") == OID_FNR
        ][:1]
    return numbers
