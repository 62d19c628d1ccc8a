"""The terminology store: concept tables in the main database and the queries behind the
FHIR terminology operations (http://hl7.org/fhir/R4/terminology-service.html).

Tables (Migration 3, ``enjournal.storage.schema``): ``tx_code_systems`` (one row per loaded
url + version), ``tx_concepts``, ``tx_designations``, ``tx_properties``, ``tx_parents``,
``tx_closure`` (every ancestor/descendant pair, self included), ``tx_words`` (normalised
words of displays and designations, and the normalised code, for the $expand text filter)
and ``tx_concept_map`` (indexed groups of large ConceptMaps).

Everything runs on the caller's transaction (``tx`` a ``Transaction``, ``conn`` its
``tx.conn``): a load that fails half-way leaves nothing behind.

ValueSets and ConceptMaps are ordinary FHIR resources: the operations read them by id or
url through the resource store, so a ValueSet PUT through the API is usable at once.  A
ValueSet's ``compose`` becomes one SQL statement (includes UNION-ed, excludes EXCEPT-ed),
evaluated in the database, so an is-a filter over SNOMED CT never loads the hierarchy.

Text filter semantics ($expand ``filter``): the filter is normalised (case and accents
folded, see ``enjournal.fhir.text.normalize``) and split on whitespace; a concept matches
when every token is a prefix of a word of its display or of one of its designations, or of
its code ("dia mel" matches "Diabetes mellitus"; "e11" matches E11 and E11.9).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from enjournal.fhir.errors import Conflict, Invalid, NotFound, Unprocessable
from enjournal.fhir.text import normalize
from enjournal.terminology.model import CodeSystemDraft, Concept, Designation

BATCH = 2000  # concepts per executemany round
COMPLETE_LIMIT = 500  # code systems up to this size are stored with content "complete"
MAX_EXPANSION = 10_000  # an expansion without count larger than this is refused
_TOP = "\U0010ffff"  # the largest code point: word < prefix + _TOP is a prefix range
_WORD = re.compile(r"[^\W_]+")


class TooCostly(Unprocessable):
    code = "too-costly"


# ---- code systems ------------------------------------------------------------------------


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
_CONCEPT_TABLES = (
    "tx_concepts",
    "tx_designations",
    "tx_properties",
    "tx_parents",
    "tx_closure",
    "tx_words",
)


def split_canonical(url: str, version: str | None = None) -> tuple[str, str | None]:
    """``http://x|2019`` -> (``http://x``, ``2019``); an explicit ``version`` wins."""
    base, bar, ver = url.partition("|")
    return base, (version or (ver if bar else None)) or None


async def find_code_system(conn, url: str, version: str | None = None) -> CodeSystemInfo | None:
    """The loaded code system with this url (``url|version`` allowed) and version; the most
    recently loaded version when ``version`` is None."""
    url, version = split_canonical(url, version)
    if version is not None:
        row = await conn.fetchrow(
            f"SELECT {_CS_COLUMNS} FROM tx_code_systems WHERE url = ? AND version = ?",
            url,
            version,
        )
    else:
        row = await conn.fetchrow(
            f"SELECT {_CS_COLUMNS} FROM tx_code_systems WHERE url = ? "
            "ORDER BY loaded DESC, id DESC LIMIT 1",
            url,
        )
    return None if row is None else CodeSystemInfo.of(row)


async def code_systems(conn) -> list[CodeSystemInfo]:
    rows = await conn.fetch(f"SELECT {_CS_COLUMNS} FROM tx_code_systems ORDER BY url, loaded")
    return [CodeSystemInfo.of(r) for r in rows]


async def require_code_system(conn, url: str, version: str | None = None) -> CodeSystemInfo:
    info = await find_code_system(conn, url, version)
    if info is None:
        url, version = split_canonical(url, version)
        which = f"{url} version {version}" if version else url
        raise NotFound(f"the code system {which} is not known to this server")
    return info


