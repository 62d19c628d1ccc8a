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
# How many matches a short page may look through before it is returned as it is.
MAX_SCANNED = 5000


async def guarded_search(guard, tx: Transaction, query, interaction: str) -> SearchResult:
    if query.summary == "count" or query.count == 0:
        total = await visible_total(guard, tx, query) if query.total != "none" else None
        guard.record_count(interaction, query)
        return SearchResult([], total=total)
    result = await _filled_page(guard, tx, query, interaction)
    if query.total == "accurate" and result.total is None:
        result.total = await visible_total(guard, tx, query)
    return result


async def _filled_page(guard, tx: Transaction, query, interaction: str) -> SearchResult:
    """One page of what the caller may read: the first SQL page filtered, then topped up
    from the following ones (read in larger pages, so a sparse result costs few round
    trips) until it is full; its includes are followed from the kept matches only."""
    page = dataclasses.replace(query, total="none", includes=[])
    result = await tx.search(page)
    kept = await guard.filter(tx, result.matches, interaction)
    next_cursor, previous = result.next_cursor, result.previous_cursor
    scanned = len(result.matches)
    while len(kept) < query.count and next_cursor and scanned < MAX_SCANNED:
        size = min(max(query.count * 4, 50), 1000)
        result = await tx.search(dataclasses.replace(page, cursor=next_cursor, count=size))
        scanned += len(result.matches)
        next_cursor = result.next_cursor
        for n, stored in enumerate(result.matches):
            if await guard.filter(tx, [stored], interaction):
                kept.append(stored)
                if len(kept) == query.count:
                    next_cursor = _after(result, n)
                    break
    included = await _included(guard, tx, query, kept, interaction)
    whole = query.cursor is None and next_cursor is None
    total = len(kept) if whole and query.total != "none" else None
    return SearchResult(kept, included, total, next_cursor, previous)


def _after(result: SearchResult, n: int) -> str | None:
    """The cursor after the ``n``th match, or the page's own next cursor when the page was
    used to its end (or the paging mode cannot say)."""
    if n == len(result.matches) - 1 or result.cursor_after is None:
        return result.next_cursor
    return result.cursor_after(n)


async def _included(guard, tx: Transaction, query, kept: list, interaction: str) -> list:
    if not query.includes or not kept:
        return []

    async def keep(found: list) -> list:
        return await guard.filter_included(tx, found, kept, query, interaction)

    return await tx.includes(query, kept, keep)


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
