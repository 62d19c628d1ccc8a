"""Small-cell suppression that survives the margins and earlier releases (no I/O).

1. **Primary suppression**: a cell (interior or margin) counting from 1 to ``threshold - 1``
   units is not published.  Zero is published unless ``suppress_zeros`` is set: an empty
   cell names nobody, and hiding zeros while a margin is published often only shifts the
   disclosure elsewhere.
2. **Audit by exact bounds**: every suppressed cell is bounded by two linear programs, the
   minimum and the maximum of the cell over all non-negative tables that agree with every
   published cell of this release *and of the earlier releases of the same measure*
   (``Release``).  The bounds are rounded inwards to whole counts (an attacker knows counts
   are integers).  A cell is protected when ``upper - lower >= protection`` (by default the
   threshold); a cell that can be pinned, or narrowed below that, fails.
3. **Complementary suppression**: for each failing cell one more published cell of this
   release is suppressed, chosen deterministically: a cell of a line (row, column, ...)
   that pins the failing cell alone, else of any line through it, else one overlapping it
   (for a cell of an earlier release), the smallest count first (preferring one at least as
   large as the width still missing; zeros last; ties by the table's order).  Suppressing
   removes constraints, so a cell once protected stays protected: only failing and new
   cells are audited again, until none fails.  Then, in a table small enough
   (``PUBLISH_BACK_BUDGET``), each secondary cell, the largest first, is published again if
   the whole audit still passes without it (the greedy step can overshoot), and a last
   audit records every hidden cell's range.

Releases are related through *atoms* (``tables.atoms``): every dimension is cut into the
coarsest pieces all releases' categories are unions of, and each published cell is the
sum of the base cells (one piece per dimension) it covers.  So a table by municipality x
sex and a later one by municipality x age band constrain the same base cells, as do a
year's table and one of its months.  The linear programs are the relaxation an attacker
could solve; an integer program can be tighter in tables of three or more dimensions (the
rounding takes care of the common cases, see docs/registers.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from enjournal.fhir.errors import Invalid
from enjournal.services.registers.tables import TOTAL, Dimension, Key, Table, atoms

if TYPE_CHECKING:  # scipy is imported where a table is audited, not at every worker's start
    from scipy import sparse

PRIMARY = "primary"
SECONDARY = "secondary"
PUBLISHED = "published"
MAX_BASE_CELLS = 400_000  # base cells of one audit: beyond, the request must be narrowed
EPS = 1e-6
AUDIT_BUDGET = 1_000_000  # hidden cells x unknowns: about a minute of linear programs
PUBLISH_BACK_BUDGET = 5_000  # (secondary cells x hidden cells) worth trying to publish back


@dataclass(frozen=True)
class Rules:
    threshold: int = 5
    protection: int | None = None  # the width a suppressed cell's range needs; None: threshold
    suppress_zeros: bool = False

    def __post_init__(self) -> None:
        if self.threshold < 1 or (self.protection is not None and self.protection < 1):
            raise Invalid("the threshold and the protection level are whole numbers >= 1")

    @property
    def width(self) -> int:
        return self.threshold if self.protection is None else self.protection


@dataclass(frozen=True)
class Release:
    """What one publication showed: its cells' published counts and its suppressed cells
    (no counts: a release never keeps what it hid)."""

    id: str
    dimensions: tuple[Dimension, ...]
    scope: Mapping[str, frozenset]
    published: Mapping[Key, int]
    suppressed: Mapping[Key, str]  # key -> primary | secondary
    protection: int

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)


@dataclass
class Protected:
    """A table after suppression: each cell's status and each suppressed cell's audited
    range (lower, upper; the lower bound is the true count where the upper one alone was
    far enough to pass), and which earlier releases the audit took into account."""

    table: Table
    rules: Rules
    status: dict[Key, str]
    ranges: dict[Key, tuple[float, float]] = field(default_factory=dict)
    known_before: list[Key] = field(default_factory=list)  # earlier releases pinned them
    linked: list[str] = field(default_factory=list)
    unlinked: list[str] = field(default_factory=list)  # their counts contradict today's data

    def value(self, key: Key) -> int | None:
        return None if self.status[key] != PUBLISHED else self.table.counts[key]

    def release(self, release_id: str) -> Release:
        table = self.table
        published = {k: table.counts[k] for k, s in self.status.items() if s == PUBLISHED}
        hidden = {k: s for k, s in self.status.items() if s != PUBLISHED}
        return Release(
            release_id, table.dimensions, table.scope, published, hidden, self.rules.width
        )


# ---- primary ---------------------------------------------------------------------------------


def primary(table: Table, rules: Rules) -> dict[Key, str]:
    """Each cell's status after primary suppression alone."""
    return {key: _primary_status(table.counts[key], rules) for key in table.cells()}


