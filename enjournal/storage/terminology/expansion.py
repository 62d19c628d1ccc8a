"""The queries behind $expand and $validate-code against a value set, over a compose
compiled by ``compose.Compiler`` (``sql`` yielding (cs, code), with its ``args``)."""

from __future__ import annotations


async def filtered_page(
    tx, sql: str, args: list, limit: int, offset: int
) -> tuple[list[tuple], int | None]:
    """A page of (cs, code, display, inactive) and the total, in one statement: filtered,
    the compose yields few rows, so join from them.  The total is None when the page is
    past the end (count with :func:`count` then)."""
    found = await tx._conn.fetch(
        "SELECT c.cs, c.code, c.display, c.inactive, count(*) OVER () "
        f"FROM ({sql}) v JOIN tx_concepts c ON c.cs = v.cs AND c.code = v.code "
        "ORDER BY c.cs, c.code LIMIT ? OFFSET ?",
        *args,
        limit,
        offset,
    )
    if not found:
        return [], None
    return [r[:4] for r in found], int(found[0][4])


async def count(tx, sql: str, args: list) -> int:
    return int((await tx._conn.fetchrow(f"SELECT count(*) FROM ({sql}) v", *args))[0])


async def ordered_page(tx, sql: str, args: list, limit: int, offset: int) -> list[tuple]:
    """A page of (cs, code, display, inactive): unfiltered, walk the concepts in code order
    and stop after the page."""
    return await tx._conn.fetch(
        "SELECT c.cs, c.code, c.display, c.inactive FROM tx_concepts c "
        f"WHERE (c.cs, c.code) IN ({sql}) ORDER BY c.cs, c.code LIMIT ? OFFSET ?",
        *args,
        limit,
        offset,
    )


async def designations(tx, keys: list[tuple[int, str]]) -> dict[tuple[int, str], list[tuple]]:
    """(language, use system, use code, value) of each (cs, code)'s designations."""
    out: dict[tuple[int, str], list[tuple]] = {}
    by_cs: dict[int, list[str]] = {}
    for cs, code in keys:
        by_cs.setdefault(cs, []).append(code)
    for cs, codes in by_cs.items():
        for i in range(0, len(codes), 500):
            chunk = codes[i : i + 500]
            rows = await tx._conn.fetch(
                "SELECT code, language, use_system, use_code, value FROM tx_designations "
                f"WHERE cs = ? AND code IN ({', '.join('?' for _ in chunk)})",
                cs,
                *chunk,
            )
            for code, *rest in rows:
                out.setdefault((cs, code), []).append(tuple(rest))
    return out


async def proper_ancestors(tx, cs: int, codes: list[str]) -> list[tuple[str, str]]:
    """(ancestor, descendant) of every proper ancestor of ``codes`` in the code system."""
    pairs: list[tuple[str, str]] = []
    for i in range(0, len(codes), 400):
        chunk = codes[i : i + 400]
        marks = ", ".join("?" for _ in chunk)
        found = await tx._conn.fetch(
            "SELECT ancestor, descendant FROM tx_closure WHERE cs = ? "
            f"AND descendant IN ({marks}) AND ancestor <> descendant",
            cs,
            *chunk,
        )
        pairs.extend((a, d) for a, d in found)
    return pairs


async def display_in(tx, cs: int, code: str, sql: str, args: list) -> tuple | None:
    """(display,) of the concept if (cs, code) is in the compose, else None."""
    return await tx._conn.fetchrow(
        "SELECT c.display FROM tx_concepts c WHERE c.cs = ? AND c.code = ? "
        f"AND (c.cs, c.code) IN ({sql})",
        cs,
        code,
        *args,
    )