def _resource_id(name: str, version: str | None) -> str:
    text = f"{name}-{version}" if version else name
    return re.sub(r"[^A-Za-z0-9\-.]+", "-", text).strip("-.")[:64] or uuid.uuid4().hex


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
        for table in _CONCEPT_TABLES:
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
    rows: dict[str, list[tuple]] = {t: [] for t in _CONCEPT_TABLES}

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
            words.update(_WORD.findall(norm))
        for d in concept.designations:
            dnorm = normalize(d.value)
            use_system, use_code = _split_use(d.use)
            rows["tx_designations"].append(
                (cs, code, d.language, use_system, use_code, d.value, dnorm)
            )
            words.update(_WORD.findall(dnorm))
        for prop, values in concept.properties.items():
            for value in values:
                text, type_ = _property_value(value)
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
        for table in _CONCEPT_TABLES:
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
    base = _resource_id(draft.name or "codesystem", draft.version)
    candidate = base
    for n in range(2, 100):
        if not await tx.exists("CodeSystem", candidate):
            return candidate
        stored = await tx.read("CodeSystem", candidate)
        if orjson.loads(stored.content).get("url") == draft.url:
            return candidate
        candidate = f"{base[:60]}-{n}"
    return uuid.uuid4().hex


def _split_use(use: str | None) -> tuple[str | None, str | None]:
    if not use:
        return None, None
    system, bar, code = use.rpartition("|")
    if bar:
        return system, code
    if use.isdigit():
        return "http://snomed.info/sct", use
    return None, use


def _property_value(value: object) -> tuple[str, str]:
    if isinstance(value, bool):
        return ("true" if value else "false"), "boolean"
    if isinstance(value, int):
        return str(value), "integer"
    if isinstance(value, float):
        return repr(value), "decimal"
    return str(value), "code"


def _typed_value(text: str | None, type_: str) -> tuple[str, object]:
    """A stored property value as a FHIR Parameters ``valueX``."""
    if type_ == "boolean":
        return "valueBoolean", text == "true"
    if type_ == "integer":
        return "valueInteger", int(text or 0)
    if type_ == "decimal":
        return "valueDecimal", float(text or 0)
    if type_ == "string":
        return "valueString", text
    if type_ == "Coding":
        return "valueCoding", {"code": text}
    return "valueCode", text


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
        use_system, use_code = _split_use(d.use)
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
            text, type_ = _property_value(value)
            key, typed = _typed_value(text, type_)
            props.append({"code": prop, key: typed})
    props.extend({"code": "parent", "valueCode": p} for p in concept.parents)
    if concept.inactive:
        props.append({"code": "inactive", "valueBoolean": True})
    if props:
        out["property"] = props
    return out


# ---- lookup, validate-code, subsumes ------------------------------------------------------


@dataclass
class LookupResult:
    system: CodeSystemInfo
    code: str
    display: str | None
    inactive: bool
    designations: list[Designation]
    properties: list[tuple[str, str | None, str]]  # (property, value text, type)
    parents: list[str]
    children: list[str]


async def code_exists(conn, system_url: str, code: str, version: str | None = None) -> bool | None:
    """Whether ``code`` is in the code system; None when the code system is not loaded."""
    info = await find_code_system(conn, system_url, version)
    if info is None:
        return None
    row = await conn.fetchrow("SELECT 1 FROM tx_concepts WHERE cs = ? AND code = ?", info.id, code)
    return row is not None


async def lookup(
    conn, system_url: str, code: str, version: str | None = None
) -> LookupResult | None:
    """Everything known about one code; None if the code is not in the (known) system.
    NotFound if the code system is not loaded."""
    info = await require_code_system(conn, system_url, version)
    row = await conn.fetchrow(
        "SELECT display, inactive FROM tx_concepts WHERE cs = ? AND code = ?", info.id, code
    )
    if row is None:
        return None
    designations = [
        Designation(r[3], r[0], f"{r[1]}|{r[2]}" if r[1] else r[2])
        for r in await conn.fetch(
            "SELECT language, use_system, use_code, value FROM tx_designations "
            "WHERE cs = ? AND code = ?",
            info.id,
            code,
        )
    ]
    properties = [
        (r[0], r[1], r[2])
        for r in await conn.fetch(
            "SELECT property, value, type FROM tx_properties WHERE cs = ? AND code = ?",
            info.id,
            code,
        )
    ]
    parents = [
        r[0]
        for r in await conn.fetch(
            "SELECT parent FROM tx_parents WHERE cs = ? AND child = ? ORDER BY parent",
            info.id,
            code,
        )
    ]
    children = [
        r[0]
        for r in await conn.fetch(
            "SELECT child FROM tx_parents WHERE cs = ? AND parent = ? ORDER BY child",
            info.id,
            code,
        )
    ]
    return LookupResult(
        info, code, row[0], bool(row[1]), designations, properties, parents, children
    )


