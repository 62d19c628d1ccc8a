"""The alert rules of home follow-up (velferdsteknologi, "welfare technology"): which readings
cross the care team's individual thresholds, the NEWS2 of the latest vital signs, which
planned measurements are overdue, whether a device has gone silent, when an unacknowledged
alert escalates, and how severe an alert is.  Pure: FHIR resources in as dicts, decisions out,
no clock and no I/O (every function takes ``now``).

Readings are FHIR R4 Observations coded with LOINC (the VKP stage 1 and 2 codes, domain.md
section 6) and UCUM units.  SpO2 may come as 2708-6 or 59408-5; both are read as 2708-6.
A blood-pressure panel (85354-9) becomes two readings, systolic 8480-6 and diastolic 8462-4.

Individual thresholds (our own shape, not a published profile) are FHIR ``Goal`` resources
the CarePlan references from ``CarePlan.goal``; only Goals with ``lifecycleStatus`` active or
accepted count.  Each ``Goal.target`` names what it is about in ``measure`` (a LOINC coding;
for blood pressure the component, 8480-6 or 8462-4, never the panel) and has one or both of:

* ``detailRange`` with ``low`` and/or ``high`` (UCUM Quantities): a reading below low or above
  high crosses it;
* an extension for change over time::

    {"url": "https://enjournal.no/fhir/StructureDefinition/vkp-threshold-change",
     "extension": [
        {"url": "rise", "valueQuantity": {"value": 2, "system": "http://unitsofmeasure.org",
                                          "code": "kg", "unit": "kg"}},
        {"url": "within", "valueDuration": {"value": 3, "system": "http://unitsofmeasure.org",
                                            "code": "d", "unit": "d"}}]}

  ("fall" instead of, or as well as, "rise"; ``within`` in min, h, d or wk).

Assumed: a target's quantities are in the unit of the readings it is about.  Nothing is
converted; when both name a unit and the units differ (mg/dL against mmol/L) ``crossings``
raises ValueError rather than compare numbers that mean different things.

Decisions (each tested from both sides):

* ``thresholds`` never raises for a bad Goal: it skips the malformed target and returns a
  problem text for it, so one bad target does not silence the patient's other thresholds.
* Equal to low or high is inside the range, not a crossing (low/high are the last acceptable
  values, as in FHIR Range).
* A rise or fall counts when it is at least the amount (>=) within at most the window: the
  earlier reading may be exactly ``within`` before this one.  The change is measured from the
  lowest value in the window for a rise, the highest for a fall (earliest of equal values).
* Everything else measured against a time limit is late only strictly after it: a measurement
  exactly at its due time is not missing, a device silent for exactly the window is not
  silent, an alert acknowledged by exactly its deadline is not escalated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeGuard

from enjournal.services.velferdsteknologi import readings as catalogue
from enjournal.services.velferdsteknologi.news2 import News2, Vitals, score

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CHANGE = "https://enjournal.no/fhir/StructureDefinition/vkp-threshold-change"

BP_PANEL, SYSTOLIC, DIASTOLIC = "85354-9", "8480-6", "8462-4"
PULSE, SPO2, RESPIRATION, TEMPERATURE = "8867-4", "2708-6", "9279-1", "8310-5"
ALIASES = {"59408-5": SPO2}  # SpO2 by pulse oximetry: the same parameter for our rules

ACTIVE_GOALS = ("active", "accepted")
FINAL_READINGS = (
    "final",
    "amended",
    "corrected",
)  # preliminary/cancelled/entered-in-error do not count
PLANNED = ("not-started", "scheduled", "in-progress")  # CarePlan.activity.detail.status
TIME_UNITS = {
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "wk": timedelta(weeks=1),
}  # months and years have no fixed length: refused


def normalised(loinc: str) -> str:
    return ALIASES.get(loinc, loinc)


# --- thresholds from the care plan's Goals ---------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """One Goal target: the range (None = no limit that side) and/or the change allowed within
    a window; ``unit`` is the UCUM code its quantities were given in (None if not said)."""

    loinc: str
    low: float | None
    high: float | None
    rise: float | None
    fall: float | None
    within: timedelta | None
    goal_id: str
    unit: str | None = None


def thresholds(goals: list[dict]) -> tuple[list[Threshold], list[str]]:
    """The thresholds of the active or accepted Goals, and a problem text for each Goal or
    target that was skipped as malformed (never raises for one)."""
    found: list[Threshold] = []
    problems: list[str] = []
    for goal in goals:
        if not isinstance(goal, dict) or goal.get("resourceType") != "Goal":
            problems.append(f"not a Goal: {goal!r:.80}")
        elif goal.get("lifecycleStatus") in ACTIVE_GOALS:
            _goal_thresholds(goal, found, problems)
    return found, problems


def _goal_thresholds(goal: dict, found: list[Threshold], problems: list[str]) -> None:
    goal_id = goal.get("id")
    if not isinstance(goal_id, str) or not goal_id:
        problems.append("Goal without id: an alert could not name it")
        return
    for n, target in enumerate(goal.get("target") or []):
        try:
            found.append(_threshold(target, goal_id))
        except ValueError as e:
            problems.append(f"Goal/{goal_id} target {n}: {e}")


def _threshold(target: dict, goal_id: str) -> Threshold:
    loinc = _measure(target)
    low, high, range_unit = _range(target.get("detailRange"))
    rise, fall, within, change_unit = _change(target)
    if low is None and high is None and within is None:
        raise ValueError("neither detailRange nor a change extension")
    if range_unit and change_unit and range_unit != change_unit:
        raise ValueError(f"range in {range_unit} but change in {change_unit}")
    return Threshold(loinc, low, high, rise, fall, within, goal_id, range_unit or change_unit)


def _measure(target: dict) -> str:
    codings = ((target.get("measure") or {}).get("coding")) or []
    codes = [c.get("code") for c in codings if c.get("system") == LOINC and c.get("code")]
    if not codes:
        raise ValueError("measure has no LOINC coding")
    if codes[0] == BP_PANEL:
        raise ValueError("measure is the blood-pressure panel: name systolic or diastolic")
    return normalised(codes[0])


def _range(detail: dict | None) -> tuple[float | None, float | None, str | None]:
    if detail is None:
        return None, None, None
    low, high = detail.get("low"), detail.get("high")
    if low is None and high is None:
        raise ValueError("detailRange has neither low nor high")
    units = {u for q in (low, high) if q is not None and (u := _unit(q))}
    if len(units) > 1:
        raise ValueError(f"detailRange low and high in different units: {sorted(units)}")
    low_value, high_value = _value(low), _value(high)
    if low_value is not None and high_value is not None and low_value > high_value:
        raise ValueError(f"detailRange low {low_value} is above high {high_value}")
    return low_value, high_value, units.pop() if units else None


def _change(target: dict) -> tuple[float | None, float | None, timedelta | None, str | None]:
    parts = _change_parts(target)
    if parts is None:
        return None, None, None, None
    rise, fall = _amount(parts.get("rise")), _amount(parts.get("fall"))
    if rise is None and fall is None:
        raise ValueError("change extension has neither rise nor fall")
    within = _duration(parts.get("within"))
    units = {u for k in ("rise", "fall") if k in parts and (u := _unit(parts[k]))}
    if len(units) > 1:
        raise ValueError(f"rise and fall in different units: {sorted(units)}")
    return rise, fall, within, units.pop() if units else None


def _change_parts(target: dict) -> dict[str, dict] | None:
    """The change extension's parts by name (valueQuantity / valueDuration), or None."""
    found = [e for e in target.get("extension") or [] if e.get("url") == CHANGE]
    if not found:
        return None
    parts = {}
    for part in found[0].get("extension") or []:
        value = part.get("valueQuantity") or part.get("valueDuration")
        if part.get("url") in ("rise", "fall", "within") and isinstance(value, dict):
            parts[part["url"]] = value
    return parts