def _primary_status(count: int, rules: Rules) -> str:
    if 0 < count < rules.threshold or (count == 0 and rules.suppress_zeros):
        return PRIMARY
    return PUBLISHED


# ---- the whole method ------------------------------------------------------------------------


def protect(table: Table, rules: Rules, earlier: Sequence[Release] = ()) -> Protected:
    """Primary then complementary suppression of ``table``, audited against ``earlier``
    releases of the same measure (``Release``), until every suppressed cell of this table
    and of the earlier ones has a range at least its protection wide."""
    result = Protected(table, rules, primary(table, rules))
    linked = _consistent(result, earlier)
    result.linked = [r.id for r in linked]
    result.unlinked = [r.id for r in earlier if r.id not in result.linked]
    pending = _targets(result, linked)
    _check_budget(result, linked, len(pending))
    while pending:
        failing = _exempt(result, linked, _audit(result, linked, pending))
        added = _complements(result, linked, failing)
        if not added:
            break  # every cell is hidden: this table publishes nothing
        for key in added:
            result.status[key] = SECONDARY
        pending = [*failing, *((None, key) for key in added)]
    _publish_back(result, linked)
    result.known_before = [k for k in result.known_before if result.status[k] != PUBLISHED]
    result.ranges = {}
    _audit(result, linked, _guarded(result, linked))  # the final ranges, as published
    return result


def _check_budget(result: Protected, linked: Sequence[Release], targets: int) -> None:
    """Refuse (400) an audit that would take minutes: its work grows with the hidden cells
    times the unknowns of each linear program."""
    unknowns = Model.of(result.release("new"), linked).a_eq.shape[1]
    if unknowns * targets > AUDIT_BUDGET:
        raise Invalid(
            f"the suppression audit is too large ({targets} hidden cells, {unknowns} unknowns):"
            " ask for fewer categories, a coarser grain or a higher level"
        )


def _publish_back(result: Protected, linked: Sequence[Release]) -> None:
    """The greedy choice may hide more than needed: try to publish each secondary cell
    again, the largest first, and keep it published if every hidden cell stays protected."""
    counts, order = result.table.counts, {k: i for i, k in enumerate(result.table.cells())}
    secondary = [k for k, s in result.status.items() if s == SECONDARY]
    if len(secondary) * len(_guarded(result, linked)) > PUBLISH_BACK_BUDGET:
        return  # a full audit per secondary cell: too slow for a large table
    for key in sorted(secondary, key=lambda k: (-counts[k], order[k])):
        result.status[key] = PUBLISHED
        near = {c for line in result.table.relations(key) for c in line}
        targets = sorted(
            _guarded(result, linked), key=lambda t: t[0] is not None or t[1] not in near
        )
        if _audit(result, linked, targets, first_only=True):  # the likeliest to fail first
            result.status[key] = SECONDARY


def _guarded(result: Protected, linked: Sequence[Release]) -> list[Target]:
    known = set(result.known_before)
    return [t for t in _targets(result, linked) if t[0] is not None or t[1] not in known]


Target = tuple[int | None, Key]  # (index of an earlier release or None for this table, cell)


def _targets(result: Protected, linked: Sequence[Release]) -> list[Target]:
    own: list[Target] = [(None, k) for k, s in result.status.items() if s != PUBLISHED]
    old: list[Target] = [(i, k) for i, r in enumerate(linked) for k in r.suppressed]
    return own + old


