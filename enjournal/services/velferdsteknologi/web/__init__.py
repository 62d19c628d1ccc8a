"""The follow-up centre's web pages (oppfølgingssenter: the municipality's care staff who
follow patients at home), served under ``/oppfolging`` on the platform's app.

The machinery (sessions, login, CSRF, rendering, headers, the in-process FHIR client,
languages) is ``enjournal.web``'s; ``centre.py`` holds the site's settings and pages,
``logic.py`` and ``charts.py`` what the pages show, as pure functions.
"""

from __future__ import annotations

from enjournal.web import Page, Site, mount


def routes(platform) -> list:
    """The centre's routes; none without an embedded or configured issuer."""
    from enjournal.services.velferdsteknologi.web.centre import CONFIG, CentreView

    return mount(platform, CONFIG, _pages, CentreView)


def _pages(site: Site) -> list[Page]:
    from enjournal.services.velferdsteknologi.web import centre

    return centre.routes(site)