def _amount(quantity: dict | None) -> float | None:
    value = _value(quantity)
    if value is not None and value <= 0:
        raise ValueError(f"a rise or fall must be above 0, not {value}")
    return value


def _duration(duration: dict | None) -> timedelta:
    if duration is None:
        raise ValueError("change extension has no 'within'")
    unit, value = _unit(duration), _value(duration)
    if unit not in TIME_UNITS or value is None or value <= 0:
        raise ValueError(f"'within' must be above 0 in min, h, d or wk: {duration!r}")
    return TIME_UNITS[unit] * value


def _value(quantity: dict | None) -> float | None:
    if quantity is None:
        return None
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _unit(quantity: dict) -> str | None:
    """The UCUM code, else the human-readable unit, else None."""
    if quantity.get("system") == UCUM and quantity.get("code"):
        return str(quantity["code"])
    return quantity.get("unit") or quantity.get("code")


# --- readings and their crossings ------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One measured value at one moment.  A blood-pressure reading (systolic or diastolic)
    keeps both values of its panel in ``components``, keyed by component LOINC."""

    loinc: str
    value: float
    unit: str | None
    at: datetime
    observation_id: str
    components: dict[str, float] = field(default_factory=dict)


def readings(observation: dict) -> list[Reading]:
    """The readings of an Observation: none unless final, amended or corrected with a LOINC
    code and a value; a BP panel gives its systolic and diastolic components.  ValueError for
    an Observation without id or without a timezone-aware effective time."""
    if observation.get("status") not in FINAL_READINGS:
        return []
    loinc = _observation_loinc(observation)
    if loinc is None:
        return []
    obs_id, at = _observation_id(observation), _effective(observation)
    if loinc == BP_PANEL:
        return _blood_pressure(observation, at, obs_id)
    quantity = observation.get("valueQuantity")
    if quantity is None or quantity.get("value") is None:
        return []  # dataAbsentReason: nothing measured
    value, unit = _canonical(loinc, _number(quantity), _unit(quantity))
    return [Reading(loinc, value, unit, at, obs_id)]


def _observation_loinc(resource: dict) -> str | None:
    """The LOINC code, or the catalogue's LOINC for an Observation a gateway coded only in
    MDC or SNOMED CT (the hook accepts those codes: its readings must be evaluated too)."""
    codings = (resource.get("code") or {}).get("coding") or []
    codes = [c["code"] for c in codings if c.get("system") == LOINC and c.get("code")]
    if codes:
        return normalised(codes[0])
    try:
        return catalogue.CATALOGUE[catalogue.reading_type(resource)].concept.loinc.code
    except catalogue.Refused:
        return None


def _canonical(loinc: str, value: float, unit: str | None) -> tuple[float, str | None]:
    """A value in the unit the catalogue stores (a gateway may send weight in g or
    [lb_av]: the hook accepts those), so it compares with the care plan's thresholds."""
    for kind in catalogue.CATALOGUE.values():
        factor = kind.units.get(unit or "") if kind.concept.loinc.code == loinc else None
        if factor is not None and factor != 1:
            return round(float(Decimal(str(value)) * factor), 3), kind.unit
    return value, unit


