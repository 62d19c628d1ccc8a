"""A web site's request handling: session, CSRF, rendering, errors and the security headers
every page carries.

A page handler is ``async def handler(view: View) -> Response | str`` (a string is a
template name rendered with ``view.data``).  ``Site.page`` wraps it: no session, to the
site's front page; a POST without the session's CSRF token, 403; a refusal of the API, the
error page (403 and 404 both as 404, so another user's ids reveal nothing).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from enjournal.security.principal import Principal
from enjournal.web import i18n
from enjournal.web.fhir import FhirClient, FhirError
from enjournal.web.headers import SECURITY_HEADERS
from enjournal.web.login import LoginFailed
from enjournal.web.sessions import Session, cookie_options, new_session, sessions_from_url

SHARED = "enjournal.web"  # the package whose templates/ and static/ every site falls back to

LoginHook = Callable[["Site", Session, Principal], Awaitable[None]]


@dataclass(frozen=True)
class SiteConfig:
    """What makes one site: its name and path, its package (``templates/``, ``static/``,
    ``locale/``), its client at the issuer and who may log in."""

    name: str  # the service's name: logger, Redis keys ("helsenorge")
    path: str  # where it is mounted, no trailing slash ("/helsenorge")
    package: str  # its web package, holding templates/, static/ and the catalogues
    client_id: str  # the public client at the issuer
    title: str  # the client's name at the issuer
    scopes: str  # what the login asks for, space-separated
    user_kinds: tuple[str, ...]  # the principal kinds that may log in ("citizen",)
    cookie: str  # the session cookie's name
    shared_templates: tuple[str, ...] = ()  # packages whose templates/ come after its own
    locale: str = "locale"  # the catalogues' folder in ``package``
    domain: str = "messages"  # the catalogues' domain: <locale>/<lang>/LC_MESSAGES/<domain>.po
    idle_seconds: float = 30 * 60  # a session ends this long after its last request
    grant_seconds: float = 3600  # and at the latest this long after login (the refresh grant)
    headers: Mapping[str, str] = field(default_factory=lambda: dict(SECURITY_HEADERS))
    # After the tokens are verified: fill ``session.data`` or refuse (raise LoginFailed).
    on_login: LoginHook | None = None

    @property
    def home(self) -> str:
        return f"{self.path}/"


@dataclass
class View:
    """One page request: the session, the user's FHIR client and what the page shows."""

    request: Request
    session: Session
    site: Site
    form: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    status: int = 200

    @property
    def fhir(self) -> FhirClient:
        return FhirClient(self.site.platform, self.session.access_token or "")

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name, default)
        return value.strip() if isinstance(value, str) else default

    def values(self, name: str) -> list[str]:
        return [v for v in self.form.get(f"{name}[]", []) if isinstance(v, str)]

    def t(self, message: str, **values: str) -> str:
        """``message`` in the session's language."""
        config = self.site.config
        lang = i18n.chosen(self.session.lang)
        text = i18n.translations(config.package, lang, config.domain, config.locale).gettext(
            message
        )
        return text % values if values else text

    def back(self, path: str, message: str | None = None) -> Response:
        """After a POST: to ``path`` (under the site) with a message for the next page."""
        self.session.flash = message
        return RedirectResponse(f"{self.site.config.path}{path}", status_code=303)

    def context(self) -> dict[str, Any]:
        """What every template of the site sees besides the page's data (a service's View
        adds its own)."""
        return {}


class Site:
    """A service's pages: sessions, login state, rendering and the answer's headers."""

    def __init__(self, platform, config: SiteConfig, view: type[View] = View):
        self.platform = platform
        self.config = config
        self.view = view  # the View class handlers get
        self.sessions = sessions_from_url(
            platform.settings.redis_url, config.idle_seconds, config.name
        )
        self.log = logging.getLogger(f"enjournal.{config.name}")
        self._env = {lang: environment(config, lang) for lang in i18n.LANGUAGES}
        self.oidc: Any = None  # the OidcClient, set when mounted (it needs the issuer)

    def page(self, handler, *, login: bool = True):
        """The Starlette endpoint of ``handler``; ``login``: only for a logged-in user."""

        async def endpoint(request: Request) -> Response:
            session = await self.session_of(request)
            if login and not session.logged_in:
                return await self.finish(self.redirect(self.config.home), session)
            view = self.view(request, session, self)
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
        """The API's refusal as a page: 401 logs out; 403 and 404 are both 404."""
        if error.status == 401:
            view.session.access_token = None
            return self.redirect(self.config.home)
        status = 404 if error.status in (403, 404) else error.status
        view.status = status
        message = None if status == 404 else error.message
        return self.render(view, "error.html", message=message, code=status)

    def render(self, view: View, template: str, **extra: Any) -> HTMLResponse:
        session = view.session
        lang = i18n.chosen(session.lang)
        flash, session.flash = session.flash, None
        context = {
            **view.data,
            **extra,
            **view.context(),
            "session": session,
            "lang": lang,
            "csrf": session.csrf,
            "flash": flash,
            "path": view.request.url.path,
            "base": self.config.path,
        }
        html = self._env[lang].get_template(template).render(context)
        return HTMLResponse(html, status_code=view.status)

    def redirect(self, url: str) -> Response:
        return RedirectResponse(url, status_code=303)

    async def session_of(self, request: Request) -> Session:
        """The request's session (a new, unsaved one without a known cookie), its access
        token refreshed when it is about to run out."""
        id_ = request.cookies.get(self.config.cookie, "")
        session = await self.sessions.get(id_) if id_ else None
        if session is None:
            session = new_session(i18n.chosen(request.query_params.get("lang")))
        if session.logged_in and session.token_expires < time.time() + 30:
            await self._refresh(session)
        return session

    async def _refresh(self, session: Session) -> None:
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
            self.log.info(
                "form refused: no valid CSRF token",
                extra={"fields": {"path": view.request.url.path}},
            )
            return self.render(view, "error.html", code=403, message=None)
        return None

    async def finish(self, response: Response, session: Session | None) -> Response:
        """Every answer: the security headers; the session saved and its cookie renewed
        (None: the session ended, its cookie is removed)."""
        response.headers.update(self.config.headers)
        cookie, options = self.config.cookie, cookie_options(self.config.path)
        if session is None:
            response.delete_cookie(cookie, **options)
            return response
        session.seen = time.time()
        if session.worth_keeping:
            await self.sessions.put(session)
            response.set_cookie(cookie, session.id, **options)
        return response


def environment(config: SiteConfig, lang: str) -> jinja2.Environment:
    """The site's Jinja environment for ``lang``: autoescape, strict, its templates first and
    then the shared ones and last this package's (``layout.html``, ``error_page.html``,
    ``logged_out.html``: a site's own template of the same name wins), its catalogue, and
    the filters ``when``, ``day`` and ``number``."""
    packages = (config.package, *config.shared_templates, SHARED)
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.PackageLoader(p, "templates") for p in packages]),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
    )
    catalogue = i18n.translations(config.package, lang, config.domain, config.locale)
    env.install_gettext_translations(catalogue, newstyle=True)  # type: ignore[attr-defined]
    env.filters["when"] = lambda v: i18n.when(v, lang)
    env.filters["day"] = lambda v: i18n.day(v, lang)
    env.filters["number"] = lambda v: i18n.number(v, lang)
    return env