@dataclass
class Validation:
    result: bool
    message: str | None = None
    display: str | None = None
    system: str | None = None
    version: str | None = None
    code: str | None = None


async def _display_ok(conn, cs: int, code: str, display: str, preferred: str | None) -> bool:
    if preferred is not None and normalize(preferred) == normalize(display):
        return True
    row = await conn.fetchrow(
        "SELECT 1 FROM tx_designations WHERE cs = ? AND code = ? AND norm = ?",
        cs,
        code,
        normalize(display),
    )
    return row is not None


async def validate_code(
    conn, system_url: str, code: str, version: str | None = None, display: str | None = None
) -> Validation:
    """$validate-code against a code system: is ``code`` in it (and is ``display`` one of its
    displays or designations, case and accents aside)?  NotFound if the system is unknown."""
    info = await require_code_system(conn, system_url, version)
    row = await conn.fetchrow(
        "SELECT display, inactive FROM tx_concepts WHERE cs = ? AND code = ?", info.id, code
    )
    if row is None:
        return Validation(
            False,
            f"the code {code!r} is not in the code system {_label(info)}",
            system=info.url,
            version=info.version,
            code=code,
        )
    return await _check_display(conn, info, code, row[0], display)


async def _check_display(
    conn, info: CodeSystemInfo, code: str, preferred: str | None, display: str | None
) -> Validation:
    if display and not await _display_ok(conn, info.id, code, display, preferred):
        return Validation(
            False,
            f"the display {display!r} is not a display of {code!r} in {_label(info)}; "
            f"the display is {preferred!r}",
            preferred,
            info.url,
            info.version,
            code,
        )
    return Validation(True, None, preferred, info.url, info.version, code)


def _label(info: CodeSystemInfo) -> str:
    return f"{info.url} version {info.version}" if info.version else info.url


async def subsumes(
    conn, system_url: str, code_a: str, code_b: str, version: str | None = None
) -> str:
    """equivalent | subsumes (a is an ancestor of b) | subsumed-by | not-subsumed."""
    info = await require_code_system(conn, system_url, version)
    for code in dict.fromkeys((code_a, code_b)):
        if (
            await conn.fetchrow(
                "SELECT 1 FROM tx_concepts WHERE cs = ? AND code = ?", info.id, code
            )
            is None
        ):
            raise Invalid(f"the code {code!r} is not in the code system {_label(info)}")
    if code_a == code_b:
        return "equivalent"
    if await conn.fetchrow(
        "SELECT 1 FROM tx_closure WHERE cs = ? AND ancestor = ? AND descendant = ?",
        info.id,
        code_a,
        code_b,
    ):
        return "subsumes"
    if await conn.fetchrow(
        "SELECT 1 FROM tx_closure WHERE cs = ? AND ancestor = ? AND descendant = ?",
        info.id,
        code_b,
        code_a,
    ):
        return "subsumed-by"
    return "not-subsumed"


# ---- value sets ---------------------------------------------------------------------------


async def find_value_set(tx, url: str, version: str | None = None) -> dict | None:
    """A ValueSet by canonical url (``url|version`` allowed): a stored ValueSet resource, or
    an implicit one (``{system}?fhir_vs``, ``?fhir_vs=isa/CODE``)."""
    url, version = split_canonical(url, version)
    base, q, query = url.partition("?")
    if q and query.startswith("fhir_vs"):
        include: dict = {"system": base}
        if query.startswith("fhir_vs=isa/"):
            code = query.removeprefix("fhir_vs=isa/")
            include["filter"] = [{"property": "concept", "op": "is-a", "value": code}]
        elif query != "fhir_vs":
            raise Invalid(f"unsupported implicit value set {url!r}")
        if version:
            include["version"] = version
        return {"resourceType": "ValueSet", "url": url, "status": "active",
                "compose": {"include": [include]}}  # fmt: skip
    found = await _search(
        tx, "ValueSet", [("url", url)] + ([("version", version)] if version else [])
    )
    if not found:
        return None
    return max(found, key=lambda r: (r.get("version") or "", r["meta"]["lastUpdated"]))