def _observation_id(observation: dict) -> str:
    obs_id = observation.get("id")
    if not isinstance(obs_id, str) or not obs_id:
        raise ValueError("an Observation without id cannot be evidence")
    return obs_id


def _effective(observation: dict) -> datetime:
    text = observation.get("effectiveDateTime") or observation.get("effectiveInstant")
    if not isinstance(text, str) or "T" not in text:
        raise ValueError(f"Observation/{observation.get('id')} has no effective date and time")
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"Observation/{observation.get('id')} effective time has no timezone")
    return at


def _blood_pressure(observation: dict, at: datetime, obs_id: str) -> list[Reading]:
    values: dict[str, tuple[float, str | None]] = {}
    for component in observation.get("component") or []:
        code, quantity = _observation_loinc(component), component.get("valueQuantity")
        if code in (SYSTOLIC, DIASTOLIC) and quantity and quantity.get("value") is not None:
            values[code] = (_number(quantity), _unit(quantity))
    both = {code: value for code, (value, _) in values.items()}
    return [Reading(code, v, unit, at, obs_id, both) for code, (v, unit) in values.items()]


def _number(quantity: dict) -> float:
    value = _value(quantity)
    assert value is not None  # callers check that a value is there
    return value


@dataclass(frozen=True)
class Crossing:
    """A reading beyond a threshold.  ``kind`` is below/above/rise/fall; ``limit`` the low or
    high crossed, or the rise/fall allowed; ``baseline`` the value a change is measured from;
    ``evidence`` the Observation ids (the baseline's first, then the reading's)."""

    threshold: Threshold
    kind: str
    value: float
    limit: float
    baseline: float | None
    evidence: tuple[str, ...]


