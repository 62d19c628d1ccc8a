"""The portal's request handling: session, CSRF, whom the citizen acts for, rendering and
the security headers every page carries.

A page handler is ``async def handler(view: View) -> Response | str`` (a string is a
template name rendered with ``view.data``).  ``Portal.page`` wraps it: no session, to the
login; a POST without the session's CSRF token, 403; a refusal of the API, the error page
(403 and 404 both as 404, so another citizen's ids reveal nothing).
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from enjournal.services.helsenorge.web import i18n
from enjournal.services.helsenorge.web.fhir import FhirError, PortalFhir
from enjournal.services.helsenorge.web.sessions import (
    COOKIE,
    PATH,
    Session,
    cookie_options,
    new_session,
    sessions_from_url,
)

log = logging.getLogger("enjournal.helsenorge")
IDLE_SECONDS = 30 * 60  # helsenorge logs out after 30 minutes without activity [assumed]
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@dataclass
class View:
    """One page request: the session, the citizen's FHIR client and what the page shows."""

    request: Request
    session: Session
    portal: Portal
    form: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    status: int = 200

    @property
    def fhir(self) -> PortalFhir:
        return PortalFhir(self.portal.platform, self.session.access_token or "")

    @property
    def patient(self) -> str:
        """The Patient id whose pages these are."""
        return self.session.acting_for or self.session.self_patient or ""

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name, default)
        return value.strip() if isinstance(value, str) else default

    def values(self, name: str) -> list[str]:
        return [v for v in self.form.get(f"{name}[]", []) if isinstance(v, str)]

    def t(self, message: str, **values: str) -> str:
        """``message`` in the session's language."""
        text = i18n.translations(i18n.chosen(self.session.lang)).gettext(message)
        return text % values if values else text

    def back(self, path: str, message: str | None = None) -> Response:
        """After a POST: to ``path`` (under the portal) with a message for the next page."""
        self.session.flash = message
        return RedirectResponse(f"{PATH}{path}", status_code=303)


class Portal:
    def __init__(self, platform):
        self.platform = platform
        settings = platform.settings
        self.sessions = sessions_from_url(settings.redis_url, IDLE_SECONDS)
        self.public_url = settings.public_url.rstrip("/")
        self._env = {lang: _environment(lang) for lang in i18n.LANGUAGES}
        self.oidc: Any = None  # set by ``web.routes`` (it needs the provider)

    def page(self, handler, *, login: bool = True):
        async def endpoint(request: Request) -> Response:
            session = await self.session_of(request)
            if login and not session.logged_in:
                return await self.finish(RedirectResponse(f"{PATH}/", status_code=303), session)
            view = View(request, session, self)
            if request.method == "POST":
                refused = await self._read_form(view)
                if refused is not None:
                    return await self.finish(refused, session)
            return await self.finish(await self._run(handler, view), session)

        return endpoint

    async def _run(self, handler, view: View) -> Response:
        try:
            result = await handler(view)
        except FhirError as error:
            return self.error(view, error)
        if isinstance(result, str):
            return self.render(view, result)
        return result

    def error(self, view: View, error: FhirError) -> Response:
        if error.status == 401:
            view.session.access_token = None
            return RedirectResponse(f"{PATH}/", status_code=303)
        status = 404 if error.status in (403, 404) else error.status
        view.status = status
        message = None if status == 404 else error.message
        return self.render(view, "error.html", message=message, code=status)

    def render(self, view: View, template: str, **extra: Any) -> HTMLResponse:
        session = view.session
        env = self._env[i18n.chosen(session.lang)]
        flash, session.flash = session.flash, None
        context = {
            **view.data,
            **extra,
            "session": session,
            "lang": i18n.chosen(session.lang),
            "csrf": session.csrf,
            "flash": flash,
            "path": view.request.url.path,
            "base": PATH,
        }
        html = env.get_template(template).render(context)
        return HTMLResponse(html, status_code=view.status)

    async def session_of(self, request: Request) -> Session:
        id_ = request.cookies.get(COOKIE, "")
        session = await self.sessions.get(id_) if id_ else None
        if session is None:
            session = new_session(i18n.chosen(request.query_params.get("lang")))
        if session.logged_in and session.token_expires < time.time() + 30:
            await self._refresh(session)
        return session

    async def _refresh(self, session: Session) -> None:
        from enjournal.services.helsenorge.web.login import LoginFailed

        try:
            tokens = await self.oidc.refresh(session.refresh_token or "")
        except LoginFailed:
            session.access_token = None  # the grant ended: log in again
            return
        session.access_token, session.token_expires = tokens.access_token, tokens.expires_at
        session.refresh_token = tokens.refresh_token or session.refresh_token

    async def _read_form(self, view: View) -> Response | None:
        """The form, or the 403 for a POST without this session's CSRF token."""
        form = await view.request.form()
        view.form = {k: (form.getlist(k) if k.endswith("[]") else form.get(k)) for k in form}
        sent = view.form.get("csrf")
        if not isinstance(sent, str) or not hmac.compare_digest(sent, view.session.csrf):
            view.status = 403
            log.info(
                "form refused: no valid CSRF token",
                extra={"fields": {"path": view.request.url.path}},
            )
            return self.render(view, "error.html", code=403, message=None)
        return None

    async def finish(self, response: Response, session: Session | None) -> Response:
        """Every answer: the security headers; the session saved and its cookie renewed
        (None: the session ended, its cookie is removed)."""
        response.headers.update(HEADERS)
        if session is None:
            response.delete_cookie(COOKIE, **cookie_options(secure=True))
            return response
        session.seen = time.time()
        if session.worth_keeping:
            await self.sessions.put(session)
            response.set_cookie(COOKIE, session.id, **cookie_options(secure=True))
        return response


def _environment(lang: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("enjournal.services.helsenorge.web", "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
    )
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.filters["when"] = lambda v: i18n.when(v, lang)
    env.filters["day"] = lambda v: i18n.day(v, lang)
    env.filters["number"] = lambda v: i18n.number(v, lang)
    return env
