import random
from datetime import date, timedelta

import pytest

from enjournal.fhir import norwegian_ids as ids

K1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
K2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def with_controls(first9: str) -> str:
    """Append classic K1/K2 (test helper, independent of the module's private code)."""
    k1 = 11 - sum(int(d) * w for d, w in zip(first9, K1, strict=True)) % 11
    k1 = 0 if k1 == 11 else k1
    assert k1 != 10, first9
    first10 = first9 + str(k1)
    k2 = 11 - sum(int(d) * w for d, w in zip(first10, K2, strict=True)) % 11
    k2 = 0 if k2 == 11 else k2
    assert k2 != 10, first10
    return first10 + str(k2)


def number_for(ddmmyy: str, individual: int = 123) -> str:
    """A number with right classic controls for ``ddmmyy``, near ``individual``."""
    for i in range(individual, individual + 20, 2):
        try:
            return with_controls(f"{ddmmyy}{i:03d}")
        except AssertionError:
            continue
    raise AssertionError(ddmmyy)


# --- fødselsnummer ------------------------------------------------------------------------


def test_worked_examples_from_the_2032_rule():
    assert ids.is_valid_fnr("02013299997")  # born 02.01.2032, individual 999
    assert ids.is_valid_fnr("30108299939")  # K1 with remainder 1: only valid after 2032


def test_relaxed_k1_accepts_up_to_four_values_but_k2_is_strict():
    valid = [
        v
        for v in (f"301082999{k1}" for k1 in range(10))
        for k2 in range(10)
        if ids.is_valid_fnr(v + str(k2))
    ]
    assert 1 <= len(valid) <= 4
    assert not ids.is_valid_fnr("30108299938")
    assert not ids.is_valid_fnr("02013299998")


def test_classic_real_format_number():
    assert ids.is_valid_fnr("15076500565")
    assert ids.birth_date_and_sex("15076500565") == (date(1965, 7, 15), "male")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1507650056",  # 10 digits
        "150765005650",  # 12 digits
        "15076500566",  # wrong K2
        "15076500575",  # wrong K1
        "1507650056a",
        "15O76500565",
        15076500565,  # not a string
        None,
        "00000000000",  # day 0
    ],
)
def test_known_bad_numbers(value):
    assert not ids.is_valid_fnr(value)
    assert ids.identifier_problem(ids.OID_FNR, value) is not None


@pytest.mark.parametrize("ddmmyy", ["310299", "310499", "290201", "321299", "011399", "000199"])
def test_impossible_dates_are_rejected_even_with_right_controls(ddmmyy):
    value = number_for(ddmmyy)
    assert not ids.is_valid_fnr(value)
    assert "date" in ids.identifier_problem(ids.OID_FNR, value)


def test_leap_day_2000():
    value = with_controls("290200" + "501")  # individual 500-999, yy 00 -> 2000
    assert ids.is_valid_fnr(value)
    assert ids.birth_date_and_sex(value) == (date(2000, 2, 29), "male")


def test_d_number_h_number_and_synthetic_variants():
    dnr = with_controls("410180" + "123")  # 1 Jan 1980 as D-nummer
    hnr = with_controls("014180" + "123")  # 1 Jan 1980 as H-nummer (month + 40)
    tenor = with_controls("018180" + "124")  # 1 Jan 1980, Tenor synthetic (month + 80)
    for value in (dnr, hnr, tenor):
        assert ids.is_valid_fnr(value)
        assert ids.birth_date_and_sex(value)[0] == date(1980, 1, 1)
    assert ids.is_valid_dnr(dnr)
    assert not ids.is_valid_dnr(hnr)
    assert not ids.is_valid_fnr(dnr, allow_dnr=False)
    assert not ids.is_valid_fnr(hnr, allow_hnr=False)
    assert ids.person_number_kind(dnr) == "dnr"
    assert ids.person_number_kind(hnr) == "hnr"
    assert ids.person_number_kind(tenor) == "fnr"
    assert ids.birth_date_and_sex(tenor)[1] == "female"
    assert ids.is_synthetic(tenor) and not ids.is_synthetic("15076500565")


def test_fh_numbers():
    fh = with_controls("812345678")
    assert ids.is_valid_fh(fh)
    assert not ids.is_valid_fnr(fh)
    assert ids.person_number_kind(fh) == "fh"
    assert ids.birth_date_and_sex(fh) is None
    assert ids.identifier_problem(ids.OID_FH, fh) is None
    assert "8 or 9" in ids.identifier_problem(ids.OID_FH, "15076500565")
    assert not ids.is_valid_fh(fh[:-1] + str((int(fh[-1]) + 1) % 10))


def test_birth_date_and_sex_for_2032_numbers_is_gender_neutral():
    assert ids.birth_date_and_sex("02013299997") == (date(2032, 1, 2), None)
    assert ids.birth_date_and_sex("30108299939", today=date(2033, 1, 1)) == (
        date(1982, 10, 30),
        None,
    )
    assert ids.birth_date_and_sex("15076500566") is None


