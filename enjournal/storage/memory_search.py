"""FHIR search on the memory store: a parsed ``SearchQuery`` evaluated over the indexer's rows.

The semantics are those of ``storage.search_sql`` (read it first), term by term: the same
index rows answer the same conditions (string prefix, ``:exact`` and ``:contains`` on
normalised text; token system/code, ``:not``, ``:text``, ``:identifier``; reference by type
and id or URL; date, number and quantity ranges per prefix; uri ``:below``/``:above``;
composites within one element; ``:missing``; chains and ``_has``; ``_id``, ``_lastUpdated``;
compartments; ``_type``), sorted by the same keys (NULLs last, then rid), paged with the same
cursors (``search_sql``'s encoding; keyset on rid, or a stored rid list for ``_sort``), with
the same totals and includes.  A value, modifier or sort this module does not know raises
NotSupported instead of answering something else.

Candidates come from the store's indexes where one criterion allows (a token code, a
reference target id), else from all current resources of the searched types.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from enjournal.fhir.definitions import patient_compartment
from enjournal.fhir.errors import Invalid, NotSupported
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
from enjournal.storage import search_sql
from enjournal.storage.base import SearchResult, StoredResource
from enjournal.storage.search_sql import _decode_cursor, _encode_cursor, _want_total

if TYPE_CHECKING:
    from enjournal.storage.memory import MemoryTransaction, Row, _State

# The column of each kind's index row a sort reads: (ascending: min of, descending: max of).
_SORT_COLUMNS = {
    "date": (1, 2),
    "string": (1, 1),
    "token": (2, 2),
    "reference": (2, 2),
    "number": (3, 3),
    "quantity": (6, 6),
    "uri": (1, 1),
}


# ---- matching -------------------------------------------------------------------------------


class _Matcher:
    """Decides whether a current resource meets a term (``search_sql._Sql.term``)."""

    def __init__(self, state: _State):
        self.state = state

    def term(self, term: Term, row: Row) -> bool:
        if isinstance(term, Chain):
            return self.chain(term, row)
        if isinstance(term, Has):
            return self.has(term, row)
        return self.criterion(term, row)

    def chain(self, term: Chain, row: Row) -> bool:
        for ref in self.state.index_rows(row.rid, "reference"):
            if ref[0] != term.name or ref[1] != term.target_type:
                continue
            target = self.state.rows.get((ref[1], ref[2]))
            live = target is not None and target.content is not None
            if live and self.term(term.criterion, target):  # type: ignore[arg-type]
                return True
        return False

    def has(self, term: Has, row: Row) -> bool:
        for rid in sorted(self.state.by_target.get(row.id)):
            source = self.state.current(rid)
            if source is None or source.type != term.source_type:
                continue
            refs = self.state.index_rows(rid, "reference")
            points = any(r[0] == term.ref_param and r[1:3] == (row.type, row.id) for r in refs)
            if points and self.term(term.criterion, source):
                return True
        return False

    def criterion(self, c: Criterion, row: Row) -> bool:
        if c.name in ("_id", "_lastUpdated"):
            return _resource_column(c, row)
        rows = [r for r in self.state.index_rows(row.rid, c.type) if r[0] == c.index_param]
        if c.modifier == "missing":
            return not rows if c.missing else bool(rows)
        if c.type == "composite":
            return any(_composite(v, rows) for v in c.values)  # type: ignore[arg-type]
        hit = any(_value(c, v, r) for r in rows for v in c.values)
        return not hit if c.modifier == "not" else hit

    def compartment(self, query: SearchQuery, types: tuple[str, ...], row: Row) -> bool:
        ctype, cid = query.compartment  # type: ignore[misc]
        comp = patient_compartment()
        scope = types or (*comp, "Patient")
        if "Patient" in scope and row.type == "Patient" and row.id == cid:
            return True
        params = comp.get(row.type) if row.type in scope else None
        if not params:
            return False
        refs = self.state.index_rows(row.rid, "reference")
        return any(r[2] == cid and r[1] == ctype and r[0] in params for r in refs)


def _resource_column(c: Criterion, row: Row) -> bool:
    if c.missing is not None:
        return not c.missing
    if c.name == "_id":
        hit = row.id in {v.text for v in c.values}  # type: ignore[union-attr]
        return not hit if c.modifier == "not" else hit
    at = row.last_updated
    return any(_date(v, at, at) for v in c.values)  # type: ignore[arg-type]


def _value(c: Criterion, v: Any, r: tuple) -> bool:
    """Whether index row ``r`` meets one OR'ed value (``search_sql._Sql.value``)."""
    if c.type == "string" or (c.type == "token" and c.modifier == "text"):
        return _text(c, v, r)
    if isinstance(v, TokenValue):
        return _token(v, r[1], r[2])
    if isinstance(v, ReferenceValue):
        return _reference(v, r[1], r[2], r[3])
    if isinstance(v, DateValue):
        return _date(v, r[1], r[2])
    if isinstance(v, QuantityValue):
        return _number(v, r[6]) and _unit(v, r)
    if isinstance(v, NumberValue):
        return _number(v, r[3])
    if isinstance(v, UriValue):
        return _uri(c.modifier, v.value, r[1])
    raise NotSupported(f"{c.name}: the memory store cannot search this kind of value")


