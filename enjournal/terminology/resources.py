"""Canonical urls, and the terminology resources (ValueSet, ConceptMap, CodeSystem) in the
resource store."""

from __future__ import annotations

import re
import uuid

import orjson


def split_canonical(url: str, version: str | None = None) -> tuple[str, str | None]:
    """``http://x|2019`` -> (``http://x``, ``2019``); an explicit ``version`` wins."""
    base, bar, ver = url.partition("|")
    return base, (version or (ver if bar else None)) or None


async def search_resources(tx, type_: str, params: list[tuple[str, str]]) -> list[dict]:
    from enjournal.fhir.search.parse import parse_search

    params = [*params, ("_count", "100")]
    result = await tx.search(parse_search(type_, params, parameters=tx.search_parameters))
    return [orjson.loads(m.content) for m in result.matches if m.content]


def resource_id(name: str, version: str | None) -> str:
    text = f"{name}-{version}" if version else name
    return re.sub(r"[^A-Za-z0-9\-.]+", "-", text).strip("-.")[:64] or uuid.uuid4().hex
