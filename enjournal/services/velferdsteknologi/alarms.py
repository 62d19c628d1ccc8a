"""Safety alarms (trygghetsalarm and the sensors of digitalt tilsyn, "digital supervision") as
alerts: an alarm event from a home device becomes a ``DetectedIssue`` and a ``Task`` to the
response centre (built by :mod:`alerts`, kind ``safety-alarm``); the response steps
(accept, arrived, close) are changes to that Task; and response times are summed up per
municipality.  Pure: no I/O.

Message format
--------------
A home gateway publishes each alarm as JSON on the MQTT topic ``vkp/<device id>/alarms``::

    {"id": "<the device's event id, the same on every redelivery>",
     "event": "fall",                      # a name from EVENTS below
     "patient": "<11-digit fødselsnummer or D-nummer>",
     "at": "2025-03-01T23:30:00+01:00",    # when the device saw it, ISO 8601 with offset
     "sent": "2025-03-01T23:30:02+01:00"}  # when the gateway sent it, same form

All five fields are required; anything else is ignored.  A refused event raises
:class:`Refused` with a machine ``code``: ``missing-field``, ``unknown-event``, ``bad-time``
or ``bad-patient``.

Codes
-----
``http://ehelse.no/fhir/CodeSystem/vkp-alert-code-v090`` as published in
HL7Norway/Velferdsteknologi ``VKP-R4/CodeSystem/vkp-alert-code-v090.codesystem.xml``, commit
0fa03428a06728003a2117b7203f74c61fd14e74 (2024-10-10).  Verified there: 4.1 Fall,
4.2 Forlatt sengen, 4.13 Knappetrykk, 4.14 Snortrekk, 4.15 Dør åpnet, 4.17 Vannalarm,
4.19 Manglende bevegelse, 4.23 Inaktivitet bad (the 4.x codes are unchanged since 2021), and
the medicine-dispenser codes 1.1, 1.3, 1.5, 1.7, 1.13, 1.17, 1.19, 1.21, 1.22.

Caution: the code system was renumbered in November 2021 under the same URL and version
0.9.0: dispenser events moved from 3.x to 1.x (3.3 "mangler bekreftelse" became 1.3, 3.6
"medisin mangler" 1.13, 3.4 "teknisk feil" 1.5), and 3 is now "Trygghetsalarm" while 7 is
"Sykesignalanlegg" (nurse call).  NorskHelsenett/VKP.Samples
``Common/Messages/Bundle_OppfølgingAvVarsel_TrygghetsAlarm.json`` (2025) still codes a
trygghetsalarm as 7.  Because of that conflict we send only the specific event codes above,
never the group code for trygghetsalarm.

Priorities are ASSUMED (no national rule found): a button press, cord pull or fall, and no
movement when movement was expected, are stat/high; a long bathroom stay asap/high; leaving
the bed asap/moderate; water urgent/moderate; a door opened at night (22:00-06:00 Norwegian
time) asap/high, by day routine/low; every dispenser event routine/moderate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from enjournal.fhir.norwegian_ids import is_valid_fnr
from enjournal.services.velferdsteknologi import alerts, readings
from enjournal.services.velferdsteknologi.readings import device_time, parse_time

VKP_ALERT = "http://ehelse.no/fhir/CodeSystem/vkp-alert-code-v090"
KIND = "safety-alarm"
SENT = "https://enjournal.no/fhir/StructureDefinition/gateway-sent-time"
ARRIVED = "https://enjournal.no/fhir/StructureDefinition/vkp-arrived"
OUTCOME = "https://enjournal.no/fhir/CodeSystem/vkp-alarm-outcome"  # ours: no national list found
ACCEPT_WITHIN = timedelta(minutes=2)  # assumed: the response centre accepts within 2 minutes
NORWAY = ZoneInfo("Europe/Oslo")
NIGHT_FROM, NIGHT_UNTIL = 22, 6  # assumed night hours, Norwegian wall clock
REQUIRED = ("id", "event", "patient", "at", "sent")
FINAL = ("completed", "cancelled", "failed", "rejected", "entered-in-error")


# An alarm event we cannot take: ``code`` for machines, the message for people (the same
# refusal as a reading's).
Refused = readings.Refused


class IllegalStep(ValueError):
    """A response step the Task's status does not allow."""