def _text(c: Criterion, v: StringValue, r: tuple) -> bool:
    column = r[3] if c.type == "token" else r[1]
    if c.modifier == "exact":
        return r[1] == normalize(v.text) and r[2] == v.text
    if column is None:
        return False
    if c.modifier == "contains":
        return normalize(v.text) in column
    if c.modifier not in (None, "text"):
        raise NotSupported(f"{c.name}: the memory store has no :{c.modifier}")
    return column.startswith(normalize(v.text))


def _token(v: TokenValue, system: Any, code: Any) -> bool:
    if v.code is not None and code != v.code:
        return False
    if v.system == "":
        return system is None
    return v.system is None or system == v.system


def _reference(v: ReferenceValue, target_type: Any, target_id: Any, url: Any) -> bool:
    if v.url is not None:
        return url == v.url
    if v.type is not None:
        return target_id == v.id and target_type == v.type
    return target_id == v.id


def _date(v: DateValue, lo: Any, hi: Any) -> bool:
    """The search range [pl, ph] against the indexed range [lo, hi], per prefix."""
    if lo is None or hi is None:
        return False
    pl, ph, p = v.low, v.high, v.prefix
    inside = lo >= pl and hi <= ph
    tests = {
        "eq": lambda: inside,
        "ne": lambda: not inside,
        "gt": lambda: hi > ph,
        "lt": lambda: lo < pl,
        "ge": lambda: hi > ph or inside,
        "le": lambda: lo < pl or inside,
        "sa": lambda: lo > ph,
        "eb": lambda: hi < pl,
    }
    return tests.get(p, lambda: lo <= ph and hi >= pl)()  # ap: overlaps


def _number(v: NumberValue | QuantityValue, value: Any) -> bool:
    if value is None:
        return False
    p = v.prefix
    if p == "eq":
        return v.low <= value < v.high
    if p == "ap":
        return v.low <= value <= v.high
    if p == "ne":
        return not v.low <= value < v.high
    if p in ("gt", "sa"):
        return value > v.value
    if p in ("lt", "eb"):
        return value < v.value
    return value >= v.value if p == "ge" else value <= v.value


def _unit(v: QuantityValue, r: tuple) -> bool:
    """Rows ``(param, system, code, unit, low, high, value)``."""
    if v.code is None:
        return True
    if v.system is not None:
        return r[2] == v.code and r[1] == v.system
    return r[2] == v.code or r[3] == v.code


def _uri(modifier: str | None, wanted: str, value: Any) -> bool:
    if value is None:
        return False
    if modifier == "below":
        return value.startswith(wanted)
    if modifier == "above":
        ancestors = search_sql._uri_ancestors(wanted)[: search_sql.MAX_URI_ANCESTORS]
        return value in ancestors
    return value == wanted


