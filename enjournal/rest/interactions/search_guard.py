"""Searching for a caller with a guard: pages and totals over what the caller may read.

The SQL search matches every resource; the guard then drops what the caller may not read.
Done naively, that leaks twice: a total (or ``_summary=count``) counts hidden resources
("does this person have diagnosis X?"), and a page can come back empty while a next link
says more exist.  Here a page is refilled from the following pages until it is full, and a
total counts only readable resources: from the page itself when it is the whole result, by
a bounded scan when the caller asks for it (``_total=accurate``, ``_summary=count``,
``_count=0``), and otherwise not at all.
"""

from __future__ import annotations

import dataclasses

from enjournal.storage import SearchResult, Transaction

# How many matches a count may look at before it gives up (the total is then left out).
MAX_COUNTED = 2000
# How many further pages a short page may draw on before it is returned as it is.
MAX_REFILLS = 10


async def guarded_search(guard, tx: Transaction, query, interaction: str) -> SearchResult:
    if query.summary == "count" or query.count == 0:
        total = await visible_total(guard, tx, query) if query.total != "none" else None
        guard.record_count(tx, interaction, query)
        return SearchResult([], total=total)
    result = await _filled_page(guard, tx, query, interaction)
    if query.total == "accurate" and result.total is None:
        result.total = await visible_total(guard, tx, query)
    return result


async def _filled_page(guard, tx: Transaction, query, interaction: str) -> SearchResult:
    page = dataclasses.replace(query, total="none")
    result = await tx.search(page)
    kept = await guard.filter(tx, result.matches, interaction)
    included = await guard.filter_included(tx, result.included, kept, query, interaction)
    refills = 0
    while len(kept) < query.count and result.next_cursor and refills < MAX_REFILLS:
        page = dataclasses.replace(page, cursor=result.next_cursor, count=query.count - len(kept))
        previous = result.previous_cursor
        result = await tx.search(page)
        result.previous_cursor = previous
        more = await guard.filter(tx, result.matches, interaction)
        kept += more
        included += await guard.filter_included(tx, result.included, more, query, interaction)
        refills += 1
    whole = query.cursor is None and result.next_cursor is None
    total = len(kept) if whole and query.total != "none" else None
    return SearchResult(kept, included, total, result.next_cursor, result.previous_cursor)


async def visible_total(guard, tx: Transaction, query) -> int | None:
    """How many matches the caller may read, or None when there are more than
    ``MAX_COUNTED`` to look at (a total that counted hidden ones would reveal them)."""
    if guard.sees_everything(query):
        return (await tx.search(dataclasses.replace(query, summary="count"))).total
    scan = dataclasses.replace(
        query, count=500, summary=None, total="none", sort=[], includes=[], cursor=None
    )
    seen = total = 0
    while seen < MAX_COUNTED:
        result = await tx.search(scan)
        seen += len(result.matches)
        total += await guard.count_readable(tx, result.matches)
        if not result.next_cursor:
            return total
        scan = dataclasses.replace(scan, cursor=result.next_cursor)
    return None
