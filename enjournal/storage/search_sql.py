"""Run a parsed FHIR search (``enjournal.fhir.search.SearchQuery``) as SQL.

One statement per search: the criteria become ``r.rid IN (SELECT rid FROM idx_x WHERE type = ?
AND param = ? AND ...)`` subqueries over the index table of the criterion's parameter type
(``schema.INDEX_TABLES``; each served by the ``(type, param, value...)`` index of its table),
``_id`` and ``_lastUpdated`` conditions on the resource's own columns; chains and ``_has``
become nested subqueries over ``idx_reference``.  The SQL is dialect-neutral (``?``
placeholders, ``NOT r.deleted``), except string prefixes, which use a ``LIKE 'x%'`` on
PostgreSQL (the ``text_pattern_ops`` index) and a ``>= x AND < x\\U0010ffff`` range on SQLite
(its LIKE is case-insensitive and cannot use the index).

Paging
------
* Unsorted searches page by keyset on ``rid`` (the cursor holds the last ``rid``): inserts
  and deletes between pages neither skip nor repeat a resource.
* Sorted searches (``_sort``) compute the whole ordered rid list on the first page and, when
  it spans several pages, store it in ``search_pages``; later pages read slices of that
  snapshot (deleted resources drop out, new ones do not appear).  More than
  ``MAX_SORTED`` matches are refused with ``Invalid`` ("narrow the search").  Such a first
  page writes: the store must open a read-write transaction when ``query.needs_write``.

Cursors are opaque (base64 JSON) and carry a hash of the search's parameters, so a cursor
is only accepted with the search it came from.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import struct
import time
from typing import Any

import orjson

from enjournal.fhir.definitions import patient_compartment
from enjournal.fhir.errors import Invalid
from enjournal.fhir.search.query import (
    Chain,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    Include,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SearchQuery,
    StringValue,
    Term,
    TokenValue,
    UriValue,
)
from enjournal.fhir.text import normalize
from enjournal.storage.base import Connection, SearchResult, StoredResource
from enjournal.storage.schema import INDEX_TABLES

MAX_SORTED = 10_000  # sorted searches larger than this must be narrowed
MAX_INCLUDED = 1_000  # included resources per page
MAX_ITERATE = 5  # rounds of _include:iterate
PAGE_TTL_MS = 3_600_000  # stored sorted result lists live an hour
_CHUNK = 500  # rids per IN list
MAX_URI_ANCESTORS = 64  # url:above matches at most this many of a URL's parent paths
_TOP = "\U0010ffff"
_COLUMNS = "r.rid, r.type, r.id, r.version, r.last_updated, r.content"


class _Sql:
    """SQL text under construction, with its arguments in placeholder order."""

    def __init__(self, dialect: str):
        self.dialect = dialect
        self.n = 0

    def alias(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    # -- criteria -------------------------------------------------------------------------

    def where(self, query: SearchQuery, args: list) -> str:
        """The WHERE clause (without the keyword) over resources ``r``."""
        conds = ["NOT r.deleted"]
        if query.resource_type:
            conds.insert(0, "r.type = ?")
            args.append(query.resource_type)
        elif query.types:
            conds.insert(0, f"r.type IN ({_marks(query.types)})")
            args.extend(query.types)
        types = (query.resource_type,) if query.resource_type else query.types
        if query.compartment:
            conds.append(self.compartment(query, types, args))
        for term in query.criteria:
            conds.append(self.term(term, "r", types, args))
        return " AND ".join(conds)

    def compartment(self, query: SearchQuery, types: tuple[str, ...], args: list) -> str:
        ctype, cid = query.compartment  # type: ignore[misc]
        comp = patient_compartment()
        scope = types or (*comp, "Patient")
        alts = []
        if "Patient" in scope:
            alts.append("(r.type = 'Patient' AND r.id = ?)")
            args.append(cid)
        groups = [(t, comp[t]) for t in scope if comp.get(t)]
        if groups:
            ors = " OR ".join(
                f"(c.type = ? AND c.param IN ({_marks(params)}))" for _, params in groups
            )
            alts.append(
                "r.rid IN (SELECT c.rid FROM idx_reference c WHERE c.target_id = ? "
                f"AND c.target_type = ? AND ({ors}))"
            )
            args.extend([cid, ctype])
            for t, params in groups:
                args.append(t)
                args.extend(params)
        if not alts:
            return "1 = 0"
        return "(" + " OR ".join(alts) + ")"

    def term(self, term: Term, alias: str, types: tuple[str, ...], args: list) -> str:
        if isinstance(term, Chain):
            return self.chain(term, alias, types, args)
        if isinstance(term, Has):
            return self.has(term, alias, types, args)
        return self.criterion(term, alias, types, args)

    def chain(self, term: Chain, alias: str, types: tuple[str, ...], args: list) -> str:
        ref, tgt = self.alias("ref"), self.alias("t")
        args.append(term.name)
        type_cond = self._type_cond(ref, types, args)
        args.append(term.target_type)
        inner = self.term(term.criterion, tgt, (term.target_type,), args)
        return (
            f"{alias}.rid IN (SELECT {ref}.rid FROM idx_reference {ref} "
            f"JOIN resources {tgt} ON {tgt}.type = {ref}.target_type "
            f"AND {tgt}.id = {ref}.target_id "
            f"WHERE {ref}.param = ? AND {type_cond}{ref}.target_type = ? "
            f"AND NOT {tgt}.deleted AND {inner})"
        )

    def has(self, term: Has, alias: str, types: tuple[str, ...], args: list) -> str:
        ref, src = self.alias("ref"), self.alias("s")
        args.extend([term.source_type, term.ref_param])
        tcond = f"{ref}.target_type = {alias}.type"
        if len(types) == 1:
            tcond = f"{ref}.target_type = ?"
            args.append(types[0])
        inner = self.term(term.criterion, src, (term.source_type,), args)
        return (
            f"{alias}.id IN (SELECT {ref}.target_id FROM idx_reference {ref} "
            f"JOIN resources {src} ON {src}.rid = {ref}.rid "
            f"WHERE {ref}.type = ? AND {ref}.param = ? AND {tcond} "
            f"AND NOT {src}.deleted AND {inner})"
        )

    def _type_cond(self, a: str, types: tuple[str, ...], args: list) -> str:
        if not types:
            return ""
        if len(types) == 1:
            args.append(types[0])
            return f"{a}.type = ? AND "
        args.extend(types)
        return f"{a}.type IN ({_marks(types)}) AND "

    def criterion(self, c: Criterion, alias: str, types: tuple[str, ...], args: list) -> str:
        if c.on_resource:
            return self.resource_column(c, alias, args)
        x = self.alias("x")
        sub_args: list = []
        type_cond = self._type_cond(x, types, sub_args)
        sub_args.append(c.index_param)
        table = INDEX_TABLES[c.type]
        head = f"SELECT {x}.rid FROM {table} {x} WHERE {type_cond}{x}.param = ?"
        if c.modifier == "missing":
            args.extend(sub_args)
            return f"{alias}.rid {'NOT IN' if c.missing else 'IN'} ({head})"
        if c.type == "composite":
            return self.composite(c, alias, x, type_cond, sub_args, args)
        alts = [self.value(c, v, x, sub_args) for v in c.values]
        args.extend(sub_args)
        cond = alts[0] if len(alts) == 1 else "(" + " OR ".join(alts) + ")"
        op = "NOT IN" if c.modifier == "not" else "IN"
        return f"{alias}.rid {op} ({head} AND {cond})"

    def resource_column(self, c: Criterion, alias: str, args: list) -> str:
        if c.missing is not None:
            return "1 = 0" if c.missing else "1 = 1"
        if c.name == "_id":
            ids = [v.text for v in c.values]  # type: ignore[union-attr]
            args.extend(ids)
            op = "NOT IN" if c.modifier == "not" else "IN"
            return f"{alias}.id {op} ({_marks(ids)})"
        col = f"{alias}.last_updated"
        alts = [_date_cond(v, col, col, args) for v in c.values]  # type: ignore[arg-type]
        return "(" + " OR ".join(alts) + ")"

    def value(self, c: Criterion, v: Any, x: str, args: list) -> str:
        if c.type == "string" or (c.type == "token" and c.modifier == "text"):
            col = f"{x}.text" if c.type == "token" else f"{x}.norm"
            if c.modifier == "exact":
                args.extend([normalize(v.text), v.text])
                return f"({x}.norm = ? AND {x}.exact = ?)"
            if c.modifier == "contains":
                args.append("%" + _like_escape(normalize(v.text)) + "%")
                return f"{col} LIKE ? ESCAPE '\\'"
            return self.prefix(col, normalize(v.text), args)
        if isinstance(v, TokenValue):
            return _token_cond(v, x, args)
        if isinstance(v, ReferenceValue):
            return _reference_cond(v, x, args)
        if isinstance(v, DateValue):
            return _date_cond(v, f"{x}.low", f"{x}.high", args)
        if isinstance(v, QuantityValue):
            cond = _number_cond(v, f"{x}.value", args)
            return cond + _unit_cond(v, x, args)
        if isinstance(v, NumberValue):
            return _number_cond(v, f"{x}.value", args)
        if isinstance(v, UriValue):
            if c.modifier == "below":
                return self.prefix(f"{x}.value", v.value, args)
            if c.modifier == "above":
                ups = _uri_ancestors(v.value)[:MAX_URI_ANCESTORS]
                args.extend(ups)
                return f"{x}.value IN ({_marks(ups)})"
            args.append(v.value)
            return f"{x}.value = ?"
        raise Invalid(f"{c.name}: unsupported value")  # pragma: no cover

    def prefix(self, col: str, text: str, args: list) -> str:
        if self.dialect == "postgres":
            args.append(_like_escape(text) + "%")
            return f"{col} LIKE ?"
        args.extend([text, text + _TOP])
        return f"({col} >= ? AND {col} < ?)"

    def composite(
        self, c: Criterion, alias: str, x: str, type_cond: str, sub_args: list, args: list
    ) -> str:
        """All components in one element instance: same rid, param and grp."""
        outs = []
        for v in c.values:
            assert isinstance(v, CompositeValue)
            joins, conds, cargs = [], [f"{x}.comp = 0"], []  # type: list[str], list[str], list
            for i, part in enumerate(v.parts):
                a = x if i == 0 else f"{x}c{i}"
                if i:
                    joins.append(
                        f" JOIN idx_composite {a} ON {a}.rid = {x}.rid AND {a}.param = {x}.param "
                        f"AND {a}.grp = {x}.grp AND {a}.comp = {i}"
                    )
                conds.append(_component_cond(part, a, cargs, self))
            args.extend(sub_args)
            args.extend(cargs)
            outs.append(
                f"{alias}.rid IN (SELECT {x}.rid FROM idx_composite {x}{''.join(joins)} "
                f"WHERE {type_cond}{x}.param = ? AND {' AND '.join(conds)})"
            )
        return outs[0] if len(outs) == 1 else "(" + " OR ".join(outs) + ")"

    # -- sorting --------------------------------------------------------------------------

    def order_by(self, query: SearchQuery, args: list) -> str:
        keys = []
        for key in query.sort:
            direction = "DESC" if key.descending else "ASC"
            if key.type == "_id":
                keys.append(f"r.id {direction}")
                continue
            if key.type == "_lastUpdated":
                keys.append(f"r.last_updated {direction}")
                continue
            table, low, high = _SORT_COLUMNS[key.type]
            s = self.alias("o")
            col, agg = (high, "max") if key.descending else (low, "min")
            args.append(key.name)
            keys.append(
                f"(SELECT {agg}({s}.{col}) FROM {table} {s} WHERE {s}.rid = r.rid "
                f"AND {s}.param = ?) {direction} NULLS LAST"
            )
        keys.append("r.rid ASC")
        return ", ".join(keys)


_SORT_COLUMNS = {
    "date": ("idx_date", "low", "high"),
    "string": ("idx_string", "norm", "norm"),
    "token": ("idx_token", "code", "code"),
    "reference": ("idx_reference", "target_id", "target_id"),
    "number": ("idx_number", "value", "value"),
    "quantity": ("idx_quantity", "value", "value"),
    "uri": ("idx_uri", "value", "value"),
}


def _marks(items) -> str:
    return ", ".join("?" for _ in items)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _token_cond(v: TokenValue, x: str, args: list) -> str:
    conds = []
    if v.code is not None:
        conds.append(f"{x}.code = ?")
        args.append(v.code)
    if v.system == "":
        conds.append(f"{x}.system IS NULL")
    elif v.system is not None:
        conds.append(f"{x}.system = ?")
        args.append(v.system)
    return "(" + " AND ".join(conds) + ")"


def _reference_cond(v: ReferenceValue, x: str, args: list) -> str:
    if v.url is not None:
        args.append(v.url)
        return f"{x}.url = ?"
    if v.type is not None:
        args.extend([v.id, v.type])
        return f"({x}.target_id = ? AND {x}.target_type = ?)"
    args.append(v.id)
    return f"{x}.target_id = ?"


def _date_cond(v: DateValue, lo: str, hi: str, args: list) -> str:
    """Range semantics (search.html#prefix): the search range [pl, ph] against the indexed
    range [lo, hi]."""
    pl, ph = v.low, v.high
    p = v.prefix
    if p == "eq":
        args.extend([pl, ph])
        return f"({lo} >= ? AND {hi} <= ?)"
    if p == "ne":
        args.extend([pl, ph])
        return f"NOT ({lo} >= ? AND {hi} <= ?)"
    if p == "gt":
        args.append(ph)
        return f"{hi} > ?"
    if p == "lt":
        args.append(pl)
        return f"{lo} < ?"
    if p == "ge":
        args.extend([ph, pl, ph])
        return f"({hi} > ? OR ({lo} >= ? AND {hi} <= ?))"
    if p == "le":
        args.extend([pl, pl, ph])
        return f"({lo} < ? OR ({lo} >= ? AND {hi} <= ?))"
    if p == "sa":
        args.append(ph)
        return f"{lo} > ?"
    if p == "eb":
        args.append(pl)
        return f"{hi} < ?"
    # ap: overlaps the widened range
    args.extend([ph, pl])
    return f"({lo} <= ? AND {hi} >= ?)"


def _number_cond(v: NumberValue | QuantityValue, col: str, args: list) -> str:
    p = v.prefix
    if p in ("eq", "ap"):
        args.extend([v.low, v.high])
        return f"({col} >= ? AND {col} < ?)" if p == "eq" else f"({col} >= ? AND {col} <= ?)"
    if p == "ne":
        args.extend([v.low, v.high])
        return f"NOT ({col} >= ? AND {col} < ?)"
    op = {"gt": ">", "sa": ">", "lt": "<", "eb": "<", "ge": ">=", "le": "<="}[p]
    args.append(v.value)
    return f"{col} {op} ?"


def _unit_cond(v: QuantityValue, x: str, args: list) -> str:
    if v.code is None:
        return ""
    if v.system is not None:
        args.extend([v.code, v.system])
        return f" AND {x}.code = ? AND {x}.system = ?"
    args.extend([v.code, v.code])
    return f" AND ({x}.code = ? OR {x}.unit = ?)"


def _component_cond(part: Any, a: str, args: list, sql: _Sql) -> str:
    if isinstance(part, TokenValue):
        return _token_cond(part, a, args)
    if isinstance(part, (QuantityValue, NumberValue)):
        cond = _number_cond(part, f"(({a}.low + {a}.high) / 2)", args)
        if isinstance(part, QuantityValue) and part.code is not None:
            if part.system is not None:
                args.extend([part.code, part.system])
                cond += f" AND {a}.code = ? AND {a}.system = ?"
            else:
                args.append(part.code)
                cond += f" AND {a}.code = ?"
        return cond
    if isinstance(part, DateValue):
        return _date_cond(part, f"{a}.low", f"{a}.high", args)
    if isinstance(part, ReferenceValue):  # rows: (target_type, target_id, url)
        if part.url is not None:
            args.append(part.url)
            return f"{a}.text = ?"
        if part.type is not None:
            args.extend([part.id, part.type])
            return f"({a}.code = ? AND {a}.system = ?)"
        args.append(part.id)
        return f"{a}.code = ?"
    if isinstance(part, UriValue):  # rows: (None, value)
        args.append(part.value)
        return f"{a}.code = ?"
    assert isinstance(part, StringValue)
    return sql.prefix(f"{a}.text", normalize(part.text), args)


def _uri_ancestors(value: str) -> list[str]:
    """``http://a/b/c`` -> itself and every prefix ending before a ``/`` (for ``:above``)."""
    out = [value]
    scheme_end = value.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    i = len(value)
    while True:
        i = value.rfind("/", start, i)
        if i <= start:
            break
        out.append(value[:i])
        out.append(value[: i + 1])
    return list(dict.fromkeys(out))


# -- cursors ----------------------------------------------------------------------------------


def _query_hash(query: SearchQuery) -> str:
    text = "&".join(f"{n}={v}" for n, v in query.canonical_params(cursor=False))
    text += f"|{query.resource_type}|{query.compartment}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _encode_cursor(query: SearchQuery, **state: Any) -> str:
    state["h"] = _query_hash(query)
    return base64.urlsafe_b64encode(orjson.dumps(state)).decode().rstrip("=")


def _decode_cursor(query: SearchQuery) -> dict:
    raw = query.cursor or ""
    try:
        state = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        assert isinstance(state, dict)
    except Exception:
        raise Invalid("_cursor: not a valid page cursor", expression="_cursor") from None
    if state.get("h") != _query_hash(query):
        raise Invalid("_cursor: the cursor belongs to a different search", expression="_cursor")
    if not _plausible(state):
        raise Invalid("_cursor: not a valid page cursor", expression="_cursor")
    return state


_BIGINT = 2**63 - 1


def _plausible(state: dict) -> bool:
    """Whether a decoded cursor holds what ``_encode_cursor`` writes: cursors are not signed,
    so a client can forge one, and a rid beyond a BIGINT would fail in PostgreSQL."""
    rid, offset, page = state.get("r", 0), state.get("o", 0), state.get("p", "")
    numbers = all(type(n) is int and 0 <= n < _BIGINT for n in (rid, offset))
    return numbers and isinstance(page, str) and len(page) <= 64


# -- running ------------------------------------------------------------------------------------


def _stored(row: tuple) -> StoredResource:
    content = row[5]
    if content is not None and not isinstance(content, bytes):
        content = bytes(content)
    return StoredResource(row[0], row[1], row[2], row[3], row[4], content)


async def includes(
    conn: Connection, query: SearchQuery, matches: list[StoredResource], keep=None
) -> list[StoredResource]:
    """``query``'s includes of ``matches`` alone (a page the caller assembled itself)."""
    return await _includes(conn, query, matches, keep) if query.includes and matches else []


async def count(conn: Connection, query: SearchQuery) -> int:
    """How many resources match ``query`` (paging and includes aside)."""
    args: list = []
    where = _Sql(conn.dialect).where(query, args)
    row = await conn.fetchrow(f"SELECT count(*) FROM resources r WHERE {where}", *args)
    return int(row[0]) if row else 0


def _want_total(query: SearchQuery, first_page: bool) -> bool:
    if query.total == "none":
        return False
    return query.total == "accurate" or first_page or query.summary == "count"


async def run_search(conn: Connection, query: SearchQuery) -> SearchResult:
    """Run ``query``: one page of matches, their includes, the total and page cursors."""
    if query.summary == "count" or query.count == 0:
        total = await count(conn, query) if query.total != "none" else None
        return SearchResult([], total=total)
    if query.sort:
        result = await _sorted_page(conn, query)
    else:
        result = await _keyset_page(conn, query)
    if query.includes and result.matches:
        result.included = await _includes(conn, query, result.matches)
    return result


async def _keyset_page(conn: Connection, query: SearchQuery) -> SearchResult:
    sql = _Sql(conn.dialect)
    args: list = []
    where = sql.where(query, args)
    state = _decode_cursor(query) if query.cursor else {}
    backward = state.get("d") == "b"
    if state:
        where += " AND r.rid < ?" if backward else " AND r.rid > ?"
        args.append(int(state["r"]))
    args.append(query.count + 1)
    order = "DESC" if backward else "ASC"
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM resources r WHERE {where} ORDER BY r.rid {order} LIMIT ?", *args
    )
    more = len(rows) > query.count
    rows = rows[: query.count]
    if backward:
        rows.reverse()
    matches = [_stored(r) for r in rows]
    result = SearchResult(matches)
    if not backward:
        result.cursor_after = lambda i: _encode_cursor(query, d="f", r=matches[i].rid)
    if matches:
        first, last = matches[0].rid, matches[-1].rid
        has_next = (not backward and more) or backward
        has_prev = (backward and more) or (not backward and bool(state))
        if has_next:
            result.next_cursor = _encode_cursor(query, d="f", r=last)
        if has_prev:
            result.previous_cursor = _encode_cursor(query, d="b", r=first)
    elif state:
        # An empty page past the end (or before the start): offer the way back.
        result.previous_cursor = (
            _encode_cursor(query, d="b", r=int(state["r"]) + 1) if not backward else None
        )
        if backward:
            result.next_cursor = _encode_cursor(query, d="f", r=int(state["r"]) - 1)
    if _want_total(query, not state):
        if not state and not more:
            result.total = len(matches)
        else:
            result.total = await count(conn, query)
    return result


