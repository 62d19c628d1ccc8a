"""Helsenorge: the citizen portal (domain.md section 4.1), server-rendered pages on the
platform's own FHIR API, plus the FHIR operations of the citizen's digital services with
the GP office and of representation (fullmakt).

See docs/helsenorge.md.  ``rules.py`` holds the rules, ``api.py`` the operations,
``web/`` the portal (login, sessions, pages), ``jobs.py`` the scheduled jobs.
"""

from __future__ import annotations

from enjournal.services import Job


def register(platform) -> list[Job]:
    """Add the operations and the portal's routes to the platform."""
    from enjournal.services.helsenorge import api, jobs

    api.register_operations(platform)
    if platform.serving:
        from enjournal.services.helsenorge.web import routes

        platform.routes.extend(routes(platform))
    return jobs.all_jobs()