def _audit(
    result: Protected, linked: Sequence[Release], targets: list[Target], first_only=False
) -> list[Target]:
    """Bound ``targets``; return those too narrow (``first_only``: stop at the first);
    record this table's ranges (unless only trying)."""
    model = Model.of(result.release("new"), linked)
    failing = []
    for origin, key in targets:
        release = model.releases[0 if origin is None else origin + 1]
        # a cell whose count is known passes on its upper bound alone, if far enough
        true = result.table.counts[key] if origin is None else None
        low, high = model.bounds(release, key, true, release.protection)
        if origin is None and not first_only:
            result.ranges[key] = (low, high)
        if _narrow((low, high), release.protection):
            failing.append((origin, key))
            if first_only:
                break
    return failing


def _exempt(result: Protected, linked: Sequence[Release], failing: list[Target]) -> list[Target]:
    """Leave out this table's cells the earlier releases already pin, with no more than
    this table's layout (its categories, shown however much is hidden): suppressing them
    protects nothing (they are listed in ``known_before``)."""
    own = [key for origin, key in failing if origin is None]
    if not own or not linked:
        return failing
    before = Model([_unpublished(result.release("new")), *linked])
    width = result.rules.width
    known = {k for k in own if _narrow(before.bounds(before.releases[0], k), width)}
    result.known_before.extend(k for k in own if k in known and k not in result.known_before)
    return [(o, k) for o, k in failing if o is not None or k not in known]


def _unpublished(release: Release) -> Release:
    everything = {**release.suppressed, **dict.fromkeys(release.published, PUBLISHED)}
    return Release(release.id, release.dimensions, release.scope, {}, everything, 0)


def _narrow(bounds: tuple[float, float], width: int) -> bool:
    return bounds[1] - bounds[0] < width


def audit(result: Protected, earlier: Sequence[Release] = ()) -> dict[Key, tuple[float, float]]:
    """Every suppressed cell's range given what ``result`` and ``earlier`` publish: the
    check itself, as a test would run it."""
    model = Model.of(result.release("new"), earlier)
    own = model.releases[0]
    return {key: model.bounds(own, key) for key in own.suppressed}


def _consistent(result: Protected, earlier: Sequence[Release]) -> list[Release]:
    """The earlier releases whose published counts agree with today's table (a release
    from data corrected since cannot be linked exactly; the report names it)."""
    current = result.release("new")
    kept = [r for r in earlier if Model.of(current, [r]).feasible()]
    return kept if Model.of(current, kept).feasible() else []


# ---- choosing complementary cells ------------------------------------------------------------


def _complements(result: Protected, linked: Sequence[Release], failing: list[Target]) -> list[Key]:
    chosen: list[Key] = []
    order = {key: i for i, key in enumerate(result.table.cells())}
    for origin, key in failing:
        low, high = result.ranges.get(key, (0.0, 0.0)) if origin is None else (0.0, 0.0)
        missing = result.rules.width - (high - low)
        pick = _partner(result, linked, origin, key, missing, order, chosen)
        if pick is not None:
            chosen.append(pick)
    return chosen


def _partner(result, linked, origin, key, missing, order, chosen) -> Key | None:
    for tier in _tiers(result, linked, origin, key):
        open_ = [k for k in tier if result.status[k] == PUBLISHED and k not in chosen]
        if open_:
            counts = result.table.counts
            return min(open_, key=lambda k: _preference(counts[k], missing, order[k]))
    return None


def _preference(count: int, missing: float, position: int) -> tuple:
    return (count == 0, count < missing, count, position)


def _tiers(result: Protected, linked, origin, key: Key) -> list[list[Key]]:
    """Where to look for a partner, nearest first."""
    table = result.table
    if origin is None:
        lines = table.relations(key)
        alone = [c for line in lines if _hidden_in(result, line) == 1 for c in line]
        near = [c for line in lines for c in line]
    else:
        overlapping = _overlapping(result, linked[origin], key)
        alone = overlapping
        near = [c for k in overlapping for line in table.relations(k) for c in line]
    return [alone, near, table.cells()]


def _hidden_in(result: Protected, line: list[Key]) -> int:
    return sum(1 for k in line if result.status[k] != PUBLISHED)


