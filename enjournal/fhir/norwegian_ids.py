"""Norwegian person and organisation identifiers: systems, check digits, generators.

Pure functions, no I/O. Sources are in ``/work/shared/docs/domain.md`` section 1:

* Fødselsnummer ``DDMMYY III K1 K2`` with two mod-11 control digits (Skatteetaten). Both the
  classic rule and the relaxed K1 rule for numbers issued from 1 January 2032 are accepted
  (``k1 = {11,12,13,14} - sum mod 11``); K2 is unchanged.
* Variants on the same layout: D-nummer (first digit + 4), H-nummer (third digit + 4),
  synthetic test numbers (month + 40, NAV "Dolly"; month + 80, Skatteetaten Tenor) and
  felles hjelpenummer (FH, first digit 8 or 9, no date).
* Organisasjonsnummer: 9 digits, mod 11 with weights 3,2,7,6,5,4,3,2.

The generators only produce numbers that pass the validators. By default ``make_fnr`` and
``make_dnr`` produce *synthetic* (Tenor, month + 80) numbers, which can never belong to a
real person.
"""

from __future__ import annotations

import random
from datetime import date
from typing import Literal

# --- identifier systems (FHIR Identifier.system) -------------------------------------------

OID_FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
OID_DNR = "urn:oid:2.16.578.1.12.4.1.4.2"
OID_FH = "urn:oid:2.16.578.1.12.4.1.4.3"
OID_HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
OID_DUF = "urn:oid:2.16.578.1.12.4.1.4.5"
OID_ORGNR = "urn:oid:2.16.578.1.12.4.1.4.101"
OID_RESH = "urn:oid:2.16.578.1.12.4.1.4.102"
OID_PHARMACY_LICENCE = "urn:oid:2.16.578.1.12.4.1.4.107"  # apotekets konsesjonsnummer
OID_HER_ID = "urn:oid:2.16.578.1.12.4.1.2"
#: Code system (Volven 3402) for kommunenummer, not an identifier system.
OID_KOMMUNENUMMER = "urn:oid:2.16.578.1.12.4.1.1.3402"
#: Volven 8327, person identifier types (used for the local H-nummer slice).
OID_PERSON_ID_TYPE = "urn:oid:2.16.578.1.12.4.1.1.8327"

# Alternative (not preferred) NamingSystem URIs published by HL7 Norway.
URI_FNR = "http://hl7.no/fhir/NamingSystem/FNR"
URI_DNR = "http://hl7.no/fhir/NamingSystem/DNR"
URI_HPR = "http://hl7.no/fhir/NamingSystem/HPR"
URI_HER_ID = "http://hl7.no/fhir/NamingSystem/HERid"

#: Alternative URI -> preferred ``urn:oid:`` system.
ALTERNATIVE_SYSTEMS: dict[str, str] = {
    URI_FNR: OID_FNR,
    URI_DNR: OID_DNR,
    URI_HPR: OID_HPR,
    URI_HER_ID: OID_HER_ID,
}


def canonical_system(system: str) -> str:
    """The preferred ``urn:oid:`` form of ``system`` (unchanged when it has no alternative)."""
    return ALTERNATIVE_SYSTEMS.get(system, system)


# --- mod 11 --------------------------------------------------------------------------------

_K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_ORGNR_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)


def _weighted(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False))


def _classic_control(digits: str, weights: tuple[int, ...]) -> int | None:
    """``11 - sum mod 11`` (11 -> 0); None when the result is 10 (never issued)."""
    k = 11 - _weighted(digits, weights) % 11
    if k == 11:
        return 0
    return None if k == 10 else k


def _k1_candidates(first9: str) -> tuple[int, ...]:
    """All K1 values accepted after 2032: ``{11,12,13,14} - sum mod 11``, 0..9 only."""
    rest = _weighted(first9, _K1_WEIGHTS) % 11
    return tuple(k for k in (11 - rest, 12 - rest, 13 - rest, 14 - rest) if 0 <= k <= 9)


