"""The loaded code systems: one ``tx_code_systems`` row per url + version.

The memory store (``storage.memory``) has no terminology tables and holds no code systems
(loading one there is NotSupported): on it these questions answer "none", so the write
check still checks UCUM units and lets codes of systems it does not hold pass, and the
terminology operations answer that the code system is not known."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from enjournal.fhir.errors import NotFound
from enjournal.terminology.resources import split_canonical


@dataclass
class CodeSystemInfo:
    id: int
    url: str
    version: str | None
    name: str | None
    title: str | None
    status: str | None
    resource_id: str | None
    concept_count: int
    loaded: int  # epoch ms
    hierarchy_meaning: str | None = None
    properties: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, row: tuple) -> CodeSystemInfo:
        info = orjson.loads(row[10]) if row[10] else {}
        return cls(
            row[0],
            row[1],
            row[2] or None,
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            row[8],
            row[9],
            [tuple(p) for p in info.get("properties", [])],
        )


_CS_COLUMNS = (
    "id, url, version, name, title, status, resource_id, concept_count, loaded, "
    "hierarchy_meaning, info"
)


async def find_code_system(tx, url: str, version: str | None = None) -> CodeSystemInfo | None:
    """The loaded code system with this url (``url|version`` allowed) and version; the most
    recently loaded version when ``version`` is None."""
    url, version = split_canonical(url, version)
    if _holds_none(tx):
        return None
    if version is not None:
        row = await tx._conn.fetchrow(
            f"SELECT {_CS_COLUMNS} FROM tx_code_systems WHERE url = ? AND version = ?",
            url,
            version,
        )
    else:
        row = await tx._conn.fetchrow(
            f"SELECT {_CS_COLUMNS} FROM tx_code_systems WHERE url = ? "
            "ORDER BY loaded DESC, id DESC LIMIT 1",
            url,
        )
    return None if row is None else CodeSystemInfo.of(row)


async def code_systems(tx) -> list[CodeSystemInfo]:
    if _holds_none(tx):
        return []
    rows = await tx._conn.fetch(f"SELECT {_CS_COLUMNS} FROM tx_code_systems ORDER BY url, loaded")
    return [CodeSystemInfo.of(r) for r in rows]


async def require_code_system(tx, url: str, version: str | None = None) -> CodeSystemInfo:
    info = await find_code_system(tx, url, version)
    if info is None:
        url, version = split_canonical(url, version)
        which = f"{url} version {version}" if version else url
        raise NotFound(f"the code system {which} is not known to this server")
    return info


def system_label(info: CodeSystemInfo) -> str:
    return f"{info.url} version {info.version}" if info.version else info.url


async def held_urls(tx) -> set[str]:
    """The urls of every loaded code system, in any version."""
    if _holds_none(tx):
        return set()
    return {row[0] for row in await tx._conn.fetch("SELECT DISTINCT url FROM tx_code_systems")}


async def code_system_keys(tx) -> list[tuple[int, str, str | None, str]]:
    """(id, url, version or None, info JSON text) of every loaded code system, oldest load
    first: what the write check needs to pick a system and tell fragments."""
    if _holds_none(tx):
        return []
    rows = await tx._conn.fetch(
        "SELECT id, url, version, info FROM tx_code_systems ORDER BY loaded, id"
    )
    out = []
    for id_, url, version, info in rows:
        text = info.decode() if isinstance(info, bytes) else info or ""
        out.append((id_, url, version or None, text))
    return out


def _holds_none(tx) -> bool:
    """Whether ``tx`` is the memory store's, which has no terminology tables."""
    return tx._conn.dialect == "memory"