def _overlapping(result: Protected, release: Release, key: Key) -> list[Key]:
    """This table's cells that share a base cell with ``key`` of an earlier release."""
    theirs = _span(release.names, release.scope, key)
    own = result.table
    return [k for k in own.cells() if _meets(_span(own.names, own.scope, k), theirs)]


def _meets(a: dict, b: dict) -> bool:
    for name in a.keys() & b.keys():
        if a[name] is not None and b[name] is not None and not (a[name] & b[name]):
            return False
    return True


# ---- the linear model ------------------------------------------------------------------------


def _span(names: Sequence[str], scope: Mapping[str, frozenset], key: Key) -> dict:
    """A cell as atoms per dimension (None: every atom)."""
    span: dict = {name: scope.get(name) for name in scope}
    for name, category in zip(names, key, strict=True):
        span[name] = scope.get(name) if category == TOTAL else atoms(name, category)
    return span


class Model:
    """The base cells all releases are sums of, and each published cell as an equation
    over them, presolved: base cells a published zero or a lone published cell fixes are
    substituted, so each bound is a small linear program over what stays free."""

    def __init__(self, releases: list[Release]):
        self.releases = releases
        spans = [[_span(r.names, r.scope, k) for k in r.published] for r in releases]
        hidden = [_span(r.names, r.scope, k) for r in releases for k in r.suppressed]
        every = [s for per in spans for s in per] + hidden
        self.dims = sorted({name for span in every for name in span})
        self.pieces = {d: _pieces([s.get(d) for s in every]) for d in self.dims}
        self.size = math.prod(len(p) for p in self.pieces.values())
        if self.size > MAX_BASE_CELLS:
            raise Invalid("the tables are too detailed to audit; ask for fewer categories")
        values = [v for r in releases for v in r.published.values()]
        rows = [self.cells(s) for per in spans for s in per]
        self._presolve(rows, np.array(values, dtype=float), self._unlisted(releases))

    @classmethod
    def of(cls, current: Release, earlier: Sequence[Release]) -> Model:
        return cls([current, *earlier])

    def cells(self, span: Mapping) -> np.ndarray:
        """The base cells (flat indices) a span covers."""
        index = np.zeros(1, dtype=np.int64)
        for dim in self.dims:
            pieces = self.pieces[dim]
            chosen = [i for i, p in enumerate(pieces) if _within(p, span.get(dim))]
            index = np.add.outer(index * len(pieces), np.array(chosen, dtype=np.int64)).ravel()
        return index

    def _unlisted(self, releases: list[Release]) -> list[np.ndarray]:
        """Base cells a release's totals cover but none of its categories: empty, since a
        total is the sum of its categories (a municipality a table does not list had no
        one in its scope)."""
        out = []
        for release in releases:
            for dim in release.dimensions:
                listed = frozenset().union(*(atoms(dim.name, c) for c in dim.categories))
                span = {**release.scope, dim.name: _Outside(listed, release.scope.get(dim.name))}
                out.append(self.cells(span))
        return out

    def _presolve(self, rows: list[np.ndarray], values: np.ndarray, empty: list) -> None:
        matrix = _matrix(rows, self.size)
        fixed = np.zeros(self.size, dtype=bool)
        for cells in empty:
            fixed[cells] = True
        for row in np.flatnonzero(values == 0):
            fixed[rows[row]] = True
        known = np.zeros(self.size)
        self._fix_singletons(matrix, values, fixed, known)
        self.fixed, self.known = fixed, known
        rest = values - matrix @ known
        counts = matrix @ (~fixed).astype(float)
        live = counts > 0
        self.consistent = bool(
            np.all(np.abs(rest[~live]) < EPS) and np.all(rest > -EPS) and np.all(known > -EPS)
        )
        # a free base cell no remaining equation names is unbounded: no LP column for it
        used = np.asarray(matrix[live].sum(axis=0)).ravel() > 0
        self.loose = ~fixed & ~used
        kept = np.flatnonzero(~fixed & used)
        self.column = np.full(self.size, -1)
        self.column[kept] = np.arange(len(kept))
        self.a_eq = matrix[live][:, kept]
        self.b_eq = rest[live]

    @staticmethod
    def _fix_singletons(matrix, values, fixed, known) -> None:
        """A published cell with one base cell left free fixes it (repeat until none)."""
        while True:
            free_count = matrix @ (~fixed).astype(float)
            lone = np.flatnonzero(free_count == 1)
            if len(lone) == 0:
                return
            rest = values - matrix @ known
            for row in lone:
                cols = matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]]
                open_ = cols[~fixed[cols]]
                if len(open_) == 1:
                    fixed[open_[0]] = True
                    known[open_[0]] = rest[row]

    def feasible(self) -> bool:
        if not self.consistent:
            return False
        if self.a_eq.shape[0] == 0:
            return True
        zero = np.zeros(self.a_eq.shape[1])
        from scipy.optimize import linprog

        found = linprog(zero, A_eq=self.a_eq, b_eq=self.b_eq, bounds=(0, None), method="highs")
        return bool(found.status == 0)

    def bounds(
        self, release: Release, key: Key, true: int | None = None, width: int = 0
    ) -> tuple[float, float]:
        """The least and greatest whole count ``key`` of ``release`` can have.  Given its
        ``true`` count, an upper bound ``width`` or more above it is enough: the lower bound
        is then not solved for (reported as the true count)."""
        cells = self.cells(_span(release.names, release.scope, key))
        constant = float(self.known[cells].sum())
        columns = self.column[cells]
        columns = columns[columns >= 0]
        if len(columns) == 0 and not self.loose[cells].any():
            return constant, constant
        cost = np.zeros(self.a_eq.shape[1])
        cost[columns] = 1.0
        loose = bool(self.loose[cells].any())  # a base cell nothing bounds
        high = math.inf if loose else constant + _floor(-self._optimum(-cost))
        if true is not None and high - true >= width:
            return float(true), high
        low = self._optimum(cost) if len(columns) else 0.0
        return constant + math.ceil(low - EPS), high

    def _optimum(self, cost: np.ndarray) -> float:
        from scipy.optimize import linprog

        found = linprog(cost, A_eq=self.a_eq, b_eq=self.b_eq, bounds=(0, None), method="highs")
        if found.status == 3:
            return -math.inf
        if found.status != 0:
            raise Invalid(f"the suppression audit could not be solved: {found.message}")
        return float(found.fun)


