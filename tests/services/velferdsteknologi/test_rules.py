"""The home follow-up alert rules: every limit from both sides (equal and just beyond), every
time limit at the instant and one second past it, with an explicit clock.  Expected values are
written out, never computed from the module."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from enjournal.services.velferdsteknologi.rules import (
    CHANGE,
    DEADLINES,
    MAX_LEVEL,
    Crossing,
    Reading,
    Threshold,
    crossings,
    escalation_due,
    last_measured,
    missing_measurements,
    news2_from,
    readings,
    severity,
    silent,
    thresholds,
)

T0 = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def quantity(value: float, code: str) -> dict:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def change(**parts: tuple[float, str]) -> dict:
    """The change extension; ``within`` becomes a valueDuration, the rest valueQuantity."""
    return {
        "url": CHANGE,
        "extension": [
            {"url": name, ("valueDuration" if name == "within" else "valueQuantity"): quantity(*q)}
            for name, q in parts.items()
        ],
    }


def target(
    code: str,
    low: float | None = None,
    high: float | None = None,
    unit: str = "kg",
    extension: dict | None = None,
) -> dict:
    t: dict = {"measure": {"coding": [{"system": LOINC, "code": code}]}}
    if low is not None or high is not None:
        t["detailRange"] = {
            k: quantity(v, unit) for k, v in (("low", low), ("high", high)) if v is not None
        }
    if extension:
        t["extension"] = [extension]
    return t


def goal(goal_id: str, *targets: dict, status: str = "active") -> dict:
    return {
        "resourceType": "Goal",
        "id": goal_id,
        "lifecycleStatus": status,
        "target": list(targets),
    }


def reading(
    value: float, at: datetime, obs_id: str, loinc: str = "29463-7", unit: str = "kg"
) -> Reading:
    return Reading(loinc, value, unit, at, obs_id)


WEIGHT_RANGE = Threshold("29463-7", 60.0, 90.0, None, None, None, "g1", "kg")
WEIGHT_RISE = Threshold("29463-7", None, None, 2.0, None, timedelta(days=3), "g2", "kg")
WEIGHT_FALL = Threshold("29463-7", None, None, None, 1.5, timedelta(days=3), "g3", "kg")


# --- thresholds ------------------------------------------------------------------------------


def test_range_and_change_targets_become_thresholds():
    goals = [
        goal("g1", target("29463-7", 60, 90)),
        goal("g2", target("29463-7", extension=change(rise=(2, "kg"), within=(3, "d")))),
        goal("g3", target("8480-6", 100, 160, unit="mm[Hg]"), status="accepted"),
    ]
    found, problems = thresholds(goals)
    assert problems == []
    assert found == [
        Threshold("29463-7", 60.0, 90.0, None, None, None, "g1", "kg"),
        Threshold("29463-7", None, None, 2.0, None, timedelta(days=3), "g2", "kg"),
        Threshold("8480-6", 100.0, 160.0, None, None, None, "g3", "mm[Hg]"),
    ]


def test_a_target_may_have_only_a_high_and_both_rise_and_fall():
    t = target(
        "2339-0",
        high=15,
        unit="mmol/L",
        extension=change(rise=(3, "mmol/L"), fall=(4, "mmol/L"), within=(12, "h")),
    )
    found, _ = thresholds([goal("g", t)])
    assert found == [Threshold("2339-0", None, 15.0, 3.0, 4.0, timedelta(hours=12), "g", "mmol/L")]


def test_spo2_alias_is_read_as_2708_6():
    found, _ = thresholds([goal("g", target("59408-5", low=92, unit="%"))])
    assert [t.loinc for t in found] == ["2708-6"]


@pytest.mark.parametrize(
    "status",
    [
        "proposed",
        "planned",
        "on-hold",
        "completed",
        "cancelled",
        "entered-in-error",
        "rejected",
        None,
    ],
)
def test_goals_not_active_or_accepted_are_skipped_without_a_problem(status):
    assert thresholds([goal("g", target("29463-7", 60, 90), status=status)]) == ([], [])


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"detailRange": {"low": quantity(1, "kg")}}, "measure has no LOINC coding"),
        (target("85354-9", 90, 140, "mm[Hg]"), "blood-pressure panel"),
        (target("29463-7"), "neither detailRange nor a change extension"),
        ({**target("29463-7"), "detailRange": {}}, "neither low nor high"),
        (target("29463-7", 90, 60), "low 90.0 is above high 60.0"),
        (
            {**target("29463-7"), "detailRange": {"low": {"value": "60", "code": "kg"}}},
            "not a number",
        ),
        (
            {
                **target("29463-7"),
                "detailRange": {"low": quantity(60, "kg"), "high": quantity(200, "[lb_av]")},
            },
            "different units",
        ),
        (target("29463-7", extension=change(within=(3, "d"))), "neither rise nor fall"),
        (target("29463-7", extension=change(rise=(2, "kg"))), "no 'within'"),
        (target("29463-7", extension=change(rise=(2, "kg"), within=(1, "mo"))), "'within'"),
        (target("29463-7", extension=change(rise=(0, "kg"), within=(3, "d"))), "above 0"),
        (target("29463-7", extension=change(fall=(-1, "kg"), within=(3, "d"))), "above 0"),
        (
            target("29463-7", 60, 90, "kg", change(rise=(2000, "g"), within=(3, "d"))),
            "range in kg but change in g",
        ),
    ],
)
def test_malformed_targets_are_skipped_and_reported(bad, problem):
    good = target("29463-7", 60, 90)
    found, problems = thresholds([goal("g", bad, good)])
    assert found == [Threshold("29463-7", 60.0, 90.0, None, None, None, "g", "kg")]
    assert len(problems) == 1
    assert problems[0].startswith("Goal/g target 0: ")
    assert problem in problems[0]


def test_a_goal_without_id_or_not_a_goal_is_reported():
    no_id = {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "target": [target("29463-7", 60, 90)],
    }
    found, problems = thresholds([no_id, {"resourceType": "CarePlan"}])
    assert found == []
    assert problems[0] == "Goal without id: an alert could not name it"
    assert problems[1].startswith("not a Goal")


# --- readings from Observations --------------------------------------------------------------


def observation(code: str, value: float | None, unit: str, **more) -> dict:
    obs = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": "2025-03-10T09:00:00+01:00",
        **more,
    }
    if value is not None:
        obs["valueQuantity"] = quantity(value, unit)
    return obs


def test_a_weight_observation_is_one_reading():
    assert readings(observation("29463-7", 82.4, "kg")) == [
        Reading("29463-7", 82.4, "kg", T0, "o1")
    ]


def test_a_blood_pressure_panel_is_a_systolic_and_a_diastolic_reading():
    obs = observation(
        "85354-9",
        None,
        "",
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": quantity(142, "mm[Hg]"),
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": quantity(91, "mm[Hg]"),
            },
        ],
    )
    both = {"8480-6": 142.0, "8462-4": 91.0}
    assert readings(obs) == [
        Reading("8480-6", 142.0, "mm[Hg]", T0, "o1", both),
        Reading("8462-4", 91.0, "mm[Hg]", T0, "o1", both),
    ]


def test_spo2_by_pulse_oximetry_reads_as_2708_6():
    assert readings(observation("59408-5", 95, "%"))[0].loinc == "2708-6"


@pytest.mark.parametrize(
    "status", ["preliminary", "registered", "cancelled", "entered-in-error", "unknown"]
)
def test_readings_that_are_not_final_do_not_count(status):
    assert readings(observation("29463-7", 82.4, "kg", status=status)) == []


def test_no_value_or_an_unknown_code_gives_no_reading():
    assert readings(observation("29463-7", None, "kg")) == []
    unknown = observation("29463-7", 82.4, "kg")
    unknown["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "1234"}]}
    assert readings(unknown) == []


def test_a_reading_coded_without_loinc_or_in_grams_is_read_as_the_catalogue_stores_it():
    # The device hook accepts SNOMED CT or MDC alone, and g or [lb_av]: the rules must
    # read such a gateway's reading too, in kg, or its alert never comes.
    snomed = observation("29463-7", 82.4, "kg")
    snomed["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "27113001"}]}
    (found,) = readings(snomed)
    assert (found.loinc, found.value, found.unit) == ("29463-7", 82.4, "kg")
    (grams,) = readings(observation("29463-7", 82400, "g"))
    assert (grams.value, grams.unit) == (82.4, "kg")


@pytest.mark.parametrize(
    "fix",
    [
        {"id": None},
        {"effectiveDateTime": "2025-03-10"},
        {"effectiveDateTime": "2025-03-10T09:00:00"},
        {"effectiveDateTime": None},
    ],
)
def test_an_observation_without_id_or_zoned_time_is_refused(fix):
    with pytest.raises(ValueError):
        readings({**observation("29463-7", 82.4, "kg"), **fix})


# --- range crossings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "limit"),
    [
        (59.9, "below", 60.0),
        (60.0, None, None),
        (75.0, None, None),
        (90.0, None, None),
        (90.1, "above", 90.0),
    ],
)
def test_range_edges_are_inside_and_just_beyond_crosses(value, kind, limit):
    found = crossings(reading(value, T0, "now"), [WEIGHT_RANGE], [])
    expected = [] if kind is None else [Crossing(WEIGHT_RANGE, kind, value, limit, None, ("now",))]
    assert found == expected


def test_thresholds_of_other_codes_do_not_apply():
    pulse = reading(200, T0, "now", loinc="8867-4", unit="/min")
    assert crossings(pulse, [WEIGHT_RANGE], []) == []


def test_a_unit_mismatch_is_refused_rather_than_compared():
    glucose = Threshold("15074-8", 4.0, 10.0, None, None, None, "g", "mmol/L")
    with pytest.raises(ValueError, match="mg/dL"):
        crossings(reading(120, T0, "now", "15074-8", "mg/dL"), [glucose], [])


def test_a_reading_without_unit_is_compared_as_assumed():
    found = crossings(Reading("29463-7", 95.0, None, T0, "now"), [WEIGHT_RANGE], [])
    assert [c.kind for c in found] == ["above"]


# --- rise and fall ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("earlier_at", "now_value", "crossed"),
    [
        (T0 - timedelta(days=3), 82.0, True),  # exactly 2 kg in exactly 3 days
        (T0 - timedelta(days=3) - SECOND, 82.0, False),  # a second outside the window
        (T0 - timedelta(days=1), 81.9, False),  # just under 2 kg
        (T0 - timedelta(days=1), 82.1, True),
    ],
)
def test_rise_window_and_amount_edges(earlier_at, now_value, crossed):
    history = [reading(80.0, earlier_at, "before")]
    found = crossings(reading(now_value, T0, "now"), [WEIGHT_RISE], history)
    expected = [Crossing(WEIGHT_RISE, "rise", now_value, 2.0, 80.0, ("before", "now"))]
    assert found == (expected if crossed else [])


def test_rise_is_exact_in_decimals():
    # 64.1 - 62.1 is 1.999999999999993 in binary floating point.
    found = crossings(
        reading(64.1, T0, "now"), [WEIGHT_RISE], [reading(62.1, T0 - timedelta(days=2), "before")]
    )
    assert [c.kind for c in found] == ["rise"]


def test_rise_is_measured_from_the_lowest_and_earliest_of_equal_values():
    history = [
        reading(80.5, T0 - timedelta(days=3), "a"),
        reading(79.8, T0 - timedelta(days=2), "b"),  # lowest, first time
        reading(79.8, T0 - timedelta(days=1), "c"),  # lowest again, later
        reading(78.0, T0 - timedelta(days=4), "outside"),
        reading(70.0, T0 + timedelta(hours=1), "later"),  # after this reading: ignored
        reading(60.0, T0, "now"),  # the reading itself: ignored
        reading(50.0, T0 - timedelta(days=1), "pulse", loinc="8867-4", unit="/min"),
    ]
    found = crossings(reading(81.8, T0, "now"), [WEIGHT_RISE], history)
    assert found == [Crossing(WEIGHT_RISE, "rise", 81.8, 2.0, 79.8, ("b", "now"))]


@pytest.mark.parametrize(
    ("earlier_at", "now_value", "crossed"),
    [
        (T0 - timedelta(days=3), 78.5, True),  # exactly 1.5 kg in exactly 3 days
        (T0 - timedelta(days=3) - SECOND, 78.5, False),
        (T0 - timedelta(hours=1), 78.6, False),
    ],
)
def test_fall_edges_from_the_highest_value(earlier_at, now_value, crossed):
    history = [reading(79.0, T0 - timedelta(hours=2), "lower"), reading(80.0, earlier_at, "high")]
    found = crossings(reading(now_value, T0, "now"), [WEIGHT_FALL], history)
    expected = [Crossing(WEIGHT_FALL, "fall", now_value, 1.5, 80.0, ("high", "now"))]
    assert found == (expected if crossed else [])


def test_no_history_no_change_crossing():
    assert crossings(reading(120, T0, "now"), [WEIGHT_RISE, WEIGHT_FALL], []) == []


def test_range_and_rise_crossings_together():
    both = Threshold("29463-7", 60.0, 90.0, 2.0, None, timedelta(days=3), "g", "kg")
    found = crossings(
        reading(91.0, T0, "now"), [both], [reading(88.0, T0 - timedelta(days=1), "b")]
    )
    assert [(c.kind, c.limit, c.evidence) for c in found] == [
        ("above", 90.0, ("now",)),
        ("rise", 2.0, ("b", "now")),
    ]


def test_history_in_another_unit_is_refused():
    with pytest.raises(ValueError, match=r"\[lb_av\]"):
        crossings(
            reading(82, T0, "now"),
            [WEIGHT_RISE],
            [reading(176, T0 - timedelta(days=1), "b", unit="[lb_av]")],
        )


# --- NEWS2 -----------------------------------------------------------------------------------


def vitals_at(at: datetime) -> list[Reading]:
    """A set scoring 0 on every measured parameter."""
    return [
        reading(16, at, "rr", "9279-1", "/min"),
        reading(97, at, "sat", "2708-6", "%"),
        reading(120, at, "sys", "8480-6", "mm[Hg]"),
        reading(70, at, "hr", "8867-4", "/min"),
        reading(37.0, at, "temp", "8310-5", "Cel"),
    ]


def test_news2_of_a_complete_normal_set_is_0_low():
    news = news2_from(vitals_at(T0 - timedelta(minutes=10)), T0, on_oxygen=False, consciousness="A")
    assert news is not None
    assert (news.total, news.risk, news.complete) == (0, "low", True)


def test_news2_uses_the_newest_reading_of_each_parameter():
    older = reading(130, T0 - timedelta(minutes=50), "hr-old", "8867-4", "/min")  # 2 points
    newer = reading(115, T0 - timedelta(minutes=5), "hr-new", "8867-4", "/min")  # 2 points
    newest = reading(95, T0 - timedelta(minutes=1), "hr-newest", "8867-4", "/min")  # 1 point
    news = news2_from([older, newest, newer], T0)
    assert news is not None
    assert (news.scores, news.total, news.complete) == ({"pulse": 1}, 1, False)


def test_news2_window_start_is_included():
    at_start = reading(25, T0 - timedelta(hours=1), "rr", "9279-1", "/min")
    news = news2_from([at_start], T0)
    assert news is not None
    assert news.scores == {"respiration_rate": 3}
    assert news2_from([at_start], T0 + SECOND) is None


def test_news2_ignores_readings_after_now():
    assert news2_from([reading(25, T0 + SECOND, "rr", "9279-1", "/min")], T0) is None


def test_news2_high_risk_with_oxygen_and_confusion():
    readings_ = [
        reading(25, T0, "rr", "9279-1", "/min"),  # 3
        reading(91, T0, "sat", "59408-5", "%"),  # 3 (alias)
        reading(120, T0, "sys", "8480-6", "mm[Hg]"),  # 0
    ]
    news = news2_from(readings_, T0, on_oxygen=True, consciousness="C")
    assert news is not None
    assert (news.total, news.risk) == (3 + 3 + 2 + 3, "high")


def test_news2_refuses_a_unit_it_cannot_score():
    with pytest.raises(ValueError, match="temperature"):
        news2_from([reading(98.6, T0, "t", "8310-5", "[degF]")], T0)


def test_news2_with_other_readings_only_is_none():
    assert news2_from([reading(82, T0, "w")], T0) is None


# --- missing measurements --------------------------------------------------------------------


def plan(*activities: dict, start: str | None = "2025-03-01T00:00:00+00:00", **more) -> dict:
    p = {
        "resourceType": "CarePlan",
        "id": "cp",
        "status": "active",
        "activity": list(activities),
        **more,
    }
    if start:
        p["period"] = {"start": start}
    return p


def measure(code: str, frequency: int, period: float, unit: str, status: str = "scheduled"):
    return {
        "detail": {
            "status": status,
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "scheduledTiming": {
                "repeat": {"frequency": frequency, "period": period, "periodUnit": unit}
            },
        }
    }


GRACE = timedelta(hours=2)


@pytest.mark.parametrize(("late", "missing"), [(timedelta(0), []), (SECOND, ["29463-7"])])
def test_daily_weight_is_missing_just_after_a_day_plus_grace(late, missing):
    last = {"29463-7": T0}
    now = T0 + timedelta(days=1) + GRACE + late
    assert missing_measurements(plan(measure("29463-7", 1, 1, "d")), last, now, GRACE) == missing


@pytest.mark.parametrize(("late", "missing"), [(timedelta(0), []), (SECOND, ["85354-9"])])
def test_twice_a_week_is_every_three_and_a_half_days(late, missing):
    last = {"85354-9": T0}
    now = T0 + timedelta(days=3, hours=12) + GRACE + late
    assert missing_measurements(plan(measure("85354-9", 2, 1, "wk")), last, now, GRACE) == missing


@pytest.mark.parametrize(("late", "missing"), [(timedelta(0), []), (SECOND, ["29463-7"])])
def test_never_measured_counts_from_the_plan_start(late, missing):
    start = datetime(2025, 3, 1, tzinfo=UTC)
    now = start + timedelta(days=1) + GRACE + late
    care_plan = plan(measure("29463-7", 1, 1, "d"))
    assert missing_measurements(care_plan, {"29463-7": None}, now, GRACE) == missing
    assert missing_measurements(care_plan, {}, now, GRACE) == missing


def test_without_period_start_the_plan_created_date_counts():
    care_plan = plan(measure("29463-7", 1, 1, "d"), start=None, created="2025-03-01T00:00:00+00:00")
    now = datetime(2025, 3, 2, 2, 0, 1, tzinfo=UTC)
    assert missing_measurements(care_plan, {}, now, GRACE) == ["29463-7"]
    with pytest.raises(ValueError, match=r"neither period\.start nor created"):
        missing_measurements(plan(measure("29463-7", 1, 1, "d"), start=None), {}, now, GRACE)


def test_only_overdue_codes_of_planned_activities_are_listed():
    care_plan = plan(
        measure("29463-7", 1, 1, "d"),
        measure("8867-4", 1, 1, "d"),
        measure("2708-6", 1, 1, "d", status="stopped"),
    )
    last = {"29463-7": T0 - timedelta(days=2), "8867-4": T0 - timedelta(hours=1)}
    assert missing_measurements(care_plan, last, T0, GRACE) == ["29463-7"]


def test_a_plan_not_active_or_ended_has_nothing_missing():
    now = T0 + timedelta(days=30)
    ended = plan(measure("29463-7", 1, 1, "d"))
    ended["period"]["end"] = (T0 + timedelta(days=10)).isoformat()
    assert missing_measurements(ended, {}, now, GRACE) == []
    done = plan(measure("29463-7", 1, 1, "d"), status="completed")
    assert missing_measurements(done, {}, now, GRACE) == []


@pytest.mark.parametrize(
    "repeat",
    [
        {"period": 1},
        {"period": 0, "periodUnit": "d"},
        {"period": 1, "periodUnit": "mo"},
        {"frequency": 0, "period": 1, "periodUnit": "d"},
    ],
)
def test_an_unreadable_schedule_is_refused(repeat):
    activity = measure("29463-7", 1, 1, "d")
    activity["detail"]["scheduledTiming"]["repeat"] = repeat
    with pytest.raises(ValueError, match="29463-7"):
        missing_measurements(plan(activity), {}, T0, GRACE)


def test_last_measured_counts_bp_components_for_the_panel():
    both = {"8480-6": 140.0, "8462-4": 90.0}
    rs = [
        Reading("8480-6", 140.0, "mm[Hg]", T0, "bp", both),
        reading(82, T0 - timedelta(days=1), "w1"),
        reading(83, T0 - timedelta(hours=1), "w2"),
        reading(95, T0, "sat", "59408-5", "%"),
    ]
    assert last_measured(rs) == {
        "8480-6": T0,
        "85354-9": T0,
        "29463-7": T0 - timedelta(hours=1),
        "2708-6": T0,
    }


# --- silent devices --------------------------------------------------------------------------


def test_silent_device_edges():
    assert silent(T0 - timedelta(hours=1), T0) is False
    assert silent(T0 - timedelta(hours=1) - SECOND, T0) is True
    assert silent(T0 - timedelta(hours=6), T0, window=timedelta(hours=6)) is False
    assert silent(None, T0) is True


# --- escalation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity_", "level", "deadline_after", "next_level"),
    [
        ("high", 1, timedelta(minutes=15), 2),
        ("high", 2, timedelta(minutes=30), 3),
        ("moderate", 1, timedelta(minutes=60), 2),
        ("moderate", 2, timedelta(minutes=90), 3),
        ("low", 1, timedelta(minutes=60), 2),
        ("low", 2, timedelta(minutes=120), 3),
    ],
)
def test_escalation_just_after_the_deadline_not_at_it(severity_, level, deadline_after, next_level):
    deadline = T0 + deadline_after
    assert escalation_due(T0, level, False, deadline - SECOND, severity_) is None
    assert escalation_due(T0, level, False, deadline, severity_) is None
    assert escalation_due(T0, level, False, deadline + SECOND, severity_) == next_level


def test_an_acknowledged_alert_never_escalates():
    assert escalation_due(T0, 1, True, T0 + timedelta(days=1), "high") is None


def test_the_last_level_stays():
    assert MAX_LEVEL == 3
    assert escalation_due(T0, 3, False, T0 + timedelta(days=1), "high") is None


def test_a_late_run_escalates_one_level_at_a_time():
    now = T0 + timedelta(hours=5)
    assert escalation_due(T0, 1, False, now, "high") == 2
    assert escalation_due(T0, 2, False, now, "high") == 3


def test_deadlines_table_as_documented():
    assert DEADLINES["high"][0] == timedelta(minutes=15)
    assert DEADLINES["moderate"][0] == timedelta(minutes=60)


@pytest.mark.parametrize(("level", "sev"), [(0, "high"), (4, "high"), (1, "critical")])
def test_escalation_refuses_unknown_level_or_severity(level, sev):
    with pytest.raises(ValueError):
        escalation_due(T0, level, False, T0, sev)


# --- severity --------------------------------------------------------------------------------


ABOVE = Crossing(WEIGHT_RANGE, "above", 91.0, 90.0, None, ("o",))


@pytest.mark.parametrize(
    ("found", "risk", "expected"),
    [
        ([], None, ("low", "routine")),
        ([], "low", ("low", "routine")),
        ([], "low-medium", ("moderate", "urgent")),
        ([], "medium", ("moderate", "urgent")),
        ([], "high", ("high", "stat")),
        ([ABOVE], None, ("moderate", "urgent")),
        ([ABOVE], "low", ("moderate", "urgent")),
        ([ABOVE], "high", ("high", "stat")),
    ],
)
def test_severity_is_the_more_severe_of_crossings_and_news2(found, risk, expected):
    assert severity(found, risk) == expected


def test_severity_refuses_an_unknown_risk():
    with pytest.raises(ValueError):
        severity([], "very high")
