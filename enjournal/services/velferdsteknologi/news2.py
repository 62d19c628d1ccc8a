"""NEWS2 (National Early Warning Score 2) from one set of vital signs measured at home.

Source: Royal College of Physicians, *National Early Warning Score (NEWS) 2: Standardising
the assessment of acute-illness severity in the NHS*, London: RCP, 2017
(www.rcplondon.ac.uk/national-early-warning-score): Chart 1 "The NEWS scoring system" for the
parameter bands and Chart 2 "NEWS thresholds and triggers" for the clinical risk.  Checked
against a reproduction of Chart 1 and against domain.md section 10 ("NEWS2").

Seven parameters are scored 0-3 and added up: respiration rate, SpO2 (scale 1, or scale 2
for hypercapnic respiratory failure with target 88-92 %), air or oxygen (+2 on oxygen),
systolic blood pressure, pulse, consciousness (ACVPU) and temperature.  Clinical risk:
total >= 7 high, 5-6 medium, otherwise low-medium ("urgent ward-based response") when any
single parameter scores 3, otherwise low.

Precision: the chart gives temperature to one decimal (35.0 / 35.1) and the other parameters
as whole numbers, so a value is first rounded half up to the chart's precision, using the
decimal as written (``35.05`` -> 35.1 -> 1 point; ``20.5`` breaths/min -> 21 -> 2 points).
That leaves no value between two bands unscored.

A partial set of vitals still gets a total, but ``News2.complete`` is then False: a partial
score is a lower bound, never a NEWS2, and must not be read as one (a missing parameter could
have scored 3).  Only impossible values (negative, not finite, SpO2 above 100 %) are refused;
implausible but possible ones are scored, since the chart sets no limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

# The seven scored parameters, the keys of ``parameter_scores``.
PARAMETERS = (
    "respiration_rate",
    "spo2",
    "air_or_oxygen",
    "systolic",
    "pulse",
    "consciousness",
    "temperature",
)
CONSCIOUSNESS = ("A", "C", "V", "P", "U")  # ACVPU: Alert, new Confusion, Voice, Pain, Unresponsive

# Bands of RCP Chart 1 as (highest value of the band, points), lowest band first; a value
# above the last band gets the points passed with the table.
Bands = tuple[tuple[Decimal, int], ...]


def _bands(*rows: tuple[str, int]) -> Bands:
    return tuple((Decimal(upper), points) for upper, points in rows)


RESPIRATION = _bands(("8", 3), ("11", 1), ("20", 0), ("24", 2))  # >= 25: 3
SPO2_SCALE_1 = _bands(("91", 3), ("93", 2), ("95", 1))  # >= 96: 0
SPO2_SCALE_2 = _bands(("83", 3), ("85", 2), ("87", 1), ("92", 0))  # >= 93: see _spo2_points
SPO2_SCALE_2_ON_OXYGEN = _bands(("94", 1), ("96", 2))  # >= 97: 3
SYSTOLIC = _bands(("90", 3), ("100", 2), ("110", 1), ("219", 0))  # >= 220: 3
PULSE = _bands(("40", 3), ("50", 1), ("90", 0), ("110", 1), ("130", 2))  # >= 131: 3
TEMPERATURE = _bands(("35.0", 3), ("36.0", 1), ("38.0", 0), ("39.0", 1))  # >= 39.1: 2

WHOLE = Decimal("1")
ONE_DECIMAL = Decimal("0.1")


@dataclass(frozen=True)
class Vitals:
    """One set of observations; None means not measured.  ``spo2_scale`` is 2 only for a
    patient whose clinician set a target of 88-92 % (hypercapnic respiratory failure)."""

    respiration_rate: float | None = None  # breaths per minute
    spo2: float | None = None  # %
    on_oxygen: bool | None = None  # True: supplemental oxygen, False: air
    systolic: float | None = None  # mmHg
    pulse: float | None = None  # beats per minute
    consciousness: str | None = None  # one of CONSCIOUSNESS
    temperature: float | None = None  # degrees Celsius
    spo2_scale: int = 1

    def __post_init__(self) -> None:
        for name in ("respiration_rate", "spo2", "systolic", "pulse", "temperature"):
            _check_measurement(name, getattr(self, name))
        if self.spo2 is not None and self.spo2 > 100:
            raise ValueError(f"spo2 cannot be above 100 %: {self.spo2!r}")
        if self.on_oxygen is not None and not isinstance(self.on_oxygen, bool):
            raise ValueError(f"on_oxygen must be True, False or None, not {self.on_oxygen!r}")
        if self.consciousness is not None and self.consciousness not in CONSCIOUSNESS:
            raise ValueError(f"consciousness must be one of A, C, V, P, U: {self.consciousness!r}")
        if isinstance(self.spo2_scale, bool) or self.spo2_scale not in (1, 2):
            raise ValueError(f"spo2_scale must be 1 or 2, not {self.spo2_scale!r}")

    def measured(self) -> bool:
        """Whether anything at all was observed (the scale is a setting, not an observation)."""
        values = (self.respiration_rate, self.spo2, self.on_oxygen, self.systolic, self.pulse)
        return any(v is not None for v in (*values, self.consciousness, self.temperature))


@dataclass(frozen=True)
class News2:
    """The aggregate score, its clinical risk ("low", "low-medium", "medium", "high"), the
    points of each scored parameter, and whether all seven parameters were scored."""

    total: int
    risk: str
    scores: dict[str, int]
    complete: bool


def _check_measurement(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    if value < 0:
        raise ValueError(f"{name} cannot be negative: {value!r}")


def _rounded(value: float, precision: Decimal) -> Decimal:
    # str() gives the decimal as written (35.05, not the binary 35.04999...), so half up is exact.
    return Decimal(str(value)).quantize(precision, rounding=ROUND_HALF_UP)


def _band(value: Decimal, bands: Bands, above: int) -> int:
    for upper, points in bands:
        if value <= upper:
            return points
    return above


def _banded(value: float | None, precision: Decimal, bands: Bands, above: int) -> int | None:
    return None if value is None else _band(_rounded(value, precision), bands, above)


def _spo2_points(v: Vitals) -> int | None:
    """Scale 2 scores 93 % and above 0 on air but 1-3 on oxygen (over-oxygenation), so
    without knowing air or oxygen that SpO2 cannot be scored and is left out."""
    if v.spo2 is None:
        return None
    spo2 = _rounded(v.spo2, WHOLE)
    if v.spo2_scale == 1:
        return _band(spo2, SPO2_SCALE_1, above=0)
    if spo2 <= 92:
        return _band(spo2, SPO2_SCALE_2, above=0)
    if v.on_oxygen is None:
        return None
    return _band(spo2, SPO2_SCALE_2_ON_OXYGEN, above=3) if v.on_oxygen else 0


def _consciousness_points(letter: str | None) -> int | None:
    return None if letter is None else (0 if letter == "A" else 3)


def parameter_scores(v: Vitals) -> dict[str, int]:
    """The points of each parameter that was measured (keys from PARAMETERS)."""
    points = {
        "respiration_rate": _banded(v.respiration_rate, WHOLE, RESPIRATION, 3),
        "spo2": _spo2_points(v),
        "air_or_oxygen": None if v.on_oxygen is None else (2 if v.on_oxygen else 0),
        "systolic": _banded(v.systolic, WHOLE, SYSTOLIC, 3),
        "pulse": _banded(v.pulse, WHOLE, PULSE, 3),
        "consciousness": _consciousness_points(v.consciousness),
        "temperature": _banded(v.temperature, ONE_DECIMAL, TEMPERATURE, 2),
    }
    return {name: p for name, p in points.items() if p is not None}


def risk(total: int, scores: dict[str, int]) -> str:
    """Clinical risk of RCP Chart 2; a single 3 matters only while the total is below 5."""
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    return "low-medium" if 3 in scores.values() else "low"


def score(v: Vitals) -> News2 | None:
    """NEWS2 of ``v``; None when nothing was measured.  When a parameter is missing the total
    covers only the others and ``complete`` is False: do not act on it as a full NEWS2."""
    if not v.measured():
        return None
    scores = parameter_scores(v)
    total = sum(scores.values())
    return News2(total, risk(total, scores), scores, complete=len(scores) == len(PARAMETERS))