async def _sorted_page(conn: Connection, query: SearchQuery) -> SearchResult:
    if query.cursor:
        state = _decode_cursor(query)
        row = await conn.fetchrow("SELECT rids FROM search_pages WHERE id = ?", state.get("p"))
        if row is None:
            raise Invalid(
                "_cursor: this search has expired; repeat the search", expression="_cursor"
            )
        blob = bytes(row[0])
        rids = list(struct.unpack(f"<{len(blob) // 8}q", blob))
        offset = int(state.get("o", 0))
        page_id = state["p"]
    else:
        sql = _Sql(conn.dialect)
        args: list = []
        where = sql.where(query, args)
        order = sql.order_by(query, args)
        args.append(MAX_SORTED + 1)
        rows = await conn.fetch(
            f"SELECT r.rid FROM resources r WHERE {where} ORDER BY {order} LIMIT ?", *args
        )
        if len(rows) > MAX_SORTED:
            raise Invalid(
                f"more than {MAX_SORTED} resources match this sorted search; narrow the "
                "search (add criteria) or search without _sort",
                expression="_sort",
            )
        rids = [r[0] for r in rows]
        offset = 0
        page_id = None
        if len(rids) > query.count:
            page_id = secrets.token_urlsafe(12)
            now = int(time.time() * 1000)
            await conn.execute("DELETE FROM search_pages WHERE created < ?", now - PAGE_TTL_MS)
            await conn.execute(
                "INSERT INTO search_pages (id, created, rids) VALUES (?, ?, ?)",
                page_id,
                now,
                struct.pack(f"<{len(rids)}q", *rids),
            )
    offset = max(0, min(offset, len(rids)))
    page = rids[offset : offset + query.count]
    matches = await _fetch_rids(conn, page, ordered=True)
    result = SearchResult(matches)
    if page_id is not None:
        result.cursor_after = lambda i: _encode_cursor(query, p=page_id, o=offset + i + 1)
        if offset + query.count < len(rids):
            result.next_cursor = _encode_cursor(query, p=page_id, o=offset + query.count)
        if offset > 0:
            result.previous_cursor = _encode_cursor(
                query, p=page_id, o=max(0, offset - query.count)
            )
    if _want_total(query, query.cursor is None):
        result.total = len(rids)
    return result