@dataclass(frozen=True)
class AlarmKind:
    code: str  # in vkp-alert-code-v090
    display: str
    priority: str  # Task.priority
    severity: str  # DetectedIssue.severity

    def coding(self) -> dict:
        return {"system": VKP_ALERT, "code": self.code, "display": self.display}


def _dispenser(code: str, display: str) -> AlarmKind:
    return AlarmKind(code, display, "routine", "moderate")


EVENTS: dict[str, AlarmKind] = {
    "button": AlarmKind("4.13", "Knappetrykk", "stat", "high"),
    "cord": AlarmKind("4.14", "Snortrekk", "stat", "high"),
    "fall": AlarmKind("4.1", "Fall", "stat", "high"),
    "no-movement": AlarmKind("4.19", "Manglende bevegelse", "stat", "high"),
    "bathroom": AlarmKind("4.23", "Inaktivitet bad", "asap", "high"),
    "bed": AlarmKind("4.2", "Forlatt sengen", "asap", "moderate"),
    "water": AlarmKind("4.17", "Vannalarm", "urgent", "moderate"),
    "door": AlarmKind("4.15", "Dør åpnet", "routine", "low"),  # by day; see DOOR_AT_NIGHT
    "dispenser-not-dispensed": _dispenser("1.1", "Ikke utlevert"),
    "dispenser-not-confirmed": _dispenser("1.3", "Mangler utleveringsbekreftelse"),
    "dispenser-error": _dispenser("1.5", "Teknisk feil"),
    "dispenser-roll-error": _dispenser("1.7", "Feil ved rull"),
    "dispenser-empty": _dispenser("1.13", "Tomt for medisin"),
    "dispenser-battery-low": _dispenser("1.17", "Batteri lavt"),
    "dispenser-no-power": _dispenser("1.19", "Ikke tilkoblet strøm"),
    "dispenser-opened": _dispenser("1.21", "Dispenser åpen"),
    "dispenser-break-in": _dispenser("1.22", "Innbrudd"),
}
DOOR_AT_NIGHT = AlarmKind("4.15", "Dør åpnet", "asap", "high")


@dataclass(frozen=True)
class AlarmEvent:
    """One checked alarm message."""

    id: str
    name: str
    kind: AlarmKind
    patient_fnr: str
    at: datetime
    sent: datetime


# --- reading the message -------------------------------------------------------------------


def read_event(event: Mapping[str, Any], received: datetime) -> AlarmEvent:
    """The message checked, or :class:`Refused`."""
    for name in REQUIRED:
        _text(event, name)
    at = _time(event, "at", received)
    return AlarmEvent(
        id=_text(event, "id"),
        name=_text(event, "event"),
        kind=alarm_kind(_text(event, "event"), at),
        patient_fnr=_patient(_text(event, "patient")),
        at=at,
        sent=_time(event, "sent", received),
    )


def alarm_kind(name: str, at: datetime) -> AlarmKind:
    """The VKP code and urgency of an event; a door is more urgent at night."""
    kind = EVENTS.get(name)
    if kind is None:
        raise Refused("unknown-event", f"unknown alarm event {name!r}")
    if name == "door" and is_night(at):
        return DOOR_AT_NIGHT
    return kind


def is_night(at: datetime) -> bool:
    """22:00 to 06:00 on the Norwegian clock, whatever offset the gateway wrote."""
    hour = at.astimezone(NORWAY).hour
    return hour >= NIGHT_FROM or hour < NIGHT_UNTIL


def _text(event: Mapping[str, Any], name: str) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value.strip():
        raise Refused("missing-field", f"the alarm has no {name!r}")
    return value.strip()


