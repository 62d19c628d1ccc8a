"""The kjernejournal service: Norway's national summary care record (domain.md section 2),
on the shared record, delivered as a signed HL7 International Patient Summary.

See docs/kjernejournal.md.  ``rules.py`` holds the rules, ``api.py`` the operations,
``summary.py`` and ``signing.py`` the document, ``privacy.py`` the citizen's settings,
``hooks.py`` the rules inside the general API and ``jobs.py`` the deletion after a
reservation.
"""

from __future__ import annotations

from enjournal.services import Job


def register(context) -> list[Job]:
    """Add the operations, the guard hook and the Consent category to the platform."""
    from enjournal.services.kjernejournal import api, hooks, jobs, records, rules

    context.consent_systems.add(rules.KJ)
    context.add_hook(records.MARKER, hooks.check)
    api.register_operations(context)
    return [Job("kjernejournal-reservation-deletion", 3600.0, jobs.delete_reserved)]
