"""Readings from home devices into the record: the hub's core, shared by the MQTT consumer
(``mqtt.py``) and the demo's simulated devices.

A group of readings becomes one FHIR ``transaction`` through the hub's client (``hub.py``:
``Platform.handle`` as the hub's system client), so the API's policy, the device hook
(``hooks.py``: the device is assigned to this patient) and audit apply as they do to a
gateway's HTTP batch.  Each Observation is a conditional create on its stable identifier
(``readings.reading_key``), so a reading sent twice, or redelivered by the broker after a
crash, is stored once.  When the transaction is refused (one bad reading refuses all), each
reading is sent again in a transaction of its own, so each gets its own outcome.  A reading
is never silently dropped: it is stored, found stored already, or refused with a reason and
counted.

Then the follow-up rules look at the stored readings (``followup.py``), the duplicates
too: a consumer that crashed after storing but before evaluating gets them again.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime

import orjson

from enjournal.security.principal import Principal
from enjournal.services import utc_now
from enjournal.services.velferdsteknologi import readings
from enjournal.services.velferdsteknologi.followup import FollowUp
from enjournal.services.velferdsteknologi.hooks import HOME_DEVICE, assigned_patient
from enjournal.services.velferdsteknologi.hub import HUB_SOURCE, Hub, diagnostics

log = logging.getLogger("enjournal.velferdsteknologi")

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
PATIENT_TTL = 300.0  # seconds a national id -> Patient id answer is kept
WARM_UP = 1000  # home devices whose patients a consumer reads before its first message


@dataclass(frozen=True)
class Message:
    """A reading as a device sent it: its device (from the topic the broker authorised the
    device to publish on) and the JSON payload (``readings`` documents its form)."""

    device_id: str
    payload: bytes


@dataclass(frozen=True)
class Outcome:
    status: str  # "stored", "duplicate" (stored before) or "refused"
    reason: str = ""
    code: str = ""  # for a refusal: readings.Refused's code, or "http-<status>"
    observation: str | None = None  # the stored Observation's id


@dataclass
class _Pending:
    """One reading on its way: its Observation and the messages it stands for."""

    obs: dict
    patient_id: str
    messages: list[int]


class Ingest:
    def __init__(self, platform, principal: Principal | None = None, clock=utc_now):
        self.hub = Hub(platform, principal)
        self.followup = FollowUp(self.hub)
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self._patients: dict[str, tuple[str | None, float]] = {}

    async def handle(self, messages: list[Message]) -> list[Outcome]:
        """Store a group of readings, then evaluate them; one outcome per message."""
        now = self.clock()
        outcomes: list[Outcome | None] = [None] * len(messages)
        pending = await self._pending(messages, now, outcomes)
        if pending:
            stored = await self._store([_entry(p.obs) for p in pending])
            for p, outcome in zip(pending, stored, strict=True):
                for n in p.messages:
                    outcomes[n] = outcome if n == p.messages[0] else _again(outcome)
            await self._evaluate(pending, stored, now)
        done = [o or Outcome("refused", "not processed", "internal") for o in outcomes]
        self._count(messages, done)
        return done

    async def _pending(self, messages, now: datetime, outcomes: list) -> list[_Pending]:
        """The readings to store, once each; refusals go straight into ``outcomes``."""
        pending: dict[tuple[str, str], _Pending] = {}
        for n, message in enumerate(messages):
            try:
                obs, fnr = _observation(message, now)
                patient_id = await self._patient(fnr)
            except readings.Refused as refused:
                outcomes[n] = Outcome("refused", str(refused), refused.code)
                continue
            key = readings.reading_key(obs) or ("", str(n))
            if key in pending:  # the same reading twice in one group: one entry
                pending[key].messages.append(n)
                continue
            obs["subject"]["reference"] = f"Patient/{patient_id}"
            obs["meta"] = {"source": HUB_SOURCE}  # evaluated here, not by the gateway job
            pending[key] = _Pending(obs, patient_id, [n])
        return list(pending.values())

    async def warm_up(self) -> int:
        """Before the first message: the patients of up to ``WARM_UP`` home devices and
        their care plans, read a hundred patients per search, so the first readings' alerts
        do not wait for one look-up per patient.  How many patients were read."""
        active = [("identifier", f"{HOME_DEVICE}|"), ("status", "active")]
        devices = await self.hub.search("Device", [*active, ("_count", str(WARM_UP))])
        ids = sorted({p for p in map(assigned_patient, devices) if p})
        for start in range(0, len(ids), 100):
            chunk = ",".join(ids[start : start + 100])
            for patient in await self.hub.search("Patient", [("_id", chunk), ("_count", "100")]):
                self._remember(patient)
        for patient_id in ids:
            await self.followup.plan(patient_id)
        return len(ids)

    def _remember(self, patient: dict) -> None:
        for ident in patient.get("identifier") or ():
            if ident.get("system") == FNR and ident.get("value"):
                self._patients[ident["value"]] = (patient["id"], time.monotonic())

    async def _patient(self, fnr: str) -> str:
        """The Patient id of a national id (cached); Refused when nobody has it."""
        known = self._patients.get(fnr)
        if known is None or time.monotonic() - known[1] > PATIENT_TTL:
            found = await self.hub.search("Patient", [("identifier", f"{FNR}|{fnr}")])
            known = (found[0]["id"] if len(found) == 1 else None, time.monotonic())
            self._patients[fnr] = known
        if known[0] is None:
            raise readings.Refused("unknown-patient", "no patient with this national id")
        return known[0]

    async def _store(self, entries: list[dict]) -> list[Outcome]:
        status, answer = await self.hub.transaction(entries)
        if status < 400:
            return [_outcome(e.get("response") or {}) for e in answer.get("entry") or ()]
        if len(entries) == 1:
            return [Outcome("refused", diagnostics(answer), f"http-{status}")]
        # One refused reading refuses the whole transaction: each on its own then.
        return [outcome for entry in entries for outcome in await self._store([entry])]

    async def _evaluate(self, pending: list[_Pending], stored: list[Outcome], now) -> None:
        by_patient: dict[str, list[dict]] = defaultdict(list)
        for p, outcome in zip(pending, stored, strict=True):
            if outcome.observation:
                by_patient[p.patient_id].append({**p.obs, "id": outcome.observation})
        for patient_id, observations in by_patient.items():
            self.counts["alerts"] += await self.followup.evaluate(patient_id, observations, now)

    def _count(self, messages: list[Message], outcomes: list[Outcome]) -> None:
        for message, outcome in zip(messages, outcomes, strict=True):
            self.counts[outcome.status] += 1
            if outcome.status == "refused":
                self.counts[f"refused:{outcome.code}"] += 1
                # the device and why, never the reading's values (health data)
                log.warning(
                    "reading refused",
                    extra={"fields": {"device": message.device_id, "code": outcome.code}},
                )


def _observation(message: Message, now: datetime) -> tuple[dict, str]:
    """The Observation of one message and the national id it names; Refused for a
    malformed reading."""
    try:
        reading = orjson.loads(message.payload)
    except orjson.JSONDecodeError:
        raise readings.Refused("not-json", "the reading is not JSON") from None
    if not isinstance(reading, dict):
        raise readings.Refused("not-json", "the reading must be a JSON object")
    fnr = reading.get("patient")
    if not isinstance(fnr, str) or not fnr.isdigit() or len(fnr) != 11:
        raise readings.Refused("missing-field", "'patient' must be an 11-digit national id")
    return readings.observation(reading, message.device_id, fnr, now), fnr


def _entry(obs: dict) -> dict:
    system, value = readings.reading_key(obs) or ("", "")
    return {
        "resource": obs,
        "request": {
            "method": "POST",
            "url": "Observation",
            "ifNoneExist": f"identifier={system}|{value}",
        },
    }


def _outcome(response: dict) -> Outcome:
    status = str(response.get("status") or "")
    observation = _id_of(response.get("location"))
    if status.startswith("201"):
        return Outcome("stored", observation=observation)
    if status.startswith("200"):
        return Outcome("duplicate", observation=observation)
    reason = diagnostics(response.get("outcome") or {})
    return Outcome("refused", reason, f"http-{status[:3]}")


def _id_of(location: str | None) -> str | None:
    """``Observation/<id>/_history/<n>`` -> ``<id>``."""
    parts = (location or "").split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "Observation" else None


def _again(outcome: Outcome) -> Outcome:
    """A second copy of a reading in the same group: stored once, by its first copy."""
    if outcome.status == "refused":
        return outcome
    return Outcome("duplicate", observation=outcome.observation)