def _patient(fnr: str) -> str:
    if not is_valid_fnr(fnr, allow_hnr=False):
        raise Refused("bad-patient", "'patient' must be an 11-digit fødselsnummer or D-nummer")
    return fnr


def _time(event: Mapping[str, Any], name: str, received: datetime) -> datetime:
    return device_time(_text(event, name), name, received)


# --- the alert -----------------------------------------------------------------------------


def alarm_resources(
    event: Mapping[str, Any], device_id: str, patient_id: str, owner: dict, received: datetime
) -> tuple[dict, dict]:
    """The DetectedIssue and the Task for one alarm event, or :class:`Refused`.

    Times kept: the device's event time is ``DetectedIssue.identifiedDateTime``, the
    gateway's send time a ``gateway-sent-time`` extension on it, and our receipt time is
    ``Task.authoredOn`` (the response clock starts when we have the alarm); the deadline
    for acceptance, received + 2 minutes (assumed), is ``Task.restriction.period.end``.
    """
    alarm = read_event(event, received)
    key = alerts.identifier(KIND, patient_id, f"{device_id}:{alarm.id}")
    return alarm_issue(alarm, device_id, patient_id), _task(key, alarm, patient_id, owner, received)


def alarm_issue(alarm: AlarmEvent, device_id: str, patient_id: str) -> dict:
    """The DetectedIssue of a checked alarm event."""
    key = alerts.identifier(KIND, patient_id, f"{device_id}:{alarm.id}")
    detail, evidence = _detail(alarm, device_id), [f"Device/{device_id}"]
    issue = alerts.detected_issue(
        key, KIND, patient_id, detail, alarm.kind.severity, evidence, alarm.at
    )
    issue["code"]["coding"].append(alarm.kind.coding())
    issue["extension"] = [{"url": SENT, "valueDateTime": alerts.instant(alarm.sent)}]
    return issue


def _task(key: str, alarm: AlarmEvent, patient_id: str, owner: dict, received: datetime) -> dict:
    focus = f"DetectedIssue?identifier={alerts.ALERT_ID}|{key}"
    deadline = received + ACCEPT_WITHIN
    priority = alarm.kind.priority
    return alerts.task(key, KIND, patient_id, focus, priority, owner, received, deadline)


def _detail(alarm: AlarmEvent, device_id: str) -> str:
    kind = alarm.kind
    return f"{kind.display} (VKP {kind.code}) fra enhet {device_id}, hendelse {alarm.id}"


# --- the response steps --------------------------------------------------------------------


def accept(task: dict, responder: str | dict, now: datetime) -> dict:
    """The response centre takes the alarm: requested -> accepted, owned by the responder
    (a reference string, or a Reference such as one by HPR identifier)."""
    _allow(task, "accepted", ("requested",), now)
    owner = {"reference": responder.strip()} if isinstance(responder, str) else responder
    if not (owner.get("reference") or owner.get("identifier")):
        raise ValueError("say who accepts the alarm")
    changed = _changed(task, "accepted", now)
    changed["owner"] = owner
    changed["executionPeriod"] = {"start": alerts.instant(now)}
    return changed


def arrived(task: dict, now: datetime) -> dict:
    """Help is at the door: accepted -> in-progress, arrival time in the ``vkp-arrived``
    extension (valueDateTime)."""
    _allow(task, "in-progress", ("accepted",), now)
    changed = _changed(task, "in-progress", now)
    arrival = {"url": ARRIVED, "valueDateTime": alerts.instant(now)}
    changed["extension"] = [*task.get("extension", []), arrival]
    return changed


def close(task: dict, what_was_done: str, outcome_code: str | None, now: datetime) -> dict:
    """Closed with what was done (and an outcome code of ours, when given)."""
    _allow(task, "completed", ("accepted", "in-progress"), now)
    if not what_was_done.strip():
        raise ValueError("say what was done")
    changed = _changed(task, "completed", now)
    changed["executionPeriod"] = {**task.get("executionPeriod", {}), "end": alerts.instant(now)}
    changed["output"] = _outputs(what_was_done.strip(), outcome_code)
    return changed


