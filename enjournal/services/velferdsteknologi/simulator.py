"""Simulated home devices for the demo (``make demo``): readings for the demo's home
follow-up patients, through the hub's ingest in process (the embedded default: no broker),
so the follow-up centre shows live data.  Most readings are normal; some cross the
patients' thresholds (low SpO2, high blood pressure, a weight gain), as real ones do.

``history`` writes the past week (four readings a day per device); ``Simulator.tick`` one
new round, run as a job every ``EVERY`` seconds when ``ENJOURNAL_DEMO_DEVICES`` is on.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import orjson

from enjournal.services import Job
from enjournal.services.velferdsteknologi.hooks import HOME_DEVICE, assigned_patient
from enjournal.services.velferdsteknologi.ingest import Ingest, Message

EVERY = 20.0  # seconds between simulated rounds
FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
# device kind (its id's prefix) -> the readings it sends
KINDS = {"oksymeter": ("spo2", "pulse"), "blodtrykk": ("blood-pressure",), "vekt": ("weight",)}
UNITS = {"spo2": "%", "pulse": "/min", "blood-pressure": "mm[Hg]", "weight": "kg"}


def value(kind: str, rng: random.Random, unwell: bool, day: int):
    """A plausible value; an unwell patient's drift past the usual thresholds."""
    if kind == "spo2":
        return rng.randint(86, 91) if unwell else rng.randint(94, 99)
    if kind == "pulse":
        return rng.randint(95, 125) if unwell else rng.randint(58, 84)
    if kind == "blood-pressure":
        systolic = rng.randint(165, 185) if unwell else rng.randint(118, 142)
        return {"systolic": systolic, "diastolic": rng.randint(70, 92)}
    base = 78.0 + (day * 0.5 if unwell else 0)  # fluid: half a kilo a day
    return round(base + rng.uniform(-0.3, 0.3), 1)


class Simulator:
    def __init__(self, platform, seed: int = 1):
        self.ingest = Ingest(platform)
        self.rng = random.Random(seed)

    async def devices(self) -> list[tuple[str, str, str]]:
        """(device id, kind, patient's national id) of the demo's home devices."""
        found = await self.ingest.hub.search(
            "Device", [("identifier", f"{HOME_DEVICE}|"), ("status", "active"), ("_count", "200")]
        )
        out = []
        for device in found:
            kind = device["id"].split("-")[0]
            patient = assigned_patient(device)
            fnr = await self._fnr(patient) if kind in KINDS and patient else None
            if fnr:
                out.append((device["id"], kind, fnr))
        return out

    async def _fnr(self, patient_id: str) -> str | None:
        status, patient = await self.ingest.hub.call("GET", f"Patient/{patient_id}")
        idents = patient.get("identifier") or () if status < 400 else ()
        return next((i["value"] for i in idents if i.get("system") == FNR), None)

    async def round(self, at: datetime, day: int = 0, unwell_share: float = 0.1) -> int:
        """One reading of every kind from every device at ``at``; how many were stored."""
        messages = []
        for device_id, kind, fnr in await self.devices():
            unwell = self.rng.random() < unwell_share
            for reading in KINDS[kind]:
                body = {
                    "id": f"{reading}-{at:%Y%m%d%H%M%S}",
                    "type": reading,
                    "value": value(reading, self.rng, unwell, day),
                    "unit": UNITS[reading],
                    "measured": at.isoformat(),
                    "patient": fnr,
                }
                messages.append(Message(device_id, orjson.dumps(body)))
        outcomes = await self.ingest.handle(messages) if messages else []
        return sum(o.status == "stored" for o in outcomes)

    async def history(self, now: datetime, days: int = 7) -> int:
        """Four readings a day for the past ``days``: the charts have a history."""
        stored = 0
        for day in range(days, 0, -1):
            for hour in (7, 12, 17, 21):
                at = (now - timedelta(days=day)).replace(hour=hour, minute=0, second=0)
                stored += await self.round(at, days - day, unwell_share=0.0)
        return stored


def demo_job(platform) -> Job:
    simulator = Simulator(platform)

    async def tick(_store, now: datetime) -> int:
        return await simulator.round(now.replace(microsecond=0))

    return Job("vkp-demo-devices", EVERY, tick)
