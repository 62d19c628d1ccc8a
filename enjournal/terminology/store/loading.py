"""Loading a code system's concepts into the concept tables, and the CodeSystem resource
that describes it."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import orjson

from enjournal.fhir.errors import Conflict
from enjournal.fhir.text import normalize
from enjournal.terminology.model import CodeSystemDraft, Concept
from enjournal.terminology.store.code_systems import CodeSystemInfo, find_code_system
from enjournal.terminology.store.resources import resource_id
from enjournal.terminology.store.values import property_value, split_use, typed_value

BATCH = 2000  # concepts per executemany round
COMPLETE_LIMIT = 500  # code systems up to this size are stored with content "complete"
# The words indexed in tx_words; the $expand text filter splits its tokens the same way.
WORD = re.compile(r"[^\W_]+")
CONCEPT_TABLES = (
    "tx_concepts",
    "tx_designations",
    "tx_properties",
    "tx_parents",
    "tx_closure",
    "tx_words",
)


async def save_code_system(
    tx,
    draft: CodeSystemDraft,
    *,
    progress: Callable[[int], object] | None = None,
    batch_size: int = BATCH,
    resource_id: str | None = None,
    status: str = "active",
) -> CodeSystemInfo:
    """Load ``draft`` (its concepts may be a generator) into the concept tables, replacing
    the same url + version if loaded before, and store a CodeSystem resource describing it
    (``content: complete`` with the concepts for small systems, else ``not-present``).

    Runs in the caller's transaction: if the concepts raise midway, nothing is loaded.
    ``progress(n)`` is called with the number of concepts stored after each batch."""
    conn = tx.conn
    version = draft.version or ""
    now = int(time.time() * 1000)
    info = orjson.dumps(
        {
            "properties": draft.properties,
            "publisher": draft.publisher,
            "language": draft.language,
            "content": draft.content,
        }
    ).decode()
    old = await conn.fetchrow(
        "SELECT id, resource_id FROM tx_code_systems WHERE url = ? AND version = ?",
        draft.url,
        version,
    )
    if old is not None:
        cs = old[0]
        resource_id = resource_id or old[1]
        for table in CONCEPT_TABLES:
            await conn.execute(f"DELETE FROM {table} WHERE cs = ?", cs)
        await conn.execute(
            "UPDATE tx_code_systems SET name = ?, title = ?, status = ?, loaded = ?, "
            "hierarchy_meaning = ?, info = ? WHERE id = ?",
            draft.name,
            draft.title,
            status,
            now,
            draft.hierarchy_meaning,
            info,
            cs,
        )
    else:
        row = await conn.fetchrow(
            "INSERT INTO tx_code_systems (url, version, name, title, status, loaded, "
            "hierarchy_meaning, info) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            draft.url,
            version,
            draft.name,
            draft.title,
            status,
            now,
            draft.hierarchy_meaning,
            info,
        )
        cs = row[0]

    count = 0
    kept: list[Concept] | None = []  # the concepts, while few enough for content complete
    rows: dict[str, list[tuple]] = {t: [] for t in CONCEPT_TABLES}

    async def flush() -> None:
        for table, columns in _LOAD_COLUMNS.items():
            await _insert_many(conn, table, columns, rows[table])
            rows[table].clear()

    for concept in draft.concepts:
        count += 1
        code = concept.code
        norm = normalize(concept.display) if concept.display else None
        rows["tx_concepts"].append((cs, code, concept.display, norm, bool(concept.inactive)))
        words = {normalize(code)}
        if norm:
            words.update(WORD.findall(norm))
        for d in concept.designations:
            dnorm = normalize(d.value)
            use_system, use_code = split_use(d.use)
            rows["tx_designations"].append(
                (cs, code, d.language, use_system, use_code, d.value, dnorm)
            )
            words.update(WORD.findall(dnorm))
        for prop, values in concept.properties.items():
            for value in values:
                text, type_ = property_value(value)
                rows["tx_properties"].append((cs, code, prop, text, type_))
        for parent in dict.fromkeys(concept.parents):
            rows["tx_parents"].append((cs, code, parent))
        rows["tx_words"].extend((cs, w, code) for w in words)
        if kept is not None:
            kept.append(concept)
            if len(kept) > COMPLETE_LIMIT:
                kept = None
        if len(rows["tx_concepts"]) >= batch_size:
            await flush()
            if progress is not None:
                progress(count)
    await flush()

    # The transitive closure: each concept is its own ancestor, then follow parents.
    await conn.execute(
        "INSERT INTO tx_closure (cs, ancestor, descendant) "
        "SELECT cs, code, code FROM tx_concepts WHERE cs = ?",
        cs,
    )
    await conn.execute(
        "INSERT INTO tx_closure (cs, ancestor, descendant) "
        "WITH RECURSIVE anc (cs, descendant, ancestor) AS ("
        " SELECT cs, child, parent FROM tx_parents WHERE cs = ?"
        " UNION"
        " SELECT anc.cs, anc.descendant, p.parent FROM anc"
        " JOIN tx_parents p ON p.cs = anc.cs AND p.child = anc.ancestor)"
        " SELECT cs, ancestor, descendant FROM anc WHERE ancestor <> descendant",
        cs,
    )

    resource_id = resource_id or await _free_resource_id(tx, draft)
    resource = _code_system_resource(draft, status, count, kept)
    await tx.update(resource, resource_id)
    await conn.execute(
        "UPDATE tx_code_systems SET concept_count = ?, resource_id = ? WHERE id = ?",
        count,
        resource_id,
        cs,
    )
    if conn.dialect == "postgres" and count >= 1000:
        # Fresh statistics, so the planner drives filtered queries from the word index.
        for table in CONCEPT_TABLES:
            await conn.execute(f"ANALYZE {table}")
    if progress is not None:
        progress(count)
    return await find_code_system(conn, draft.url, version or None)  # type: ignore[return-value]


_LOAD_COLUMNS = {
    "tx_concepts": ("cs", "code", "display", "norm", "inactive"),
    "tx_designations": ("cs", "code", "language", "use_system", "use_code", "value", "norm"),
    "tx_properties": ("cs", "code", "property", "value", "type"),
    "tx_parents": ("cs", "child", "parent"),
    "tx_words": ("cs", "word", "code"),
}


async def _insert_many(conn, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """executemany, or COPY on PostgreSQL (several times faster for a large release)."""
    if not rows:
        return
    raw = getattr(conn, "raw", None)
    if conn.dialect == "postgres" and hasattr(raw, "copy_records_to_table"):
        import asyncpg

        try:
            await raw.copy_records_to_table(table, records=rows, columns=columns)
        except asyncpg.UniqueViolationError as error:
            raise Conflict(f"conflicting write: {error}") from error
        return
    marks = ", ".join("?" for _ in columns)
    await conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


async def _free_resource_id(tx, draft: CodeSystemDraft) -> str:
    """An id derived from name and version, unless another code system's resource has it."""
    base = resource_id(draft.name or "codesystem", draft.version)
    candidate = base
    for n in range(2, 100):
        if not await tx.exists("CodeSystem", candidate):
            return candidate
        stored = await tx.read("CodeSystem", candidate)
        if orjson.loads(stored.content).get("url") == draft.url:
            return candidate
        candidate = f"{base[:60]}-{n}"
    return uuid.uuid4().hex