def _checksum_kind(value: str) -> Literal["classic", "2032"] | None:
    """Which rule the two control digits satisfy: "classic", "2032" (relaxed K1 only) or None."""
    k1, k2 = int(value[9]), int(value[10])
    if _classic_control(value[:10], _K2_WEIGHTS) != k2:
        return None
    if _classic_control(value[:9], _K1_WEIGHTS) == k1:
        return "classic"
    return "2032" if k1 in _k1_candidates(value[:9]) else None


def _with_controls(first9: str) -> str | None:
    """``first9`` plus classic K1 and K2, or None when either would be 10."""
    k1 = _classic_control(first9, _K1_WEIGHTS)
    if k1 is None:
        return None
    k2 = _classic_control(first9 + str(k1), _K2_WEIGHTS)
    return None if k2 is None else f"{first9}{k1}{k2}"


# --- fødselsnummer and variants ------------------------------------------------------------

Kind = Literal["fnr", "dnr", "hnr", "fh"]


def _is_11_digits(value: object) -> bool:
    return isinstance(value, str) and len(value) == 11 and value.isascii() and value.isdigit()


def _decode_day_month(value: str) -> tuple[int, int, bool, bool] | None:
    """(day, month, is_dnr, is_hnr_or_synthetic) with offsets removed; None if out of range."""
    day, month = int(value[0:2]), int(value[2:4])
    is_dnr = day > 40
    if is_dnr:
        day -= 40
    shifted = month > 40
    if month > 80:
        month -= 80
    elif month > 40:
        month -= 40
    if not (1 <= day <= 31 and 1 <= month <= 12):
        return None
    return day, month, is_dnr, shifted


def _classic_centuries(yy: int, individual: int) -> tuple[int, ...]:
    """Birth centuries the individual number allows under the classic allocation."""
    if individual <= 499:
        return (1900,)
    centuries = []
    if individual <= 749 and yy >= 54:
        centuries.append(1800)
    if yy <= 39:
        centuries.append(2000)
    if individual >= 900 and yy >= 40:
        centuries.append(1900)
    return tuple(centuries)


def _real_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _date_exists(day: int, month: int, yy: int) -> bool:
    # The individual number does not fix the century for numbers issued after 2032, so
    # accept the date when it exists in any century (this only matters for 29 February).
    return any(_real_date(c + yy, month, day) for c in (1800, 1900, 2000))


def _person_number_problem(value: object, *, allow_dnr: bool, allow_hnr: bool) -> str | None:
    if not isinstance(value, str):
        return "must be a string of 11 digits"
    if not _is_11_digits(value):
        return f"must be exactly 11 digits, got {value!r}"
    if value[0] in "89":
        return "starts with 8 or 9, which is a felles hjelpenummer (FH), not a birth number"
    decoded = _decode_day_month(value)
    if decoded is None:
        return f"{value[:6]!r} is not a valid DDMMYY birth date"
    day, month, is_dnr, shifted = decoded
    if is_dnr and not allow_dnr:
        return "day + 40 marks a D-nummer, not a fødselsnummer"
    if shifted and not allow_hnr:
        return "month + 40/80 marks an H-nummer or a synthetic test number"
    if not _date_exists(day, month, int(value[4:6])):
        return f"{value[:6]!r} is not a real calendar date"
    if _checksum_kind(value) is None:
        return "wrong control digits (mod 11 check failed)"
    return None


def is_valid_fnr(value: object, *, allow_dnr: bool = True, allow_hnr: bool = True) -> bool:
    """True for a well-formed Norwegian birth number.

    Accepts the classic and the 2032 (relaxed K1) control-digit rules, checks the birth date is
    a real date, and by default also accepts D-nummer (day + 40), H-nummer / Dolly test
    numbers (month + 40) and Tenor test numbers (month + 80). FH-numbers are rejected.
    """
    return _person_number_problem(value, allow_dnr=allow_dnr, allow_hnr=allow_hnr) is None


def is_valid_dnr(value: object) -> bool:
    """True for a valid D-nummer (first digit 4-7, i.e. day + 40)."""
    return is_valid_fnr(value) and int(value[0]) in (4, 5, 6, 7)  # type: ignore[index]


