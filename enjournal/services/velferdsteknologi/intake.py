"""Safety alarms into the record (trygghetsalarm, falls, doors, beds, medicine dispensers):
each event from a device becomes an alert for the response centre (``alarms``:
DetectedIssue + Task), stored once per event through the hub's client.

The device must be an active home device assigned to the patient the event names (the same
rule the hook applies to readings); otherwise the event is refused, counted and logged.  The
Task's ``requester`` is the device's owner (the municipality): response times are reported
per municipality from it.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

import orjson

from enjournal.services import utc_now
from enjournal.services.velferdsteknologi import alarms
from enjournal.services.velferdsteknologi.followup import store_alert
from enjournal.services.velferdsteknologi.hooks import assigned_patient, is_home_device
from enjournal.services.velferdsteknologi.hub import Hub
from enjournal.services.velferdsteknologi.ingest import FNR, Message, Outcome

log = logging.getLogger("enjournal.velferdsteknologi")
RESPONSE_CENTRE = {"display": "Responssenteret"}


class AlarmIntake:
    def __init__(self, hub: Hub, counts: Counter[str], clock=utc_now):
        self.hub, self.counts, self.clock = hub, counts, clock

    async def handle(self, messages: list[Message]) -> list[Outcome]:
        outcomes = []
        for message in messages:
            try:
                outcome = await self._one(message, self.clock())
            except alarms.Refused as refused:
                outcome = Outcome("refused", str(refused), refused.code)
                log.warning(
                    "alarm refused",
                    extra={"fields": {"device": message.device_id, "code": refused.code}},
                )
            self.counts[f"alarm:{outcome.status}"] += 1
            outcomes.append(outcome)
        return outcomes

    async def _one(self, message: Message, now: datetime) -> Outcome:
        event = _json(message.payload)
        checked = alarms.read_event(event, now)
        device = await self._device(message.device_id)
        patient_id = assigned_patient(device)
        if not patient_id or not await self._is(patient_id, checked.patient_fnr):
            raise alarms.Refused("not-assigned", "the device is not assigned to this patient")
        owner = device.get("owner") or {}
        issue = alarms.alarm_issue(checked, message.device_id, patient_id)
        new = await store_alert(
            self.hub,
            issue,
            checked.kind.priority,
            RESPONSE_CENTRE,
            issue["severity"],
            now,
            requester=owner,
            deadline=now + alarms.ACCEPT_WITHIN,
        )
        return Outcome("stored" if new else "duplicate")

    async def _device(self, device_id: str) -> dict:
        status, device = await self.hub.call("GET", f"Device/{device_id}")
        if status >= 400 or not is_home_device(device) or device.get("status") != "active":
            raise alarms.Refused("unknown-device", "unknown or inactive home device")
        return device

    async def _is(self, patient_id: str, fnr: str) -> bool:
        status, patient = await self.hub.call("GET", f"Patient/{patient_id}")
        idents = patient.get("identifier") or () if status < 400 else ()
        return any(i.get("system") == FNR and i.get("value") == fnr for i in idents)


def _json(payload: bytes) -> dict:
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise alarms.Refused("not-json", "the alarm is not JSON") from None
    if not isinstance(event, dict):
        raise alarms.Refused("not-json", "the alarm must be a JSON object")
    return event