def _composite(v: CompositeValue, rows: list[tuple]) -> bool:
    """Some element instance (``grp``) has, for every component, a row that meets it.  Rows
    ``(param, grp, comp, system, code, low, high, text)``."""
    groups: dict[Any, list[tuple]] = {}
    for r in rows:
        groups.setdefault(r[1], []).append(r)
    return any(
        all(any(r[2] == i and _component(part, r) for r in group) for i, part in enumerate(v.parts))
        for group in groups.values()
    )


def _component(part: Any, a: tuple) -> bool:
    system, code, low, high, text = a[3:8]
    if isinstance(part, TokenValue):
        return _token(part, system, code)
    if isinstance(part, (QuantityValue, NumberValue)):
        middle = None if low is None or high is None else (low + high) / 2
        if not _number(part, middle):
            return False
        if isinstance(part, QuantityValue) and part.code is not None:
            return code == part.code and (part.system is None or system == part.system)
        return True
    if isinstance(part, DateValue):
        return _date(part, low, high)
    if isinstance(part, ReferenceValue):  # rows: (target_type, target_id, url)
        return _reference(part, system, code, text)
    if isinstance(part, UriValue):
        return code == part.value
    if isinstance(part, StringValue):
        return text is not None and text.startswith(normalize(part.text))
    raise NotSupported("the memory store cannot search this composite component")


# ---- the matching resources -------------------------------------------------------------------


def _types(query: SearchQuery) -> tuple[str, ...]:
    return (query.resource_type,) if query.resource_type else query.types


def matching(state: _State, query: SearchQuery) -> list[Row]:
    """The current resources that meet ``query``'s criteria, in rid order."""
    matcher = _Matcher(state)
    types = _types(query)
    found = []
    for rid in sorted(_candidates(state, query, types)):
        row = state.current(rid)
        if row is None or (types and row.type not in types):
            continue
        if query.compartment and not matcher.compartment(query, types, row):
            continue
        if all(matcher.term(term, row) for term in query.criteria):
            found.append(row)
    return found


def _candidates(state: _State, query: SearchQuery, types: tuple[str, ...]) -> Iterable[int]:
    """Rids that may match: narrowed by one indexed criterion when there is one."""
    for term in query.criteria:
        narrowed = _narrowed(state, term, types)
        if narrowed is not None:
            return narrowed
    if not types:
        return list(state.keys)
    return set().union(*(state.by_type.get(t) for t in types))


def _narrowed(state: _State, term: Term, types: tuple[str, ...]) -> set[int] | None:
    """The rids a plain token (with codes) or reference (with ids) criterion can match."""
    if not isinstance(term, Criterion) or term.modifier is not None or not term.values:
        return None
    if term.name in ("_id", "_lastUpdated"):
        return None
    values: Any = term.values
    if term.type == "token" and types and all(_coded(v) for v in values):
        keys = [(t, term.index_param, v.code) for t in types for v in values]
        return set().union(*(state.by_code.get(k) for k in keys))
    if term.type == "reference" and all(_by_id(v) for v in values):
        return set().union(*(state.by_target.get(v.id) for v in values))
    return None


def _coded(v: Any) -> bool:
    return isinstance(v, TokenValue) and v.code is not None


def _by_id(v: Any) -> bool:
    return isinstance(v, ReferenceValue) and v.url is None and v.id is not None


# ---- sorting ------------------------------------------------------------------------------------


def _sort_value(state: _State, key: Any, row: Row) -> Any:
    """The value a sort key orders ``row`` by (None: none, sorted last)."""
    if key.type == "_id":
        return row.id
    if key.type == "_lastUpdated":
        return row.last_updated
    if key.type not in _SORT_COLUMNS:
        raise NotSupported(f"_sort: the memory store cannot sort by a {key.type} parameter")
    column = _SORT_COLUMNS[key.type][1 if key.descending else 0]
    rows = state.index_rows(row.rid, key.type)
    values = [r[column] for r in rows if r[0] == key.name and r[column] is not None]
    if not values:
        return None
    return max(values) if key.descending else min(values)