def crossings(
    reading: Reading, limits: Sequence[Threshold], history: Sequence[Reading]
) -> list[Crossing]:
    """The thresholds ``reading`` crosses.  ``history`` holds earlier readings (any code; the
    reading itself and later ones are ignored).  ValueError on a unit mismatch."""
    found: list[Crossing] = []
    for limit in limits:
        if limit.loinc == normalised(reading.loinc):
            _check_unit(reading, limit.unit)
            found += _range_crossings(reading, limit) + _change_crossings(reading, limit, history)
    return found


def _check_unit(reading: Reading, unit: str | None) -> None:
    if reading.unit and unit and reading.unit != unit:
        raise ValueError(
            f"Observation/{reading.observation_id} in {reading.unit} but threshold in {unit}"
        )


def _range_crossings(reading: Reading, limit: Threshold) -> list[Crossing]:
    evidence = (reading.observation_id,)
    if limit.low is not None and reading.value < limit.low:
        return [Crossing(limit, "below", reading.value, limit.low, None, evidence)]
    if limit.high is not None and reading.value > limit.high:
        return [Crossing(limit, "above", reading.value, limit.high, None, evidence)]
    return []


def _change_crossings(
    reading: Reading, limit: Threshold, history: Sequence[Reading]
) -> list[Crossing]:
    window = _window(reading, limit, history)
    if not window:
        return []
    found = []
    lowest = min(window, key=lambda r: (r.value, r.at))  # earliest of equal values
    highest = max(window, key=lambda r: (r.value, -r.at.timestamp()))
    if limit.rise is not None and _difference(lowest.value, reading.value) >= _exact(limit.rise):
        found.append(_change_crossing(reading, limit, "rise", limit.rise, lowest))
    if limit.fall is not None and _difference(reading.value, highest.value) >= _exact(limit.fall):
        found.append(_change_crossing(reading, limit, "fall", limit.fall, highest))
    return found


def _window(reading: Reading, limit: Threshold, history: Sequence[Reading]) -> list[Reading]:
    """Earlier readings of the same code within the window, its start included."""
    if limit.within is None:
        return []
    start = reading.at - limit.within
    earlier = [
        r
        for r in history
        if normalised(r.loinc) == limit.loinc
        and start <= r.at < reading.at
        and r.observation_id != reading.observation_id
    ]
    for r in earlier:
        _check_unit(r, reading.unit)
    return earlier


def _exact(value: float) -> Decimal:
    # The decimal as written, so 64.1 - 62.1 is exactly 2, not 1.999999999999993.
    return Decimal(str(value))


def _difference(before: float, after: float) -> Decimal:
    return _exact(after) - _exact(before)


def _change_crossing(
    reading: Reading, limit: Threshold, kind: str, amount: float, base: Reading
) -> Crossing:
    evidence = (base.observation_id, reading.observation_id)
    return Crossing(limit, kind, reading.value, amount, base.value, evidence)


# --- NEWS2 from the latest vital signs -------------------------------------------------------

# LOINC -> (Vitals field, UCUM codes accepted); news2.py scores in these units only.
NEWS2_PARAMETERS = {
    RESPIRATION: ("respiration_rate", {"/min", "{breaths}/min"}),
    SPO2: ("spo2", {"%"}),
    SYSTOLIC: ("systolic", {"mm[Hg]"}),
    PULSE: ("pulse", {"/min", "{beats}/min"}),
    TEMPERATURE: ("temperature", {"Cel"}),
}


