"""Server-rendered web pages for a service, on the platform's own FHIR API.

A service with pages (helsenorge's citizen portal, a follow-up centre's staff view) gets
here what every such site needs, and keeps only its pages, templates and catalogues:

- login with OpenID Connect, authorization code + PKCE (S256), against the configured
  issuer (the embedded provider, called in process), for the principal kinds the site
  serves; a new session id after login; refresh with the login's grant; logout revokes it;
- sessions on the server (memory, or Redis with ``ENJOURNAL_REDIS_URL``) named by a random
  id in a cookie (HttpOnly, Secure, SameSite=Lax, the site's path), ended when idle;
- a CSRF token on every form (a POST without it is 403 before anything is read);
- the security headers (CSP with ``frame-ancestors 'none'``, X-Frame-Options, ...) on
  every answer, static files too;
- Jinja2 templates (autoescape, strict) with Babel catalogues (nb, nn, en; the choice kept
  in the session) and Norwegian dates and numbers (filters ``when``, ``day``, ``number``);
- ``view.fhir``: a FHIR client that calls ``Platform.handle`` with the user's access token,
  so a page shows and changes only what the API lets that user (no side door); a refusal
  of the API is the 404 page.

Public surface:

- ``SiteConfig``: one site's settings (name, path, package, client id, scopes, user kinds,
  cookie, an ``on_login`` hook); ``mount(platform, config, pages, view=View)``: its
  Starlette routes (``[]`` without an issuer to log in with).
- ``Site``: the site at run time; ``site.page(handler, login=True)`` makes an endpoint of
  ``async def handler(view) -> Response | str`` (a string: the template to render);
  ``site.render``, ``site.redirect``, ``site.sessions``, ``site.platform``.
- ``View``: one request (``session``, ``form``, ``field()``, ``values()``, ``data`` for the
  template, ``status``, ``fhir``, ``t()`` to translate, ``back()`` after a POST); subclass
  it for the service's own properties and template ``context()``.
- ``Session`` (``data``: the service's own values), ``LoginFailed`` (raised by an
  ``on_login`` hook refuses the login), ``FhirClient``, ``FhirError``, ``entries``,
  ``parameters_of``; ``i18n`` (``N_``, ``chosen``, ``when``, ``day``, ``number``);
  ``SECURITY_HEADERS``.

A site::

    CONFIG = SiteConfig(name="vkp", path="/vkp", package=__name__, client_id="vkp",
                        title="Oppfølgingssenter", scopes="openid fhirUser user/*.rs",
                        user_kinds=("personnel",), cookie="vkp_session")

    async def home(view: View) -> str:
        view.data["alerts"] = entries(await view.fhir.get("DetectedIssue"))
        return "home.html"  # <package>/templates/home.html

    def routes(platform) -> list:
        return mount(platform, CONFIG, lambda site: [("/", site.page(home), ["GET"])])

The service's ``templates/`` holds ``error.html`` and ``login_failed.html`` besides its
pages; ``locale/<lang>/LC_MESSAGES/messages.po`` its catalogues (the shared templates'
messages too); ``static/`` its files.  The package data (pyproject.toml) must list them.

What the sites share is here, after the site's own (a site's file of the same name wins):
``templates/layout.html`` (the page: head, header with language and logout, main; the
site's ``base.html`` extends it and fills ``brand``, ``stylesheet``, ``account`` and
``footer``), ``templates/error_page.html`` (its ``error.html`` extends it, filling
``not_found`` and ``back``), ``templates/logged_out.html``, and ``static/base.css``
(linked before the site's own stylesheet, served under the site's ``/static``).
"""

from __future__ import annotations

from enjournal.web import i18n
from enjournal.web.fhir import FhirClient, FhirError, entries, parameters_of
from enjournal.web.headers import SECURITY_HEADERS
from enjournal.web.login import LoginFailed
from enjournal.web.routes import Page, mount
from enjournal.web.sessions import Session
from enjournal.web.site import Site, SiteConfig, View

__all__ = [
    "SECURITY_HEADERS",
    "FhirClient",
    "FhirError",
    "LoginFailed",
    "Page",
    "Session",
    "Site",
    "SiteConfig",
    "View",
    "entries",
    "i18n",
    "mount",
    "parameters_of",
]