def test_generators_only_produce_valid_numbers():
    rng = random.Random(1)
    start = date(1854, 1, 1).toordinal()
    end = date(2039, 12, 31).toordinal()
    for _ in range(3000):
        born = date.fromordinal(rng.randint(start, end))
        female = rng.random() < 0.5
        synthetic = rng.choice([True, False, "tenor", "dolly"])
        fnr = ids.make_fnr(born, rng, female=female, synthetic=synthetic)
        assert ids.is_valid_fnr(fnr), fnr
        expected_sex = None if born >= date(2032, 1, 1) else "female" if female else "male"
        assert ids.birth_date_and_sex(fnr) == (born, expected_sex), fnr
        dnr = ids.make_dnr(born, rng, female=female)
        assert ids.is_valid_dnr(dnr), dnr
        assert ids.identifier_problem(ids.OID_DNR, dnr) is None
        assert ids.birth_date_and_sex(dnr) == (born, expected_sex), dnr
    for _ in range(500):
        assert ids.is_valid_fh(ids.make_fh(rng))
        assert ids.is_valid_orgnr(ids.make_orgnr(rng))


def test_real_series_numbers_when_not_synthetic():
    rng = random.Random(2)
    fnr = ids.make_fnr(date(1990, 5, 17), rng, female=True, synthetic=False)
    assert fnr[:6] == "170590" and int(fnr[8]) % 2 == 0
    assert not ids.is_synthetic(fnr)


def test_generator_is_deterministic():
    born = date(1975, 3, 3)
    a = [ids.make_fnr(born, random.Random(5), female=False) for _ in range(3)]
    assert len(set(a)) == 1


def test_every_day_of_a_leap_year_round_trips():
    rng = random.Random(3)
    day = date(2024, 1, 1)
    while day.year == 2024:
        fnr = ids.make_fnr(day, rng, female=True)
        assert ids.birth_date_and_sex(fnr) == (day, "female")
        day += timedelta(days=1)


# --- organisation number and other systems -------------------------------------------------


def test_orgnr():
    assert ids.is_valid_orgnr("915933149")  # Direktoratet for e-helse (no-basis example)
    assert not ids.is_valid_orgnr("915933148")
    assert not ids.is_valid_orgnr("91593314")
    assert not ids.is_valid_orgnr(915933149)
    assert "9 digits" in ids.identifier_problem(ids.OID_ORGNR, "12345")
    assert "control digit" in ids.identifier_problem(ids.OID_ORGNR, "915933148")


def test_identifier_problem_messages():
    assert ids.identifier_problem(ids.OID_FNR, "15076500565") is None
    assert ids.identifier_problem(ids.URI_FNR, "15076500565") is None  # alternative URI
    assert "11 digits" in ids.identifier_problem(ids.OID_FNR, "123")
    assert "control digits" in ids.identifier_problem(ids.OID_FNR, "15076500566")
    dnr = with_controls("410180123")
    assert "D-nummer" in ids.identifier_problem(ids.OID_FNR, dnr)
    assert "4-7" in ids.identifier_problem(ids.OID_DNR, "15076500565")
    assert ids.identifier_problem(ids.OID_HPR, "9144889") is None
    assert ids.identifier_problem(ids.URI_HPR, "9144889") is None
    assert "digits only" in ids.identifier_problem(ids.OID_HPR, "91448A9")
    assert "at most 9" in ids.identifier_problem(ids.OID_HPR, "1234567890")
    assert ids.identifier_problem(ids.OID_HER_ID, "720") is None
    assert "digits only" in ids.identifier_problem(ids.OID_HER_ID, "her-720")
    assert ids.identifier_problem(ids.OID_RESH, "108812") is None
    assert "12 digits" in ids.identifier_problem(ids.OID_DUF, "1234")
    assert ids.identifier_problem(ids.OID_KOMMUNENUMMER, "0301") is None
    assert ids.identifier_problem(ids.OID_KOMMUNENUMMER, "301") is not None
    # systems the module does not know: no opinion
    assert ids.identifier_problem("http://example.org/mrn", "anything") is None
    assert ids.identifier_problem(None, "x") is None


def test_systems_are_urn_oids_with_alternatives():
    for system in (
        ids.OID_FNR,
        ids.OID_DNR,
        ids.OID_FH,
        ids.OID_HPR,
        ids.OID_DUF,
        ids.OID_ORGNR,
        ids.OID_RESH,
        ids.OID_HER_ID,
        ids.OID_KOMMUNENUMMER,
    ):
        assert system.startswith("urn:oid:2.16.578.1.12.4.1.")
    assert ids.canonical_system(ids.URI_HER_ID) == ids.OID_HER_ID
    assert ids.canonical_system(ids.OID_FNR) == ids.OID_FNR
