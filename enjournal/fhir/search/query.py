"""A parsed FHIR search (http://hl7.org/fhir/R4/search.html) as plain, immutable data.

``enjournal.fhir.search.parse`` builds these from the request's parameters;
``enjournal.storage.search_sql`` turns them into one SQL statement.  They name search
parameters and their types, never where the store keeps them: the storage picks its tables.

A search is an AND of *criteria*; each criterion is one of

* ``Criterion``: a parameter of the resource itself, with OR'ed typed values,
* ``Chain``: a reference parameter whose target must match an inner criterion
  (``subject:Patient.name=x``), nesting for several levels,
* ``Has``: reverse chaining: some resource of ``source_type`` referencing this one through
  ``ref_param`` matches an inner criterion (``_has:Observation:patient:code=x``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

DEFAULT_COUNT = 20
MAX_COUNT = 1000


# -- typed values (one OR alternative each) -------------------------------------------------


@dataclass(frozen=True)
class StringValue:
    text: str  # as given (unescaped); the SQL side normalizes


@dataclass(frozen=True)
class TokenValue:
    system: str | None  # None: any system; "": no system (``|code``)
    code: str | None  # None: any code (``system|``)


@dataclass(frozen=True)
class ReferenceValue:
    type: str | None = None  # target resource type, None: any allowed type
    id: str | None = None
    url: str | None = None  # an absolute URL reference


@dataclass(frozen=True)
class DateValue:
    prefix: str  # eq ne gt lt ge le sa eb ap
    low: int  # epoch ms, inclusive; for ``ap`` already widened
    high: int


@dataclass(frozen=True)
class NumberValue:
    prefix: str
    low: float  # implicit precision range [low, high) (for ``ap``: the tolerated range)
    high: float
    value: float


@dataclass(frozen=True)
class QuantityValue:
    prefix: str
    low: float
    high: float
    value: float
    system: str | None = None
    code: str | None = None  # unit code (or unit text when system is None)


@dataclass(frozen=True)
class UriValue:
    value: str


@dataclass(frozen=True)
class CompositeValue:
    parts: tuple[Value, ...]  # one per component, in component order
    types: tuple[str, ...]  # the component parameter types


Value = Union[  # noqa: UP007
    StringValue,
    TokenValue,
    ReferenceValue,
    DateValue,
    NumberValue,
    QuantityValue,
    UriValue,
    CompositeValue,
]


# -- criteria -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    """One parameter of the resource, e.g. ``birthdate=ge2000`` or ``code:not=a,b``.

    ``name`` is the parameter code; ``type`` the type of the index rows to match (the
    parameter type: string, token, reference, date, number, quantity, uri, composite) and
    ``index_param`` their ``param`` (the code; ``:identifier`` matches the token rows named
    ``<param>:identifier``, so its type is token).  ``on_resource`` is set for ``_id`` and
    ``_lastUpdated``, which are the resource's own id and time rather than index rows.
    ``missing`` is set for ``:missing`` (then ``values`` is empty).
    """

    name: str
    type: str
    index_param: str
    modifier: str | None = None
    values: tuple[Value, ...] = ()
    missing: bool | None = None
    on_resource: bool = False


@dataclass(frozen=True)
class Chain:
    name: str  # the reference parameter
    target_type: str
    criterion: Term


@dataclass(frozen=True)
class Has:
    source_type: str
    ref_param: str
    criterion: Term


Term = Union[Criterion, Chain, Has]  # noqa: UP007


# -- result parameters ----------------------------------------------------------------------


@dataclass(frozen=True)
class Include:
    source_type: str | None  # None only for ``*`` on _revinclude
    param: str | None  # None: every reference parameter (``*``)
    target_type: str | None = None
    reverse: bool = False  # _revinclude
    iterate: bool = False
    # the types ``param`` may refer to (empty: any), from its definition; a _revinclude
    # reaches only those
    targets: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class SortKey:
    name: str
    type: str  # parameter type, or "_id" / "_lastUpdated"
    descending: bool = False


@dataclass
class SearchQuery:
    resource_type: str | None  # None: a system-wide search (``types`` may narrow it)
    criteria: list[Term] = field(default_factory=list)
    types: tuple[str, ...] = ()  # _type, for system-wide searches
    compartment: tuple[str, str] | None = None  # e.g. ("Patient", "123")
    includes: list[Include] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    summary: str | None = None  # true | text | data | count | false
    elements: tuple[str, ...] = ()
    total: str | None = None  # none | estimate | accurate
    cursor: str | None = None
    # (name, value) of parameters that were not applied, with why: the server reports them.
    ignored: list[tuple[str, str, str]] = field(default_factory=list)
    applied: list[tuple[str, str]] = field(default_factory=list)

    def canonical_params(self, *, cursor: bool = True) -> list[tuple[str, str]]:
        """The (name, value) pairs actually applied, in request order: for the self link."""
        out = list(self.applied)
        if cursor and self.cursor:
            out.append(("_cursor", self.cursor))
        return out

    @property
    def needs_write(self) -> bool:
        """True when running the search may write (a sorted first page stores its rid list in
        ``search_pages``): the store must then open a read-write transaction."""
        return bool(self.sort) and self.cursor is None and self.summary != "count"
