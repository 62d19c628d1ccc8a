"""The citizen portal's web pages, served under ``/helsenorge`` on the platform's app.

The machinery (sessions, login, CSRF, rendering, headers, the in-process FHIR client,
languages) is ``enjournal.web``'s; ``portal.py`` holds the portal's settings, its login
step and its View (whom the citizen acts for); one module per service area (``account``,
``record``, ``medicines``, ``access``, ``gp``, ``forms``, ``representation``) its pages.
"""

from __future__ import annotations

from enjournal.services.helsenorge.web.portal import CONFIG, View
from enjournal.web import Page, Site, mount


def routes(platform) -> list:
    """The portal's routes; none without an embedded or configured citizen issuer."""
    return mount(platform, CONFIG, _pages, View)


def _pages(site: Site) -> list[Page]:
    from enjournal.services.helsenorge.web import (
        access,
        account,
        forms,
        gp,
        medicines,
        record,
        representation,
    )

    found: list[Page] = []
    for module in (account, record, medicines, access, gp, forms, representation):
        found.extend(module.routes(site))
    return found