async def _search(tx, type_: str, params: list[tuple[str, str]]) -> list[dict]:
    from enjournal.fhir.search.parse import parse_search

    result = await tx.search(parse_search(type_, [*params, ("_count", "100")]))
    return [orjson.loads(m.content) for m in result.matches if m.content]


@dataclass
class _Sql:
    """A compose being compiled: SQL returning (cs, code) rows, and its arguments."""

    sql: str
    args: list
    systems: dict[int, CodeSystemInfo]


class _Compiler:
    def __init__(self, tx, *, filter_text: str | None, active_only: bool, code: str | None):
        self.tx = tx
        self.conn = tx.conn
        self.systems: dict[int, CodeSystemInfo] = {}
        self.tokens = _filter_tokens(filter_text) if filter_text else []
        self.active_only = active_only
        self.code = code  # restrict every leaf to this code ($validate-code)
        self.depth = 0
        if self.conn.dialect == "sqlite":
            _sqlite_regexp(self.conn)

    async def compose(self, vs: dict) -> tuple[str, list]:
        compose = vs.get("compose")
        if not isinstance(compose, dict) or not compose.get("include"):
            raise Invalid(f"the value set {vs.get('url') or vs.get('id')} has no compose.include")
        self.depth += 1
        if self.depth > 8:
            raise Invalid("value sets nest too deeply (or include each other)")
        sql, args = [], []
        for inc in compose["include"]:
            s, a = await self.include(inc)
            sql.append(s)
            args.extend(a)
        text = " UNION ".join(sql)
        for exc in compose.get("exclude", []):
            s, a = await self.include(exc)
            text += " EXCEPT " + s
            args.extend(a)
        self.depth -= 1
        return text, args

    async def include(self, inc: dict) -> tuple[str, list]:
        value_sets = inc.get("valueSet") or []
        nested = []
        for url in value_sets:
            vs = await find_value_set(self.tx, url)
            if vs is None:
                raise NotFound(f"the value set {url} is not known to this server")
            nested.append(await self.compose(vs))
        system = inc.get("system")
        if system is None:
            if not nested:
                raise Invalid("a compose include needs a system or a valueSet")
            parts = [f"SELECT cs, code FROM ({s}) v{i}" for i, (s, _) in enumerate(nested)]
            return " INTERSECT ".join(parts), [a for _, args in nested for a in args]
        info = await require_code_system(self.conn, system, inc.get("version"))
        self.systems[info.id] = info
        where, args = ["cs = ?"], [info.id]
        concepts = inc.get("concept")
        if concepts:
            codes = [c["code"] for c in concepts if isinstance(c, dict) and c.get("code")]
            where.append(f"code IN ({', '.join('?' for _ in codes)})")
            args.extend(codes)
        for f in inc.get("filter") or []:
            self.filter(info, f, where, args)
        if self.code is not None:
            where.append("code = ?")
            args.append(self.code)
        if self.active_only:
            where.append("inactive = ?")
            args.append(False)
        if self.tokens:
            self.text(info, where, args)
        sql = f"SELECT cs, code FROM tx_concepts WHERE {' AND '.join(where)}"
        for i, (s, a) in enumerate(nested):
            sql += f" AND (cs, code) IN (SELECT cs, code FROM ({s}) n{i})"
            args.extend(a)
        return sql, args

    def text(self, info: CodeSystemInfo, where: list, args: list) -> None:
        """Every token a prefix of one of the concept's words (or of its code); a token
        with punctuation ("type-2") also matches when each of its pieces does.  One set of
        codes (INTERSECT of the tokens' word ranges), so the database drives from it."""
        words = "SELECT code FROM tx_words WHERE cs = ? AND word >= ? AND word < ?"
        sets = []
        for token in self.tokens:
            pieces = _WORD.findall(token)
            args.extend((info.id, token, token + _TOP))
            if pieces and pieces != [token]:
                every = " INTERSECT ".join(words for _ in pieces)
                sets.append(f"SELECT code FROM ({words} UNION SELECT code FROM ({every}) p) t")
                for piece in pieces:
                    args.extend((info.id, piece, piece + _TOP))
            else:
                sets.append(words)
        where.append(f"code IN ({' INTERSECT '.join(sets)})")

    def filter(self, info: CodeSystemInfo, f: dict, where: list, args: list) -> None:
        prop, op, value = f.get("property"), f.get("op"), f.get("value")
        if not prop or not op or value is None:
            raise Invalid("a value set filter needs property, op and value")
        cs = info.id
        closure_down = "code IN (SELECT descendant FROM tx_closure WHERE cs = ? AND ancestor = ?)"
        if op in ("is-a", "descendent-of", "is-not-a", "generalizes"):
            if op == "generalizes":
                where.append(
                    "code IN (SELECT ancestor FROM tx_closure WHERE cs = ? AND descendant = ?)"
                )
            else:
                where.append(("NOT " if op == "is-not-a" else "") + closure_down)
            args.extend((cs, value))
            if op == "descendent-of":
                where.append("code <> ?")
                args.append(value)
            return
        if op in ("=", "in", "not-in"):
            values = [value] if op == "=" else [v.strip() for v in value.split(",") if v.strip()]
            marks = ", ".join("?" for _ in values)
            negate = "NOT " if op == "not-in" else ""
            if prop == "code":
                where.append(f"code {negate}IN ({marks})")
                args.extend(values)
            elif prop == "display":
                where.append(f"display {negate}IN ({marks})")
                args.extend(values)
            elif prop == "inactive":
                where.append("inactive = ?")
                args.append(value.lower() == "true")
            elif prop == "parent":
                where.append(
                    f"code {negate}IN (SELECT child FROM tx_parents WHERE cs = ? "
                    f"AND parent IN ({marks}))"
                )
                args.extend((cs, *values))
            elif prop == "child":
                where.append(
                    f"code {negate}IN (SELECT parent FROM tx_parents WHERE cs = ? "
                    f"AND child IN ({marks}))"
                )
                args.extend((cs, *values))
            else:
                where.append(
                    f"code {negate}IN (SELECT code FROM tx_properties WHERE cs = ? "
                    f"AND property = ? AND value IN ({marks}))"
                )
                args.extend((cs, prop, *values))
            return
        if op == "regex":
            try:
                re.compile(value)
            except re.error as error:
                raise Invalid(f"bad regex {value!r} in a value set filter: {error}") from None
            match = "REGEXP ?" if self.conn.dialect == "sqlite" else "~ ?"
            pattern = f"^(?:{value})$"
            if prop in ("code", "display"):
                where.append(f"{prop} {match}")
                args.append(pattern)
            else:
                where.append(
                    "code IN (SELECT code FROM tx_properties WHERE cs = ? AND property = ? "
                    f"AND value {match})"
                )
                args.extend((cs, prop, pattern))
            return
        if op == "exists":
            negate = "" if str(value).lower() == "true" else "NOT "
            where.append(
                f"code {negate}IN (SELECT code FROM tx_properties WHERE cs = ? AND property = ?)"
            )
            args.extend((cs, prop))
            return
        raise Invalid(f"unsupported value set filter op {op!r}")


