"""Safety alarms: every event's VKP code and urgency, refused messages, the DetectedIssue and
Task with the times kept, each legal and illegal response step, and response times on a small
table worked out by hand (expected values written out, never computed)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from enjournal.services.velferdsteknologi import alerts
from enjournal.services.velferdsteknologi.alarms import (
    ARRIVED,
    OUTCOME,
    SENT,
    VKP_ALERT,
    IllegalStep,
    Refused,
    Stats,
    accept,
    alarm_kind,
    alarm_resources,
    arrival_time,
    arrived,
    close,
    nearest_rank,
    read_event,
    response_times,
)

FNR = "13097248022"
RECEIVED = datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)
OWNER = {"reference": "Organization/responssenter-1"}
NOON = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)  # 13:00 in Norway


def message(**changes: object) -> dict:
    base = {
        "id": "evt-42",
        "event": "fall",
        "patient": FNR,
        "at": "2025-03-01T13:00:00+01:00",
        "sent": "2025-03-01T13:00:02+01:00",
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


# --- events --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "code", "display", "priority", "severity"),
    [
        ("button", "4.13", "Knappetrykk", "stat", "high"),
        ("cord", "4.14", "Snortrekk", "stat", "high"),
        ("fall", "4.1", "Fall", "stat", "high"),
        ("no-movement", "4.19", "Manglende bevegelse", "stat", "high"),
        ("bathroom", "4.23", "Inaktivitet bad", "asap", "high"),
        ("bed", "4.2", "Forlatt sengen", "asap", "moderate"),
        ("water", "4.17", "Vannalarm", "urgent", "moderate"),
        ("door", "4.15", "Dør åpnet", "routine", "low"),
        ("dispenser-not-dispensed", "1.1", "Ikke utlevert", "routine", "moderate"),
        ("dispenser-not-confirmed", "1.3", "Mangler utleveringsbekreftelse", "routine", "moderate"),
        ("dispenser-error", "1.5", "Teknisk feil", "routine", "moderate"),
        ("dispenser-roll-error", "1.7", "Feil ved rull", "routine", "moderate"),
        ("dispenser-empty", "1.13", "Tomt for medisin", "routine", "moderate"),
        ("dispenser-battery-low", "1.17", "Batteri lavt", "routine", "moderate"),
        ("dispenser-no-power", "1.19", "Ikke tilkoblet strøm", "routine", "moderate"),
        ("dispenser-opened", "1.21", "Dispenser åpen", "routine", "moderate"),
        ("dispenser-break-in", "1.22", "Innbrudd", "routine", "moderate"),
    ],
)
def test_every_event_maps_to_its_vkp_code_and_urgency(
    event: str, code: str, display: str, priority: str, severity: str
) -> None:
    issue, work = alarm_resources(message(event=event), "dev-1", "pas-1", OWNER, RECEIVED)
    assert issue["code"]["coding"][1] == {"system": VKP_ALERT, "code": code, "display": display}
    assert (work["priority"], issue["severity"]) == (priority, severity)


@pytest.mark.parametrize(
    ("at", "priority"),
    [
        ("2025-03-01T21:59:59+01:00", "routine"),
        ("2025-03-01T22:00:00+01:00", "asap"),
        ("2025-03-02T05:59:59+01:00", "asap"),
        ("2025-03-02T06:00:00+01:00", "routine"),
        ("2025-03-01T21:30:00Z", "asap"),  # 22:30 in Norway: the Norwegian clock decides
        ("2025-07-01T20:30:00Z", "asap"),  # 22:30 summer time
        ("2025-07-01T19:30:00Z", "routine"),  # 21:30 summer time
    ],
)
def test_a_door_is_urgent_only_at_night(at: str, priority: str) -> None:
    when = datetime.fromisoformat(at)
    assert alarm_kind("door", when).priority == priority


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"event": "sneeze"}, "unknown-event"),
        ({"event": "Fall"}, "unknown-event"),
        ({"id": None}, "missing-field"),
        ({"event": None}, "missing-field"),
        ({"patient": None}, "missing-field"),
        ({"at": None}, "missing-field"),
        ({"sent": None}, "missing-field"),
        ({"id": "  "}, "missing-field"),
        ({"id": 42}, "missing-field"),
        ({"at": "2025-03-01T13:00:00"}, "bad-time"),  # no offset
        ({"at": "2025-03-01"}, "bad-time"),
        ({"at": "yesterday"}, "bad-time"),
        ({"sent": "2025-02-30T13:00:00+01:00"}, "bad-time"),
        ({"at": "2025-03-01T13:10:00+01:00"}, "bad-time"),  # 10 minutes in the future
        ({"patient": "13097248023"}, "bad-patient"),  # control digit wrong
        ({"patient": "1309724802"}, "bad-patient"),
    ],
)
def test_refused_messages_say_why(changes: dict, code: str) -> None:
    with pytest.raises(Refused) as refused:
        alarm_resources(message(**changes), "dev-1", "pas-1", OWNER, RECEIVED)
    assert refused.value.code == code
    assert isinstance(refused.value, ValueError)


def test_a_device_clock_a_little_ahead_is_accepted() -> None:
    alarm = read_event(message(at="2025-03-01T13:04:00+01:00"), RECEIVED)
    assert alarm.at == datetime(2025, 3, 1, 12, 4, tzinfo=UTC)


def test_extra_fields_are_ignored() -> None:
    assert read_event(message(battery=80), RECEIVED).name == "fall"


# --- the resources -------------------------------------------------------------------------


def test_the_alarm_becomes_a_detected_issue_and_a_task() -> None:
    issue, work = alarm_resources(message(), "dev-1", "pas-1", OWNER, RECEIVED)
    key = "safety-alarm:pas-1:dev-1:evt-42"
    assert issue["identifier"] == [{"system": alerts.ALERT_ID, "value": key}]
    assert work["identifier"] == [{"system": alerts.ALERT_ID, "value": key}]
    assert issue["code"]["coding"][0]["code"] == "safety-alarm"
    assert issue["evidence"] == [{"detail": [{"reference": "Device/dev-1"}]}]
    assert issue["patient"] == {"reference": "Patient/pas-1"}
    assert work["owner"] == OWNER
    assert work["status"] == "requested"
    assert work["focus"] == {"reference": f"DetectedIssue?identifier={alerts.ALERT_ID}|{key}"}
    assert "Fall (VKP 4.1) fra enhet dev-1" in issue["detail"]


def test_the_device_time_the_gateway_time_and_the_receipt_are_all_kept() -> None:
    issue, work = alarm_resources(message(), "dev-1", "pas-1", OWNER, RECEIVED)
    assert issue["identifiedDateTime"] == "2025-03-01T12:00:00Z"  # the device's "at"
    assert issue["extension"] == [{"url": SENT, "valueDateTime": "2025-03-01T12:00:02Z"}]
    assert work["authoredOn"] == "2025-03-01T12:00:05Z"  # received
    assert work["restriction"] == {"period": {"end": "2025-03-01T12:02:05Z"}}  # + 2 minutes


def test_a_redelivered_event_gets_the_same_identifier() -> None:
    first, _ = alarm_resources(message(), "dev-1", "pas-1", OWNER, RECEIVED)
    later = RECEIVED + timedelta(minutes=1)
    again, _ = alarm_resources(message(), "dev-1", "pas-1", OWNER, later)
    assert first["identifier"] == again["identifier"]


def test_the_same_event_id_on_another_device_is_another_alarm() -> None:
    one, _ = alarm_resources(message(), "dev-1", "pas-1", OWNER, RECEIVED)
    other, _ = alarm_resources(message(), "dev-2", "pas-1", OWNER, RECEIVED)
    assert one["identifier"] != other["identifier"]


def test_the_pair_goes_through_the_alerts_conditional_create() -> None:
    issue, work = alarm_resources(message(), "dev-1", "pas-1", OWNER, RECEIVED)
    entries = alerts.entries(issue, work)
    condition = f"identifier={alerts.ALERT_ID}|safety-alarm:pas-1:dev-1:evt-42"
    assert [e["request"]["ifNoneExist"] for e in entries] == [condition, condition]


# --- the response steps --------------------------------------------------------------------


def new_task() -> dict:
    return alarm_resources(message(), "dev-1", "pas-1", OWNER, RECEIVED)[1]


def at(minutes: float) -> datetime:
    return RECEIVED + timedelta(minutes=minutes)


def test_accept_gives_the_alarm_to_the_responder() -> None:
    task = new_task()
    taken = accept(task, "Practitioner/nurse-1", at(1))
    assert taken["status"] == "accepted"
    assert taken["owner"] == {"reference": "Practitioner/nurse-1"}
    assert taken["executionPeriod"] == {"start": "2025-03-01T12:01:05Z"}
    assert taken["lastModified"] == "2025-03-01T12:01:05Z"
    assert task["status"] == "requested"  # the original is untouched
    assert task["owner"] == OWNER


def test_arrived_records_the_arrival() -> None:
    task = accept(new_task(), "Practitioner/nurse-1", at(1))
    there = arrived(task, at(20))
    assert there["status"] == "in-progress"
    assert arrival_time(there) == "2025-03-01T12:20:05Z"
    assert {"url": ARRIVED, "valueDateTime": "2025-03-01T12:20:05Z"} in there["extension"]
    assert there["lastModified"] == "2025-03-01T12:20:05Z"
    assert arrival_time(task) is None
    assert len(there["extension"]) == len(task["extension"]) + 1  # escalation level kept


def test_close_after_arrival_keeps_the_start_and_says_what_was_done() -> None:
    task = arrived(accept(new_task(), "Practitioner/nurse-1", at(1)), at(20))
    done = close(task, "  Hjalp pasienten opp, ingen skade.  ", "no-injury", at(35))
    assert done["status"] == "completed"
    assert done["executionPeriod"] == {
        "start": "2025-03-01T12:01:05Z",
        "end": "2025-03-01T12:35:05Z",
    }
    assert done["output"] == [
        {"type": {"text": "Tiltak"}, "valueString": "Hjalp pasienten opp, ingen skade."},
        {
            "type": {"text": "Utfall"},
            "valueCodeableConcept": {"coding": [{"system": OUTCOME, "code": "no-injury"}]},
        },
    ]
    assert done["lastModified"] == "2025-03-01T12:35:05Z"
    assert arrival_time(done) == "2025-03-01T12:20:05Z"


def test_close_straight_after_accept_without_an_outcome() -> None:
    task = accept(new_task(), "Practitioner/nurse-1", at(1))
    done = close(task, "Falsk alarm, snakket med pasienten", None, at(3))
    assert done["status"] == "completed"
    assert done["output"] == [
        {"type": {"text": "Tiltak"}, "valueString": "Falsk alarm, snakket med pasienten"},
    ]


def test_an_escalated_alarm_can_still_be_accepted() -> None:
    task = new_task()
    later = alerts.escalate(task, 2, {"reference": "Organization/vakt"}, at(2), at(4))
    assert accept(later, "Practitioner/nurse-2", at(3))["status"] == "accepted"


@pytest.mark.parametrize("text", ["", "   "])
def test_closing_needs_a_text(text: str) -> None:
    task = accept(new_task(), "Practitioner/nurse-1", at(1))
    with pytest.raises(ValueError, match="what was done"):
        close(task, text, None, at(3))


def test_closing_a_requested_alarm_without_accept_is_illegal() -> None:
    with pytest.raises(IllegalStep):
        close(new_task(), "Ringte pasienten", None, at(3))


def test_accepting_twice_is_illegal() -> None:
    task = accept(new_task(), "Practitioner/nurse-1", at(1))
    with pytest.raises(IllegalStep):
        accept(task, "Practitioner/nurse-2", at(2))


def test_arriving_without_accept_or_twice_is_illegal() -> None:
    with pytest.raises(IllegalStep):
        arrived(new_task(), at(5))
    there = arrived(accept(new_task(), "Practitioner/nurse-1", at(1)), at(5))
    with pytest.raises(IllegalStep):
        arrived(there, at(6))


def test_accepting_with_no_responder_is_refused() -> None:
    with pytest.raises(ValueError, match="who accepts"):
        accept(new_task(), " ", at(1))


@pytest.mark.parametrize(
    "step",
    [
        lambda t: accept(t, "Practitioner/nurse-2", at(50)),
        lambda t: arrived(t, at(50)),
        lambda t: close(t, "igjen", None, at(50)),
    ],
    ids=["accept", "arrived", "close"],
)
def test_nothing_changes_after_completed(step: Callable[[dict], dict]) -> None:
    done = close(accept(new_task(), "Practitioner/nurse-1", at(1)), "Ok", None, at(30))
    with pytest.raises(IllegalStep, match="completed"):
        step(done)


def test_a_cancelled_alarm_cannot_be_accepted() -> None:
    with pytest.raises(IllegalStep, match="cancelled"):
        accept({**new_task(), "status": "cancelled"}, "Practitioner/nurse-1", at(1))


def test_a_step_before_the_previous_one_is_illegal() -> None:
    task = accept(new_task(), "Practitioner/nurse-1", at(10))
    with pytest.raises(IllegalStep, match="before"):
        arrived(task, at(5))
    with pytest.raises(IllegalStep, match="before"):
        accept(new_task(), "Practitioner/nurse-1", at(-1))


def test_a_step_needs_a_time_with_offset() -> None:
    with pytest.raises(ValueError, match="offset"):
        accept(new_task(), "Practitioner/nurse-1", datetime(2025, 3, 1, 12, 5))


# --- response times ------------------------------------------------------------------------


def timed(where: str, status: str, accept_s: int | None, close_s: int | None) -> dict:
    start = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    period = {}
    if accept_s is not None:
        period["start"] = alerts.instant(start + timedelta(seconds=accept_s))
    if close_s is not None:
        period["end"] = alerts.instant(start + timedelta(seconds=close_s))
    return {
        "resourceType": "Task",
        "status": status,
        "authoredOn": "2025-03-01T10:00:00Z",
        "executionPeriod": period,
        "meta": {"tag": [{"code": where}]},
    }


def municipality(task: dict) -> str | None:
    code = task["meta"]["tag"][0]["code"]
    return None if code == "unknown" else code


# Bodø: accepted after 30, 90, 150, 60 s; closed after 600, 1200, 1800, 900 s; one still open
# (accepted after 10 s, ignored in the times).  Sorted accepts 30 60 90 150: median = the
# ceil(0.5*4) = 2nd = 60, p90 = the ceil(0.9*4) = 4th = 150; within 120 s: 30 60 90 = 3 of 4.
# Sorted closes 600 900 1200 1800: median 900, p90 1800.
# Tromsø: one completed (accept 120 s, on the deadline, counts as in time; close 300 s),
# one cancelled (counted, not open, not timed).  Vardø: only a requested one.
TABLE = [
    timed("1804", "completed", 30, 600),
    timed("1804", "completed", 90, 1200),
    timed("1804", "completed", 150, 1800),
    timed("1804", "completed", 60, 900),
    timed("1804", "accepted", 10, None),
    timed("5401", "completed", 120, 300),
    timed("5401", "cancelled", None, None),
    timed("5404", "requested", None, None),
    timed("unknown", "completed", 5, 50),
]


def test_response_times_per_municipality_worked_by_hand() -> None:
    assert response_times(TABLE, municipality) == {
        "1804": Stats(
            count=5,
            open=1,
            accept_median=60.0,
            accept_p90=150.0,
            close_median=900.0,
            close_p90=1800.0,
            accepted_in_time=0.75,
        ),
        "5401": Stats(
            count=2,
            open=0,
            accept_median=120.0,
            accept_p90=120.0,
            close_median=300.0,
            close_p90=300.0,
            accepted_in_time=1.0,
        ),
        "5404": Stats(
            count=1,
            open=1,
            accept_median=None,
            accept_p90=None,
            close_median=None,
            close_p90=None,
            accepted_in_time=None,
        ),
    }


def test_no_tasks_no_municipalities() -> None:
    assert response_times([], municipality) == {}


def test_the_steps_feed_the_statistics() -> None:
    task = arrived(accept(new_task(), "Practitioner/nurse-1", at(3)), at(15))
    done = close(task, "Ok", None, at(40))
    stats = response_times([done], lambda _: "1804")["1804"]
    assert (stats.accept_median, stats.close_median) == (180.0, 2400.0)
    assert stats.accepted_in_time == 0.0  # 3 minutes is over the 2-minute deadline


@pytest.mark.parametrize(
    ("values", "percent", "expected"),
    [
        ([40, 10, 30, 20], 50, 20),  # rank ceil(2.0) = 2
        ([40, 10, 30, 20], 90, 40),  # rank ceil(3.6) = 4
        ([5, 1, 4, 2, 3], 50, 3),  # rank ceil(2.5) = 3
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9),  # rank ceil(9.0) = 9
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 91, 10),  # rank ceil(9.1) = 10
        ([7], 50, 7),
        ([7], 0, 7),  # rank at least 1
        ([], 50, None),
    ],
)
def test_nearest_rank(values: list[float], percent: int, expected: float | None) -> None:
    assert nearest_rank(values, percent) == expected
