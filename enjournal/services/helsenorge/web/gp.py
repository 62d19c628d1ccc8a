"""The GP office on the portal: who one's GP is, messages with the office as threads
(e-konsultasjon, dialogue), and booking and cancelling appointments in the GP's free slots.
All of it FHIR (Communication, Appointment, Slot, Schedule), which the GP reads through the
API; the writes go through helsenorge's operations (``$message-gp``, ``$book``,
``$cancel``)."""

from __future__ import annotations

from datetime import UTC, datetime

from enjournal.services.helsenorge.web import describe
from enjournal.services.helsenorge.web.portal import View
from enjournal.web import FhirError, Site, entries

TOPICS = ("dialog", "e-konsultasjon")
SLOTS_SHOWN = 15


def routes(site: Site) -> list:
    return [
        ("/fastlege", site.page(overview), ["GET"]),
        ("/fastlege/melding", site.page(message), ["POST"]),
        ("/fastlege/bestill", site.page(book), ["POST"]),
        ("/fastlege/avbestill", site.page(cancel), ["POST"]),
    ]


async def overview(view: View) -> str:
    patient = await view.fhir.get(f"Patient/{view.patient}")
    gps = [await _read(view, ref) for ref in _gp_refs(patient)]
    view.data["gps"] = [describe.name(g) for g in gps if g]
    messages = await _messages(view)
    senders = [(m.get("sender") or {}).get("reference", "") for m in messages]
    known = await describe.names(view.fhir, senders)
    view.data["threads"] = threads(messages, known)
    view.data["appointments"] = await _appointments(view)
    view.data["slots"] = await _free_slots(view)
    view.data["topics"] = TOPICS
    return "gp.html"


def _gp_refs(patient: dict) -> list[str]:
    return [r.get("reference", "") for r in patient.get("generalPractitioner") or ()]


async def _read(view: View, reference: str) -> dict | None:
    if reference.count("/") != 1:
        return None
    try:
        return await view.fhir.get(reference)
    except FhirError:
        return None


async def _messages(view: View) -> list[dict]:
    params = [("subject", f"Patient/{view.patient}"), ("_sort", "sent"), ("_count", "200")]
    return entries(await view.fhir.get("Communication", params), "Communication")


def threads(messages: list[dict], known: dict[str, str]) -> list[dict]:
    """Messages as threads: each root (no ``inResponseTo``) with its replies in order."""
    by_id = {m.get("id"): m for m in messages}
    roots: dict[str, list[dict]] = {}
    for m in messages:
        root = _root(m, by_id)
        roots.setdefault(root, []).append(_message(m, known))
    return [
        {"id": root, "topic": msgs[0]["topic"], "messages": msgs}
        for root, msgs in sorted(
            roots.items(), key=lambda kv: kv[1][-1]["sent"] or "", reverse=True
        )
    ]


def _root(message: dict, by_id: dict) -> str:
    seen = set()
    while message.get("inResponseTo") and message.get("id") not in seen:
        seen.add(message.get("id"))
        parent = (message["inResponseTo"][0].get("reference") or "").removeprefix("Communication/")
        if parent not in by_id:
            break
        message = by_id[parent]
    return message.get("id", "")


def _message(m: dict, known: dict[str, str]) -> dict:
    sender = (m.get("sender") or {}).get("reference", "")
    topic = ((m.get("category") or [{}])[0].get("coding") or [{}])[0].get("code", "")
    text = " ".join(p.get("contentString", "") for p in m.get("payload") or ())
    return {
        "id": m.get("id"),
        "from_office": not sender.startswith("Patient/"),
        "sender": describe.named(m.get("sender"), known),
        "sent": m.get("sent"),
        "text": text,
        "topic": topic,
    }


async def _appointments(view: View) -> list[dict]:
    params = [("patient", f"Patient/{view.patient}"), ("_sort", "date"), ("_count", "100")]
    found = entries(await view.fhir.get("Appointment", params), "Appointment")
    now = _now()
    return [
        {
            "id": a.get("id"),
            "start": a.get("start"),
            "status": a.get("status"),
            "comment": a.get("comment") or "",
            "future": (a.get("start") or "") > now,
        }
        for a in found
    ]


async def _free_slots(view: View) -> list[dict]:
    """The GP's free future times, earliest first (``Patient/$gp-slots``)."""
    found = entries(await view.fhir.get(f"Patient/{view.patient}/$gp-slots"), "Slot")
    return [{"id": s["id"], "start": s.get("start")} for s in found[:SLOTS_SHOWN]]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def message(view: View):
    reply_to = view.field("in_response_to")
    topic = view.field("topic") if view.field("topic") in TOPICS else "dialog"
    await view.fhir.operation(
        f"Patient/{view.patient}/$message-gp",
        text=view.field("text"),
        topic=topic,
        in_response_to={"reference": f"Communication/{reply_to}"} if reply_to else None,
    )
    return view.back("/fastlege", view.t("Your message is sent to the GP's office."))


async def book(view: View):
    await view.fhir.operation(
        "Appointment/$book",
        patient={"reference": f"Patient/{view.patient}"},
        slot={"reference": f"Slot/{view.field('slot')}"},
        comment=view.field("comment") or None,
    )
    return view.back("/fastlege", view.t("The appointment is booked."))


async def cancel(view: View):
    await view.fhir.operation(f"Appointment/{view.field('appointment')}/$cancel")
    return view.back("/fastlege", view.t("The appointment is cancelled."))
