"""The follow-up centre's page logic on plain dicts: alerts as rows, patients ordered by
risk, ages and waiting times, and the charts' scaling, threshold lines and marked points."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from enjournal.services.velferdsteknologi import alerts, rules
from enjournal.services.velferdsteknologi.news2 import News2
from enjournal.services.velferdsteknologi.web import charts, logic

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def task(
    tid: str,
    patient: str,
    minutes_ago: int,
    status="requested",
    priority="urgent",
    deadline_in=30,
    focus=None,
) -> dict:
    created = NOW - timedelta(minutes=minutes_ago)
    return {
        "resourceType": "Task",
        "id": tid,
        "identifier": [{"system": alerts.ALERT_ID, "value": f"k-{tid}"}],
        "status": status,
        "priority": priority,
        "code": {"coding": [{"system": alerts.ALERT, "code": "threshold"}]},
        "for": {"reference": f"Patient/{patient}"},
        "focus": {"reference": f"DetectedIssue/{focus or 'i-' + tid}"},
        "authoredOn": alerts.instant(created),
        "owner": {"display": "Hjemmesykepleien"},
        "restriction": {"period": {"end": alerts.instant(NOW + timedelta(minutes=deadline_in))}},
        "extension": [
            {"url": alerts.LEVEL, "valueInteger": 2},
            {"url": alerts.FIRST_PRIORITY, "valueCode": priority},
        ],
    }


def issue(iid: str, severity: str) -> dict:
    return {"resourceType": "DetectedIssue", "id": iid, "severity": severity, "detail": "x"}


def patient(pid: str, name: str, born: str = "1940-06-01") -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "birthDate": born,
        "name": [{"given": [name], "family": "Nordmann"}],
    }


def test_an_alert_row_reads_level_owner_deadline_and_severity():
    row = logic.alert(task("t1", "p1", 12), issue("i-t1", "high"), NOW)
    assert (row.level, row.owner, row.severity, row.patient) == (
        2,
        "Hjemmesykepleien",
        "high",
        "p1",
    )
    assert row.age == (0, 0, 12) and not row.overdue
    assert row.can_acknowledge and row.can_close and not row.can_arrive


def test_an_unacknowledged_alert_past_its_deadline_is_overdue_an_acknowledged_one_not():
    late = task("t1", "p1", 90, deadline_in=-5)
    assert logic.alert(late, None, NOW).overdue
    assert not logic.alert({**late, "status": "accepted"}, None, NOW).overdue


def test_without_its_issue_the_severity_comes_from_the_first_priority():
    assert logic.alert(task("t1", "p1", 1, priority="stat"), None, NOW).severity == "high"
    assert logic.alert(task("t1", "p1", 1, priority="routine"), None, NOW).severity == "low"


def test_a_safety_alarm_closes_only_after_someone_accepted_it():
    alarm = task("t1", "p1", 1)
    alarm["code"]["coding"][0]["code"] = "safety-alarm"
    assert not logic.alert(alarm, None, NOW).can_close
    accepted = logic.alert({**alarm, "status": "accepted"}, None, NOW)
    assert accepted.can_close and accepted.can_arrive and not accepted.can_acknowledge


def test_alerts_are_listed_overdue_first_then_by_severity_then_oldest():
    tasks = [
        task("low-old", "p1", 50),
        task("high-new", "p1", 5),
        task("moderate-late", "p2", 20, deadline_in=-1),
        {"resourceType": "Task", "id": "not-an-alert", "status": "requested"},
    ]
    issues = [
        issue("i-low-old", "low"),
        issue("i-high-new", "high"),
        issue("i-moderate-late", "moderate"),
    ]
    found = logic.alerts_of(tasks, issues, NOW)
    assert [a.id for a in found] == ["moderate-late", "high-new", "low-old"]


def news2(total: int) -> News2:
    return News2(total, "low", {}, False)


def test_patients_are_ordered_by_highest_severity_then_count_then_news2_then_name():
    people = [
        patient(p, n)
        for p, n in [("a", "Anne"), ("b", "Bjørn"), ("c", "Cecilie"), ("d", "Dag"), ("e", "Eva")]
    ]
    tasks = [
        task("b1", "b", 10),  # two moderate
        task("b2", "b", 20),
        task("c1", "c", 5),  # one high
        task("d1", "d", 30),  # one moderate
    ]
    issues = [
        issue("i-b1", "moderate"),
        issue("i-b2", "moderate"),
        issue("i-c1", "high"),
        issue("i-d1", "moderate"),
    ]
    open_alerts = logic.alerts_of(tasks, issues, NOW)
    found = logic.followed(people, open_alerts, {"a": news2(3), "e": news2(5)}, NOW)
    assert [p.id for p in found] == ["c", "b", "d", "e", "a"]
    b = found[1]
    assert (b.open_alerts, b.highest, b.oldest) == (2, "moderate", (0, 0, 20))
    assert found[3].open_alerts == 0 and found[3].oldest is None


def test_closed_alerts_do_not_count_towards_the_risk():
    closed = logic.alert(task("x", "a", 10, status="completed"), issue("i-x", "high"), NOW)
    found = logic.followed([patient("a", "Anne")], [closed], {}, NOW)
    assert found[0].open_alerts == 0 and found[0].highest is None


def test_age_in_whole_years_counts_the_birthday_itself():
    assert logic.age_in_years("1940-12-03", date(2026, 12, 3)) == 86
    assert logic.age_in_years("1940-12-04", date(2026, 12, 3)) == 85
    assert logic.age_in_years(None, date(2026, 12, 3)) is None
    assert logic.age_in_years("1940", date(2026, 12, 3)) is None


def test_waiting_time_in_days_hours_and_minutes_never_negative():
    assert logic.waited(NOW - timedelta(minutes=12, seconds=59), NOW) == (0, 0, 12)
    assert logic.waited(NOW - timedelta(hours=3, minutes=5), NOW) == (0, 3, 5)
    assert logic.waited(NOW - timedelta(days=2, hours=1), NOW) == (2, 1, 0)
    assert logic.waited(NOW + timedelta(minutes=3), NOW) == (0, 0, 0)
    assert logic.waited(None, NOW) is None


def spo2(value: float, hours_ago: float, oid: str = "o") -> dict:
    return {
        "resourceType": "Observation",
        "id": f"{oid}-{hours_ago}",
        "status": "final",
        "code": {"coding": [{"system": rules.LOINC, "code": "2708-6"}]},
        "effectiveDateTime": (NOW - timedelta(hours=hours_ago)).isoformat(),
        "valueQuantity": {"value": value, "unit": "%", "system": rules.UCUM, "code": "%"},
    }


def limit(loinc: str = rules.SPO2, low=92.0, high=None) -> rules.Threshold:
    return rules.Threshold(loinc, low, high, None, None, None, "g1", "%")


def test_the_chart_scales_time_and_value_into_the_frame():
    readings = logic.readings_of([spo2(90, 0), spo2(100, 24 * 7), spo2(95, 24 * 3.5)])
    (chart,) = charts.charts(readings, [], NOW)
    xs = [p.x for p in chart.points]
    assert xs[0] == charts.LEFT and xs[-1] == charts.WIDTH - charts.RIGHT  # 7 days ago .. now
    assert abs(xs[1] - (charts.LEFT + charts.WIDTH - charts.RIGHT) / 2) < 0.2
    ys = {p.value: p.y for p in chart.points}
    assert charts.TOP < ys[100] < ys[95] < ys[90] < charts.HEIGHT - charts.BOTTOM  # up is more
    assert len(chart.x_ticks) == 7 and all(t.hour == 0 for _, t in chart.x_ticks)


def test_the_threshold_is_a_line_inside_the_range_and_points_beyond_it_are_marked():
    readings = logic.readings_of([spo2(96, 5), spo2(92, 4), spo2(88, 3)])
    (chart,) = charts.charts(readings, [limit(low=92)], NOW)
    (line,) = chart.lines
    assert (line.value, line.side) == (92, "low")
    assert [p.beyond for p in chart.points] == [False, False, True]  # equal to low is inside
    assert line.y == next(p.y for p in chart.points if p.value == 92)
    assert chart.beyond == 1


def test_a_threshold_beyond_every_reading_still_fits_in_the_chart():
    readings = logic.readings_of([spo2(97, 5), spo2(98, 4)])
    (chart,) = charts.charts(readings, [limit(low=90)], NOW)
    assert charts.TOP <= chart.lines[0].y <= charts.HEIGHT - charts.BOTTOM


def test_blood_pressure_is_one_chart_of_two_series_each_with_its_own_threshold():
    panel = {
        "resourceType": "Observation",
        "id": "bp1",
        "status": "final",
        "code": {"coding": [{"system": rules.LOINC, "code": rules.BP_PANEL}]},
        "effectiveDateTime": (NOW - timedelta(hours=2)).isoformat(),
        "component": [
            {
                "code": {"coding": [{"system": rules.LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "mm[Hg]"},
            }
            for code, value in ((rules.SYSTOLIC, 170), (rules.DIASTOLIC, 80))
        ],
    }
    systolic = rules.Threshold(rules.SYSTOLIC, None, 160, None, None, None, "g2", "mm[Hg]")
    (chart,) = charts.charts(logic.readings_of([panel]), [systolic], NOW)
    assert chart.measure.key == "bp"
    assert [p.value for p in chart.series(rules.SYSTOLIC)] == [170]
    assert [p.beyond for p in chart.points if p.code == rules.DIASTOLIC] == [False]
    assert chart.series(rules.SYSTOLIC)[0].beyond and chart.lines[0].side == "high"


def test_readings_older_than_the_window_and_unknown_types_make_no_chart():
    old = logic.readings_of([spo2(95, 24 * 8)])
    assert charts.charts(old, [], NOW) == []


def test_a_flat_series_gets_room_and_round_ticks():
    assert charts.value_range([5.0, 5.0]) == (4.0, 6.0)
    assert charts.ticks(85.6, 100.4) == [90.0, 95.0, 100.0]
    assert charts.ticks(0, 1) == [0.0, 0.5, 1.0]


def test_latest_news2_scores_the_newest_readings_and_tolerates_none():
    assert logic.latest_news2([]) is None
    score = logic.latest_news2([spo2(93, 30), spo2(97, 48)])  # the newest: 93
    assert score is not None and score.scores.get("spo2") == 2  # RCP scale 1: 92-93 scores 2