async def _fetch_rids(conn: Connection, rids: list[int], *, ordered: bool) -> list[StoredResource]:
    found: dict[int, StoredResource] = {}
    for i in range(0, len(rids), _CHUNK):
        chunk = rids[i : i + _CHUNK]
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM resources r WHERE r.rid IN ({_marks(chunk)}) "
            "AND NOT r.deleted",
            *chunk,
        )
        for row in rows:
            found[row[0]] = _stored(row)
    if ordered:
        return [found[r] for r in rids if r in found]
    return sorted(found.values(), key=lambda s: s.rid)


async def _includes(
    conn: Connection, query: SearchQuery, matches: list[StoredResource], keep=None
) -> list[StoredResource]:
    """The resources ``query``'s includes reach from ``matches``.  ``keep`` (an async filter,
    e.g. the access guard's) runs on each round before the next is followed, so nothing is
    reached through a resource it dropped."""
    seen = {m.rid for m in matches}
    included: list[StoredResource] = []
    frontier = matches
    for round_ in range(MAX_ITERATE + 1):
        incs = [i for i in query.includes if round_ == 0 or i.iterate]
        if not incs or not frontier:
            break
        new: list[StoredResource] = []
        for inc in incs:
            for res in await _include_one(conn, inc, frontier):
                if res.rid not in seen:
                    seen.add(res.rid)
                    new.append(res)
        if keep is not None:
            new = await keep(new)
        room = MAX_INCLUDED - len(included)
        included.extend(new[:room])
        if len(included) >= MAX_INCLUDED:
            break
        frontier = new
    return included


