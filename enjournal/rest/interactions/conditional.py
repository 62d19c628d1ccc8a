"""Finding the resources that conditional interactions' criteria match (http.html#cond-update)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from enjournal.fhir.errors import Invalid
from enjournal.storage import StoredResource, Transaction

# With a guard, matches the caller may not read are dropped before counting; this many are
# looked at, so hidden matches cannot crowd out the visible ones.
GUARDED_LOOKAHEAD = 100


async def matches(
    tx: Transaction, type_: str, criteria: str, *, limit: int, guard=None
) -> list[StoredResource]:
    """Up to ``limit`` current resources of ``type_`` that ``criteria`` (a query string) match.

    With a ``guard``, only those the caller may read count: a conditional create, update,
    patch or delete (or a conditional reference) behaves exactly as if what the caller may
    not read did not exist, so its answer tells nothing about hidden resources."""
    from enjournal.fhir.search import parse_search

    pairs = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
    if not pairs:
        raise Invalid("conditional criteria are empty")
    fetch = limit if guard is None else max(limit, GUARDED_LOOKAHEAD)
    query = parse_search(type_, [*pairs, ("_count", str(fetch)), ("_total", "none")], strict=True)
    found = (await tx.search(query)).matches
    if guard is None:
        return found
    return [s for s in found if await guard.visible(tx, s, "conditional")][:limit]
