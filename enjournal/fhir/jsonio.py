"""JSON in and out, keeping FHIR decimals exactly as written.

FHIR decimals carry their precision (``1.00`` is not ``1.0``, http://hl7.org/fhir/R4/json.html#primitive),
and a binary float cannot hold ``66.899999999999991``.  So request bodies are parsed with
decimals as ``decimal.Decimal`` (the standard library parser allows that; orjson does not), and
written back with orjson, which emits each Decimal's original text as a raw JSON fragment.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson


class JsonError(ValueError):
    pass


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


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)
