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
    from enjournal.security import guard
    from enjournal.services.kjernejournal import api, hooks, jobs, records, rules

    guard.SERVICE_CONSENT_SYSTEMS.add(rules.KJ)
    if not any(check is hooks.check for _, check in guard.RESOURCE_HOOKS):
        guard.RESOURCE_HOOKS.append((records.MARKER, hooks.check))
    api.register_operations(context)
    return [Job("kjernejournal-reservation-deletion", 3600.0, jobs.delete_reserved)]
