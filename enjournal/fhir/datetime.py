"""FHIR date, dateTime and instant values as closed millisecond ranges.

A FHIR date is a range at its precision: ``2024`` is all of 2024, ``2024-03-05T10:00`` is the
minute.  Search compares ranges (see http://hl7.org/fhir/R4/search.html#date), so the indexer
and the search parser both turn values into ``(low, high)`` epoch milliseconds here.
A value without a time zone is read as UTC (the server's zone; FHIR leaves it to the server).
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)

MIN_MS = -(2**62)
MAX_MS = 2**62
_FIRST = datetime.min.replace(tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)


def date_range(value: str) -> tuple[int, int]:
    """Return the inclusive ``(low, high)`` epoch-millisecond range ``value`` covers.

    Raises ValueError for something that is not a FHIR date, dateTime or instant.
    """
    m = _DATE.match(value)
    if not m:
        raise ValueError(f"not a FHIR date/dateTime: {value!r}")
    year = int(m["y"])
    month = int(m["m"] or 1)
    day = int(m["d"] or 1)
    hour, minute, second = int(m["H"] or 0), int(m["M"] or 0), int(m["S"] or 0)
    fraction = m["f"] or ""
    micro = int((fraction + "000000")[:6]) if fraction else 0
    start = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    tz = m["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        start = _shifted(start, -sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    end = _end(start, m, year, month, fraction)
    low = _ms(start)
    high = max(low, _ms(end) - 1)
    return low, high


def _shifted(moment: datetime, by: timedelta) -> datetime:
    """``moment + by``, held at the calendar's ends: 0001-01-01T00:00+14:00 is before the
    first UTC instant Python knows, and is taken as that instant (not an OverflowError)."""
    try:
        return moment + by
    except OverflowError:
        return _FIRST if by < timedelta(0) else _LAST


def _end(start: datetime, m: re.Match, year: int, month: int, fraction: str) -> datetime:
    """The first instant after the range that starts at ``start`` at ``m``'s precision."""
    if start == _LAST:
        return start
    try:
        return _next(start, m, year, month, fraction)
    except (OverflowError, ValueError):  # the range runs past year 9999
        return _LAST


def _next(start: datetime, m: re.Match, year: int, month: int, fraction: str) -> datetime:
    if m["m"] is None:
        end = start.replace(year=year + 1)
    elif m["d"] is None:
        end = start + timedelta(days=calendar.monthrange(year, month)[1])
    elif m["H"] is None:
        end = start + timedelta(days=1)
    elif m["M"] is None:
        end = start + timedelta(hours=1)
    elif m["S"] is None:
        end = start + timedelta(minutes=1)
    elif not fraction:
        end = start + timedelta(seconds=1)
    else:
        end = start + timedelta(milliseconds=1) if len(fraction) <= 3 else start
    return end


def _ms(moment: datetime) -> int:
    return (
        int(moment.timestamp() * 1000)
        if moment.microsecond == 0
        else (int(moment.replace(microsecond=0).timestamp()) * 1000 + moment.microsecond // 1000)
    )


def format_instant(ms: int) -> str:
    """Epoch milliseconds as a FHIR instant, e.g. ``2024-03-05T10:00:00.123Z``."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def decimal_range(value: str) -> tuple[float, float, float]:
    """A decimal as ``(low, high, value)``: its implicit precision range (search.html#number).

    ``100`` covers [99.5, 100.5), ``1.50`` covers [1.495, 1.505); exponent forms keep their
    significant figures.
    """
    text = value.strip()
    number = float(text)
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    half = 0.5 * 10 ** (-decimals) * 10 ** (int(exponent) if exponent else 0)
    return number - half, number + half, number