def news2_from(
    readings: Iterable[Reading],
    now: datetime,
    window: timedelta = timedelta(hours=1),
    on_oxygen: bool | None = None,
    consciousness: str | None = None,
    spo2_scale: int = 1,
) -> News2 | None:
    """NEWS2 of the newest reading of each parameter taken within ``window`` up to ``now``
    (both ends included); None when there is nothing to score.  Air/oxygen and ACVPU are not
    measured by devices, so the caller passes them if known; the result's ``complete`` says
    whether all seven were there (a partial total is a lower bound: see news2.py)."""
    newest = _newest(readings, now - window, now)
    v = {_news2_field(loinc, r): r.value for loinc, r in newest.items()}
    vitals = Vitals(
        respiration_rate=v.get("respiration_rate"),
        spo2=v.get("spo2"),
        on_oxygen=on_oxygen,
        systolic=v.get("systolic"),
        pulse=v.get("pulse"),
        consciousness=consciousness,
        temperature=v.get("temperature"),
        spo2_scale=spo2_scale,
    )
    return score(vitals)


def _newest(readings: Iterable[Reading], start: datetime, end: datetime) -> dict[str, Reading]:
    newest: dict[str, Reading] = {}
    for r in readings:
        loinc = normalised(r.loinc)
        in_window = loinc in NEWS2_PARAMETERS and start <= r.at <= end
        if in_window and (loinc not in newest or r.at > newest[loinc].at):
            newest[loinc] = r
    return newest


def _news2_field(loinc: str, reading: Reading) -> str:
    name, units = NEWS2_PARAMETERS[loinc]
    if reading.unit not in units:
        raise ValueError(f"Observation/{reading.observation_id}: {name} in {reading.unit!r}")
    return name


# --- planned measurements that did not come --------------------------------------------------


def missing_measurements(
    care_plan: dict, last_measured: dict[str, datetime | None], now: datetime, grace: timedelta
) -> list[str]:
    """LOINC codes the active CarePlan schedules whose last measurement is more than one
    interval (period / frequency) plus ``grace`` ago; never measured counts from the plan's
    period.start (else ``created``).  ``last_measured`` is keyed by LOINC; see
    ``last_measured``.  ValueError for a planned activity that cannot be read."""
    if care_plan.get("status") != "active" or _ended(care_plan, now):
        return []
    overdue = []
    for code, interval in _schedule(care_plan):
        last = last_measured.get(code) or _start(care_plan)
        if now > last + interval + grace:
            overdue.append(code)
    return overdue


def last_measured(readings: Iterable[Reading]) -> dict[str, datetime | None]:
    """When each code was last measured; a BP component also counts for its panel."""
    latest: dict[str, datetime | None] = {}
    for r in readings:
        codes = (normalised(r.loinc), BP_PANEL) if r.components else (normalised(r.loinc),)
        for code in codes:
            previous = latest.get(code)
            latest[code] = r.at if previous is None else max(previous, r.at)
    return latest


def _ended(care_plan: dict, now: datetime) -> bool:
    end = (care_plan.get("period") or {}).get("end")
    return end is not None and now > _moment(end, "period.end")


def _start(care_plan: dict) -> datetime:
    start = (care_plan.get("period") or {}).get("start")
    if start is not None:
        return _moment(start, "period.start")
    if care_plan.get("created") is None:
        raise ValueError(f"CarePlan/{care_plan.get('id')} has neither period.start nor created")
    return _moment(care_plan["created"], "created")


def _moment(text: str, what: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"CarePlan {what} {text!r} has no time and timezone")
    return at


def _schedule(care_plan: dict) -> list[tuple[str, timedelta]]:
    """(LOINC, interval) of each planned activity that measures something."""
    planned = []
    for activity in care_plan.get("activity") or []:
        detail = activity.get("detail") or {}
        code = _observation_loinc(detail)
        if code is not None and detail.get("status") in PLANNED:
            planned.append((code, _interval(detail, code)))
    return planned


