"""``tx_concept_map``: the indexed groups of stored ConceptMaps, so $translate on a large
publisher map (ICPC-2 -> ICD-10) needs no JSON parsing."""

from __future__ import annotations

from enjournal.storage.terminology.loading import BATCH


async def index_concept_map(tx, map_id: str, map_version: int, rows: list[tuple]) -> None:
    """Replace the map's indexed rows: (source system, source version, target system,
    target version, source code, source display, target code, target display,
    equivalence, comment) per mapping."""
    await tx._conn.execute("DELETE FROM tx_concept_map WHERE map_id = ?", map_id)
    rows = [(map_id, map_version, *r) for r in rows]
    for i in range(0, len(rows), BATCH):
        await tx._conn.executemany(
            "INSERT INTO tx_concept_map (map_id, map_version, source_system, source_version, "
            "target_system, target_version, source_code, source_display, target_code, "
            "target_display, equivalence, comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows[i : i + BATCH],
        )


async def indexed_versions(tx, ids: list[str]) -> dict[str, int]:
    """The version of each map (by id) that is indexed."""
    if not ids:
        return {}
    rows = await tx._conn.fetch(
        "SELECT DISTINCT map_id, map_version FROM tx_concept_map "
        f"WHERE map_id IN ({', '.join('?' for _ in ids)})",
        *ids,
    )
    return {r[0]: r[1] for r in rows}


async def indexed_mappings(tx, map_id: str, code: str) -> list[tuple]:
    """The indexed rows of one map for one source code (same columns as indexed)."""
    return await tx._conn.fetch(
        "SELECT source_system, source_version, target_system, target_version, "
        "source_code, source_display, target_code, target_display, equivalence, "
        "comment FROM tx_concept_map WHERE map_id = ? AND source_code = ?",
        map_id,
        code,
    )
