"""Count tables with all their margins, as a statistics publisher releases them (no I/O).

A table counts units (contacts, or persons) by up to five dimensions: ``municipality``
(kommunenummer), ``age`` (bands of whole years), ``sex`` (FHIR administrative gender),
``chapter`` (the diagnosis chapter: ICD-10 chapters I-XXII, ICPC-2 chapters A-Z for GP
contacts) and ``period`` (months, quarters or years).  Every cell is a tuple with one
category per dimension or ``TOTAL``, so a table of municipality x sex holds the interior
cells, the totals per municipality and per sex, and the grand total: the linked tables a
publisher releases together.

Each category stands for a set of *atoms* (single years of age, months, codes), so cells of
tables cut differently (age 0-17 here, 0-5 and 6-17 there; a year here, its months there)
can be related exactly: ``suppression`` uses that to stop differencing between releases.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from enjournal.fhir.errors import Invalid

TOTAL = "*"
DIMENSIONS = ("municipality", "age", "sex", "chapter", "period")
MAX_AGE = 120  # the oldest single year an age band reaches ("80+" is 80..120)
DEFAULT_AGE_BANDS = (0, 18, 45, 67, 80)  # 0-17, 18-44, 45-66, 67-79, 80+
SEXES = ("female", "male", "other", "unknown")
GRAINS = ("month", "quarter", "year")

Key = tuple[str, ...]

# ICD-10 (WHO 2019) chapters by their first and last three-character category.
ICD10_CHAPTERS = (
    ("I", "A00", "B99"),
    ("II", "C00", "D48"),
    ("III", "D50", "D89"),
    ("IV", "E00", "E90"),
    ("V", "F00", "F99"),
    ("VI", "G00", "G99"),
    ("VII", "H00", "H59"),
    ("VIII", "H60", "H95"),
    ("IX", "I00", "I99"),
    ("X", "J00", "J99"),
    ("XI", "K00", "K93"),
    ("XII", "L00", "L99"),
    ("XIII", "M00", "M99"),
    ("XIV", "N00", "N99"),
    ("XV", "O00", "O99"),
    ("XVI", "P00", "P96"),
    ("XVII", "Q00", "Q99"),
    ("XVIII", "R00", "R99"),
    ("XIX", "S00", "T98"),
    ("XX", "V01", "Y98"),
    ("XXI", "Z00", "Z99"),
    ("XXII", "U00", "U99"),
)
# ICPC-2 chapters are the code's first letter (A General ... Z Social problems).
ICPC2_CHAPTERS = frozenset("ABDFHKLNPRSTUWXYZ")
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10", "urn:oid:2.16.578.1.12.4.1.1.7110"})
ICPC2_SYSTEMS = frozenset({"urn:oid:2.16.578.1.12.4.1.1.7170", "http://hl7.org/fhir/sid/icpc-2"})
UNKNOWN = "unknown"


# ---- classifying one unit ------------------------------------------------------------------


def icd10_chapter(code: str) -> str | None:
    """The ICD-10 chapter (roman numeral) of a code such as "J45.9" or "J459", or None."""
    head = code.strip().upper().replace(".", "")[:3]
    if len(head) < 3 or not head[0].isalpha() or not head[1:].isdigit():
        return None
    for chapter, first, last in ICD10_CHAPTERS:
        if first <= head <= last:
            return chapter
    return None


def icpc2_chapter(code: str) -> str | None:
    """The ICPC-2 chapter (a letter) of a code such as "R74" or "K86", or None."""
    code = code.strip().upper()
    if len(code) >= 3 and code[0] in ICPC2_CHAPTERS and code[1:3].isdigit():
        return code[0]
    return None


def chapter(system: str | None, code: str | None) -> str:
    """The chapter category of a diagnosis: "ICD-10:X", "ICPC-2:R", or "unknown"."""
    if not code:
        return UNKNOWN
    if system in ICPC2_SYSTEMS:
        found = icpc2_chapter(code)
        return f"ICPC-2:{found}" if found else UNKNOWN
    if system in ICD10_SYSTEMS:
        found = icd10_chapter(code)
        return f"ICD-10:{found}" if found else UNKNOWN
    return UNKNOWN


def age_on(birth: str | None, day: date) -> int | None:
    """Whole years of age on ``day`` from a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)."""
    if not birth or len(birth) < 4 or not birth[:4].isdigit():
        return None
    year, month, dom = int(birth[:4]), int(birth[5:7] or 7), int(birth[8:10] or 1)
    years = day.year - year - ((day.month, day.day) < (month, dom))
    return years if 0 <= years <= MAX_AGE else None


def band_labels(bounds: Sequence[int]) -> tuple[str, ...]:
    """Labels of the age bands starting at ``bounds`` (e.g. 0, 18, 67 -> 0-17, 18-66, 67+)."""
    starts = check_bounds(bounds)
    ends = [b - 1 for b in starts[1:]]
    labels = [f"{s}-{e}" for s, e in zip(starts, ends, strict=False)]
    return (*labels, f"{starts[-1]}+")


def check_bounds(bounds: Sequence[int]) -> list[int]:
    starts = sorted(set(bounds))
    if not starts or starts[0] != 0 or starts[-1] > MAX_AGE:
        raise Invalid(f"age bands must start at 0 and stay within {MAX_AGE} years")
    return starts


def age_band(age: int | None, labels: Sequence[str]) -> str:
    if age is None:
        return UNKNOWN
    for label in labels:
        low, high = _band_range(label)
        if low <= age <= high:
            return label
    return UNKNOWN


def _band_range(label: str) -> tuple[int, int]:
    if label.endswith("+"):
        return int(label[:-1]), MAX_AGE
    low, high = label.split("-")
    return int(low), int(high)


def period_label(month: str, grain: str) -> str:
    """The period category of a month "YYYY-MM": itself, "YYYY-Qn" or "YYYY"."""
    if grain == "month":
        return month
    if grain == "quarter":
        return f"{month[:4]}-Q{(int(month[5:7]) - 1) // 3 + 1}"
    return month[:4]


def months(start: str, end: str) -> tuple[str, ...]:
    """Every month "YYYY-MM" from the month of ``start`` to that of ``end`` (dates)."""
    year, month = int(start[:4]), int(start[5:7])
    last = (int(end[:4]), int(end[5:7]))
    out = []
    while (year, month) <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return tuple(out)


# ---- atoms: what a category stands for -----------------------------------------------------


def atoms(dimension: str, category: str) -> frozenset:
    """The atoms a category covers: single years for an age band, months for a period,
    the category itself otherwise (an unknown age covers the atom "unknown")."""
    try:
        if dimension == "age" and category != UNKNOWN:
            low, high = _band_range(category)
            return frozenset(range(low, high + 1))
        if dimension == "period":
            return frozenset(_period_months(category))
    except ValueError:
        pass  # a category of another shape stands for itself
    return frozenset({category})


def _period_months(category: str) -> tuple[str, ...]:
    if not category[:4].isdigit():
        raise ValueError(category)
    if len(category) == 7 and category[4] == "-" and category[5:].isdigit():
        return (category,)
    if "-Q" in category:
        year, quarter = category.split("-Q")
        first = (int(quarter) - 1) * 3 + 1
        return tuple(f"{year}-{m:02d}" for m in range(first, first + 3))
    return tuple(f"{category}-{m:02d}" for m in range(1, 13))


# ---- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dimension:
    name: str
    categories: tuple[str, ...]


@dataclass
class Table:
    """Counts of one measure by ``dimensions`` within ``scope`` (dimension -> atoms the
    whole table is restricted to, e.g. the period's months), with every margin."""

    measure: str
    dimensions: tuple[Dimension, ...]
    scope: Mapping[str, frozenset] = field(default_factory=dict)
    counts: dict[Key, int] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def cells(self) -> list[Key]:
        """Every cell, interior and margins, in a fixed order (categories, then total)."""
        axes = [(*d.categories, TOTAL) for d in self.dimensions]
        return [tuple(key) for key in itertools.product(*axes)]

    def interior(self) -> list[Key]:
        return [k for k in self.cells() if TOTAL not in k]

    def grand_total(self) -> Key:
        return tuple(TOTAL for _ in self.dimensions)

    def relations(self, key: Key) -> list[list[Key]]:
        """The additive relations through ``key``: for each dimension, the line of cells
        that differ from it only there (the margin is the sum of the others)."""
        lines = []
        for at, dim in enumerate(self.dimensions):
            line = [(*key[:at], c, *key[at + 1 :]) for c in (*dim.categories, TOTAL)]
            lines.append(line)
        return lines


def build(
    measure: str,
    rows: Iterable[Mapping[str, str]],
    dimensions: Sequence[str],
    scope: Mapping[str, frozenset] | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
) -> Table:
    """Count ``rows`` (one per unit, each naming its category in every dimension) into a
    table with all margins.  ``categories`` fixes a dimension's categories (e.g. every age
    band, even empty ones); otherwise those seen, sorted."""
    _check_dimensions(dimensions)
    rows = list(rows)
    fixed = categories or {}
    dims = tuple(Dimension(n, _categories(n, rows, fixed.get(n))) for n in dimensions)
    counts: dict[Key, int] = dict.fromkeys(_all_cells(dims), 0)
    for row in rows:
        inner = tuple(str(row[n]) for n in dimensions)
        for key in _margins_of(inner):
            counts[key] += 1
    return Table(measure, dims, dict(scope or {}), counts)


def _check_dimensions(dimensions: Sequence[str]) -> None:
    unknown = [d for d in dimensions if d not in DIMENSIONS]
    if unknown or len(set(dimensions)) != len(dimensions):
        raise Invalid(f"dimensions are some of {', '.join(DIMENSIONS)}, each once")


def _categories(name: str, rows: list, fixed: Sequence[str] | None) -> tuple[str, ...]:
    seen = {str(r[name]) for r in rows}
    if fixed is None:
        return tuple(sorted(seen))
    extra = sorted(seen - set(fixed))  # e.g. "unknown": never dropped from the table
    return (*fixed, *extra)


def _all_cells(dims: tuple[Dimension, ...]) -> list[Key]:
    return [tuple(k) for k in itertools.product(*[(*d.categories, TOTAL) for d in dims])]


def _margins_of(inner: Key) -> list[Key]:
    """The interior cell and every margin it adds to (2^d cells)."""
    choices = [(value, TOTAL) for value in inner]
    return [tuple(k) for k in itertools.product(*choices)]