def is_valid_fh(value: object) -> bool:
    """True for a valid felles hjelpenummer: 11 digits, first digit 8 or 9, mod-11 controls."""
    return _fh_problem(value) is None


def _fh_problem(value: object) -> str | None:
    if not _is_11_digits(value):
        return f"must be exactly 11 digits, got {value!r}"
    assert isinstance(value, str)
    if value[0] not in "89":
        return "must start with 8 or 9"
    if _checksum_kind(value) is None:
        return "wrong control digits (mod 11 check failed)"
    return None


def person_number_kind(value: object) -> Kind | None:
    """Classify a valid person number as "fnr", "dnr", "hnr" or "fh"; None when invalid.

    Month + 40 is reported as "hnr" (a Dolly test number looks the same); month + 80
    (Tenor test numbers) is reported as "fnr" or "dnr".
    """
    if is_valid_fh(value):
        return "fh"
    if not is_valid_fnr(value):
        return None
    assert isinstance(value, str)
    if int(value[0]) >= 4:
        return "dnr"
    return "hnr" if 40 < int(value[2:4]) <= 52 else "fnr"


def is_synthetic(value: str) -> bool:
    """True when the month carries a test-number offset (+40 Dolly/H-nummer or +80 Tenor)."""
    return _is_11_digits(value) and int(value[2:4]) > 40


_NEW_SERIES = date(2032, 1, 1)


def birth_date_and_sex(
    fnr: str, *, today: date | None = None
) -> tuple[date, Literal["male", "female"] | None] | None:
    """Birth date and sex encoded in a birth number, or None when it is invalid or an FH-number.

    For classic numbers the century comes from the individual number and the sex from the
    9th digit (even = female). Numbers that only pass the relaxed 2032 K1 rule are gender
    neutral and carry no century: sex is None and the century is the latest that does not put
    the birth date after ``today`` (default: the current date).
    """
    if not is_valid_fnr(fnr):
        return None
    decoded = _decode_day_month(fnr)
    assert decoded is not None
    day, month, _, _ = decoded
    yy, individual = int(fnr[4:6]), int(fnr[6:9])
    if _checksum_kind(fnr) == "classic":
        for century in _classic_centuries(yy, individual):
            born = _real_date(century + yy, month, day)
            if born is not None:
                # everyone born from 2032 gets a gender-neutral number from the new series
                if born >= _NEW_SERIES:
                    return born, None
                return born, ("female" if int(fnr[8]) % 2 == 0 else "male")
    today = today or date.today()
    for century in (2000, 1900, 1800):
        born = _real_date(century + yy, month, day)
        if born is not None and born <= today:
            return born, None
    return None


# --- organisation and personnel numbers ----------------------------------------------------


def _orgnr_problem(value: object) -> str | None:
    if not (isinstance(value, str) and len(value) == 9 and value.isascii() and value.isdigit()):
        return f"must be exactly 9 digits, got {value!r}"
    if _classic_control(value[:8], _ORGNR_WEIGHTS) != int(value[8]):
        return "wrong control digit (mod 11 check failed)"
    return None


def is_valid_orgnr(value: object) -> bool:
    """True for a valid organisasjonsnummer (9 digits, mod 11, weights 3,2,7,6,5,4,3,2)."""
    return _orgnr_problem(value) is None


def _digits_problem(value: object, *, max_len: int | None = None, exact: int | None = None):
    if not (isinstance(value, str) and value.isascii() and value.isdigit()):
        return f"must contain digits only, got {value!r}"
    if exact is not None and len(value) != exact:
        return f"must be exactly {exact} digits, got {len(value)}"
    if max_len is not None and len(value) > max_len:
        return f"must be at most {max_len} digits, got {len(value)}"
    return None


_LABELS = {
    OID_FNR: "Fødselsnummer",
    OID_DNR: "D-nummer",
    OID_FH: "Felles hjelpenummer",
    OID_HPR: "HPR-nummer",
    OID_DUF: "DUF-nummer",
    OID_ORGNR: "Organisasjonsnummer",
    OID_RESH: "RESH-id",
    OID_HER_ID: "HER-id",
    OID_KOMMUNENUMMER: "Kommunenummer",
}


