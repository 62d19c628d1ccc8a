"""Suppression: primary, complementary, and the exact audit, checked by an independent oracle.

The oracle (``oracle_ranges``) knows nothing of the implementation's presolve or pieces: its
variables are the finest cross-classification of the microdata, every published cell of
every release is an equation over them, and each suppressed cell is minimised and maximised
by scipy's linprog."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from scipy.optimize import linprog

from enjournal.fhir.errors import Invalid
from enjournal.services.registers import suppression as S
from enjournal.services.registers import tables as T

# ---- the oracle ---------------------------------------------------------------------------


def fine_cells(units: list[dict], names: list[str]) -> tuple[list[tuple], list[int]]:
    """Every combination of the seen values of ``names`` and its count."""
    values = [sorted({u[n] for u in units}) for n in names]
    combos = list(itertools.product(*values))
    counts = {c: 0 for c in combos}
    for unit in units:
        counts[tuple(unit[n] for n in names)] += 1
    return combos, [counts[c] for c in combos]


def matches(release: S.Release, key: tuple, combo: dict, grain) -> bool:
    for name, category in zip(release.names, key, strict=True):
        if category != T.TOTAL and grain(name, combo[name]) != category:
            return False
    return all(grain(n, combo[n]) in allowed for n, allowed in release_scope(release).items())


def release_scope(release: S.Release) -> dict:
    return {n: {a for a in atoms} for n, atoms in release.scope.items()}


def oracle_ranges(units, names, releases, grains=None) -> list[dict]:
    """Per release, each suppressed cell's exact LP range over the fine table."""
    grains = grains or [lambda n, v: v] * len(releases)
    combos, _ = fine_cells(units, names)
    rows, rhs = [], []
    dicts = [dict(zip(names, c, strict=True)) for c in combos]
    for release, grain in zip(releases, grains, strict=True):
        for key, value in release.published.items():
            rows.append([1.0 if matches(release, key, d, grain) else 0.0 for d in dicts])
            rhs.append(value)
    a_eq = np.array(rows).reshape(len(rows), len(dicts))
    b_eq = np.array(rhs, dtype=float)
    out = []
    for release, grain in zip(releases, grains, strict=True):
        ranges = {}
        for key in release.suppressed:
            cost = np.array([1.0 if matches(release, key, d, grain) else 0.0 for d in dicts])
            low = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
            high = linprog(-cost, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
            assert low.status == 0
            top = math.inf if high.status == 3 else -high.fun
            ranges[key] = (low.fun, top)
        out.append(ranges)
    return out


def random_units(rng: random.Random, names: list[str], sizes: list[int]) -> list[dict]:
    """Units over small categories, skewed so small cells are common."""
    units = []
    weights = {n: [rng.random() ** 2 for _ in range(k)] for n, k in zip(names, sizes, strict=True)}
    for _ in range(rng.randint(5, 120)):
        unit = {}
        for name, size in zip(names, sizes, strict=True):
            unit[name] = f"{name[0]}{rng.choices(range(size), weights[name])[0]}"
        units.append(unit)
    return units


def width_ok(ranges: dict, width: int) -> bool:
    return all(high - low >= width - 1e-6 for low, high in ranges.values())


# ---- tables -------------------------------------------------------------------------------


def test_margins_are_the_sums_of_their_lines():
    rng = random.Random(7)
    for _ in range(30):
        units = random_units(rng, ["municipality", "sex", "chapter"], [3, 2, 4])
        table = T.build("contacts", units, ["municipality", "sex", "chapter"])
        assert table.counts[table.grand_total()] == len(units)
        for key in table.cells():
            for at, _ in enumerate(key):
                if key[at] == T.TOTAL:
                    line = [k for k in table.relations(key)[at] if k != key]
                    assert table.counts[key] == sum(table.counts[k] for k in line)


def test_chapters_ages_and_periods():
    assert T.chapter("http://hl7.org/fhir/sid/icd-10", "J45.9") == "ICD-10:X"
    assert T.chapter("urn:oid:2.16.578.1.12.4.1.1.7110", "S72") == "ICD-10:XIX"
    assert T.chapter("urn:oid:2.16.578.1.12.4.1.1.7110", "T98") == "ICD-10:XIX"
    assert T.chapter("http://hl7.org/fhir/sid/icd-10", "D50") == "ICD-10:III"
    assert T.chapter("urn:oid:2.16.578.1.12.4.1.1.7170", "R74") == "ICPC-2:R"
    assert T.chapter("urn:oid:2.16.578.1.12.4.1.1.7170", "Q11") == T.UNKNOWN  # no chapter Q
    assert T.chapter(None, "R74") == T.UNKNOWN
    labels = T.band_labels([0, 18, 67])
    assert labels == ("0-17", "18-66", "67+")
    from datetime import date

    assert T.age_band(T.age_on("2008-03-02", date(2026, 3, 1)), labels) == "0-17"
    assert T.age_band(T.age_on("2008-03-02", date(2026, 3, 2)), labels) == "18-66"
    assert T.atoms("period", "2025-Q2") == {"2025-04", "2025-05", "2025-06"}
    assert T.period_label("2025-11", "quarter") == "2025-Q4"
    assert T.months("2025-11-15", "2026-02-01") == ("2025-11", "2025-12", "2026-01", "2026-02")
    with pytest.raises(Invalid):
        T.band_labels([5, 18])


# ---- the hand example ---------------------------------------------------------------------


def municipality_by_sex() -> T.Table:
    cells = {("A", "female"): 2, ("A", "male"): 10, ("B", "female"): 7, ("B", "male"): 8}
    cells |= {("C", "female"): 9, ("C", "male"): 6}
    units = [{"municipality": m, "sex": s} for (m, s), n in cells.items() for _ in range(n)]
    return T.build("contacts", units, ["municipality", "sex"])


def test_primary_suppression_alone_leaks_and_the_complements_fix_it():
    table = municipality_by_sex()
    rules = S.Rules()
    only_primary = S.Protected(table, rules, S.primary(table, rules))
    assert [k for k, s in only_primary.status.items() if s != S.PUBLISHED] == [("A", "female")]
    # A's total (12) minus A's men (10): the 2 is worked out exactly.
    assert S.audit(only_primary)[("A", "female")] == (2, 2)

    protected = S.protect(table, rules)
    hidden = {k: s for k, s in protected.status.items() if s != S.PUBLISHED}
    assert hidden[("A", "female")] == S.PRIMARY
    assert len(hidden) == 4 and set(hidden.values()) == {S.PRIMARY, S.SECONDARY}
    # the smallest cells of the row and column were chosen: B's women (7), then B's men
    assert {("A", "male"), ("B", "female"), ("B", "male")} == set(hidden) - {("A", "female")}
    for low, high in S.audit(protected).values():
        assert high - low >= 5
    assert protected.value(("A", "female")) is None and protected.value(("C", "male")) == 6


def test_the_threshold_and_the_protection_are_configurable():
    table = municipality_by_sex()
    assert S.protect(table, S.Rules(threshold=2)).status[("A", "female")] == S.PUBLISHED
    strict = S.protect(table, S.Rules(threshold=7))
    assert strict.status[("C", "male")] == S.PRIMARY  # 6 < 7
    assert strict.status[("B", "female")] == S.SECONDARY  # 7 is not small, but needed
    wide = S.protect(table, S.Rules(threshold=3, protection=12))
    assert all(high - low >= 12 for low, high in S.audit(wide).values())
    with pytest.raises(Invalid):
        S.Rules(threshold=0)


def test_zeros_are_published_unless_asked():
    units = [{"sex": "female"}] * 9 + [{"sex": "male"}] * 0
    table = T.build("contacts", units, ["sex"], categories={"sex": ["female", "male"]})
    assert S.protect(table, S.Rules()).status[("male",)] == S.PUBLISHED
    hidden = S.protect(table, S.Rules(suppress_zeros=True))
    assert hidden.status[("male",)] == S.PRIMARY
    assert hidden.status[("female",)] == S.SECONDARY  # else 9 - 9 = 0 shows


# ---- random tables, audited by the oracle ------------------------------------------------


SHAPES = [[2, 2], [2, 3], [3, 3], [3, 4], [2, 5], [2, 2, 2], [2, 2, 3], [5], [2, 3, 2]]


@pytest.mark.parametrize("seed", range(10))
def test_random_tables_every_suppressed_cell_stays_wide(seed):
    rng = random.Random(seed)
    for case in range(20):  # 10 x 20 = 200 tables
        sizes = rng.choice(SHAPES)
        names = ["municipality", "sex", "chapter"][: len(sizes)]
        units = random_units(rng, names, sizes)
        rules = S.Rules(threshold=rng.choice([3, 5, 5, 11]))
        protected = S.protect(T.build("contacts", units, names), rules)
        release = protected.release("r")
        ranges = oracle_ranges(units, names, [release])[0]
        assert set(ranges) == set(release.suppressed)
        assert width_ok(ranges, rules.width), (seed, case, ranges)
        for key, count in protected.table.counts.items():  # every small cell is hidden
            if 0 < count < rules.threshold:
                assert protected.status[key] == S.PRIMARY
        for key, (low, high) in ranges.items():  # the true count lies in the range
            assert low - 1e-6 <= protected.table.counts[key] <= high + 1e-6
            mine = protected.ranges[key]
            assert mine[0] >= low - 1e-6 and mine[1] <= high + 1e-6  # rounded inwards only


def test_the_audit_catches_a_pinned_cell_the_oracle_also_pins():
    rng = random.Random(99)
    leaks = 0
    for _ in range(60):
        names = ["municipality", "sex"]
        units = random_units(rng, names, [3, 2])
        table = T.build("contacts", units, names)
        rules = S.Rules()
        bare = S.Protected(table, rules, S.primary(table, rules))
        mine = S.audit(bare)
        theirs = oracle_ranges(units, names, [bare.release("r")])[0]
        for key, (low, high) in theirs.items():
            assert mine[key][0] >= low - 1e-6 and mine[key][1] <= high + 1e-6
            leaks += high - low < rules.width
    assert leaks > 10  # primary suppression alone leaks often: the check has work to do


# ---- differencing across releases --------------------------------------------------------


def year_and_autumn() -> list[dict]:
    """Contacts by municipality and month: A has 3 contacts, all in December."""
    units = [{"municipality": "A", "period": "2025-12"}] * 3
    units += [{"municipality": "B", "period": "2025-03"}] * 10  # B: none in December
    units += [{"municipality": "C", "period": m} for m in ("2025-02", "2025-12") for _ in range(6)]
    return units


def by_municipality(units, months) -> T.Table:
    inside = [u for u in units if u["period"] in months]
    return T.build(
        "contacts",
        inside,
        ["municipality"],
        {"period": frozenset(months)},
        categories={"municipality": ["A", "B", "C"]},
    )


def test_an_overlapping_period_would_reveal_an_earlier_suppressed_cell():
    units = year_and_autumn()
    year = T.months("2025-01-01", "2025-12-31")
    first = S.protect(by_municipality(units, year), S.Rules())
    assert first.status[("A",)] == S.PRIMARY and first.status[("B",)] == S.SECONDARY
    earlier = first.release("2025")

    jan_nov = year[:-1]
    alone = S.protect(by_municipality(units, jan_nov), S.Rules())
    assert alone.status[("A",)] == S.PUBLISHED  # 0 before December: published
    names = ["municipality", "period"]
    leaked = oracle_ranges(units, names, [earlier, alone.release("jan-nov")])[0]
    assert leaked[("A",)][1] - leaked[("A",)][0] < 5  # B's 10 before December: A <= 3

    linked = S.protect(by_municipality(units, jan_nov), S.Rules(), [earlier])
    assert linked.linked == ["2025"]
    assert any(s != S.PUBLISHED for s in linked.status.values())
    both = oracle_ranges(units, names, [earlier, linked.release("jan-nov")])
    assert width_ok(both[0], 5) and width_ok(both[1], 5)


def test_a_new_cut_of_the_same_data_cannot_undo_an_earlier_suppression():
    rng = random.Random(3)
    names = ["municipality", "sex", "age"]
    for case in range(25):
        units = random_units(rng, names, [3, 2, 3])
        first = S.protect(T.build("p", units, ["municipality", "sex"]), S.Rules())
        earlier = first.release("by-sex")
        threshold = rng.choice([2, 3, 5])  # a laxer later threshold invites differencing
        second = S.protect(
            T.build("p", units, ["municipality", "age"]), S.Rules(threshold=threshold), [earlier]
        )
        old, new = oracle_ranges(units, names, [earlier, second.release("by-age")])
        assert width_ok(old, 5), (case, old)
        exposed = {k: new[k] for k in second.known_before}
        assert width_ok({k: r for k, r in new.items() if k not in exposed}, threshold), case
        # a cell the first release already gave away (its municipality's total) is named
        for key in exposed:  # each is pinned by the first release alone (the oracle's
            # variables are the seen categories: the new table's layout)
            hidden = S.Release("x", second.table.dimensions, {}, {}, {key: "p"}, 0)
            before = oracle_ranges(units, names, [earlier, hidden])[1]
            assert not width_ok(before, threshold)


def test_a_release_from_data_changed_since_is_named_not_linked():
    units = year_and_autumn()
    year = T.months("2025-01-01", "2025-12-31")
    earlier = S.protect(by_municipality(units, year), S.Rules()).release("old")
    changed = units + [{"municipality": "C", "period": "2025-05"}] * 4
    later = S.protect(by_municipality(changed, year), S.Rules(), [earlier])
    assert later.unlinked == ["old"] and later.linked == []


def test_age_bands_cut_differently_are_related_exactly():
    units = [{"age": a} for a in (3, 4, 10, 10, 12, 30, 31, 32, 33, 34, 35, 70, 71, 72, 73, 74)]
    coarse = T.build(
        "p", [{"age": T.age_band(u["age"], T.band_labels([0, 18]))} for u in units], ["age"]
    )
    fine_labels = T.band_labels([0, 6, 18, 67])
    fine = T.build(
        "p",
        [{"age": T.age_band(u["age"], fine_labels)} for u in units],
        ["age"],
        categories={"age": list(fine_labels)},
    )
    first = S.protect(coarse, S.Rules(threshold=6))  # 0-17 holds 5: hidden, and so is 18+
    assert first.status[("0-17",)] == S.PRIMARY
    second = S.protect(fine, S.Rules(threshold=2), [first.release("coarse")])
    # 0-5 (2) and 6-17 (3) published would give 0-17 = 5: at least one of them is hidden
    assert second.status[("0-5",)] != S.PUBLISHED or second.status[("6-17",)] != S.PUBLISHED