def _ordered(state: _State, query: SearchQuery, rows: list[Row]) -> list[Row]:
    """``rows`` in ``query.sort`` order, NULLs last for each key, then by rid."""
    keyed = [([_sort_value(state, k, r) for k in query.sort], r) for r in rows]

    def compare(a: tuple, b: tuple) -> int:
        for key, x, y in zip(query.sort, a[0], b[0], strict=True):
            if x == y:
                continue
            if x is None or y is None:
                return 1 if x is None else -1
            less = x < y
            return (1 if less else -1) if key.descending else (-1 if less else 1)
        return a[1].rid - b[1].rid

    return [r for _, r in sorted(keyed, key=functools.cmp_to_key(compare))]


# ---- running ------------------------------------------------------------------------------------


async def run_search(tx: MemoryTransaction, query: SearchQuery) -> SearchResult:
    """Run ``query``: one page of matches, their includes, the total and page cursors."""
    if query.summary == "count" or query.count == 0:
        total = len(matching(tx.state, query)) if query.total != "none" else None
        return SearchResult([], total=total)
    result = _sorted_page(tx, query) if query.sort else _keyset_page(tx.state, query)
    if query.includes and result.matches:
        result.included = await includes(tx, query, result.matches)
    return result


def _keyset_page(state: _State, query: SearchQuery) -> SearchResult:
    every = matching(state, query)
    cursor = _decode_cursor(query) if query.cursor else {}
    backward = cursor.get("d") == "b"
    rows = every
    if cursor:
        at = int(cursor["r"])
        rows = [r for r in every if (r.rid < at if backward else r.rid > at)]
    page = (rows[::-1] if backward else rows)[: query.count + 1]
    more = len(page) > query.count
    page = page[: query.count]
    if backward:
        page.reverse()
    matches = [r.stored() for r in page]
    result = SearchResult(matches)
    if not backward:
        result.cursor_after = lambda i: _encode_cursor(query, d="f", r=matches[i].rid)
    _keyset_links(query, result, cursor, backward, more)
    if _want_total(query, not cursor):
        result.total = len(every)
    return result


def _keyset_links(
    query: SearchQuery, result: SearchResult, cursor: dict, backward: bool, more: bool
) -> None:
    """The next and previous cursors of a keyset page (as ``search_sql._keyset_page``)."""
    matches = result.matches
    if matches:
        if backward or more:
            result.next_cursor = _encode_cursor(query, d="f", r=matches[-1].rid)
        if (backward and more) or (not backward and cursor):
            result.previous_cursor = _encode_cursor(query, d="b", r=matches[0].rid)
    elif cursor:
        at = int(cursor["r"])
        if backward:
            result.next_cursor = _encode_cursor(query, d="f", r=at - 1)
        else:
            result.previous_cursor = _encode_cursor(query, d="b", r=at + 1)


def _sorted_page(tx: MemoryTransaction, query: SearchQuery) -> SearchResult:
    if query.cursor:
        cursor = _decode_cursor(query)
        stored = tx.store.pages.get(str(cursor.get("p")))
        if stored is None:
            raise Invalid(
                "_cursor: this search has expired; repeat the search", expression="_cursor"
            )
        rids, offset, page_id = stored[1], int(cursor.get("o", 0)), cursor["p"]
    else:
        rids, offset = _sorted_rids(tx, query), 0
        page_id = _keep_pages(tx, rids) if len(rids) > query.count else None
    offset = max(0, min(offset, len(rids)))
    rows = (tx.state.current(rid) for rid in rids[offset : offset + query.count])
    result = SearchResult([r.stored() for r in rows if r is not None])
    if page_id is not None:
        result.cursor_after = lambda i: _encode_cursor(query, p=page_id, o=offset + i + 1)
        if offset + query.count < len(rids):
            result.next_cursor = _encode_cursor(query, p=page_id, o=offset + query.count)
        if offset > 0:
            back = max(0, offset - query.count)
            result.previous_cursor = _encode_cursor(query, p=page_id, o=back)
    if _want_total(query, query.cursor is None):
        result.total = len(rids)
    return result


def _sorted_rids(tx: MemoryTransaction, query: SearchQuery) -> list[int]:
    rows = matching(tx.state, query)
    if len(rows) > search_sql.MAX_SORTED:
        raise Invalid(
            f"more than {search_sql.MAX_SORTED} resources match this sorted search; narrow "
            "the search (add criteria) or search without _sort",
            expression="_sort",
        )
    return [r.rid for r in _ordered(tx.state, query, rows)]


