"""The message centre's web pages (meldingssenter: health personnel of a GP office or a
hospital reading and answering the messages their organisation receives, and following
those it sent), served under ``/meldinger`` on the platform's app.

The machinery (sessions, login, CSRF, rendering, headers, the in-process FHIR client,
languages) is ``enjournal.web``'s; ``centre.py`` holds the site's settings and pages,
``content.py`` what the pages show, as pure functions.
"""

from __future__ import annotations

from enjournal.web import Page, Site, mount


def routes(platform) -> list:
    """The centre's routes; none without an embedded or configured issuer."""
    from enjournal.services.messaging.web.centre import CONFIG, CentreView

    return mount(platform, CONFIG, _pages, CentreView)


def _pages(site: Site) -> list[Page]:
    from enjournal.services.messaging.web import centre

    return centre.routes(site)