def _code_system_resource(
    draft: CodeSystemDraft, status: str, count: int, concepts: list[Concept] | None
) -> dict:
    resource: dict = {"resourceType": "CodeSystem", "url": draft.url}
    if draft.version:
        resource["version"] = draft.version
    resource["name"] = re.sub(r"\W", "", draft.name or "") or "CodeSystem"
    if draft.title:
        resource["title"] = draft.title
    resource["status"] = status
    if draft.publisher:
        resource["publisher"] = draft.publisher
    if draft.copyright:
        resource["copyright"] = draft.copyright
    if draft.language:
        resource["language"] = draft.language
    if draft.hierarchy_meaning:
        resource["hierarchyMeaning"] = draft.hierarchy_meaning
    if draft.content == "fragment":
        resource["content"] = "fragment"
    else:
        resource["content"] = "complete" if concepts is not None else "not-present"
    resource["count"] = count
    props = [{"code": c, "type": t} for c, t in draft.properties]
    if concepts and any(c.parents for c in concepts) and "parent" not in dict(draft.properties):
        props.append({"code": "parent", "type": "code"})
    if props:
        resource["property"] = props
    if concepts:
        resource["concept"] = [_concept_json(c) for c in concepts]
    return resource


def _concept_json(concept: Concept) -> dict:
    out: dict = {"code": concept.code}
    if concept.display:
        out["display"] = concept.display
    designations = []
    for d in concept.designations:
        entry: dict = {"value": d.value}
        if d.language:
            entry["language"] = d.language
        use_system, use_code = split_use(d.use)
        if use_code:
            entry["use"] = (
                {"system": use_system, "code": use_code} if use_system else {"code": use_code}
            )
        designations.append(entry)
    if designations:
        out["designation"] = designations
    props = []
    for prop, values in concept.properties.items():
        for value in values:
            text, type_ = property_value(value)
            key, typed = typed_value(text, type_)
            props.append({"code": prop, key: typed})
    props.extend({"code": "parent", "valueCode": p} for p in concept.parents)
    if concept.inactive:
        props.append({"code": "inactive", "valueBoolean": True})
    if props:
        out["property"] = props
    return out