def _keep_pages(tx: MemoryTransaction, rids: list[int]) -> str:
    """Store a sorted result's rids for its later pages; forget those past their time."""
    now = int(time.time() * 1000)
    pages = tx.store.pages
    for old in [k for k, (created, _) in pages.items() if created < now - search_sql.PAGE_TTL_MS]:
        del pages[old]
    page_id = secrets.token_urlsafe(12)
    pages[page_id] = (now, rids)
    return page_id


# ---- includes -----------------------------------------------------------------------------------


async def includes(
    tx: MemoryTransaction, query: SearchQuery, matches: list[StoredResource], keep=None
) -> list[StoredResource]:
    """The resources ``query``'s includes reach from ``matches``, round by round (as
    ``search_sql._includes``); ``keep`` filters each round before it is followed."""
    seen = {m.rid for m in matches}
    included: list[StoredResource] = []
    frontier = matches
    for round_ in range(search_sql.MAX_ITERATE + 1):
        incs = [i for i in query.includes if round_ == 0 or i.iterate]
        if not incs or not frontier:
            break
        new: list[StoredResource] = []
        for inc in incs:
            for row in _include_one(tx, inc, frontier):
                if row.rid not in seen:
                    seen.add(row.rid)
                    new.append(row.stored())
        if keep is not None:
            new = await keep(new)
        included.extend(new[: search_sql.MAX_INCLUDED - len(included)])
        if len(included) >= search_sql.MAX_INCLUDED:
            break
        frontier = new
    return included


def _chunks(items: list, size: int = search_sql._CHUNK) -> Iterable[list]:
    return (items[i : i + size] for i in range(0, len(items), size))


def _include_one(tx: MemoryTransaction, inc: Include, sources: list[StoredResource]) -> list[Row]:
    if inc.reverse:
        return _revinclude_one(tx, inc, sources)
    state = tx.state
    out: list[Row] = []
    rids = [s.rid for s in sources if inc.source_type is None or s.type == inc.source_type]
    for chunk in _chunks(rids):
        found: dict[int, Row] = {}
        for rid in chunk:
            for ref in state.index_rows(rid, "reference"):
                if _followed(inc, ref):
                    target = state.rows.get((ref[1], ref[2]))
                    if target is not None and target.content is not None:
                        found[target.rid] = target
        out.extend(found[rid] for rid in sorted(found))
    return out


def _followed(inc: Include, ref: tuple) -> bool:
    """Whether an _include follows reference row ``ref`` (its source type already checked)."""
    if inc.param is not None and ref[0] != inc.param:
        return False
    return inc.target_type is None or ref[1] == inc.target_type


def _revinclude_one(
    tx: MemoryTransaction, inc: Include, sources: list[StoredResource]
) -> list[Row]:
    by_type: dict[str, list[str]] = {}
    for s in sources:
        if _revincluded_target(tx, inc, s):
            by_type.setdefault(s.type, []).append(s.id)
    out: list[Row] = []
    for target_type, ids in by_type.items():
        for chunk in _chunks(ids):
            found: dict[int, Row] = {}
            for target_id in chunk:
                for row, ref in tx._refs(target_id):
                    if ref[1] == target_type and _points_back(inc, row, ref):
                        found[row.rid] = row
            out.extend(found[rid] for rid in sorted(found))
    return out


def _revincluded_target(tx: MemoryTransaction, inc: Include, s: StoredResource) -> bool:
    if inc.target_type is not None and s.type != inc.target_type:
        return False
    targets = getattr(inc, "targets", None)
    if targets is None and inc.param is not None and inc.source_type is not None:
        # a query from before Include.targets: the parameter's definition names them
        sp = tx.search_parameters.of(inc.source_type).get(inc.param)
        targets = sp.target if sp is not None else ()
    return not targets or s.type in targets


def _points_back(inc: Include, row: Row, ref: tuple) -> bool:
    if inc.source_type is not None and row.type != inc.source_type:
        return False
    return inc.param is None or ref[0] == inc.param