def _include_filter(inc: Include, args: list, *, with_target: bool) -> str:
    """The conditions on the reference rows ``f`` an include follows; appends their args."""
    cond = ""
    columns = [("type", inc.source_type), ("param", inc.param)]
    if with_target:
        columns.append(("target_type", inc.target_type))
    for column, value in columns:
        if value is not None:
            cond += f" AND f.{column} = ?"
            args.append(value)
    return cond


async def _include_one(
    conn: Connection, inc: Include, sources: list[StoredResource]
) -> list[StoredResource]:
    out: list[StoredResource] = []
    if not inc.reverse:
        rids = [s.rid for s in sources if inc.source_type is None or s.type == inc.source_type]
        for i in range(0, len(rids), _CHUNK):
            chunk = rids[i : i + _CHUNK]
            args: list = list(chunk)
            cond = _include_filter(inc, args, with_target=True)
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM resources r WHERE NOT r.deleted AND r.rid IN "
                "(SELECT t.rid FROM idx_reference f JOIN resources t "
                "ON t.type = f.target_type AND t.id = f.target_id "
                f"WHERE f.rid IN ({_marks(chunk)}){cond}) ORDER BY r.rid",
                *args,
            )
            out.extend(_stored(r) for r in rows)
        return out
    by_type: dict[str, list[str]] = {}
    for s in sources:
        if inc.target_type is None or s.type == inc.target_type:
            if inc.targets and s.type not in inc.targets:
                continue
            by_type.setdefault(s.type, []).append(s.id)
    for ttype, ids in by_type.items():
        for i in range(0, len(ids), _CHUNK):
            id_chunk = ids[i : i + _CHUNK]
            args = [*id_chunk, ttype]
            cond = _include_filter(inc, args, with_target=False)
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM resources r WHERE NOT r.deleted AND r.rid IN "
                f"(SELECT f.rid FROM idx_reference f WHERE f.target_id IN ({_marks(id_chunk)}) "
                f"AND f.target_type = ?{cond}) ORDER BY r.rid",
                *args,
            )
            out.extend(_stored(r) for r in rows)
    return out


def explain_sql(query: SearchQuery, dialect: str) -> tuple[str, list]:
    """The first-page SQL of ``query`` and its arguments (for EXPLAIN and debugging)."""
    sql = _Sql(dialect)
    args: list = []
    where = sql.where(query, args)
    if query.sort:
        order = sql.order_by(query, args)
        args.append(MAX_SORTED + 1)
        return f"SELECT r.rid FROM resources r WHERE {where} ORDER BY {order} LIMIT ?", args
    args.append(query.count + 1)
    return (
        f"SELECT {_COLUMNS} FROM resources r WHERE {where} ORDER BY r.rid ASC LIMIT ?",
        args,
    )
