"""Mounting a site: its pages, the login (code flow + PKCE), callback, logout and language
endpoints every site has, its static files, and the 404 page for anything else.

The service's templates provide ``error.html`` (``code``: 403, 404 or the API's status;
``message``; it may extend the shared ``error_page.html``) and ``login_failed.html``;
``logged_out.html`` is shared (enjournal/web/templates), a site's own wins.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from importlib import resources
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from enjournal.web import i18n
from enjournal.web.headers import with_headers
from enjournal.web.login import LoginFailed, OidcClient, in_process, verified
from enjournal.web.sessions import Session, new_session
from enjournal.web.site import SHARED, Site, SiteConfig, View

# A page: its path under the site, its endpoint (``Site.page(handler)``) and methods.
Page = tuple[str, Callable, list[str]]


def mount(
    platform, config: SiteConfig, pages: Callable[[Site], list[Page]], view: type[View] = View
) -> list[BaseRoute]:
    """The site's routes under ``config.path``; none without the embedded issuer (a real
    issuer's client registration is a deployment's own [not built])."""
    security = platform.security
    if security is None or security.provider is None:
        return []
    site = Site(platform, config, view)
    site.oidc = embedded_login(platform, security.provider, config)
    found = [*account_pages(site), *pages(site)]
    routes: list[BaseRoute] = [Route(p, endpoint, methods=m) for p, endpoint, m in found]
    routes.append(Mount("/static", app=static_files(config), name="static"))
    catch_all = site.page(_not_found, login=False)
    routes.append(Route("/{rest:path}", catch_all, methods=["GET", "POST"]))
    return [Mount(config.path, routes=routes)]


def static_files(config: SiteConfig):
    """The site's ``static/`` and then the shared one (``base.css``): its own file of the
    same name wins."""
    own = resources.files(config.package) / "static"
    files = StaticFiles(directory=str(own) if own.is_dir() else None, packages=[(SHARED, "static")])
    return with_headers(files, config.headers)


def embedded_login(platform, provider, config: SiteConfig) -> OidcClient:
    """The site as a public client of the embedded provider, called in process; the
    provider lets only ``config.user_kinds`` log in to it."""
    from enjournal.security.provider import Client

    redirect_uri = f"{platform.settings.public_url.rstrip('/')}{config.path}/callback"
    registered = Client(
        config.client_id,
        redirect_uris=(redirect_uri,),
        scopes=tuple(config.scopes.split()),
        name=config.title,
        user_kinds=config.user_kinds,
    )
    provider.add_client(registered)
    transport = in_process(urlsplit(provider.issuer).path, provider.router)
    audience = platform.settings.fhir_base
    return OidcClient(
        provider.issuer, redirect_uri, audience, config.client_id, config.scopes, transport
    )


def account_pages(site: Site) -> list[Page]:
    return [
        ("/login", site.page(login, login=False), ["GET"]),
        ("/callback", callback_endpoint(site), ["GET"]),
        ("/logout", site.page(logout), ["POST"]),
        ("/language", site.page(language, login=False), ["GET", "POST"]),
    ]


async def _not_found(view: View) -> Response:
    view.status = 404
    return view.site.render(view, "error.html", code=404, message=None)


async def login(view: View) -> Response:
    """To the issuer, with the state, nonce and PKCE verifier kept in the session."""
    start = await view.site.oidc.start()
    view.session.login = {"state": start.state, "nonce": start.nonce, "verifier": start.verifier}
    return view.site.redirect(start.url)


def callback_endpoint(site: Site):
    async def endpoint(request: Request) -> Response:
        before = await site.session_of(request)
        try:
            session = await _complete_login(site, request, before)
        except LoginFailed:
            view = site.view(request, before, site)
            view.status = 400
            return await site.finish(site.render(view, "login_failed.html"), before)
        await site.sessions.drop(before.id)  # a new id after login: no session fixation
        return await site.finish(site.redirect(site.config.home), session)

    return endpoint


async def _complete_login(site: Site, request: Request, before: Session) -> Session:
    expected = before.login.get("state", "")
    state = request.query_params.get("state", "")
    if not expected or not hmac.compare_digest(state, expected):
        raise LoginFailed("the login's state does not match this browser's")
    code = request.query_params.get("code")
    if not code:
        raise LoginFailed("the issuer did not log the user in")
    tokens = await site.oidc.exchange(code, before.login["verifier"])
    principal = await verified(site.platform.security.verifier, tokens, site.config.user_kinds)
    session = new_session(before.lang)
    session.access_token, session.refresh_token = tokens.access_token, tokens.refresh_token
    session.token_expires = tokens.expires_at
    session.ends = time.time() + site.config.grant_seconds
    session.name = principal.name
    if site.config.on_login is not None:
        await site.config.on_login(site, session, principal)
    return session


async def logout(view: View) -> Response:
    """Revokes the refresh token at the issuer and forgets the session."""
    site = view.site
    await site.oidc.revoke(view.session.refresh_token)
    await site.sessions.drop(view.session.id)
    view.session.access_token = None
    return await site.finish(site.render(view, "logged_out.html"), None)


async def language(view: View) -> Response:
    """The language, kept in the session: a form when logged in, links before (choosing a
    language is all a GET here may change)."""
    chosen = view.form if view.request.method == "POST" else view.request.query_params
    view.session.lang = i18n.chosen(str(chosen.get("lang", "")))
    back = str(chosen.get("back", "/"))
    path = view.site.config.path
    if not back.startswith(path) or "//" in back:
        back = f"{path}/"  # only pages of the site: no open redirect
    return view.site.redirect(back)