def _filter_tokens(text: str) -> list[str]:
    return [t for t in normalize(text).split() if t][:8]


def _regexp(pattern: str, value: object) -> bool:
    return value is not None and re.search(pattern, str(value)) is not None


def _sqlite_regexp(conn) -> None:
    raw = getattr(conn, "raw", None)
    if raw is not None:
        raw.create_function("regexp", 2, _regexp, deterministic=True)


async def expand(
    tx,
    value_set: dict,
    *,
    filter: str | None = None,
    count: int | None = None,
    offset: int = 0,
    include_designations: bool = False,
    display_language: str | None = None,
    active_only: bool = False,
    nested: bool = False,
    max_size: int = MAX_EXPANSION,
) -> dict:
    """$expand: ``value_set`` with an ``expansion`` (total, offset, contains).  Concepts are
    ordered by code system then code; ``nested`` puts each concept of the page under its
    nearest ancestor on the page (ValueSet.expansion.contains.contains)."""
    if offset < 0 or (count is not None and count < 0):
        raise Invalid("count and offset must not be negative")
    compiler = _Compiler(tx, filter_text=filter, active_only=active_only, code=None)
    sql, args = await compiler.compose(value_set)
    conn = tx.conn
    rows: list[tuple] = []
    total = None
    if compiler.tokens:
        # Filtered, the compose yields few rows: join from them, and count them in the same
        # statement (one round trip).  A page past the end falls back to a count below.
        limit = max_size + 1 if count is None else count
        if limit:
            found = await conn.fetch(
                "SELECT c.cs, c.code, c.display, c.inactive, count(*) OVER () "
                f"FROM ({sql}) v JOIN tx_concepts c ON c.cs = v.cs AND c.code = v.code "
                "ORDER BY c.cs, c.code LIMIT ? OFFSET ?",
                *args,
                limit,
                offset,
            )
            if found:
                total = int(found[0][4])
                rows = [r[:4] for r in found]
    if total is None:
        total = int((await conn.fetchrow(f"SELECT count(*) FROM ({sql}) v", *args))[0])
    if count is None and total - offset > max_size:
        raise TooCostly(
            f"the expansion has {total} concepts, more than {max_size}: "
            "use count and offset, or a filter"
        )
    limit = (total if count is None else count) or 0
    if limit and not compiler.tokens:
        # Unfiltered: walk the concepts in code order and stop after the page.
        rows = await conn.fetch(
            "SELECT c.cs, c.code, c.display, c.inactive FROM tx_concepts c "
            f"WHERE (c.cs, c.code) IN ({sql}) ORDER BY c.cs, c.code LIMIT ? OFFSET ?",
            *args,
            limit,
            offset,
        )
    systems = compiler.systems
    designations: dict[tuple[int, str], list[tuple]] = {}
    if rows and (include_designations or display_language):
        designations = await _designations(conn, [(r[0], r[1]) for r in rows])
    contains = []
    for cs, code, display, inactive in rows:
        info = systems[cs]
        entry: dict = {"system": info.url}
        if info.version:
            entry["version"] = info.version
        entry["code"] = code
        shown = display
        if display_language:
            shown = _in_language(designations.get((cs, code), []), display_language) or display
        if shown:
            entry["display"] = shown
        if inactive:
            entry["inactive"] = True
        if include_designations:
            ds = [_designation_json(d) for d in designations.get((cs, code), [])]
            if ds:
                entry["designation"] = ds
        contains.append(entry)
    if nested and contains:
        contains = await _nest(conn, rows, contains)

    params: list[dict] = []
    if filter:
        params.append({"name": "filter", "valueString": filter})
    if count is not None:
        params.append({"name": "count", "valueInteger": count})
    params.append({"name": "offset", "valueInteger": offset})
    if include_designations:
        params.append({"name": "includeDesignations", "valueBoolean": True})
    if display_language:
        params.append({"name": "displayLanguage", "valueCode": display_language})
    for info in systems.values():
        canonical = f"{info.url}|{info.version}" if info.version else info.url
        params.append({"name": "version", "valueUri": canonical})
    expansion: dict = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "total": total,
        "offset": offset,
        "parameter": params,
    }
    if contains:
        expansion["contains"] = contains
    out = {k: v for k, v in value_set.items() if k not in ("expansion", "meta", "text")}
    out["resourceType"] = "ValueSet"
    out["expansion"] = expansion
    return out