def identifier_problem(system: str | None, value: object) -> str | None:
    """A clear English message when ``value`` is malformed for a known ``system``.

    Returns None when the value is fine, and also when the system is not one this module
    knows (no opinion). Alternative http://hl7.no/fhir/NamingSystem/* URIs are accepted.
    """
    if system is None:
        return None
    system = canonical_system(system)
    label = _LABELS.get(system)
    if label is None:
        return None
    if system == OID_FNR:
        problem = _person_number_problem(value, allow_dnr=False, allow_hnr=True)
    elif system == OID_DNR:
        problem = _person_number_problem(value, allow_dnr=True, allow_hnr=True)
        if problem is None and int(value[0]) < 4:  # type: ignore[index]
            problem = "first digit must be 4-7 (day + 40) for a D-nummer"
    elif system == OID_FH:
        problem = _fh_problem(value)
    elif system == OID_ORGNR:
        problem = _orgnr_problem(value)
    elif system in (OID_HPR, OID_RESH):
        problem = _digits_problem(value, max_len=9)
    elif system == OID_HER_ID:
        problem = _digits_problem(value)
    elif system == OID_DUF:
        problem = _digits_problem(value, exact=12)
    else:  # kommunenummer
        problem = _digits_problem(value, exact=4)
    return None if problem is None else f"{label} {problem}"


# --- generators ----------------------------------------------------------------------------


def _individual_range(year: int) -> tuple[int, int]:
    if 1854 <= year <= 1899:
        return 500, 749
    if 1900 <= year <= 1999:
        return 0, 499  # 1940-1999 may also use 900-999; 000-499 is enough here
    if 2000 <= year <= 2039:
        return 500, 999
    raise ValueError(f"no individual-number series for birth year {year}")


def _make_person_number(
    birth_date: date, rng: random.Random, *, female: bool, day_offset: int, month_offset: int
) -> str:
    low, high = _individual_range(birth_date.year)
    prefix = (
        f"{birth_date.day + day_offset:02d}{birth_date.month + month_offset:02d}"
        f"{birth_date.year % 100:02d}"
    )
    while True:
        individual = rng.randint(low, high)
        if (individual % 2 == 0) != female:
            individual += 1 if individual < high else -1
        number = _with_controls(f"{prefix}{individual:03d}")
        if number is not None:
            return number


def _month_offset(synthetic: bool | Literal["tenor", "dolly"]) -> int:
    if synthetic is True or synthetic == "tenor":
        return 80
    if synthetic == "dolly":
        return 40
    return 0


def make_fnr(
    birth_date: date,
    rng: random.Random,
    *,
    female: bool,
    synthetic: bool | Literal["tenor", "dolly"] = True,
) -> str:
    """A valid fødselsnummer (classic rule) for ``birth_date`` and sex.

    ``synthetic=True``/"tenor" adds 80 to the month, "dolly" adds 40, False gives a number
    in the real series (which may belong to a real person: avoid for demo data).
    """
    return _make_person_number(
        birth_date, rng, female=female, day_offset=0, month_offset=_month_offset(synthetic)
    )


def make_dnr(
    birth_date: date,
    rng: random.Random,
    *,
    female: bool,
    synthetic: bool | Literal["tenor", "dolly"] = True,
) -> str:
    """A valid D-nummer (day + 40) for ``birth_date`` and sex; see :func:`make_fnr`."""
    return _make_person_number(
        birth_date, rng, female=female, day_offset=40, month_offset=_month_offset(synthetic)
    )


def make_fh(rng: random.Random) -> str:
    """A valid felles hjelpenummer (first digit 8 or 9, digits 2-9 random)."""
    while True:
        number = _with_controls(f"{rng.choice('89')}{rng.randrange(10**8):08d}")
        if number is not None:
            return number


def make_orgnr(rng: random.Random) -> str:
    """A valid organisasjonsnummer (starts with 8 or 9 like those Enhetsregisteret issues)."""
    while True:
        first8 = f"{rng.choice('89')}{rng.randrange(10**7):07d}"
        k = _classic_control(first8, _ORGNR_WEIGHTS)
        if k is not None:
            return f"{first8}{k}"
