"""Logging in and out, the language, and whom the citizen acts for."""

from __future__ import annotations

import hmac
import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from enjournal.services.helsenorge.web import i18n
from enjournal.services.helsenorge.web.fhir import FhirError, PortalFhir
from enjournal.services.helsenorge.web.login import LoginFailed, citizen
from enjournal.services.helsenorge.web.portal import Portal, View
from enjournal.services.helsenorge.web.sessions import PATH, new_session


def routes(portal: Portal) -> list[tuple[str, object, list[str]]]:
    return [
        ("/", portal.page(lambda view: home(portal, view), login=False), ["GET"]),
        ("/login", portal.page(lambda view: login(portal, view), login=False), ["GET"]),
        ("/callback", callback_endpoint(portal), ["GET"]),
        ("/logout", portal.page(lambda view: logout(portal, view)), ["POST"]),
        ("/language", portal.page(language, login=False), ["GET", "POST"]),
        ("/act-for", portal.page(act_for), ["POST"]),
    ]


async def home(portal: Portal, view: View):
    if not view.session.logged_in:
        return "start.html"
    view.data["people"] = await represented(view)
    return "home.html"


async def login(portal: Portal, view: View) -> Response:
    start = await portal.oidc.start()
    view.session.login = {"state": start.state, "nonce": start.nonce, "verifier": start.verifier}
    return RedirectResponse(start.url, status_code=303)


def callback_endpoint(portal: Portal):
    async def endpoint(request: Request) -> Response:
        before = await portal.session_of(request)
        try:
            session = await _complete_login(portal, request, before)
        except LoginFailed:
            view = View(request, before, portal)
            view.status = 400
            return await portal.finish(portal.render(view, "login_failed.html"), before)
        await portal.sessions.drop(before.id)  # a new id after login: no session fixation
        return await portal.finish(RedirectResponse(f"{PATH}/", status_code=303), session)

    return endpoint


async def _complete_login(portal: Portal, request: Request, before):
    expected = before.login.get("state", "")
    state = request.query_params.get("state", "")
    if not expected or not hmac.compare_digest(state, expected):
        raise LoginFailed("the login's state does not match this browser's")
    code = request.query_params.get("code")
    if not code:
        raise LoginFailed("the issuer did not log the citizen in")
    tokens = await portal.oidc.exchange(code, before.login["verifier"])
    principal = await citizen(portal.platform.security.verifier, tokens)
    session = new_session(before.lang)
    session.access_token, session.refresh_token = tokens.access_token, tokens.refresh_token
    session.token_expires = tokens.expires_at
    session.ends = time.time() + ONLINE_GRANT_SECONDS
    session.name = principal.name
    session.self_patient = principal.patient or await _own_patient(portal, session)
    return session


async def _own_patient(portal: Portal, session) -> str:
    """The citizen's Patient id when the token names none (an issuer without SMART launch
    context): the ``self`` entry of ``Patient/$represented``."""
    fhir = PortalFhir(portal.platform, session.access_token or "")
    answer = await fhir.get("Patient/$represented")
    for part in answer.get("parameter") or ():
        fields = {p.get("name"): p for p in part.get("part") or ()}
        if _code(fields.get("relation")) == "self":
            reference = (fields.get("patient") or {}).get("valueReference") or {}
            session.name = session.name or reference.get("display")
            return (reference.get("reference") or "").removeprefix("Patient/")
    raise LoginFailed("no record of this citizen")


# The login's refresh grant (``online_access``) lasts an hour at the embedded provider; the
# session ends with it, whatever the activity.
ONLINE_GRANT_SECONDS = 3600


async def logout(portal: Portal, view: View) -> Response:
    await portal.oidc.revoke(view.session.refresh_token)
    await portal.sessions.drop(view.session.id)
    view.session.access_token = None
    response = portal.render(view, "logged_out.html")
    return await portal.finish(response, None)


async def language(view: View) -> Response:
    """The language, kept in the session: a form when logged in, links before (choosing a
    language is all a GET here may change)."""
    chosen = view.form if view.request.method == "POST" else view.request.query_params
    view.session.lang = i18n.chosen(str(chosen.get("lang", "")))
    back = str(chosen.get("back", "/"))
    if not back.startswith(PATH) or "//" in back:
        back = f"{PATH}/"  # only pages of the portal: no open redirect
    return RedirectResponse(back, status_code=303)


async def act_for(view: View) -> Response:
    wanted = view.field("patient")
    people = await represented(view)
    person = next((p for p in people if p["id"] == wanted), None)
    if person is None:
        raise FhirError(404, "not someone you may act for")
    mine = wanted == view.session.self_patient
    view.session.acting_for = None if mine else wanted
    view.session.acting_name = None if mine else person["name"]
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
                "relation": _code(fields.get("relation")),
                "age": (fields.get("age") or {}).get("valueInteger"),
                "areas": [_code(p) for p in part.get("part") or () if p.get("name") == "area"],
            }
        )
    return people


def _code(part: dict | None) -> str:
    part = part or {}
    return str(part.get("valueCode") or part.get("valueString") or "")
