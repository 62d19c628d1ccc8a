"""The citizen portal's web pages, served under ``/helsenorge`` on the platform's app.

``portal.py`` handles sessions, CSRF, rendering and headers; ``login.py`` the OpenID
Connect login; one module per service area (``account``, ``record``, ``medicines``,
``access``, ``gp``, ``forms``, ``representation``) its pages; ``fhir.py`` the in-process
FHIR client every page reads and writes through.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlsplit

from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from enjournal.services.helsenorge.web.login import CLIENT_ID, SCOPES, OidcClient, in_process
from enjournal.services.helsenorge.web.portal import HEADERS, Portal
from enjournal.services.helsenorge.web.sessions import PATH


def routes(platform) -> list:
    """The portal's routes; none without an embedded or configured citizen issuer."""
    security = platform.security
    if security is None or security.provider is None:
        return []  # a real ID-porten client registration is a deployment's own [not built]
    portal = Portal(platform)
    portal.oidc = _embedded_login(platform, security.provider)
    static = str(resources.files(__package__) / "static")
    return [
        Mount(
            PATH,
            routes=[
                *(
                    Route(path, endpoint, methods=methods)
                    for path, endpoint, methods in _pages(portal)
                ),
                Mount("/static", app=_with_headers(StaticFiles(directory=static)), name="static"),
                Route(
                    "/{rest:path}", portal.page(_not_found, login=False), methods=["GET", "POST"]
                ),
            ],
        )
    ]


def _with_headers(app):
    """The portal's security headers on the static files too."""
    extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items() if k != "Cache-Control"]

    async def wrapped(scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped


async def _not_found(view) -> Response:
    view.status = 404
    return view.portal.render(view, "error.html", code=404, message=None)


def _pages(portal: Portal) -> list:
    from enjournal.services.helsenorge.web import (
        access,
        account,
        forms,
        gp,
        medicines,
        record,
        representation,
    )

    found = []
    for module in (account, record, medicines, access, gp, forms, representation):
        found.extend(module.routes(portal))
    return found


def _embedded_login(platform, provider) -> OidcClient:
    """The portal as a client of the embedded ID-porten-style provider, called in process."""
    from enjournal.security.provider import Client

    public = platform.settings.public_url.rstrip("/")
    redirect_uri = f"{public}{PATH}/callback"
    provider.add_client(
        Client(
            CLIENT_ID,
            redirect_uris=(redirect_uri,),
            scopes=tuple(SCOPES.split()),
            name="Helsenorge",
            user_kinds=("citizen",),
        )
    )
    prefix = urlsplit(provider.issuer).path
    transport = in_process(prefix, provider.router)
    return OidcClient(provider.issuer, redirect_uri, platform.settings.fhir_base, transport)
