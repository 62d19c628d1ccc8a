"""Helsenorge's scheduled jobs.

``end_fullmakts``: a fullmakt whose period has ended is marked inactive, so lists and the
portal show it as ended without working out its period.  The access it gives is decided by
the guard from the period itself on every request (``security/representation.py``): this job
only tidies, and running it late or twice changes nothing.
"""

from __future__ import annotations

from datetime import datetime

from enjournal.fhir import jsonio
from enjournal.security import representation as rules
from enjournal.services import Job

PAGE = 500
DAY = 24 * 3600.0


def all_jobs() -> list[Job]:
    return [Job("helsenorge-end-fullmakts", DAY / 4, end_fullmakts)]


async def end_fullmakts(store, now: datetime) -> int:
    """One pass over the RelatedPersons, a page at a time; the number marked inactive."""
    ended, after = 0, ""
    while True:
        async with store.transaction(write=False) as tx:
            page = await tx.with_id_prefix("RelatedPerson", after=after, limit=PAGE)
        due = [r.id for r in page if _ended(jsonio.loads(r.content), now)]
        for id_ in due:
            ended += await _end(store, id_, now)
        if len(page) < PAGE:
            return ended
        after = page[-1].id


async def _end(store, id_: str, now: datetime) -> int:
    """Mark one fullmakt inactive, re-checked inside the write (it may have changed)."""
    async with store.transaction() as tx:
        content = await tx.content_of("RelatedPerson", id_)
        related = jsonio.loads(content) if content is not None else {}
        if not _ended(related, now):
            return 0
        current = await tx.read_for_update("RelatedPerson", id_)
        related["active"] = False
        await tx.update(related, id_, if_match=current.version)
        return 1


def _ended(related: dict, now: datetime) -> bool:
    """An active fullmakt whose end lies before today."""
    if not rules.is_fullmakt(related) or related.get("active") is False:
        return False
    _start, end = rules.period(related)
    return end is not None and end[:10] < now.date().isoformat()
