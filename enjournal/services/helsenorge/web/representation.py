"""Power of attorney (fullmakt) on the portal: the fullmakts one has given and received,
giving one for chosen service areas and a period, changing and revoking it
(``Patient/[id]/$fullmakt``).  Always the logged-in citizen's own: a representative
cannot give a fullmakt on someone else's behalf."""

from __future__ import annotations

from datetime import date

from enjournal.services.helsenorge.web import describe
from enjournal.services.helsenorge.web.portal import View
from enjournal.web import Site

AREA_EXT = "https://enjournal.no/fhir/StructureDefinition/fullmakt-area"
AREAS = ("1", "3")  # innsyn (read the record), digitale helsetjenester


def routes(site: Site) -> list:
    return [("/fullmakt", site.page(fullmakt), ["GET", "POST"])]


async def fullmakt(view: View):
    own = f"Patient/{view.self_patient}/$fullmakt"
    if view.request.method == "POST":
        return await _change(view, own)
    answer = await view.fhir.get(own)
    mine = f"Patient/{view.self_patient}"
    people = related_people(answer)
    known = await describe.names(view.fhir, [_giver(r) for r in people if _giver(r) != mine])
    found = [_row(r, known) for r in people]
    view.data["given"] = [r for r in found if r["giver"] == mine]
    view.data["received"] = [r for r in found if r["giver"] != mine]
    view.data["today"] = date.today().isoformat()
    return "fullmakt.html"


async def _change(view: View, own: str):
    revoke = view.field("revoke")
    if revoke:
        await view.fhir.operation(own, revoke=f"RelatedPerson/{revoke}")
        return view.back("/fullmakt", view.t("The power of attorney is revoked."))
    areas = [a for a in view.values("area") if a in AREAS]
    await view.fhir.operation(
        own,
        receiver=view.field("receiver"),
        receiver_family=view.field("receiver_family"),
        area=areas,
        start=view.field("start") or None,
        end=view.field("end") or None,
        change=f"RelatedPerson/{view.field('change')}" if view.field("change") else None,
    )
    return view.back("/fullmakt", view.t("The power of attorney is saved."))


def related_people(answer: dict) -> list[dict]:
    """Every RelatedPerson in an operation's answer (Parameters or Bundle, nested parts)."""
    found: list[dict] = []

    def walk(value) -> None:
        if isinstance(value, dict):
            if value.get("resourceType") == "RelatedPerson":
                found.append(value)
                return
            for inner in value.values():
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(answer)
    return found


def _giver(resource: dict) -> str:
    return (resource.get("patient") or {}).get("reference", "")


def _row(resource: dict, known: dict[str, str]) -> dict:
    period = resource.get("period") or {}
    areas = [
        (e.get("valueCoding") or {}).get("code")
        for e in resource.get("extension") or ()
        if e.get("url") == AREA_EXT
    ]
    return {
        "id": resource.get("id"),
        "giver": (resource.get("patient") or {}).get("reference", ""),
        "giver_name": describe.named(resource.get("patient"), known),
        "name": describe.name(resource),
        "areas": areas,
        "start": period.get("start"),
        "end": period.get("end"),
        "active": resource.get("active", True),
    }