def _interval(detail: dict, code: str) -> timedelta:
    repeat = (detail.get("scheduledTiming") or {}).get("repeat") or {}
    frequency, period = repeat.get("frequency", 1), repeat.get("period")
    unit = repeat.get("periodUnit")
    if not _positive(frequency) or not _positive(period) or unit not in TIME_UNITS:
        raise ValueError(f"activity {code}: needs frequency and period > 0 in min, h, d or wk")
    return TIME_UNITS[unit] * period / frequency


def _positive(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


# --- silent devices --------------------------------------------------------------------------


def silent(
    last_seen: datetime | None, now: datetime, window: timedelta = timedelta(hours=1)
) -> bool:
    """Whether a device has sent nothing for longer than ``window`` (hourly, as alarm centres
    typically poll home equipment, domain.md section 10).  Never seen counts as silent: the
    caller watches a device only once it is handed out."""
    return last_seen is None or now - last_seen > window


# --- escalation of unacknowledged alerts -----------------------------------------------------

# Assumed, not from a source: minutes to acknowledge at each level (level 1 first), by
# DetectedIssue.severity.  Anchored only on "home-care response within 30 minutes is a common
# municipal promise" (domain.md section 10); the service owner must confirm these.
DEADLINES = {
    "high": (timedelta(minutes=15), timedelta(minutes=15), timedelta(minutes=15)),
    "moderate": (timedelta(minutes=60), timedelta(minutes=30), timedelta(minutes=30)),
    "low": (timedelta(minutes=60), timedelta(minutes=60), timedelta(minutes=60)),
}
MAX_LEVEL = 3  # the last level (e.g. the on-call nurse leader); an alert stays there


def escalation_due(
    created: datetime, level: int, acknowledged: bool, now: datetime, severity: str
) -> int | None:
    """The next level when the alert, created at ``created`` and now at ``level``, passed the
    deadline of that level unacknowledged; else None (also at MAX_LEVEL).  Deadlines add up
    from ``created``, so a late run escalates one level per call until it catches up."""
    if severity not in DEADLINES:
        raise ValueError(f"severity must be one of {sorted(DEADLINES)}, not {severity!r}")
    if not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"level must be 1..{MAX_LEVEL}, not {level!r}")
    if acknowledged or level == MAX_LEVEL:
        return None
    deadline = created + sum(DEADLINES[severity][:level], timedelta())
    return level + 1 if now > deadline else None


# --- severity ----------------------------------------------------------------------------------

# NEWS2 clinical risk (RCP 2017 Chart 2, see news2.py) -> (DetectedIssue.severity, Task.priority).
# RCP: high = emergency response -> stat; medium = urgent response and low-medium (a single 3)
# = urgent ward-based response -> urgent; low = assessment by a registered nurse -> routine.
NEWS2_SEVERITY = {
    "high": ("high", "stat"),
    "medium": ("moderate", "urgent"),
    "low-medium": ("moderate", "urgent"),
    "low": ("low", "routine"),
}
# Assumed: a crossed individual threshold asks for a same-day look by the care team.
CROSSING_SEVERITY = ("moderate", "urgent")
# Assumed: a missing measurement or a silent device is followed up in the day's routine.
ROUTINE_SEVERITY = ("low", "routine")
_ISSUE_ORDER = ("low", "moderate", "high")


def severity(found: Sequence[Crossing] = (), risk: str | None = None) -> tuple[str, str]:
    """(DetectedIssue.severity, Task.priority) of an alert raised by ``found`` crossings
    and/or a NEWS2 ``risk``: the more severe of the two; low/routine when neither."""
    candidates = [ROUTINE_SEVERITY]
    if found:
        candidates.append(CROSSING_SEVERITY)
    if risk is not None:
        if risk not in NEWS2_SEVERITY:
            raise ValueError(f"unknown NEWS2 risk {risk!r}")
        candidates.append(NEWS2_SEVERITY[risk])
    return max(candidates, key=lambda c: _ISSUE_ORDER.index(c[0]))
