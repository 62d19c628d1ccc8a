"""Writing a code system's concepts into the concept tables (``tx_concepts``,
``tx_designations``, ``tx_properties``, ``tx_parents``, ``tx_words``), its transitive
closure (``tx_closure``) and its ``tx_code_systems`` row.

``enjournal.terminology.loading.save_code_system`` drives these in order: open the row,
add concepts in batches, build the closure, finish the row.
"""

from __future__ import annotations

import re
import time

import orjson

from enjournal.fhir.errors import Conflict
from enjournal.fhir.text import normalize
from enjournal.terminology.model import CodeSystemDraft, Concept
from enjournal.terminology.values import property_value, split_use

BATCH = 2000  # concepts per executemany round
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
_LOAD_COLUMNS = {
    "tx_concepts": ("cs", "code", "display", "norm", "inactive"),
    "tx_designations": ("cs", "code", "language", "use_system", "use_code", "value", "norm"),
    "tx_properties": ("cs", "code", "property", "value", "type"),
    "tx_parents": ("cs", "child", "parent"),
    "tx_words": ("cs", "word", "code"),
}


async def open_code_system(tx, draft: CodeSystemDraft, status: str) -> tuple[int, str | None]:
    """The ``tx_code_systems`` row for the draft's url + version, emptied of its concepts if
    loaded before, else new: (its id, the id of its CodeSystem resource if it had one)."""
    conn = tx._conn
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
        return cs, old[1]
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
    return row[0], None


class ConceptRows:
    """The rows of one code system's concepts, written a batch at a time."""

    def __init__(self, tx, cs: int):
        self.tx = tx
        self.cs = cs
        self.rows: dict[str, list[tuple]] = {t: [] for t in _LOAD_COLUMNS}

    @property
    def pending(self) -> int:
        """Concepts added since the last flush."""
        return len(self.rows["tx_concepts"])

    def add(self, concept: Concept) -> None:
        cs, code, rows = self.cs, concept.code, self.rows
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

    async def flush(self) -> None:
        for table, columns in _LOAD_COLUMNS.items():
            await _insert_many(self.tx._conn, table, columns, self.rows[table])
            self.rows[table].clear()


async def build_closure(tx, cs: int) -> None:
    """The transitive closure: each concept is its own ancestor, then follow parents."""
    await tx._conn.execute(
        "INSERT INTO tx_closure (cs, ancestor, descendant) "
        "SELECT cs, code, code FROM tx_concepts WHERE cs = ?",
        cs,
    )
    await tx._conn.execute(
        "INSERT INTO tx_closure (cs, ancestor, descendant) "
        "WITH RECURSIVE anc (cs, descendant, ancestor) AS ("
        " SELECT cs, child, parent FROM tx_parents WHERE cs = ?"
        " UNION"
        " SELECT anc.cs, anc.descendant, p.parent FROM anc"
        " JOIN tx_parents p ON p.cs = anc.cs AND p.child = anc.ancestor)"
        " SELECT cs, ancestor, descendant FROM anc WHERE ancestor <> descendant",
        cs,
    )


async def finish_code_system(tx, cs: int, count: int, resource_id: str) -> None:
    """Record the concept count and the CodeSystem resource's id."""
    conn = tx._conn
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
