"""The front page and whom the citizen acts for (login, logout and the language are
``enjournal.web``'s)."""

from __future__ import annotations

from starlette.responses import Response

from enjournal.services.helsenorge.web.portal import View, code
from enjournal.web import FhirError, Page, Site


def routes(site: Site) -> list[Page]:
    return [
        ("/", site.page(home, login=False), ["GET"]),
        ("/act-for", site.page(act_for), ["POST"]),
    ]


async def home(view: View):
    if not view.session.logged_in:
        return "start.html"
    view.data["people"] = await represented(view)
    return "home.html"


async def act_for(view: View) -> Response:
    wanted = view.field("patient")
    people = await represented(view)
    person = next((p for p in people if p["id"] == wanted), None)
    if person is None:
        raise FhirError(404, "not someone you may act for")
    mine = wanted == view.self_patient
    view.act_for(None if mine else wanted, None if mine else person["name"])
    return view.back("/")


async def represented(view: View) -> list[dict]:
    """Everyone the citizen may act for now, themself first (``Patient/$represented``)."""
    answer = await view.fhir.get("Patient/$represented")
    people = []
    for part in answer.get("parameter") or ():
        fields = {p.get("name"): p for p in part.get("part") or ()}
        reference = (fields.get("patient") or {}).get("valueReference") or {}
        people.append(
            {
                "id": (reference.get("reference") or "").removeprefix("Patient/"),
                "name": reference.get("display") or "",
                "relation": code(fields.get("relation")),
                "age": (fields.get("age") or {}).get("valueInteger"),
                "areas": [code(p) for p in part.get("part") or () if p.get("name") == "area"],
            }
        )
    return people
