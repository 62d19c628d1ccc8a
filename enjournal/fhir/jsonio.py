"""JSON in and out, keeping FHIR decimals exactly as written.

FHIR decimals carry their precision (``1.00`` is not ``1.0``, http://hl7.org/fhir/R4/json.html#primitive),
and a binary float cannot hold ``66.899999999999991``.  So request bodies are parsed with
decimals as ``decimal.Decimal`` (the standard library parser allows that; orjson does not), and
written back with orjson, which emits each Decimal's original text as a raw JSON fragment.

``loads_input`` parses what a client sent and also refuses what no store can keep or no
code should have to walk (docs/architecture.md, Limits): nesting deeper than
``MAX_DEPTH``, numbers longer than ``MAX_NUMBER_CHARS`` characters or beyond a double's
range, lone surrogates (not encodable as UTF-8) and C0 control characters other than tab,
CR and LF (PostgreSQL text cannot hold NUL; the rest have no place in a health record).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

MAX_DEPTH = 100  # objects and arrays inside each other; R4 resources need far fewer
MAX_NUMBER_CHARS = 64  # FHIR decimals need 18 significant digits; leave room for zeros
# U+0000-U+001F except tab, LF, CR, and every surrogate code point (only lone ones survive
# JSON decoding: a pair becomes one character).
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


class JsonError(ValueError):
    pass


class Refused(JsonError):
    """Valid JSON that breaks one of the input limits."""


def _no_constants(name: str) -> Any:
    raise JsonError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constants)


def loads(data: bytes | str) -> Any:
    """Parse JSON; decimals become Decimal, integers int.  Raises JsonError."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        return _decoder.decode(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise JsonError(str(error)) from None


_SMALLEST, _LARGEST = Decimal("1e-300"), Decimal("1e300")  # well inside a double's range


def _checked_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise Refused(f"a number has more than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _checked_decimal(text: str) -> Decimal:
    if len(text) > MAX_NUMBER_CHARS:
        raise Refused(f"a number has more than {MAX_NUMBER_CHARS} characters")
    value = Decimal(text)
    if not value.is_zero() and not _SMALLEST < abs(value) < _LARGEST:
        raise Refused(f"the number {text} is out of range")
    return value


_input_decoder = json.JSONDecoder(
    parse_float=_checked_decimal, parse_int=_checked_int, parse_constant=_no_constants
)


def loads_input(data: bytes | str) -> Any:
    """Parse a body a client sent: ``loads`` plus the limits above.  Raises JsonError."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        value = _input_decoder.decode(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise JsonError(str(error)) from None
    _check(value, 0)
    return value


def _check(value: Any, depth: int) -> None:
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise Refused(f"objects and arrays are nested more than {MAX_DEPTH} deep")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                check_text(key)
            _check(item, depth + 1)


def check_text(text: str) -> None:
    """JsonError if ``text`` holds a control character or a lone surrogate."""
    found = forbidden_character(text)
    if found is not None:
        raise Refused(f"a string holds the forbidden character {found}")


def forbidden_character(text: str) -> str | None:
    """The first control character or lone surrogate in ``text`` as ``U+XXXX``, or None."""
    found = _FORBIDDEN.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)
