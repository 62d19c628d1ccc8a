"""Readings from home devices into the record: the hub's core, shared by the MQTT consumer
(``mqtt.py``) and the demo's simulated devices.

A group of readings becomes one FHIR ``transaction`` through ``Platform.handle`` as the hub's
system client, so the API's policy, the device hook (``hooks.py``: the device is assigned to
this patient) and audit apply as they do to a gateway's HTTP batch.  Each Observation is a
conditional create on its stable identifier (``readings.reading_key``), so a reading sent
twice, or redelivered by the broker after a crash, is stored once.  When the transaction is
refused (one bad reading refuses all), each reading is sent again in a transaction of its
own, so each gets its own outcome.  A reading is never
silently dropped: it is stored, found stored already, or refused with a reason and counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import orjson

from enjournal.rest.message import FhirRequest
from enjournal.security.principal import Principal
from enjournal.services import utc_now
from enjournal.services.velferdsteknologi import readings

log = logging.getLogger("enjournal.velferdsteknologi")

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
HUB_CLIENT = "vkp-hub"
# What the hub writes and resolves: readings, and the patient a reading names.
HUB_SCOPES = frozenset({"system/Observation.cr", "system/Patient.r", "system/Device.r"})


def hub_principal(org_nr: str | None = None) -> Principal:
    """The hub's system client (VKP is a HelseID system client in production)."""
    return Principal("system", HUB_CLIENT, HUB_CLIENT, HUB_SCOPES, "VKP-knutepunkt", org_nr=org_nr)


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


class Ingest:
    def __init__(self, platform, principal: Principal | None = None, clock=utc_now):
        self.platform = platform
        self.principal = principal or hub_principal()
        self.clock = clock
        self.counts: Counter[str] = Counter()

    async def handle(self, messages: list[Message]) -> list[Outcome]:
        """Store a group of readings; one outcome per message, in order."""
        outcomes: list[Outcome | None] = [None] * len(messages)
        entries: list[dict] = []
        owners: list[list[int]] = []  # entry -> the messages it stands for
        seen: dict[tuple[str, str], int] = {}
        now = self.clock()
        for n, message in enumerate(messages):
            try:
                obs = _observation(message, now)
            except readings.Refused as refused:
                outcomes[n] = Outcome("refused", str(refused), refused.code)
                continue
            key = readings.reading_key(obs)
            if key in seen:  # the same reading twice in one group: one entry
                owners[seen[key]].append(n)
                continue
            seen[key] = len(entries)  # type: ignore[index]
            entries.append(_entry(obs, key))  # type: ignore[arg-type]
            owners.append([n])
        if entries:
            for k, outcome in enumerate(await self._store(entries)):
                for n in owners[k]:
                    outcomes[n] = outcome if n == owners[k][0] else _again(outcome)
        done = [o or Outcome("refused", "not processed", "internal") for o in outcomes]
        self._count(messages, done)
        return done

    async def _store(self, entries: list[dict]) -> list[Outcome]:
        status, answer = await self._post(entries)
        if status < 400:
            return [_outcome(e.get("response") or {}) for e in answer.get("entry") or ()]
        if len(entries) == 1:
            return [Outcome("refused", _diagnostics(answer), f"http-{status}")]
        # One refused reading refuses the whole transaction: each on its own then, in a
        # transaction of its own (a batch would not resolve the patient's conditional
        # reference the same way).
        return [outcome for entry in entries for outcome in await self._store([entry])]

    async def _post(self, entries: list[dict]) -> tuple[int, dict]:
        body = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        request = FhirRequest(
            "POST",
            [],
            [],
            {"content-type": "application/fhir+json", "prefer": "return=minimal"},
            orjson.dumps(body),
            self.platform.settings.fhir_base,
        )
        response = await self.platform.handle(request, self.principal)
        return response.status, orjson.loads(response.body) if response.body else {}

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


def _observation(message: Message, now: datetime) -> dict:
    """The Observation of one message, its subject the patient it names (a conditional
    reference the transaction resolves); Refused for a malformed reading."""
    try:
        reading = orjson.loads(message.payload)
    except orjson.JSONDecodeError:
        raise readings.Refused("not-json", "the reading is not JSON") from None
    if not isinstance(reading, dict):
        raise readings.Refused("not-json", "the reading must be a JSON object")
    fnr = reading.get("patient")
    if not isinstance(fnr, str) or not fnr.isdigit() or len(fnr) != 11:
        raise readings.Refused("missing-field", "'patient' must be an 11-digit national id")
    obs = readings.observation(reading, message.device_id, fnr, now)
    obs["subject"]["reference"] = f"Patient?identifier={FNR}|{fnr}"
    return obs


def _entry(obs: dict, key: tuple[str, str]) -> dict:
    system, value = key
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
    if status.startswith("201"):
        return Outcome("stored")
    if status.startswith("200"):
        return Outcome("duplicate")
    reason = _diagnostics(response.get("outcome") or {})
    return Outcome("refused", reason, f"http-{status[:3]}")


def _again(outcome: Outcome) -> Outcome:
    """A second copy of a reading in the same group: stored once, by its first copy."""
    return Outcome("duplicate") if outcome.status != "refused" else outcome


def _diagnostics(outcome: dict) -> str:
    issues = outcome.get("issue") or [{}]
    return str(issues[0].get("diagnostics") or "refused")
