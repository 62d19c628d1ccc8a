"""Finding the resources that conditional interactions' criteria match (http.html#cond-update)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from enjournal.fhir.errors import Invalid
from enjournal.storage import StoredResource, Transaction


async def matches(
    tx: Transaction, type_: str, criteria: str, *, limit: int
) -> list[StoredResource]:
    """Up to ``limit`` current resources of ``type_`` that ``criteria`` (a query string) match."""
    from enjournal.fhir.search import parse_search

    pairs = parse_qsl(criteria.lstrip("?"), keep_blank_values=True)
    if not pairs:
        raise Invalid("conditional criteria are empty")
    query = parse_search(type_, [*pairs, ("_count", str(limit)), ("_total", "none")], strict=True)
    return (await tx.search(query)).matches
