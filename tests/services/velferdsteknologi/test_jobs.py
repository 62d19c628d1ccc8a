"""The follow-up's scheduled jobs with a controllable clock: escalation of unacknowledged
alerts level by level, devices gone silent, planned measurements missing; each alert once."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from enjournal.services.velferdsteknologi import jobs
from enjournal.services.velferdsteknologi.hub import Hub
from enjournal.services.velferdsteknologi.ingest import Ingest

from .test_followup import NOW, _as_nurse, reading, resources

pytestmark = pytest.mark.backends("memory", "postgres")
MIN = timedelta(minutes=1)


def _by_kind(tasks: list[dict]) -> dict[str, dict]:
    return {t["code"]["coding"][0]["code"]: t for t in tasks}


async def test_an_unacknowledged_alert_escalates_level_by_level(planned):
    await Ingest(planned, clock=lambda: NOW).handle([reading(1, "spo2", 88, "%")])
    hub = Hub(planned)
    assert await jobs.escalate(hub, NOW + 60 * MIN) == 0  # moderate: 60 minutes, not after
    assert await jobs.escalate(hub, NOW + 61 * MIN) == 2  # the threshold and the NEWS2 alert
    task = _by_kind(await resources(planned, "Task"))["threshold"]
    assert task["priority"] == "asap"  # one step more urgent than urgent
    assert task["owner"] == {"display": "Vakthavende sykepleier"}
    assert task["restriction"]["period"]["end"].startswith("2026-12-03T10:30")
    assert await jobs.escalate(hub, NOW + 61 * MIN) == 0  # run twice: nothing more
    assert await jobs.escalate(hub, NOW + 91 * MIN) == 2  # level 3 after 60 + 30 minutes
    assert await jobs.escalate(hub, NOW + 600 * MIN) == 0  # the last level: it stays
    levels = {alerts_level(t) for t in await resources(planned, "Task")}
    assert levels == {3}


def alerts_level(task: dict) -> int:
    from enjournal.services.velferdsteknologi import alerts

    return alerts.level(task)


async def test_an_acknowledged_alert_does_not_escalate(planned):
    await Ingest(planned, clock=lambda: NOW).handle([reading(1, "spo2", 88, "%")])
    task = _by_kind(await resources(planned, "Task"))["threshold"]
    answer = await _as_nurse(planned, "POST", f"Task/{task['id']}/$vkp-acknowledge")
    assert answer.status == 200
    assert await jobs.escalate(Hub(planned), NOW + 61 * MIN) == 1  # only the NEWS2 alert


async def test_a_silent_device_raises_one_alert_per_silence(planned):
    await Ingest(planned, clock=lambda: NOW).handle([reading(1, "spo2", 96, "%")])
    hub = Hub(planned)
    before = {t["id"] for t in await resources(planned, "Task")}
    # dev-bp-1 and dev-scale-2 never sent anything: silent from the start
    assert await jobs.silent_devices(hub, NOW + 60 * MIN) == 2
    assert await jobs.silent_devices(hub, NOW + 61 * MIN) == 1  # dev-oxi-1, after an hour
    assert await jobs.silent_devices(hub, NOW + 120 * MIN) == 0  # the same silences
    issues = [
        i
        for i in await resources(planned, "DetectedIssue")
        if i["code"]["coding"][0]["code"] == "silent-device"
    ]
    assert {i["evidence"][0]["detail"][0]["reference"] for i in issues} == {
        "Device/dev-oxi-1",
        "Device/dev-bp-1",
        "Device/dev-scale-2",
    }
    assert len({t["id"] for t in await resources(planned, "Task")} - before) == 3
    # A new reading ends the silence; the next one is a new alert.
    later = NOW + 130 * MIN
    await Ingest(planned, clock=lambda: later).handle([reading(2, "spo2", 96, "%", at=later)])
    assert await jobs.silent_devices(hub, later + 61 * MIN) == 1


async def test_a_missing_planned_measurement_raises_one_alert(planned):
    async with planned.store.transaction() as tx:
        stored = await tx.read("CarePlan", "plan-pas-1")
        plan = orjson.loads(stored.content)
        plan["period"] = {"start": (NOW - timedelta(days=2)).isoformat()}
        plan["activity"].append(
            {
                "detail": {
                    "status": "scheduled",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                    "scheduledTiming": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                }
            }
        )
        await tx.update(plan, "plan-pas-1")
    hub = Hub(planned)
    assert await jobs.missing_measurements(hub, NOW) == 1
    assert await jobs.missing_measurements(hub, NOW + MIN) == 0
    (issue,) = [
        i
        for i in await resources(planned, "DetectedIssue")
        if i["code"]["coding"][0]["code"] == "missing-measurement"
    ]
    assert "29463-7" in issue["detail"]
    weighed = NOW + 2 * MIN
    scale = reading(1, "weight", 80, "kg", at=weighed, device="dev-bp-1")
    await Ingest(planned, clock=lambda: weighed).handle([scale])
    assert await jobs.missing_measurements(hub, weighed + timedelta(hours=25)) == 0
    assert await jobs.missing_measurements(hub, weighed + timedelta(hours=26, minutes=1)) == 1