async def _designations(conn, keys: list[tuple[int, str]]) -> dict[tuple[int, str], list[tuple]]:
    out: dict[tuple[int, str], list[tuple]] = {}
    by_cs: dict[int, list[str]] = {}
    for cs, code in keys:
        by_cs.setdefault(cs, []).append(code)
    for cs, codes in by_cs.items():
        for i in range(0, len(codes), 500):
            chunk = codes[i : i + 500]
            rows = await conn.fetch(
                "SELECT code, language, use_system, use_code, value FROM tx_designations "
                f"WHERE cs = ? AND code IN ({', '.join('?' for _ in chunk)})",
                cs,
                *chunk,
            )
            for code, *rest in rows:
                out.setdefault((cs, code), []).append(tuple(rest))
    return out


def _in_language(designations: list[tuple], language: str) -> str | None:
    wanted = [p.strip().split(";")[0].lower() for p in language.split(",") if p.strip()]
    for want in wanted:
        for lang, _system, _code, value in designations:
            if lang and (lang.lower() == want or lang.lower().split("-")[0] == want):
                return value
    return None


def _designation_json(d: tuple) -> dict:
    language, use_system, use_code, value = d
    out: dict = {}
    if language:
        out["language"] = language
    if use_code:
        out["use"] = {"system": use_system, "code": use_code} if use_system else {"code": use_code}
    out["value"] = value
    return out


