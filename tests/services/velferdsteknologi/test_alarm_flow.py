"""Safety alarms end to end: an event from a device becomes an alert for the response
centre once; a responder accepts it, arrives and closes it through the API, each step
timestamped; response times come out per municipality.  And through the broker."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import orjson
import pytest

from enjournal.services.velferdsteknologi.hub import Hub
from enjournal.services.velferdsteknologi.ingest import Message
from enjournal.services.velferdsteknologi.intake import AlarmIntake

from .conftest import MUNICIPALITY, PATIENTS
from .test_followup import NOW, _as_nurse, resources
from .test_mqtt import Running, publish

pytestmark = pytest.mark.backends("memory", "postgres")


def fall(n: int, patient: str = PATIENTS["vkp-pas-1"], event: str = "fall") -> bytes:
    at = (NOW - timedelta(seconds=5)).isoformat()
    return orjson.dumps(
        {"id": f"ev-{n}", "event": event, "patient": patient, "at": at, "sent": NOW.isoformat()}
    )


def intake(platform, when=NOW) -> AlarmIntake:
    return AlarmIntake(Hub(platform), Counter(), clock=lambda: when)


async def test_an_alarm_is_one_alert_for_the_response_centre(hub):
    outcomes = await intake(hub).handle(
        [
            Message("dev-oxi-1", fall(1)),
            Message("dev-oxi-1", fall(1)),  # the gateway sent it twice
            Message("dev-oxi-1", fall(2, patient=PATIENTS["vkp-pas-2"])),  # not its patient
            Message("dev-nobody", fall(3)),
            Message("dev-oxi-1", fall(4, event="earthquake")),
        ]
    )
    assert [o.status for o in outcomes] == ["stored", "duplicate", "refused", "refused", "refused"]
    assert [o.code for o in outcomes[2:]] == ["not-assigned", "unknown-device", "unknown-event"]
    (task,) = await resources(hub, "Task")
    assert task["priority"] == "stat"
    assert task["owner"] == {"display": "Responssenteret"}
    assert task["requester"]["identifier"]["value"] == MUNICIPALITY
    assert task["restriction"]["period"]["end"] == "2026-12-03T09:02:00Z"
    (issue,) = await resources(hub, "DetectedIssue")
    codes = {c["code"] for c in issue["code"]["coding"]}
    assert codes == {"safety-alarm", "4.1"}  # VKP: Fall
    assert issue["identifiedDateTime"] == "2026-12-03T08:59:55Z"  # the device's time


async def test_accept_arrive_close_and_the_response_times(hub):
    await intake(hub).handle([Message("dev-oxi-1", fall(1))])
    (task,) = await resources(hub, "Task")
    path = f"Task/{task['id']}"
    early = await _as_nurse(hub, "POST", f"{path}/$vkp-arrived")
    assert early.status == 409  # not accepted yet
    accepted = await _as_nurse(hub, "POST", f"{path}/$vkp-acknowledge")
    assert accepted.status == 200, accepted.body
    owner = orjson.loads(accepted.body)["owner"]
    assert owner["identifier"]["value"] == "9144889"
    assert (await _as_nurse(hub, "POST", f"{path}/$vkp-arrived")).status == 200
    close = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "action", "valueString": "Hjalp pasienten opp, ingen skade"},
            {"name": "outcome", "valueCode": "no-injury"},
        ],
    }
    closed = await _as_nurse(hub, "POST", f"{path}/$vkp-close", close)
    assert closed.status == 200, closed.body
    body = orjson.loads(closed.body)
    assert body["status"] == "completed" and body["executionPeriod"]["end"]
    (issue,) = await resources(hub, "DetectedIssue")
    assert issue["status"] == "final"
    report = await _as_nurse(hub, "GET", "$vkp-response-times")
    assert report.status == 200, report.body
    (row,) = orjson.loads(report.body)["parameter"]
    values = {
        p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in row["part"]
    }
    assert values["municipality"] == MUNICIPALITY
    assert values["count"] == 1 and values["open"] == 0
    assert values["accept-median"] >= 0


@pytest.mark.slow
@pytest.mark.backends("postgres")
async def test_an_alarm_through_the_broker(hub, private_broker):
    async with Running(hub, private_broker) as running:
        await publish(private_broker.port, "dev-oxi-1", [fall(9)], topic="vkp/dev-oxi-1/alarms")
        for _ in range(100):
            if running.ingest.counts["alarm:stored"]:
                break
            await asyncio.sleep(0.05)
    assert running.ingest.counts["alarm:stored"] == 1
    assert len(await resources(hub, "Task")) == 1