def arrival_time(task: dict) -> str | None:
    for ext in task.get("extension") or ():
        if ext.get("url") == ARRIVED:
            return str(ext.get("valueDateTime"))
    return None


def _allow(task: dict, to: str, allowed: tuple[str, ...], now: datetime) -> None:
    status = task.get("status")
    if status in FINAL:
        raise IllegalStep(f"the alarm is {status}: it cannot change any more")
    if status not in allowed:
        raise IllegalStep(f"an alarm that is {status} cannot become {to}")
    if now.tzinfo is None:
        raise ValueError("the time of a step needs its UTC offset")
    last = parse_time(str(task.get("lastModified") or task.get("authoredOn") or ""))
    if last is not None and now < last:
        raise IllegalStep("a step cannot come before the previous one")


def _changed(task: dict, status: str, now: datetime) -> dict:
    return {**task, "status": status, "lastModified": alerts.instant(now)}


def _outputs(what_was_done: str, outcome_code: str | None) -> list[dict]:
    outputs = [{"type": {"text": "Tiltak"}, "valueString": what_was_done}]
    if outcome_code:
        outcome = {"coding": [{"system": OUTCOME, "code": outcome_code}]}
        outputs.append({"type": {"text": "Utfall"}, "valueCodeableConcept": outcome})
    return outputs


# --- response times ------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Response times of one municipality's alarms, in seconds from ``authoredOn``.

    ``count`` is every alarm, ``open`` those not in a final status.  The times and the
    share accepted within ACCEPT_WITHIN come from completed alarms only; None when there
    are none.  (Cancelled ones count in ``count`` but are neither open nor timed.)
    """

    count: int
    open: int
    accept_median: float | None
    accept_p90: float | None
    close_median: float | None
    close_p90: float | None
    accepted_in_time: float | None  # share 0..1


def response_times(
    tasks: list[dict], municipality_of: Callable[[dict], str | None]
) -> dict[str, Stats]:
    """Stats per municipality; a Task whose municipality is unknown (None) is left out."""
    groups: dict[str, list[dict]] = {}
    for task in tasks:
        where = municipality_of(task)
        if where is not None:
            groups.setdefault(where, []).append(task)
    return {where: stats(group) for where, group in sorted(groups.items())}


def stats(tasks: list[dict]) -> Stats:
    done = [t for t in tasks if t.get("status") == "completed"]
    to_accept = _durations(done, "start")
    to_close = _durations(done, "end")
    in_time = [s for s in to_accept if s <= ACCEPT_WITHIN.total_seconds()]
    return Stats(
        count=len(tasks),
        open=sum(1 for t in tasks if t.get("status") not in FINAL),
        accept_median=nearest_rank(to_accept, 50),
        accept_p90=nearest_rank(to_accept, 90),
        close_median=nearest_rank(to_close, 50),
        close_p90=nearest_rank(to_close, 90),
        accepted_in_time=len(in_time) / len(to_accept) if to_accept else None,
    )


def nearest_rank(values: Sequence[float], percent: int) -> float | None:
    """The nearest-rank percentile: the smallest value with at least ``percent`` % of the
    values at or below it, i.e. the ceil(percent/100 * n)-th of the sorted values (so the
    median of 4 values is the 2nd, never an average)."""
    if not values:
        return None
    rank = max(1, math.ceil(percent * len(values) / 100))
    return sorted(values)[rank - 1]


def _durations(tasks: list[dict], end: str) -> list[float]:
    seconds = []
    for task in tasks:
        start = parse_time(str(task.get("authoredOn") or ""))
        stop = parse_time(str((task.get("executionPeriod") or {}).get(end) or ""))
        if start is not None and stop is not None:
            seconds.append((stop - start).total_seconds())
    return seconds