async def _nest(conn, rows: list[tuple], contains: list[dict]) -> list[dict]:
    """Hang each entry under its nearest ancestor among the entries (per code system)."""
    index = {(r[0], r[1]): i for i, r in enumerate(rows)}
    ancestors: dict[tuple[int, str], set[str]] = {key: set() for key in index}
    by_cs: dict[int, list[str]] = {}
    for cs, code in index:
        by_cs.setdefault(cs, []).append(code)
    for cs, codes in by_cs.items():
        for i in range(0, len(codes), 400):
            chunk = codes[i : i + 400]
            marks = ", ".join("?" for _ in chunk)
            found = await conn.fetch(
                "SELECT ancestor, descendant FROM tx_closure WHERE cs = ? "
                f"AND descendant IN ({marks}) AND ancestor <> descendant",
                cs,
                *chunk,
            )
            for ancestor, descendant in found:
                if (cs, ancestor) in index:
                    ancestors[(cs, descendant)].add(ancestor)
    top = []
    for key, i in index.items():
        mine = ancestors[key]
        if not mine:
            top.append(contains[i])
            continue
        # The nearest ancestor is the one with the most ancestors of its own on the page.
        parent = max(sorted(mine), key=lambda a: len(ancestors[(key[0], a)]))
        contains[index[(key[0], parent)]].setdefault("contains", []).append(contains[i])
    return top


async def validate_vs_code(
    tx,
    value_set: dict,
    system_url: str,
    code: str,
    version: str | None = None,
    display: str | None = None,
) -> Validation:
    """$validate-code against a value set: is (system, code) in its expansion?"""
    conn = tx.conn
    info = await find_code_system(conn, system_url, version)
    if info is None:
        return Validation(
            False,
            f"the code system {split_canonical(system_url, version)[0]} is not known to "
            "this server",
            system=system_url,
            code=code,
        )
    compiler = _Compiler(tx, filter_text=None, active_only=False, code=code)
    sql, args = await compiler.compose(value_set)
    row = await conn.fetchrow(
        f"SELECT c.display FROM tx_concepts c WHERE c.cs = ? AND c.code = ? "
        f"AND (c.cs, c.code) IN ({sql})",
        info.id,
        code,
        *args,
    )
    label = value_set.get("url") or value_set.get("id") or "the value set"
    if row is None:
        exists = await code_exists(conn, info.url, code, info.version)
        why = "is not in the value set" if exists else f"is not in the code system {_label(info)}"
        return Validation(
            False, f"the code {code!r} {why} {label}", None, info.url, info.version, code
        )
    return await _check_display(conn, info, code, row[0], display)


# ---- concept maps -------------------------------------------------------------------------


async def find_concept_map(tx, url: str, version: str | None = None) -> dict | None:
    url, version = split_canonical(url, version)
    found = await _search(
        tx, "ConceptMap", [("url", url)] + ([("version", version)] if version else [])
    )
    if not found:
        return None
    return max(found, key=lambda r: (r.get("version") or "", r["meta"]["lastUpdated"]))


async def save_concept_map(tx, resource: dict, id_: str | None = None) -> str:
    """Store a ConceptMap resource and index its groups in ``tx_concept_map``, so $translate
    on a large publisher map (ICPC-2 -> ICD-10) needs no JSON parsing.  Returns its id."""
    id_ = id_ or resource.get("id") or _resource_id(resource.get("name") or "map", None)
    stored = await tx.update(resource, id_)
    await tx.conn.execute("DELETE FROM tx_concept_map WHERE map_id = ?", id_)
    rows = [(id_, stored.version, *m) for m in _map_rows(resource)]
    for i in range(0, len(rows), BATCH):
        await tx.conn.executemany(
            "INSERT INTO tx_concept_map (map_id, map_version, source_system, source_version, "
            "target_system, target_version, source_code, source_display, target_code, "
            "target_display, equivalence, comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows[i : i + BATCH],
        )
    return id_


def _map_rows(resource: dict):
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
        maps = await _search(tx, "ConceptMap", [("source-system", system), ("source-code", code)])
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
            found = [r for r in _map_rows(cmap) if r[4] == code]
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