@dataclass(frozen=True)
class _Outside:
    """The atoms of a dimension (``within`` a scope, if any) outside ``listed``."""

    listed: frozenset
    within: frozenset | None


def _within(piece: frozenset, wanted) -> bool:
    if wanted is None:
        return True
    if isinstance(wanted, _Outside):
        inside = wanted.within is None or piece <= wanted.within
        return inside and not piece <= wanted.listed
    return piece <= wanted


def _floor(value: float) -> float:
    return value if math.isinf(value) else math.floor(value + EPS)


def _pieces(sets: list) -> list[frozenset]:
    """The coarsest partition of a dimension's atoms every given set is a union of, with
    one more piece for the atoms no set names (a total covers them too)."""
    distinct = list(dict.fromkeys(s for s in sets if s is not None))
    member: dict = {}
    for index, group in enumerate(distinct):
        for atom in group:
            member.setdefault(atom, []).append(index)
    by_signature: dict[tuple, set] = {}
    for atom, where in member.items():
        by_signature.setdefault(tuple(where), set()).add(atom)
    pieces = [frozenset(p) for _, p in sorted(by_signature.items())]
    return [*pieces, frozenset({_Rest()})]


class _Rest:
    """The atoms no category names (e.g. municipalities no release lists)."""

    def __repr__(self) -> str:
        return "<rest>"


def _matrix(rows: list[np.ndarray], size: int) -> sparse.csr_matrix:
    from scipy import sparse

    if not rows:
        return sparse.csr_matrix((0, size))
    lengths = [len(r) for r in rows]
    row_index = np.repeat(np.arange(len(rows)), lengths)
    cols = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    data = np.ones(len(cols))
    return sparse.csr_matrix((data, (row_index, cols)), shape=(len(rows), size))
