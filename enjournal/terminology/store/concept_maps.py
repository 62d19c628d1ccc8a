"""ConceptMaps: storing one with its groups indexed in ``tx_concept_map``, and $translate."""

from __future__ import annotations

from dataclasses import dataclass

from enjournal.terminology.store.loading import BATCH
from enjournal.terminology.store.resources import resource_id, search_resources, split_canonical


async def find_concept_map(tx, url: str, version: str | None = None) -> dict | None:
    url, version = split_canonical(url, version)
    found = await search_resources(
        tx, "ConceptMap", [("url", url)] + ([("version", version)] if version else [])
    )
    if not found:
        return None
    return max(found, key=lambda r: (r.get("version") or "", r["meta"]["lastUpdated"]))


async def save_concept_map(tx, resource: dict, id_: str | None = None) -> str:
    """Store a ConceptMap resource and index its groups in ``tx_concept_map``, so $translate
    on a large publisher map (ICPC-2 -> ICD-10) needs no JSON parsing.  Returns its id."""
    id_ = id_ or resource.get("id") or resource_id(resource.get("name") or "map", None)
    stored = await tx.update(resource, id_)
    await tx.conn.execute("DELETE FROM tx_concept_map WHERE map_id = ?", id_)
    rows = [(id_, stored.version, *m) for m in map_rows(resource)]
    for i in range(0, len(rows), BATCH):
        await tx.conn.executemany(
            "INSERT INTO tx_concept_map (map_id, map_version, source_system, source_version, "
            "target_system, target_version, source_code, source_display, target_code, "
            "target_display, equivalence, comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows[i : i + BATCH],
        )
    return id_


def map_rows(resource: dict):
    """(source system, source version, target system, target version, source code,
    source display, target code, target display, equivalence, comment) per mapping."""
    for group in resource.get("group", []):
        for element in group.get("element", []):
            targets = element.get("target") or [{"equivalence": "unmatched"}]
            for target in targets:
                yield (
                    group.get("source"),
                    group.get("sourceVersion"),
                    group.get("target"),
                    group.get("targetVersion"),
                    element.get("code"),
                    element.get("display"),
                    target.get("code"),
                    target.get("display"),
                    target.get("equivalence") or target.get("relationship") or "equivalent",
                    target.get("comment"),
                )


_NO_MATCH = ("unmatched", "disjoint")


@dataclass
class Translation:
    result: bool
    message: str | None
    matches: list[dict]  # {equivalence, system, version, code, display, source}


async def translate(
    tx,
    system: str,
    code: str,
    *,
    concept_map: dict | None = None,
    target_system: str | None = None,
) -> Translation:
    """$translate a code with one ConceptMap (``concept_map``) or every ConceptMap that maps
    from ``system`` (and to ``target_system`` when given)."""
    system, _ = split_canonical(system)
    rows: list[tuple] = []
    if concept_map is not None:
        maps = [concept_map]
    else:
        maps = await search_resources(
            tx, "ConceptMap", [("source-system", system), ("source-code", code)]
        )
    indexed = await _indexed_versions(tx.conn, [m.get("id") for m in maps if m.get("id")])
    for cmap in maps:
        url = cmap.get("url")
        version = int(cmap.get("meta", {}).get("versionId", 0) or 0)
        if cmap.get("id") and indexed.get(cmap["id"]) == version:
            found = await tx.conn.fetch(
                "SELECT source_system, source_version, target_system, target_version, "
                "source_code, source_display, target_code, target_display, equivalence, "
                "comment FROM tx_concept_map WHERE map_id = ? AND source_code = ?",
                cmap["id"],
                code,
            )
        else:
            found = [r for r in map_rows(cmap) if r[4] == code]
        rows.extend((url, *r) for r in found if split_canonical(r[0] or system)[0] == system)
    matches = []
    for url, _ss, _sv, ts, tv, _sc, _sd, tc, td, equivalence, comment in rows:
        if target_system and ts != split_canonical(target_system)[0]:
            continue
        match: dict = {"equivalence": equivalence}
        if tc:
            match["concept"] = {k: v for k, v in (("system", ts), ("version", tv),
                                                  ("code", tc), ("display", td)) if v}  # fmt: skip
        if url:
            match["source"] = url
        if comment:
            match["comment"] = comment
        matches.append(match)
    result = any(m["equivalence"] not in _NO_MATCH and "concept" in m for m in matches)
    message = None if result else f"no mapping found for {system}|{code}"
    return Translation(result, message, matches)


async def _indexed_versions(conn, ids: list[str]) -> dict[str, int]:
    if not ids:
        return {}
    rows = await conn.fetch(
        "SELECT DISTINCT map_id, map_version FROM tx_concept_map "
        f"WHERE map_id IN ({', '.join('?' for _ in ids)})",
        *ids,
    )
    return {r[0]: r[1] for r in rows}
