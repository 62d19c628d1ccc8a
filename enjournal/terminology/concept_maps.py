"""ConceptMaps: storing one with its groups indexed in ``tx_concept_map``, and $translate."""

from __future__ import annotations

from dataclasses import dataclass

from enjournal.storage.terminology import concept_maps as index
from enjournal.terminology.resources import resource_id, search_resources, split_canonical


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
    await index.index_concept_map(tx, id_, stored.version, list(map_rows(resource)))
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
    indexed = await index.indexed_versions(tx, [m.get("id") for m in maps if m.get("id")])
    for cmap in maps:
        url = cmap.get("url")
        version = int(cmap.get("meta", {}).get("versionId", 0) or 0)
        if cmap.get("id") and indexed.get(cmap["id"]) == version:
            found = await index.indexed_mappings(tx, cmap["id"], code)
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
