"""The patient page's charts: the readings of the last days as points on an SVG, one chart
per measured type, the patient's thresholds (from the care plan's Goals, ``rules.thresholds``)
as horizontal lines, and the readings beyond a threshold marked.  Pure: readings and
thresholds in, coordinates out; the template draws them (no script).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from enjournal.services.velferdsteknologi import rules
from enjournal.web.i18n import N_

WIDTH, HEIGHT = 640, 220  # the SVG's viewBox
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28  # room for the axes' labels
DAYS = 7


@dataclass(frozen=True)
class Measure:
    """A chart: its title (a message of the catalogues), unit and LOINC codes (one series
    each: blood pressure has systolic and diastolic)."""

    key: str
    title: str
    unit: str
    codes: tuple[str, ...]


WEIGHT = "29463-7"
MEASURES = (
    Measure("spo2", N_("Oxygen saturation (SpO2)"), "%", (rules.SPO2,)),
    Measure("pulse", N_("Pulse"), "/min", (rules.PULSE,)),
    Measure("bp", N_("Blood pressure"), "mm[Hg]", (rules.SYSTOLIC, rules.DIASTOLIC)),
    Measure("weight", N_("Weight"), "kg", (WEIGHT,)),
    Measure("temperature", N_("Temperature"), "Cel", (rules.TEMPERATURE,)),
)
SERIES_NAMES = {rules.SYSTOLIC: N_("systolic"), rules.DIASTOLIC: N_("diastolic")}


@dataclass
class Point:
    x: float
    y: float
    value: float
    at: datetime
    code: str
    beyond: bool  # outside one of the patient's thresholds for this code


@dataclass
class Line:
    """A threshold: ``y`` in the chart, its value and whether it is a low or high limit."""

    y: float
    value: float
    side: str  # "low" or "high"
    code: str


@dataclass
class Chart:
    measure: Measure
    points: list[Point] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[tuple[float, float]] = field(default_factory=list)  # (y, value)
    x_ticks: list[tuple[float, datetime]] = field(default_factory=list)  # (x, midnight)
    changes: list[rules.Threshold] = field(default_factory=list)  # rise/fall limits, as text

    def series(self, code: str) -> list[Point]:
        return [p for p in self.points if p.code == code]

    @property
    def beyond(self) -> int:
        return sum(p.beyond for p in self.points)


def charts(
    readings: list[rules.Reading], limits: list[rules.Threshold], now: datetime, days: int = DAYS
) -> list[Chart]:
    """One chart per measured type that has readings in the last ``days`` up to ``now``."""
    start = now - timedelta(days=days)
    recent = [r for r in readings if start <= r.at <= now]
    found = []
    for measure in MEASURES:
        mine = [r for r in recent if rules.normalised(r.loinc) in measure.codes]
        if mine:
            found.append(chart(measure, mine, _limits_of(measure, limits), start, now))
    return found


def _limits_of(measure: Measure, limits: list[rules.Threshold]) -> list[rules.Threshold]:
    return [t for t in limits if t.loinc in measure.codes]


def chart(
    measure: Measure,
    readings: list[rules.Reading],
    limits: list[rules.Threshold],
    start: datetime,
    end: datetime,
) -> Chart:
    """The chart of ``readings`` between ``start`` and ``end`` with ``limits`` drawn."""
    levels = [(t.low, "low", t.loinc) for t in limits] + [(t.high, "high", t.loinc) for t in limits]
    drawn = [(v, side, code) for v, side, code in levels if v is not None]
    low, high = value_range([r.value for r in readings] + [v for v, _, _ in drawn])
    x = scale(start.timestamp(), end.timestamp(), LEFT, WIDTH - RIGHT)
    y = scale(low, high, HEIGHT - BOTTOM, TOP)
    found = Chart(measure, changes=[t for t in limits if t.within is not None])
    for r in sorted(readings, key=lambda r: r.at):
        beyond = is_beyond(r.value, [t for t in limits if t.loinc == r.loinc])
        found.points.append(Point(x(r.at.timestamp()), y(r.value), r.value, r.at, r.loinc, beyond))
    found.lines = [Line(y(v), v, side, code) for v, side, code in drawn]
    found.y_ticks = [(y(v), v) for v in ticks(low, high)]
    found.x_ticks = [(x(d.timestamp()), d) for d in midnights(start, end)]
    return found


def is_beyond(value: float, limits: list[rules.Threshold]) -> bool:
    """Below a low or above a high (equal is inside, as the rules decide)."""
    below = any(t.low is not None and value < t.low for t in limits)
    return below or any(t.high is not None and value > t.high for t in limits)


def value_range(values: list[float]) -> tuple[float, float]:
    """The y axis: from a little below the lowest to a little above the highest value, so a
    point or line is never on the chart's edge; a flat series gets room of 1 each way."""
    low, high = min(values), max(values)
    if high - low < 1e-9:
        return low - 1, high + 1
    room = (high - low) * 0.1
    return low - room, high + room


def scale(low: float, high: float, to_low: float, to_high: float):
    """The linear map of [low, high] onto [to_low, to_high] (rounded to 0.1 px)."""

    def at(value: float) -> float:
        return round(to_low + (value - low) * (to_high - to_low) / (high - low), 1)

    return at


def ticks(low: float, high: float, count: int = 4) -> list[float]:
    """About ``count`` round values inside [low, high] for the y axis (steps of 1, 2 or 5
    times a power of ten)."""
    raw = (high - low) / count
    step = next(s * 10**e for e in range(-2, 6) for s in (1, 2, 5) if s * 10**e >= raw)
    first = -(-low // step) * step
    found = []
    value = first
    while value <= high:
        found.append(round(value, 2))
        value += step
    return found


def midnights(start: datetime, end: datetime) -> list[datetime]:
    """Each midnight (in ``end``'s time zone) after ``start`` up to ``end``: the x axis."""
    day = (start + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    found = []
    while day <= end:
        found.append(day)
        day += timedelta(days=1)
    return found
